"""Latency benchmarks of networks through their backends (ROS-free): warm-up, repeated timed runs, statistics.

Timings on shared machines are noisy: compare backends as ratios measured in one run, and record the machine.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np

from ros_mmfusion.core.inference import create_backend
from ros_mmfusion.core.models.registry import NetworkSpec
from ros_mmfusion.core.onnx_export import export_onnx


@dataclass
class BenchResult:
    model: str
    backend: str
    batch: int
    height: int
    width: int
    threads: int
    runs: int
    median_ms: float
    p95_ms: float
    mean_ms: float
    throughput_fps: float
    machine: str
    date: str
    graph: str = "reference"
    """"reference": the module as built (upstream structure, eager); "deployed": the exact deployment rewrite."""

    def as_dict(self) -> dict:
        return asdict(self)


def time_runs(fn: Callable[[], object], warmup: int, runs: int) -> np.ndarray:
    """Milliseconds of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t) * 1e3
    return out


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus"


def bench_network(spec: NetworkSpec, backend: str, batch: int = 1, size: tuple[int, int] | None = None,
                  threads: int = 0, warmup: int = 2, runs: int = 10, device: str = "cpu",
                  workdir: Path | None = None) -> BenchResult:
    """Time ``spec`` through ``backend`` ("torch", "onnxruntime", "onnxruntime-int8" or "tensorrt") on random inputs
    of ``batch`` x ``size``. INT8 is calibrated on those random inputs: its timing is real, its accuracy is not (see
    ``mmfusion build-engine --target onnxruntime`` for that)."""
    import torch

    size = size or spec.default_size
    torch.manual_seed(0)
    module = spec.build()
    inputs = spec.example(batch, size)
    feeds = {n: t.numpy() for n, t in zip(spec.input_names, inputs, strict=True)}
    with tempfile.TemporaryDirectory(prefix="mmfusion_bench_") as tmp:
        onnx_path = None
        if backend != "torch":
            onnx_path = Path(workdir or tmp) / f"{spec.name}.onnx"
            exported = spec.deploy(module) if spec.deploy else module
            export_onnx(exported, inputs, onnx_path, spec.input_names, spec.output_names, spec.dynamic_axes)
        runner = create_backend(backend, input_names=spec.input_names, output_names=spec.output_names,
                                module_factory=lambda: module, onnx_path=onnx_path, threads=threads,
                                device="cuda" if backend == "tensorrt" else device, calibration=lambda: [feeds],
                                shapes={n: a.shape for n, a in feeds.items()}, cache_dir=Path(workdir or tmp))
        times = time_runs(lambda: runner.run(feeds), warmup, runs)
    median = float(np.median(times))
    return BenchResult(spec.name, backend, batch, size[0], size[1], threads or torch.get_num_threads(), runs, median,
                       float(np.percentile(times, 95)), float(times.mean()), 1e3 * batch / median, machine(),
                       date.today().isoformat(), "deployed" if onnx_path is not None and spec.deploy else "reference")


# ------------------------------------------------------------------------------------------ 3D detection pipelines

DETECTION_MODELS = {"pointpillars": "pointpillars_kitti", "pointpillars_kitti": "pointpillars_kitti",
                    "centerpoint_pillar": "centerpoint_pillar", "pointpillars_synthetic": "pointpillars_synthetic"}
"""Names ``mmfusion bench --model`` times as whole detection pipelines (-> detector configuration)."""


@dataclass
class DetectionBenchResult:
    """Per-frame milliseconds of a detection pipeline (medians over ``runs`` frames): pre-processing (crop, paint,
    pillarize, decorate, scatter), the two graphs, post-processing (decode, NMS) and the whole call (``total``)."""

    model: str
    backend: str
    threads: int
    runs: int
    cloud: str
    weights: str
    points: int
    points_in_range: int
    pillars: int
    detections: int
    preprocess_ms: float
    encoder_ms: float
    backbone_head_ms: float
    postprocess_ms: float
    total_ms: float
    total_p95_ms: float
    stages_ms: dict
    machine: str
    date: str

    def as_dict(self) -> dict:
        return asdict(self)


def bench_cloud(beams: int = 64) -> tuple[np.ndarray, str]:
    """A realistic sweep: frame 0 of the synthetic ``urban_day`` world with a ``beams``-beam roof LiDAR (structured
    x y z intensity ring; intensity 0..255), and its description."""
    from ros_mmfusion.core.sim import Simulation

    points = Simulation("urban_day", size=(64, 48), beams=beams).frame(0).lidar.points
    return points, f"synthetic urban_day frame 0, {beams} beams, {len(points)} points (360 deg)"


def bench_detection(model: str, backend: str, cloud: tuple[np.ndarray, str] | None = None, threads: int = 0,
                    warmup: int = 1, runs: int = 5, weights: str = "", workdir: Path | None = None,
                    intensity_scale: float = 1 / 255) -> DetectionBenchResult:
    """Time the whole detection pipeline ``model`` (a key of ``DETECTION_MODELS``) on ``backend`` over ``cloud``
    (default ``bench_cloud()``). ``weights``: a checkpoint; empty means random weights, whose scores hardly pass the
    thresholds, so post-processing sees almost no candidates (a lower bound of its cost). ONNX files are exported
    into ``workdir`` (a temporary directory by default), not into the user's cache."""
    import torch

    from ros_mmfusion.core.detection3d.pipeline import STAGES, DetectorSpec, PillarDetector

    points, description = cloud if cloud is not None else bench_cloud()
    with tempfile.TemporaryDirectory(prefix="mmfusion_bench_") as tmp:
        spec = DetectorSpec.named(DETECTION_MODELS[model], weights=weights,
                                  onnx_dir=str(Path(workdir or tmp) / f"{model}_onnx"))
        detector = PillarDetector(spec, backend=backend, threads=threads, intensity_scale=intensity_scale)
        results = []

        def frame() -> None:
            results.append(detector(points))

        totals = time_runs(frame, warmup, runs)
    timed = results[warmup:]
    groups = {k: float(np.median([r.stage_groups_ms()[k] for r in timed]))
              for k in ("preprocess", "encoder", "backbone_head", "postprocess")}
    last = timed[-1]
    return DetectionBenchResult(
        model, backend, threads or torch.get_num_threads(), runs, description, weights or "random", last.num_points,
        last.num_points_in_range, last.num_pillars, len(last.detections), groups["preprocess"], groups["encoder"],
        groups["backbone_head"], groups["postprocess"], float(np.median(totals)), float(np.percentile(totals, 95)),
        {s: float(np.median([r.timings_ms[s] for r in timed])) for s in STAGES}, machine(), date.today().isoformat())
