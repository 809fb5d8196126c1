"""ONNX export shared by every model: one exporter configuration (opset 17, TorchScript exporter, constant folding),
an ONNX Runtime session factory, and an op inventory for TensorRT graph hygiene checks.

The TorchScript-based exporter is used on purpose: it needs no ``onnxscript`` and produces plain graphs that the
TensorRT ONNX parser accepts; models must be written export-friendly (no in-place slice assignment, no
data-dependent Python control flow).
"""
from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

OPSET = 17


def _custom_opsets(model) -> dict[str, int]:
    """``{"com.microsoft": 1}`` when a module of ``model`` exports ONNX Runtime's fused operators (``ort_fused``), else
    nothing (declaring an unused domain makes torch warn on every export)."""
    modules = model.modules() if hasattr(model, "modules") else ()
    return {"com.microsoft": 1} if any(getattr(m, "ort_fused", False) for m in modules) else {}


def export_onnx(model, example_inputs: tuple, path: str | Path, input_names: Sequence[str],
                output_names: Sequence[str], dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
                opset: int = OPSET) -> Path:
    """Export ``model`` (eval mode is set) to ``path`` and check the file with the ONNX checker.

    Operators of ONNX Runtime's ``com.microsoft`` domain (``models.mit.OrtMultiHeadAttention``) are declared at
    version 1 when the model emits them; the checker passes over that domain's nodes."""
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(model, example_inputs, str(path), opset_version=opset, dynamo=False,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()},
                          do_constant_folding=True, custom_opsets=_custom_opsets(model))
    onnx.checker.check_model(str(path))
    return path


def cache_dir() -> Path:
    """Where networks exported on first use are kept: ``$MMFUSION_CACHE_DIR``, else ``$XDG_CACHE_HOME/ros_mmfusion``
    (``~/.cache/ros_mmfusion``)."""
    base = os.environ.get("MMFUSION_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"),
                                                                "ros_mmfusion")
    return Path(base).expanduser()


def export_once(path: str | Path, export: Callable[[Path], object]) -> Path:
    """``path`` (a file, or a directory of files), made by ``export(tmp)`` unless it already exists.

    ``export`` writes to a temporary sibling that is then renamed into place, so concurrent processes never read a
    half-written export; when another process won the race its result is kept and ours discarded.
    """
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        export(tmp)
        try:
            os.replace(tmp, path)  # atomic for a file; a directory only lands if the target is still absent
        except OSError:
            if not path.exists():
                raise
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    return path


def ort_session(path: str | Path, threads: int = 0, providers: Sequence[str] = ("CPUExecutionProvider",),
                spinning: bool = False):
    """An ONNX Runtime session; ``threads`` 0 lets ONNX Runtime choose.

    ``spinning`` False (the default) turns off the intra-op threads' busy-wait after a run
    (``session.intra_op.allow_spinning`` 0): every session has its own pool, and a pool spinning after its run took the
    cores from the next session's run (ViNT's frame encoder then goal decoder: a 10-node step 69-80 ms with spinning,
    39-53 ms without, the decoder alone unchanged; AMD EPYC 2 vCPUs, docs/benchmarks.md) and from the node's own
    threads (decoding, publishing)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), options, providers=list(providers))


def run_ort(session, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(inputs)), strict=True))


def op_types(path: str | Path) -> set[str]:
    """Every op type in the graph, subgraphs included."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    found: set[str] = set()

    def walk(graph) -> None:
        for node in graph.node:
            found.add(node.op_type)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return found
