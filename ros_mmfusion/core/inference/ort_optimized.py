"""ONNX Runtime's optimized-model file as a cached artifact: the graph after ONNX Runtime's own fusions, saved once
(``SessionOptions.optimized_model_filepath``) so that later sessions start from it.

With the "all" level the saved graph contains layout-specific kernels for this CPU, which is why it is keyed by the
device like a TensorRT engine. It is also the artifact the engine-cache tests build, because it can be built here.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ros_mmfusion.core.inference.engine_cache import BuildSpec, CacheResult, EngineCache, cpu_name

LEVELS = ("basic", "extended", "all")


def _level(name: str):
    import onnxruntime as ort

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    return levels[name]


def optimized_spec(onnx: str | Path, level: str = "extended", builder_version: str | None = None,
                   device: str | None = None, precision: str = "fp32") -> BuildSpec:
    import onnxruntime as ort

    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return BuildSpec(Path(onnx), precision, "onnxruntime", builder_version or ort.__version__, device or cpu_name(),
                     options={"graph_optimization_level": level}, suffix=".ort.onnx")


def build_optimized(onnx: str | Path, out: Path, level: str = "extended") -> dict:
    """Write ONNX Runtime's optimized graph of ``onnx`` to ``out``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = _level(level)
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    return {"onnxruntime": ort.__version__, "graph_optimization_level": level}


def load_optimized(path: Path, threads: int = 0):
    """A CPU session of an optimized-model file (no further optimization); raises when ONNX Runtime rejects it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as onnx_export.ort_session
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def optimized_session(onnx: str | Path, cache: EngineCache | None = None, level: str = "extended", threads: int = 0,
                      spec: BuildSpec | None = None, load: Callable[[Path], object] | None = None) -> CacheResult:
    """An ONNX Runtime session of ``onnx`` from the cached optimized model, built on first use."""
    spec = spec or optimized_spec(onnx, level)
    return (cache or EngineCache()).get_or_build(
        spec, lambda tmp: build_optimized(spec.onnx, tmp, str(spec.options.get("graph_optimization_level", level))),
        load or (lambda path: load_optimized(path, threads)))
