"""Latency benchmarks of networks through their backends (ROS-free): warm-up, repeated timed runs, statistics.

Timings on shared machines are noisy: compare backends as ratios measured in one run, and record the machine.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
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


def time_runs(fn: Callable[[], object], warmup: int, runs: int, period_s: float = 0.0) -> np.ndarray:
    """Milliseconds of ``runs`` calls of ``fn`` after ``warmup`` untimed calls; with ``period_s`` the calls start
    that far apart (idle in between, as frames arriving at ``1 / period_s`` Hz leave a node: on a VM a call after
    0.5 s idle can take 1.3x one made back to back)."""
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t) * 1e3
        if period_s > 0 and i + 1 < runs:
            time.sleep(max(0.0, period_s - (time.perf_counter() - t)))
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
            deploy = (spec.deploy_onnxruntime if backend == "onnxruntime" else None) or spec.deploy
            exported = deploy(module) if deploy else module
            export_onnx(exported, inputs, onnx_path, spec.input_names, spec.output_names, spec.dynamic_axes)
        runner = create_backend(backend, input_names=spec.input_names, output_names=spec.output_names,
                                module_factory=lambda: module, onnx_path=onnx_path, threads=threads,
                                device="cuda" if backend == "tensorrt" else device,
                                quantization_samples=lambda: [feeds], shapes={n: a.shape for n, a in feeds.items()},
                                cache_dir=Path(workdir or tmp))
        times = time_runs(lambda: runner.run(feeds), warmup, runs)
    median = float(np.median(times))
    return BenchResult(spec.name, backend, batch, size[0], size[1], threads or torch.get_num_threads(), runs, median,
                       float(np.percentile(times, 95)), float(times.mean()), 1e3 * batch / median, machine(),
                       date.today().isoformat(), "deployed" if onnx_path is not None and spec.deploy else "reference")


# --------------------------------------------------------------------------------------------- ViNT navigation tick

@dataclass
class NavigationTickResult:
    """Milliseconds of one navigation step (a camera frame in: preprocessing, network, localisation, metric
    waypoints out) with a ``window``-node localisation window, medians and p95 over ``runs`` steps timed
    interleaved: the whole network on the context repeated per node (``whole``) and the split network that encodes
    only the newest frame and reuses the other frames' tokens (``split``); ``frame_encoder_ms`` and
    ``goal_decoder_ms`` are the split's two graphs timed alone (batch 1 and ``window``)."""

    model: str
    backend: str
    window: int
    threads: int
    runs: int
    whole_ms: float
    whole_p95_ms: float
    split_ms: float
    split_p95_ms: float
    frame_encoder_ms: float
    goal_decoder_ms: float
    max_abs_diff: float  # largest |distance or waypoint difference| between the two over the timed steps (metres)
    same_closest_nodes: bool
    machine: str
    cpu: str
    date: str

    @property
    def speedup(self) -> float:
        return self.whole_ms / self.split_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "speedup": self.speedup}


