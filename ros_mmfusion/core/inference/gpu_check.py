"""The CUDA twins against the CPU: each task's networks on ONNX Runtime's CUDA provider and PyTorch CUDA, fp32 and
fp16, compared with ONNX Runtime fp32 on the CPU on the same inputs, with latency and throughput per model.

``tools/gpu_check.py`` runs it on a GPU machine and writes the table for docs/benchmarks.md; ``dry_run`` runs the very
same code on the CPU (providers CPU, fp32 only: fp16 runs on CUDA only), so the script is tested in ``make test``.

The networks (random weights, seeded: the check is about numerics and speed, not accuracy):

- segmentation: CMX mit_b0 (40 classes, folded decoder), ``rgb`` + ``x`` -> ``logits``;
- detection3d: the pillar encoder (``input_features`` of ``pillars`` pillars) and the backbone+head (the BEV canvas)
  of ``pointpillars_synthetic``;
- navigation: ViNT (``vint_reduced`` when tiny, else ``vint``, the default variant) at batch ``window`` (one
  localisation window).

Segmentation and ViNT are exported as the registry exports them (seed 0; ``<name>_<h>x<w>.onnx`` in the work folder,
reused when present).

Each row's error is the relative RMSE of every output against the CPU reference (RMS of the difference over RMS of
the reference); it passes below ``TOLERANCE[precision]``.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ros_mmfusion.core.errors import ConfigError

TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2}
"""Largest relative RMSE of a twin's outputs against the CPU reference, per precision."""
RUNTIMES = ("onnxruntime", "torch")


@dataclass(frozen=True)
class Graph:
    """One network: its ONNX file, the module factory for torch, the feeds, and how many items one run holds."""

    model: str
    onnx: Path
    module: Callable[[], object]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    feeds: dict[str, np.ndarray]
    items: int
    item: str


@dataclass
class Row:
    model: str
    backend: str
    precision: str
    device: str
    status: str  # PASS, FAIL, SKIP
    relative_rmse: float | None = None
    max_abs_error: float | None = None
    median_ms: float | None = None
    throughput: float | None = None
    unit: str = ""
    note: str = ""


