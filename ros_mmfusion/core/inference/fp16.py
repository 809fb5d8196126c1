"""FP16 ONNX models for ONNX Runtime's CUDA provider, as cached artifacts of the fp32 export.

ONNX Runtime runs a file in the precision its graph holds, so ``onnxruntime-cuda`` at fp16 runs a converted copy of
the fp32 ONNX file: weights and activations in float16 (``onnxruntime.transformers.float16``, shipped with ONNX
Runtime itself), inputs and outputs kept float32 (``keep_io_types``: casts at the graph's edges), so callers feed and
read float32 as with every backend. The copy lives in the engine cache beside its fp32 file
(``<stem>.onnxruntime-fp16-fp16.<key>.onnx`` with a sidecar, ``engine_cache.py``), keyed by the fp32 file's content
and the converter's version: a new export makes a new copy, the stale one is removed.

The conversion runs anywhere (it is a graph rewrite); the copy is meant for the CUDA provider: ONNX Runtime's CPU
provider has float16 kernels for only some operators.
"""
from __future__ import annotations

from pathlib import Path

from ros_mmfusion.core.inference.engine_cache import BuildSpec, EngineCache

KEEP_IO_TYPES = True


def fp16_spec(onnx: str | Path) -> BuildSpec:
    """Cache identity of the fp16 copy of ``onnx``: its content, the converter (ONNX Runtime's version) and options;
    device "any" (a graph rewrite, the same wherever it is made)."""
    import onnxruntime as ort

    return BuildSpec(Path(onnx), "fp16", "onnxruntime-fp16", ort.__version__, "any",
                     options={"keep_io_types": KEEP_IO_TYPES}, suffix=".onnx")


def convert_fp16(onnx: str | Path, out: str | Path) -> dict:
    """Write the float16 copy of ``onnx`` (float32 inputs and outputs) to ``out``; returns facts for the sidecar."""
    import onnx as onnx_lib
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx_lib.load(str(onnx))
    converted = convert_float_to_float16(model, keep_io_types=KEEP_IO_TYPES, disable_shape_infer=False)
    _sort_topologically(converted.graph)  # the converter appends its input casts after their consumers
    onnx_lib.save(converted, str(out))
    return {"converter": f"onnxruntime.transformers.float16 ({ort.__version__})", "keep_io_types": KEEP_IO_TYPES}


def _sort_topologically(graph) -> None:
    """Reorder ``graph``'s nodes so that each comes after the producers of its inputs (ONNX requires it); the
    relative order of independent nodes is kept."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("the fp16 graph has a cycle or an input no node produces")
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _check(path: Path) -> Path:
    import onnx as onnx_lib

    onnx_lib.checker.check_model(str(path))
    return path


def fp16_model(onnx: str | Path, cache: EngineCache | None = None, force: bool = False) -> Path:
    """The cached fp16 copy of ``onnx`` (made now on first use)."""
    spec = fp16_spec(onnx)
    return (cache or EngineCache()).get_or_build(spec, lambda tmp: convert_fp16(onnx, tmp), _check,
                                                 force=force).artifact
