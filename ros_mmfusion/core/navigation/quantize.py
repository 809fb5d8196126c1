"""ViNT INT8 calibration: contexts from the synthetic world's ``indoor_corridor`` fed through the navigation
pipeline's own stages, and the accuracy check of an INT8 model against fp32.

A sample is what :class:`~ros_mmfusion.core.navigation.pipeline.NavigationPolicy` feeds the network: its context
queue filled with ``context_size + 1`` camera frames at the model's frame rate (``obs_img``, batch 1) and a goal image
a few frames ahead on the same route (``goal_img``), both produced by the pipeline's
:meth:`~ros_mmfusion.core.navigation.pipeline.NavigationPolicy.network_inputs` over a topomap of the rendered route.
Calibration and evaluation samples come from disjoint stretches of the route (``CALIBRATION_START`` /
``EVALUATION_START``).

The INT8 model itself (quantized on first use and cached beside the fp32 export) is built by
:func:`ros_mmfusion.core.navigation.artifacts.vint_int8_onnx` with :func:`vint_samples`; ``compare_vint_int8``
measures temporal-distance and metric waypoint errors.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros_mmfusion.core.inference.int8 import Int8Comparison, interleaved_latency
from ros_mmfusion.core.models.vint import waypoints_to_metric
from ros_mmfusion.core.navigation.pipeline import NavigationPolicy, vint_variant
from ros_mmfusion.core.navigation.topomap import topomap_from_images

SCENARIO = "indoor_corridor"
SIM_SEED = 900  # neither a training nor a validation seed (as for the segmentation calibration)
SIM_SIZE = (160, 120)  # camera (width, height); the policy resizes to the variant's input
GOAL_AHEAD = 4  # goal image this many model frames after the newest context frame
CALIBRATION_START = 0
EVALUATION_START = 200  # model frames (50 s at 4 Hz): another stretch of the corridor loop


def context_feeds(pipeline: NavigationPolicy, first_frames: Sequence[int],
                  goal_ahead: int = GOAL_AHEAD) -> Iterator[dict[str, np.ndarray]]:
    """The network inputs of ``pipeline`` for contexts of its route topomap's images: for each ``first`` in
    ``first_frames`` the context queue restarted and filled with nodes ``first, first + 1, ...`` as frames at the
    model's frame rate (stamps ``node * period``), and the goal node ``goal_ahead`` nodes after its newest frame."""
    period_ns = pipeline.sampler.period_ns
    for first in first_frames:
        pipeline.reset()
        node = first
        while not pipeline.ready:
            if not pipeline.add_frame(node * period_ns, pipeline.topomap.image(node)):
                raise RuntimeError(f"the context queue declined route frame {node}")
            node += 1
        goal = node - 1 + goal_ahead
        yield pipeline.network_inputs(goal, goal)


def vint_samples(variant: str = "vint_default", count: int = 16, start: int = CALIBRATION_START, stride: int = 2,
                 scenario: str = SCENARIO, seed: int = SIM_SEED) -> list[dict[str, np.ndarray]]:
    """``count`` feeds ``{"obs_img": (1, 3 (C+1), H, W), "goal_img": (1, 3, H, W)}`` from ``scenario`` rendered at
    the variant's frame rate: sample ``i`` has context frames ``start + i stride ...`` and a goal ``GOAL_AHEAD``
    frames after its newest one, produced by the navigation pipeline's own stages (:func:`context_feeds`)."""
    from ros_mmfusion.core.sim import Simulation

    v = vint_variant(variant)
    sim = Simulation(scenario, seed=seed, size=SIM_SIZE, beams=16, rate=v.frame_rate_hz)
    n = v.config.context_size + 1
    firsts = [start + i * stride for i in range(count)]
    needed = sorted({f + j for f in firsts for j in range(n)} | {f + n - 1 + GOAL_AHEAD for f in firsts})
    route = topomap_from_images({k: sim.frame(k).camera.rgb for k in needed}, max(needed, default=-1) + 1,
                                f"{scenario} seed {seed}")  # the frames the samples use, each rendered once
    return list(context_feeds(NavigationPolicy(route, None, variant=variant), firsts))


def describe(count: int, start: int = CALIBRATION_START, scenario: str = SCENARIO) -> str:
    return f"{count} contexts of the synthetic world ({scenario}, seed {SIM_SEED}, from model frame {start})"


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


CAMERA_TOPIC = "/camera/color/image_raw"