def bench_navigation_tick(variant: str = "vint_default", backend: str = "onnxruntime", window: int = 10,
                          threads: int = 0, warmup: int = 2, runs: int = 10,
                          camera_size: tuple[int, int] = (160, 120)) -> NavigationTickResult:
    """Time :meth:`NavigationPolicy.step` of ViNT ``variant`` (untrained seeded weights) on ``backend``
    ("onnxruntime" or "torch") with a ``window``-node window, the whole network against the split one, interleaved
    on the same camera frames (random ``camera_size`` (w, h) images, a new one per step at the model's frame rate);
    the topomap has ``window`` random nodes and the injected distances keep the robot at node 0 so that every step
    scores the whole window (the network still runs in full). ONNX files come from the usual cache."""
    import torch

    from ros_mmfusion.core.inference.cpu_features import cpu_isa
    from ros_mmfusion.core.navigation.artifacts import build_backend, build_split_backend
    from ros_mmfusion.core.navigation.pipeline import NavigationPolicy
    from ros_mmfusion.core.navigation.topomap import topomap_from_images

    rng = np.random.default_rng(0)
    width, height = camera_size
    images = {i: rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for i in range(window)}
    topomap = topomap_from_images(images, window, "bench")
    whole = build_backend(backend, variant, threads=threads)
    split = build_split_backend(backend, variant, threads=threads)
    policies = [NavigationPolicy(topomap, b, variant=variant, radius=window) for b in (whole, split)]
    period = policies[0].sampler.period_ns
    distances = 10.0 + np.arange(window, dtype=np.float64)  # node 0 closest, beyond the close threshold

    def keep_at_start(start: int, end: int) -> np.ndarray:
        return distances[start:end + 1]

    frames = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
              for _ in range(policies[0].context_size + max(warmup, 1) + runs)]  # the first step fills the cache
    times, outputs = np.zeros((runs, 2)), []
    for k, frame in enumerate(frames):
        step = []
        for j, policy in enumerate(policies):
            started = time.perf_counter()
            if policy.add_frame(k * period, frame) and policy.ready:
                step.append(policy.step(keep_at_start))
            elapsed = (time.perf_counter() - started) * 1e3
            if k >= len(frames) - runs:
                times[k - len(frames) + runs, j] = elapsed
        if k >= len(frames) - runs:
            outputs.append(step)
    diff = max(max(np.abs(a.model_distances - b.model_distances).max(), np.abs(a.waypoints - b.waypoints).max())
               for a, b in outputs)
    same = all(a.closest_node == b.closest_node and a.subgoal_node == b.subgoal_node for a, b in outputs)
    feeds = policies[1].split_inputs(0, window - 1)
    frame = {"frame_img": policies[1].context[-1][None]}
    encoder_ms = time_runs(lambda: split.frame_encoder.run(frame), 1, runs)
    decoder_ms = time_runs(lambda: split.goal_decoder.run(feeds), 1, runs)
    isa = cpu_isa()
    return NavigationTickResult(
        variant, backend, window, threads or torch.get_num_threads(), runs, float(np.median(times[:, 0])),
        float(np.percentile(times[:, 0], 95)), float(np.median(times[:, 1])), float(np.percentile(times[:, 1], 95)),
        float(np.median(encoder_ms)), float(np.median(decoder_ms)), float(diff), same, machine(),
        f"{isa.model} ({isa.name})", date.today().isoformat())


# ------------------------------------------------------------------------------------------ 3D detection pipelines

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
    point_cloud_range: tuple[float, ...]
    grid: str
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
                    intensity_scale: float = 1 / 255,
                    point_cloud_range: Sequence[float] | None = None) -> DetectionBenchResult:
    """Time the whole detection pipeline ``model`` (a name of ``core/models/registry.detectors()``) on ``backend``
    over ``cloud`` (default ``bench_cloud()``). ``weights``: a checkpoint; empty means random weights, whose scores
    hardly pass the thresholds, so post-processing sees almost no candidates (a lower bound of its cost).
    ``point_cloud_range``: the detector moved to this range (m, ``pipeline.with_range``: same weights; default its
    own). ONNX files are exported into ``workdir`` (a temporary directory by default), not into the user's cache."""
    import torch

    from ros_mmfusion.core.detection3d.artifacts import build_detector
    from ros_mmfusion.core.detection3d.pipeline import STAGES

    points, description = cloud if cloud is not None else bench_cloud()
    with tempfile.TemporaryDirectory(prefix="mmfusion_bench_") as tmp:
        spec = _detector_spec(model, weights, point_cloud_range, onnx_dir=str(Path(workdir or tmp) / f"{model}_onnx"))
        detector = build_detector(spec, backend=backend, threads=threads, intensity_scale=intensity_scale)
        results = []

        def frame() -> None:
            results.append(detector(points))

        totals = time_runs(frame, warmup, runs)
    timed = results[warmup:]
    groups = {k: float(np.median([r.stage_groups_ms()[k] for r in timed]))
              for k in ("preprocess", "encoder", "backbone_head", "postprocess")}
    last = timed[-1]
    nx, ny, _ = spec.config.grid.grid_size
    return DetectionBenchResult(
        model, backend, threads or torch.get_num_threads(), runs, description, weights or "random",
        spec.config.point_cloud_range, f"{nx}x{ny} pillars", last.num_points,
        last.num_points_in_range, last.num_pillars, len(last.detections), groups["preprocess"], groups["encoder"],
        groups["backbone_head"], groups["postprocess"], float(np.median(totals)), float(np.percentile(totals, 95)),
        {s: float(np.median([r.timings_ms[s] for r in timed])) for s in STAGES}, machine(), date.today().isoformat())


