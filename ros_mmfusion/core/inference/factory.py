"""The backend factory: :func:`create_backend` builds a backend of a kind named in :data:`.base.BACKENDS`.

Above the concrete backends in the import graph: they import :mod:`.base` (the interface), never this module."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.base import BACKENDS, PRECISIONS, Backend, resolve_backend


def create_backend(kind: str, *, input_names: Sequence[str], output_names: Sequence[str],
                   module_factory: Callable[[], object] | None = None, onnx_path: str | Path | None = None,
                   device: str = "cpu", precision: str = "fp32", threads: int = 0,
                   shapes: Mapping[str, object] | None = None,
                   quantization_samples: Callable[[], Iterable[Mapping[str, np.ndarray]]] | None = None,
                   cache_dir: str | Path | None = None, split_batch: bool = False) -> Backend:
    """Build the backend ``kind``.

    ``torch`` needs ``module_factory`` (returns an ``nn.Module`` with weights loaded, taking the inputs positionally
    in ``input_names`` order); ``onnxruntime`` needs ``onnx_path``. ``device`` is "cpu" or "cuda"; ``precision`` fp32
    or fp16 (fp16 on CUDA only); ``threads`` 0 lets the runtime choose. ``onnxruntime-cuda`` and ``torch-cuda`` are
    ``onnxruntime`` and ``torch`` on device cuda (``base.resolve_backend``); ONNX Runtime's fp16 runs the fp16 copy of
    ``onnx_path`` (``fp16.py``, cached like an engine).

    ``onnxruntime-int8`` runs the INT8 (QDQ) model of ``onnx_path``: the file itself when it is quantized, else its
    cached INT8 model in this CPU's format (``int8.cpu_int8_settings``; ``mmfusion build-engine --precision int8``),
    quantized now when ``quantization_samples`` (returns sample feeds) is given. It runs what it is asked for:
    declining INT8 where it does not pay is the callers' choice (``int8.choose_backend``: nodes,
    ``mmfusion bench-network``).

    ``tensorrt`` (device cuda; fp32, fp16 or int8) builds or loads a cached engine of ``onnx_path`` for the
    profile ``shapes`` ({input: shape or (min, opt, max)}; static ONNX inputs may be omitted), calibrating INT8 with
    ``quantization_samples`` unless the ONNX file is already quantized. Artifacts are cached beside the ONNX file or in
    ``cache_dir`` (see ``engine_cache.py``). ``split_batch``: the graph treats the leading axis of its inputs as
    independent items (a batch, or pillars), so inputs longer than the engine profile's maximum run in chunks.
    """
    if kind not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {kind!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {device!r}")
    kind, device = resolve_backend(kind, device)
    if kind == "tensorrt":
        return _tensorrt(onnx_path, device, precision, shapes, quantization_samples, cache_dir, split_batch)
    if precision == "int8" and kind != "onnxruntime-int8":
        raise ConfigError(f"precision int8 needs backend onnxruntime-int8 or tensorrt, not {kind}")
    if kind == "torch":
        if module_factory is None:
            raise ConfigError("the torch backend needs a model")
        from ros_mmfusion.core.inference.torch_backend import TorchBackend

        return TorchBackend(module_factory(), input_names, output_names, device, precision, threads)
    if onnx_path is None or not Path(onnx_path).is_file():
        raise ConfigError(f"the onnxruntime backend needs an ONNX file; {onnx_path!s} does not exist "
                          "(export one with `mmfusion export`)")
    from ros_mmfusion.core.inference.onnxruntime_backend import OnnxRuntimeBackend

    if kind == "onnxruntime-int8":
        if precision == "fp16":
            raise ConfigError("backend onnxruntime-int8 runs int8; precision must be int8 (or fp32, the default)")
        int8_model = _int8_model(Path(onnx_path), quantization_samples, cache_dir)
        backend = OnnxRuntimeBackend(int8_model, device, "fp32", threads)
        backend.info = replace(backend.info, kind=kind, precision="int8")
        return backend
    path = Path(onnx_path)
    if precision == "fp16":
        if device != "cuda":
            raise ConfigError("fp16 with ONNX Runtime runs on its CUDA provider: use backend onnxruntime-cuda")
        from ros_mmfusion.core.inference.engine_cache import EngineCache
        from ros_mmfusion.core.inference.fp16 import fp16_model

        path = fp16_model(path, EngineCache(cache_dir))
    return OnnxRuntimeBackend(path, device, precision, threads)


def _int8_model(onnx: Path, samples: Callable[[], Iterable[Mapping[str, np.ndarray]]] | None,
                cache_dir: str | Path | None) -> Path:
    from ros_mmfusion.core.inference.engine_cache import EngineCache
    from ros_mmfusion.core.inference.int8 import int8_spec, is_quantized, quantized_model

    if is_quantized(onnx):
        return onnx
    cache = EngineCache(cache_dir)
    if samples is not None:
        return quantized_model(onnx, samples, cache=cache).artifact
    spec = int8_spec(onnx)  # this CPU's format, keyed by its class
    cached = cache.lookup(spec)
    if cached is None:
        raise ConfigError(f"no INT8 model ({spec.precision}, {spec.device}) of {onnx} yet: run `mmfusion "
                          f"build-engine --onnx {onnx} --precision int8 --quantize-from BAG` on this machine (or "
                          "pass quantization samples)")
    return cached


def _tensorrt(onnx_path: str | Path | None, device: str, precision: str, shapes: Mapping[str, object] | None,
              samples: Callable[[], Iterable[Mapping[str, np.ndarray]]] | None,
              cache_dir: str | Path | None, split_batch: bool = False) -> Backend:
    from ros_mmfusion.core.inference.tensorrt_support import tensorrt_unavailable

    reason = tensorrt_unavailable()
    if reason:
        raise ConfigError(f"backend tensorrt: {reason}")
    if device != "cuda":
        raise ConfigError("backend tensorrt runs on a CUDA device: set device to cuda")
    if onnx_path is None or not Path(onnx_path).is_file():
        raise ConfigError(f"the tensorrt backend needs an ONNX file; {onnx_path!s} does not exist "
                          "(export one with `mmfusion export`)")
    from ros_mmfusion.core.inference.engine_cache import EngineCache
    from ros_mmfusion.core.inference.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(onnx_path, precision, shapes, quantization_samples=samples,
                           cache=EngineCache(cache_dir), split_batch=split_batch)
