"""What the TensorRT backend needs that does not import TensorRT: availability, profile shapes, engine cache specs.

TensorRT is optional. ``tensorrt_unavailable()`` says why it cannot be used here (None when it can), so that callers
report one clear line instead of an ImportError. Note that the ``tensorrt-stubs`` typing package installs a
``tensorrt/`` folder holding only ``.pyi`` files, which Python imports as an empty namespace package: the check looks
for the real module's ``Builder``, not merely for an importable name.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.engine_cache import BuildSpec

Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]
DEFAULT_WORKSPACE_BYTES = 1 << 30
PRECISIONS = ("fp32", "fp16", "int8")


def tensorrt_unavailable() -> str | None:
    """None when TensorRT and a CUDA device can be used here, else the reason in one sentence."""
    try:
        import tensorrt as trt
    except ImportError:
        return "TensorRT is not installed (pip install tensorrt on a machine with an NVIDIA GPU)"
    if not hasattr(trt, "Builder"):
        return "TensorRT is not installed (only its type stubs are)"
    try:
        import torch
    except ImportError:
        return "the TensorRT backend allocates its buffers with torch.cuda, and torch is not installed"
    if not torch.cuda.is_available():
        return "TensorRT is installed but torch sees no CUDA device"
    return None


def normalize_profile(shapes: Mapping[str, Any]) -> Profile:
    """``{input: shape}`` (fixed) or ``{input: (min, opt, max)}`` -> ``{input: (min, opt, max)}`` of int tuples.

    ConfigError unless every shape has the same rank as its siblings, positive dimensions and min <= opt <= max.
    """
    out: Profile = {}
    for name, value in shapes.items():
        try:
            seq = list(value)
            if seq and all(isinstance(v, (int,)) or hasattr(v, "__index__") for v in seq):
                triple = (tuple(int(v) for v in seq),) * 3
            else:
                lo, opt, hi = (tuple(int(v) for v in s) for s in seq)
                triple = (lo, opt, hi)
        except (TypeError, ValueError):
            raise ConfigError(f"profile for {name!r} must be a shape or (min, opt, max) shapes, got {value!r}") \
                from None
        lo, opt, hi = triple
        if not (len(lo) == len(opt) == len(hi)) or not lo:
            raise ConfigError(f"profile for {name!r}: min/opt/max shapes must have one rank, got {triple}")
        if any(d <= 0 for d in lo) or any(not a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
            raise ConfigError(f"profile for {name!r}: need 0 < min <= opt <= max per dimension, got {triple}")
        out[name] = triple
    return out


def profile_from_onnx(onnx: str | Path, shapes: Mapping[str, Any] | None = None) -> Profile:
    """The optimization profile for every input of ``onnx``: ``shapes`` where given, else the ONNX file's own
    static shape; ConfigError naming an input whose dynamic dimensions have no shape."""
    import onnx as onnx_lib

    given = normalize_profile(shapes or {})
    model = onnx_lib.load(str(onnx), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    profile: Profile = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        if value.name in given:
            profile[value.name] = given.pop(value.name)
            continue
        dims = value.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            raise ConfigError(f"input {value.name!r} of {onnx} has dynamic dimensions "
                              f"{[d.dim_param or d.dim_value for d in dims]}; give its (min, opt, max) shapes")
        fixed = tuple(int(d.dim_value) for d in dims)
        profile[value.name] = (fixed, fixed, fixed)
    if given:
        raise ConfigError(f"profile names inputs {sorted(given)} that {onnx} does not have")
    return profile


def engine_spec(onnx: str | Path, precision: str, profile: Profile, device_name: str, trt_version: str,
                workspace_bytes: int = DEFAULT_WORKSPACE_BYTES, calibration: Sequence[str] = ()) -> BuildSpec:
    """Engine cache identity: ONNX content, precision, TensorRT version, GPU model, profile and builder options."""
    if precision not in PRECISIONS:
        raise ConfigError(f"TensorRT precision must be one of {PRECISIONS}, got {precision!r}")
    return BuildSpec(Path(onnx), precision, "tensorrt", trt_version, device_name,
                     shapes={k: [list(s) for s in v] for k, v in profile.items()},
                     options={"workspace_bytes": int(workspace_bytes)}, suffix=".engine",
                     notes={"calibration": list(calibration)})


def leading_axis_profile(onnx: str | Path, lo: int, opt: int, hi: int) -> Profile:
    """The profile of ``onnx`` whose inputs share one dynamic leading axis (a batch, a pillar count) ranging over
    ``lo``..``hi`` (kernels tuned for ``opt``); every other dimension must be static in the file."""
    import onnx as onnx_lib

    if not 0 < lo <= opt <= hi:
        raise ConfigError(f"{onnx}: need 0 < min <= opt <= max for the leading axis, got {lo}, {opt}, {hi}")
    model = onnx_lib.load(str(onnx), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    profile: Profile = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        rest = dims[1:]
        if not dims or any(not d.HasField("dim_value") for d in rest):
            raise ConfigError(f"input {value.name!r} of {onnx} needs a static shape after its leading axis, got "
                              f"{[d.dim_param or d.dim_value for d in dims]}")
        tail = tuple(int(d.dim_value) for d in rest)
        profile[value.name] = ((lo, *tail), (opt, *tail), (hi, *tail))
    return profile


def split_leading_axis(feeds: Mapping[str, Any], limit: int) -> list[dict[str, Any]]:
    """``feeds`` (arrays sharing their leading length) as consecutive chunks of at most ``limit`` items along that
    axis; one chunk (the feeds themselves) when they fit. ConfigError when the inputs' leading lengths differ."""
    lengths = {name: len(value) for name, value in feeds.items()}
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"inputs split along their leading axis must share its length, got {lengths}")
    total = next(iter(lengths.values()), 0)
    if limit <= 0:
        raise ConfigError(f"chunk limit must be positive, got {limit}")
    if total <= limit:
        return [dict(feeds)]
    return [{name: value[start:start + limit] for name, value in feeds.items()} for start in range(0, total, limit)]


def join_leading_axis(chunks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The outputs of consecutive chunks (``split_leading_axis``) concatenated along the leading axis."""
    import numpy as np

    if len(chunks) == 1:
        return dict(chunks[0])
    return {name: np.concatenate([chunk[name] for chunk in chunks], axis=0) for name in chunks[0]}