def _detector_spec(model: str, weights: str, point_cloud_range: Sequence[float] | None, onnx_dir: str = ""):
    """The ``DetectorSpec`` of the named detector ``model`` with ``weights``, moved to ``point_cloud_range``, read as
    the detection3d node reads its parameters (``artifacts.detector_spec``)."""
    from ros_mmfusion.core.detection3d.artifacts import detector_spec

    return detector_spec({"model": model, "weights": weights, "point_cloud_range": list(point_cloud_range or ()),
                          "onnx_dir": onnx_dir})


# ------------------------------------------------------------------------------ INT8 formats against fp32, real inputs

@dataclass
class Int8FormatResult:
    """One INT8 format of one network against its fp32 ONNX Runtime model on held-out synthetic inputs: ``accuracy``
    (the comparison report's fields: argmax agreement for segmentation, metric errors for ViNT, box agreement for
    PointPillars), the interleaved medians ``fp32_ms``/``int8_ms`` and ``speedup``, and what this CPU's
    :func:`~ros_mmfusion.core.inference.int8.int8_plan` does with the family (``plan``)."""

    model: str
    format: str
    inputs: str
    threads: int
    runs: int
    fp32_ms: float
    int8_ms: float
    speedup: float
    accuracy: dict
    summary: str
    plan: str
    machine: str
    cpu_isa: str
    date: str

    def as_dict(self) -> dict:
        return asdict(self)


def bench_int8_formats(model: str, formats: list[str], size: tuple[int, int] | None = None, threads: int = 0,
                       runs: int = 10, frames: int = 8, package: str | Path | None = None, weights: str = "",
                       workdir: Path | None = None,
                       point_cloud_range: Sequence[float] | None = None) -> list[Int8FormatResult]:
    """Quantize ``model`` in each of ``formats`` (names of ``int8.CPU_FORMATS``) on ``frames`` synthetic inputs,
    compare with fp32 on ``frames`` others and time both interleaved (``runs`` each, ``threads``): a CMX network
    (``cmx_*``: the trained segmentation ``package``, default the shipped RGB-thermal model, at ``size``, default
    its own), ``vint`` (vint_default, untrained seeded weights) or a detection pipeline (``pointpillars``...:
    ``weights``, both graphs, over ``point_cloud_range`` or its own). INT8 models go to ``workdir`` (default: a
    temporary directory), fp32 exports to the usual cache."""
    from ros_mmfusion.core.inference.cpu_features import cpu_isa
    from ros_mmfusion.core.inference.engine_cache import EngineCache
    from ros_mmfusion.core.inference.int8 import CPU_FORMATS, int8_plan

    settings = [CPU_FORMATS[f] for f in formats]
    out = []
    with tempfile.TemporaryDirectory(prefix="mmfusion_int8_bench_") as tmp:
        cache = EngineCache(Path(workdir or tmp), log=lambda line: None)
        if model.startswith("cmx"):
            family, rows = "segmentation", _segmentation_int8(settings, size, threads, runs, frames, package, cache)
        elif model.startswith("vint"):
            family, rows = "navigation", _navigation_int8(settings, threads, runs, frames, cache)
        else:
            family, rows = "detection3d", _detection_int8(model, settings, threads, runs, frames, weights, cache,
                                                                point_cloud_range)
        isa = cpu_isa()
        for s, (inputs, report) in zip(settings, rows, strict=True):
            out.append(Int8FormatResult(model, s.label, inputs, threads, runs, report.latency_fp32_ms,
                                        report.latency_int8_ms, report.speedup, report.as_dict(), report.summary(),
                                        int8_plan(family, isa).message(), f"{isa.model}, {os.cpu_count()} cpus",
                                        isa.name, date.today().isoformat()))
    return out