@dataclass
class Report:
    device: str
    date: str
    host: str
    versions: dict[str, str]
    dry_run: bool
    rows: list[Row] = field(default_factory=list)

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.status == "FAIL"]

    def as_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        mode = "CPU dry run (same code, CPU providers)" if self.dry_run else "CUDA"
        lines = [f"### CUDA twins vs CPU ({self.date}, {self.device}; {mode})", "",
                 "Versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()) + ".", "",
                 "| model | backend | precision | status | rel. RMSE vs CPU | max abs error | median latency | "
                 "throughput | note |", "|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r.model} | {r.backend} | {r.precision} | {r.status} | {_fmt(r.relative_rmse, '.2e')} | "
                         f"{_fmt(r.max_abs_error, '.3g')} | {_fmt(r.median_ms, '.2f', ' ms')} | "
                         f"{_fmt(r.throughput, '.1f', f' {r.unit}/s')} | {r.note} |")
        return "\n".join(lines) + "\n"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _graphs(folder: Path, tiny: bool, window: int, pillars: int) -> list[Graph]:
    import torch

    from ros_mmfusion.core.detection3d.artifacts import DetectorSpec, build_module, onnx_files
    from ros_mmfusion.core.detection3d.pipeline import with_range
    from ros_mmfusion.core.models.registry import network
    from ros_mmfusion.core.onnx_export import export_once, export_onnx

    rng = np.random.default_rng(0)
    graphs: list[Graph] = []
    cmx = network("cmx_mit_b0")
    h, w = (64, 96) if tiny else cmx.default_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        seg_module = cmx.deploy(cmx.build())
    seg_onnx = export_once(folder / f"cmx_mit_b0_{h}x{w}.onnx", lambda tmp: export_onnx(
        seg_module, cmx.example(1, (h, w)), tmp, cmx.input_names, cmx.output_names, cmx.dynamic_axes))
    graphs.append(Graph(f"segmentation cmx_mit_b0 {h}x{w}", seg_onnx, lambda: seg_module, cmx.input_names,
                        cmx.output_names, {n: rng.standard_normal((1, 3, h, w)).astype(np.float32)
                                           for n in cmx.input_names}, 1, "frames"))

    spec = DetectorSpec.named("pointpillars_synthetic", onnx_dir=str(folder / ("pillars_tiny" if tiny else "pillars")))
    if tiny:
        spec = dataclasses.replace(spec, config=with_range(spec.config, [0.0, -5.12, -3.0, 10.24, 5.12, 1.0]))
    encoder_path, head_path = onnx_files(spec)
    encoder, head = build_module(spec).split()
    c = spec.model_config
    ny, nx = c.grid.bev_shape
    features = rng.standard_normal((pillars, c.max_points_per_pillar, c.num_input_features)).astype(np.float32)
    graphs.append(Graph(f"detection3d pillar_encoder ({pillars} pillars)", encoder_path, lambda: encoder,
                        tuple(encoder.input_names), tuple(encoder.output_names), {"input_features": features},
                        pillars, "pillars"))
    canvas = np.maximum(rng.standard_normal((1, c.num_bev_features, ny, nx)), 0).astype(np.float32)
    graphs.append(Graph(f"detection3d backbone_head {ny}x{nx}", head_path, lambda: head,
                        tuple(head.input_names), tuple(head.output_names), {"spatial_features": canvas}, 1, "frames"))

    name = "vint_reduced" if tiny else "vint"
    vint_spec = network(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vint = vint_spec.build()
    vh, vw = vint_spec.default_size
    vint_onnx_path = export_once(folder / f"{name}_{vh}x{vw}.onnx", lambda tmp: export_onnx(
        vint, vint_spec.example(1, (vh, vw)), tmp, vint_spec.input_names, vint_spec.output_names,
        vint_spec.dynamic_axes))
    obs, goal = (t.numpy().astype(np.float32) for t in vint_spec.example(window, (vh, vw)))
    graphs.append(Graph(f"navigation {name} (batch {window})", vint_onnx_path, lambda: vint, vint_spec.input_names,
                        vint_spec.output_names, {"obs_img": obs, "goal_img": goal}, window, "nodes"))
    return graphs


def _median_ms(run: Callable[[], object], runs: int) -> float:
    run()  # warm-up (CUDA context, kernel selection)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1e3)
    return float(np.median(times))


def compare(reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """``(relative RMSE, max abs error)`` of ``outputs`` against ``reference`` over every output."""
    diff = np.concatenate([(np.asarray(outputs[n], np.float64) - reference[n]).ravel() for n in reference])
    ref = np.concatenate([np.asarray(reference[n], np.float64).ravel() for n in reference])
    scale = float(np.sqrt(np.mean(ref ** 2))) or 1.0
    return float(np.sqrt(np.mean(diff ** 2))) / scale, float(np.abs(diff).max()) if diff.size else 0.0


def run_check(folder: str | Path, dry_run: bool = False, tiny: bool = False, runs: int = 20,
              precisions: Sequence[str] = ("fp32", "fp16"), window: int = 9, pillars: int = 12000,
              log: Callable[[str], None] = print, threads: int = 0) -> Report:
    """Every network on ``RUNTIMES`` x ``precisions`` on CUDA (``dry_run``: on the CPU, fp32 only) against ONNX
    Runtime fp32 on the CPU; ``folder`` receives the ONNX files and converted copies (reused between runs);
    ``threads``: CPU threads of the runtimes (0: they choose)."""
    import onnxruntime as ort
    import torch

    from ros_mmfusion.core.inference import create_backend
    from ros_mmfusion.core.inference.engine_cache import cpu_name

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    device = "cpu" if dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("torch sees no CUDA device: run with --dry-run on a machine without a GPU")
    name = torch.cuda.get_device_name(0) if device == "cuda" else cpu_name()
    report = Report(name, datetime.now(timezone.utc).isoformat(timespec="seconds"), platform.node(),
                    {"torch": torch.__version__, "onnxruntime": ort.__version__,
                     "cuda": str(torch.version.cuda), "providers": "/".join(ort.get_available_providers())}, dry_run)
    for graph in _graphs(folder, tiny, window, pillars if not tiny else min(pillars, 500)):
        log(f"{graph.model}: CPU reference")
        cpu = create_backend("onnxruntime", input_names=graph.inputs, output_names=graph.outputs,
                             onnx_path=graph.onnx, threads=threads)
        reference = {k: np.asarray(v, np.float64) for k, v in cpu.run(graph.feeds).items()}
        for runtime in RUNTIMES:
            for precision in precisions:
                backend_name = runtime if dry_run else f"{runtime}-cuda"
                row = Row(graph.model, backend_name, precision, device, "SKIP", unit=graph.item)
                report.rows.append(row)
                if precision != "fp32" and device == "cpu":
                    row.note = f"{precision} runs on CUDA only"
                    continue
                try:
                    backend = create_backend(backend_name, input_names=graph.inputs, output_names=graph.outputs,
                                             module_factory=graph.module, onnx_path=graph.onnx, device=device,
                                             precision=precision, cache_dir=folder / "cache", threads=threads)
                except ConfigError as exc:
                    row.note = str(exc)
                    log(f"  {backend_name} {precision}: SKIP ({exc})")
                    continue
                outputs = backend.run(graph.feeds)
                row.relative_rmse, row.max_abs_error = compare(reference, outputs)
                row.median_ms = _median_ms(lambda b=backend, f=graph.feeds: b.run(f), runs)
                row.throughput = graph.items / (row.median_ms / 1e3)
                row.status = "PASS" if row.relative_rmse <= TOLERANCE[precision] else "FAIL"
                log(f"  {backend_name} {precision}: {row.status} rel. RMSE {row.relative_rmse:.2e}, "
                    f"{row.median_ms:.2f} ms")
    return report


def write_report(report: Report, out: str | Path) -> tuple[Path, Path]:
    """``gpu_check.json`` and ``gpu_check.md`` (the table for docs/benchmarks.md) in the directory ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "gpu_check.json", out / "gpu_check.md"
    json_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    md_path.write_text(report.markdown())
    return json_path, md_path
