"""ViNT INT8: calibration contexts from the synthetic world's ``indoor_corridor`` and the accuracy check against fp32.

A sample is what :class:`~ros_mmfusion.core.navigation.policy.NavigationPolicy` feeds the network: a context of
``context_size + 1`` camera frames at the model's frame rate (``obs_img``, batch 1) and a goal image a few frames
ahead on the same route (``goal_img``), preprocessed exactly as the policy does. Calibration and evaluation samples
come from disjoint stretches of the route (``CALIBRATION_START`` / ``EVALUATION_START``).

``vint_int8_onnx(...)`` is the policy's INT8 model: the fp32 ONNX of the variant + weights quantized (QDQ, in
this CPU's format) on first use and cached beside it; ``compare_vint_int8`` measures temporal-distance and metric
waypoint errors.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros_mmfusion.core.inference.engine_cache import EngineCache
from ros_mmfusion.core.inference.int8 import (
    Int8Comparison,
    Int8Settings,
    interleaved_latency,
    quantized_model,
)

SCENARIO = "indoor_corridor"
SIM_SEED = 900  # neither a training nor a validation seed (as for the segmentation calibration)
SIM_SIZE = (160, 120)  # camera (width, height); the policy resizes to the variant's input
GOAL_AHEAD = 4  # goal image this many model frames after the newest context frame
CALIBRATION_START = 0
EVALUATION_START = 200  # model frames (50 s at 4 Hz): another stretch of the corridor loop


def vint_samples(variant: str = "vint_default", count: int = 16, start: int = CALIBRATION_START, stride: int = 2,
                 scenario: str = SCENARIO, seed: int = SIM_SEED) -> list[dict[str, np.ndarray]]:
    """``count`` feeds ``{"obs_img": (1, 3 (C+1), H, W), "goal_img": (1, 3, H, W)}`` from ``scenario`` rendered at
    the variant's frame rate: sample ``i`` has context frames ``start + i stride ...`` and a goal ``GOAL_AHEAD``
    frames after its newest one."""
    from ros_mmfusion.core.models.vint import VINT_VARIANTS
    from ros_mmfusion.core.preprocess.navigation import preprocess_frame
    from ros_mmfusion.core.sim import Simulation

    v = VINT_VARIANTS[variant]
    sim = Simulation(scenario, seed=seed, size=SIM_SIZE, beams=16, rate=v.frame_rate_hz)
    frames: dict[int, np.ndarray] = {}

    def frame(k: int) -> np.ndarray:
        if k not in frames:
            frames[k] = preprocess_frame(sim.frame(k).camera.rgb, v.image_size)
        return frames[k]

    n = v.config.context_size + 1
    feeds = []
    for i in range(count):
        first = start + i * stride
        obs = np.concatenate([frame(first + j) for j in range(n)], axis=0)[None]
        goal = frame(first + n - 1 + GOAL_AHEAD)[None]
        feeds.append({"obs_img": np.ascontiguousarray(obs), "goal_img": np.ascontiguousarray(goal)})
    return feeds


def describe(count: int, start: int = CALIBRATION_START, scenario: str = SCENARIO) -> str:
    return f"{count} contexts of the synthetic world ({scenario}, seed {SIM_SEED}, from model frame {start})"


def vint_int8_onnx(variant: str = "vint_default", weights: str = "", onnx: str = "", count: int = 16,
                   settings: Int8Settings | None = None, cache: EngineCache | None = None,
                   force: bool = False) -> Path:
    """The INT8 (QDQ) model of ViNT ``variant`` + ``weights`` (its fp32 ONNX from ``vint_onnx``): the cached one,
    else quantized now on ``count`` contexts of ``indoor_corridor`` in ``settings`` (default: this CPU's format)."""
    from ros_mmfusion.core.navigation.policy import vint_onnx

    fp32 = vint_onnx(variant, weights, onnx)

    def feeds() -> Iterator[dict[str, np.ndarray]]:
        yield from vint_samples(variant, count)

    return quantized_model(fp32, feeds, settings, cache or EngineCache(), force=force,
                           notes_of=lambda: {"calibration": describe(count)}).artifact


@dataclass
class NavigationInt8Report(Int8Comparison):
    """INT8 against fp32 ViNT on the same samples: temporal distance (model units, frames) and waypoint errors, the
    waypoints in metres after ``waypoints_to_metric`` with ``waypoint_spacing``; heading error in degrees."""

    samples: int
    waypoint_spacing: float
    distance_abs_error_mean: float
    distance_abs_error_max: float
    distance_fp32_abs_mean: float  # scale of the distances the errors are of
    waypoint_error_mean_m: float  # Euclidean x, y error per waypoint, over all waypoints
    waypoint_error_max_m: float
    waypoint_fp32_norm_mean_m: float  # scale of the waypoints
    heading_error_max_deg: float
    latency_fp32_ms: float = 0.0
    latency_int8_ms: float = 0.0


    def summary(self) -> str:
        return (f"ViNT INT8 vs fp32 on {self.samples} contexts: distance |error| mean "
                f"{self.distance_abs_error_mean:.4f} max {self.distance_abs_error_max:.4f} (fp32 |distance| mean "
                f"{self.distance_fp32_abs_mean:.4f}); waypoint error mean {1e3 * self.waypoint_error_mean_m:.2f} mm "
                f"max {1e3 * self.waypoint_error_max_m:.2f} mm (fp32 |waypoint| mean "
                f"{1e3 * self.waypoint_fp32_norm_mean_m:.1f} mm), heading max "
                f"{self.heading_error_max_deg:.2f} deg; median latency fp32 {self.latency_fp32_ms:.2f} ms, int8 "
                f"{self.latency_int8_ms:.2f} ms ({self.speedup:.2f}x)")


def compare_vint_int8(fp32_onnx: str | Path, int8_onnx: str | Path, feeds: Sequence[Mapping[str, np.ndarray]],
                      waypoint_spacing: float = 0.05, threads: int = 0, timing_runs: int = 10) -> NavigationInt8Report:
    """Run both ViNT models on ``feeds`` and compare ``dist`` and the metric ``action`` waypoints."""
    from ros_mmfusion.core.models.vint import waypoints_to_metric
    from ros_mmfusion.core.onnx_export import ort_session

    s32, s8 = ort_session(fp32_onnx, threads), ort_session(int8_onnx, threads)
    d32, d8, w32, w8 = [], [], [], []
    for feed in feeds:
        a = s32.run(["dist", "action"], dict(feed))
        b = s8.run(["dist", "action"], dict(feed))
        d32.append(a[0].ravel())
        d8.append(b[0].ravel())
        w32.append(waypoints_to_metric(a[1].astype(np.float64), waypoint_spacing))
        w8.append(waypoints_to_metric(b[1].astype(np.float64), waypoint_spacing))
    dist32, dist8 = np.concatenate(d32).astype(np.float64), np.concatenate(d8).astype(np.float64)
    way32, way8 = np.concatenate(w32), np.concatenate(w8)  # (N, T, 4)
    derr = np.abs(dist32 - dist8)
    werr = np.linalg.norm(way32[..., :2] - way8[..., :2], axis=-1)
    heading = np.abs(np.angle(np.exp(1j * (np.arctan2(way32[..., 3], way32[..., 2])
                                           - np.arctan2(way8[..., 3], way8[..., 2])))))
    report = NavigationInt8Report(len(feeds), waypoint_spacing, float(derr.mean()), float(derr.max()),
                                  float(np.abs(dist32).mean()), float(werr.mean()), float(werr.max()),
                                  float(np.linalg.norm(way32[..., :2], axis=-1).mean()),
                                  float(np.degrees(heading.max())))
    if timing_runs and feeds:
        report.latency_fp32_ms, report.latency_int8_ms = interleaved_latency(s32, s8, dict(feeds[0]), timing_runs)
    return report


def measure(variant: str = "vint_default", weights: str = "", count: int = 16, threads: int = 0,
            timing_runs: int = 20) -> NavigationInt8Report:
    """Quantize (or reuse) and compare on ``count`` evaluation contexts (docs/benchmarks.md's ViNT INT8 line)."""
    from ros_mmfusion.core.navigation.policy import vint_onnx

    int8 = vint_int8_onnx(variant, weights, count=count)
    return compare_vint_int8(vint_onnx(variant, weights), int8, vint_samples(variant, count, EVALUATION_START),
                             threads=threads, timing_runs=timing_runs)