def _segmentation_int8(settings, size, threads, runs, frames, package, cache):
    import dataclasses

    from ros_mmfusion.core.inference.int8 import quantized_model
    from ros_mmfusion.core.segmentation.artifacts import DEFAULT_PACKAGE, load_package, onnx_for
    from ros_mmfusion.core.segmentation.pipeline import postprocess
    from ros_mmfusion.core.segmentation.quantize import compare_int8, describe_source, feeds_of, frames_from_simulation

    spec = load_package(Path(package).absolute() if package else DEFAULT_PACKAGE)
    spec = dataclasses.replace(spec, input_size=size or spec.input_size)
    fp32 = onnx_for(spec)
    samples = frames_from_simulation(spec, 2 * frames)
    calib, held = samples[0::2], samples[1::2]
    inputs = (f"{spec.variant} {Path(package or DEFAULT_PACKAGE).name} at {spec.input_size[0]}x"
              f"{spec.input_size[1]}: calibrated on {describe_source(None, calib)}, evaluated on {len(held)} others")
    rows = []
    for s in settings:
        int8 = quantized_model(fp32, lambda: feeds_of(spec, calib), s, cache).artifact
        rows.append((inputs, compare_int8(fp32, int8, feeds_of(spec, held), labels=[f.labels for f in held],
                                          num_classes=spec.num_classes, ignore_index=spec.ignore_index,
                                          threads=threads, timing_runs=runs,
                                          label_of=lambda o, sz: postprocess(o[0], sz).labels)))
    return rows


def _navigation_int8(settings, threads, runs, frames, cache):
    from ros_mmfusion.core.navigation.artifacts import vint_int8_onnx, vint_onnx
    from ros_mmfusion.core.navigation.quantize import EVALUATION_START, compare_vint_int8, describe, vint_samples

    held = vint_samples("vint_default", frames, EVALUATION_START)
    inputs = f"vint_default (untrained seeded weights): calibrated on {describe(frames)}, evaluated on " \
             f"{describe(frames, EVALUATION_START)}"
    return [(inputs, compare_vint_int8(vint_onnx(), vint_int8_onnx(count=frames, settings=s, cache=cache), held,
                                       threads=threads, timing_runs=runs)) for s in settings]


def _detection_int8(model, settings, threads, runs, frames, weights, cache, point_cloud_range=None):
    from ros_mmfusion.core.detection3d.artifacts import build_detector, int8_onnx_files
    from ros_mmfusion.core.detection3d.pipeline import PillarBackends, PillarDetector
    from ros_mmfusion.core.detection3d.quantize import (
        EVALUATION_START,
        clouds_from_simulation,
        compare_pillars_int8,
        describe,
    )
    from ros_mmfusion.core.inference.onnxruntime_backend import OnnxRuntimeBackend

    spec = _detector_spec(model, weights, point_cloud_range)
    fp32 = build_detector(spec, "onnxruntime", threads=threads, intensity_scale=1 / 255)
    clouds = clouds_from_simulation(frames, EVALUATION_START)
    inputs = (f"{spec.config.name} ({weights or 'random weights'}): calibrated on {describe(frames)}, "
              f"evaluated on {describe(frames, EVALUATION_START)}")
    rows = []
    for s in settings:
        encoder, head = int8_onnx_files(spec, 1 / 255, count=frames, settings=s, cache=cache)
        backends = PillarBackends(OnnxRuntimeBackend(encoder, "cpu", "fp32", threads),  # this format, whatever the
                                  OnnxRuntimeBackend(head, "cpu", "fp32", threads))  # CPU's own
        int8 = PillarDetector(spec.config, backends, paint_channels=spec.paint_channels, intensity_scale=1 / 255)
        rows.append((inputs, compare_pillars_int8(fp32, int8, clouds, timing_runs=runs)))
    return rows