def vint_samples_from_bag(variant: str | object, bag: str | Path, count: int = 16, topic: str = CAMERA_TOPIC,
                          stride: int = 2) -> list[dict[str, np.ndarray]]:
    """``count`` ViNT feeds from the camera images (``topic``) of the rosbag2 ``bag``, made like :func:`vint_samples`:
    the bag's images, in order, as a route (one node per image) whose contexts start every ``stride`` images, each
    with the goal ``GOAL_AHEAD`` images after its newest frame. ConfigError when the bag has too few images."""
    from ros_mmfusion.core.bagio import BagSource
    from ros_mmfusion.core.codec.image import decode_rgb
    from ros_mmfusion.core.errors import ConfigError

    v = vint_variant(variant)
    n = v.config.context_size + 1
    needed = (count - 1) * stride + n + GOAL_AHEAD
    images: dict[int, np.ndarray] = {}
    with BagSource(bag) as source:
        if topic not in source.topics:
            raise ConfigError(f"bag {bag} has no topic {topic}; it has {sorted(source.topics)}")
        for message in source.messages([topic]):
            m = source.deserialize(message)
            images[len(images)] = decode_rgb(m.height, m.width, m.encoding, m.is_bigendian, m.step, m.data)
            if len(images) >= needed:
                break
    if len(images) < needed:
        raise ConfigError(f"bag {bag}: {len(images)} images on {topic}; {count} ViNT contexts need {needed}")
    route = topomap_from_images(images, len(images), f"bag {Path(bag).name}")
    return list(context_feeds(NavigationPolicy(route, None, variant=variant), [i * stride for i in range(count)]))


# ------------------------------------------------------------------------------------------------- the split network

def split_feeds(feed: Mapping[str, np.ndarray], frame_tokens) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A whole-network sample (``vint_samples``, batch 1) as the split network's two feeds: ``{"frame_img"}`` (the
    context's frames, oldest first) and ``{"context_tokens", "current_img", "goal_img"}``, the tokens from
    ``frame_tokens(frames) -> (C+1, E)`` (the fp32 frame encoder, so the decoder is calibrated on what it sees)."""
    obs = np.asarray(feed["obs_img"], np.float32)
    frames = obs.reshape(-1, 3, *obs.shape[-2:])
    return ({"frame_img": frames},
            {"context_tokens": np.asarray(frame_tokens(frames))[None], "current_img": obs[:, -3:],
             "goal_img": np.asarray(feed["goal_img"], np.float32)})


@dataclass
class PipelineAgreement:
    """Two navigation pipelines driven over the same camera frames (held-out synthetic route): how often they
    localise at the same node and choose the same subgoal, and how far apart their temporal distances (model units,
    frames) and published waypoints (metres, ``base_link``) are."""

    steps: int
    closest_node_agreement: float
    subgoal_agreement: float
    distance_abs_error_max: float
    waypoint_error_mean_m: float
    waypoint_error_max_m: float

    def summary(self) -> str:
        return (f"{self.steps} steps: closest node agreement {100 * self.closest_node_agreement:.1f} %, subgoal "
                f"{100 * self.subgoal_agreement:.1f} %, distance |error| max {self.distance_abs_error_max:.4f}, "
                f"waypoint error mean {1e3 * self.waypoint_error_mean_m:.2f} / max "
                f"{1e3 * self.waypoint_error_max_m:.2f} mm")


def route_agreement(reference: NavigationPolicy, candidate: NavigationPolicy, frames: Sequence[np.ndarray]
                    ) -> PipelineAgreement:
    """Drive both pipelines (same topomap and settings) over ``frames``, one per context period, and compare every
    step; each keeps its own localisation state, so a divergence shows in the following steps too."""
    period = reference.sampler.period_ns
    pairs = []
    for k, frame in enumerate(frames):
        taken = [p.add_frame(k * period, frame) for p in (reference, candidate)]
        if all(taken) and reference.ready and candidate.ready:
            pairs.append((reference.step(), candidate.step()))
    if not pairs:
        raise ValueError(f"{len(frames)} frames never fill a context of {reference.context.maxlen}")
    same_window = [(a, b) for a, b in pairs if a.localization.window == b.localization.window]
    derr = max((np.abs(a.model_distances - b.model_distances).max() for a, b in same_window), default=0.0)
    werr = np.concatenate([np.linalg.norm(a.waypoints[:, :2] - b.waypoints[:, :2], axis=-1) for a, b in pairs])
    return PipelineAgreement(len(pairs), float(np.mean([a.closest_node == b.closest_node for a, b in pairs])),
                             float(np.mean([a.subgoal_node == b.subgoal_node for a, b in pairs])), float(derr),
                             float(werr.mean()), float(werr.max()))
