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
    """Time ``spec`` through ``backend`` ("torch" or "onnxruntime") on random inputs of ``batch`` x ``size``."""
    import torch

    size = size or spec.default_size
    torch.manual_seed(0)
    module = spec.build()
    inputs = spec.example(batch, size)
    feeds = {n: t.numpy() for n, t in zip(spec.input_names, inputs, strict=True)}
    with tempfile.TemporaryDirectory(prefix="mmfusion_bench_") as tmp:
        onnx_path = None
        if backend == "onnxruntime":
            onnx_path = Path(workdir or tmp) / f"{spec.name}.onnx"
            exported = spec.deploy(module) if spec.deploy else module
            export_onnx(exported, inputs, onnx_path, spec.input_names, spec.output_names, spec.dynamic_axes)
        runner = create_backend(backend, input_names=spec.input_names, output_names=spec.output_names,
                                module_factory=lambda: module, onnx_path=onnx_path, device=device, threads=threads)
        times = time_runs(lambda: runner.run(feeds), warmup, runs)
    median = float(np.median(times))
    return BenchResult(spec.name, backend, batch, size[0], size[1], threads or torch.get_num_threads(), runs, median,
                       float(np.percentile(times, 95)), float(times.mean()), 1e3 * batch / median, machine(),
                       date.today().isoformat(), "deployed" if onnx_path is not None and spec.deploy else "reference")
