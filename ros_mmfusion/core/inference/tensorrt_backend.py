"""TensorRT backend, written against the TensorRT 10 Python API (``import tensorrt``).

Build: ``Builder`` -> ``NetworkDefinition`` (explicit batch: the only mode in TensorRT 10; the flag is passed for
TensorRT 8.x) -> ``OnnxParser`` -> ``BuilderConfig`` (workspace memory-pool limit; FP16 and INT8 flags; TF32 off for
fp32 so that fp32 engines match ONNX Runtime) -> one optimization profile (min/opt/max shape per input) ->
``build_serialized_network``. INT8 has two routes: an ONNX file that already holds Q/DQ nodes (for example the one
``core/inference/int8.py`` writes) is built as an explicitly quantized network; a float ONNX file is calibrated with
:class:`EntropyCalibrator` (``IInt8EntropyCalibrator2``) on sample inputs, whose calibration cache file is reused by
later builds of the same ONNX file.

Run: ``Runtime.deserialize_cuda_engine`` -> ``create_execution_context`` -> per call ``set_input_shape`` and
``set_tensor_address`` for every I/O tensor -> ``execute_async_v3`` on a CUDA stream.

Device memory and the stream come from **torch.cuda** (torch is already a dependency of the suite; no cuda-python
or pycuda): buffers are ``torch`` CUDA tensors whose ``data_ptr()`` is given to TensorRT, the stream is a
``torch.cuda.Stream`` whose ``cuda_stream`` handle is passed to ``execute_async_v3``, and host<->device copies are
enqueued on that same stream.

Engines are cached by :class:`~ros_mmfusion.core.inference.engine_cache.EngineCache` (ONNX hash, precision, TensorRT
version, GPU name, profile, workspace); an engine TensorRT refuses to deserialize is rebuilt.

The module imports without TensorRT (the core's modules all must), but its classes exist only when TensorRT does:
use it after :func:`~ros_mmfusion.core.inference.tensorrt_support.tensorrt_unavailable` returned None. It has never
been run on the project's machines (no TensorRT there): it is type-checked with mypy against ``tensorrt-stubs``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.base import BackendInfo
from ros_mmfusion.core.inference.engine_cache import EngineCache, file_sha256
from ros_mmfusion.core.inference.int8 import is_quantized
from ros_mmfusion.core.inference.tensorrt_support import (
    DEFAULT_WORKSPACE_BYTES,
    Profile,
    engine_spec,
    join_leading_axis,
    profile_from_onnx,
    split_leading_axis,
    tensorrt_unavailable,
)

try:
    import tensorrt as trt
except ImportError:  # optional: tensorrt_unavailable() says so, and nothing below is used then
    pass

_LOG = logging.getLogger(__name__)
Feeds = Iterable[Mapping[str, np.ndarray]]
#: the real TensorRT module (not absent, not the empty namespace package its type stubs leave behind)
TENSORRT_IMPORTED = "trt" in globals() and hasattr(trt, "Builder")


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build an engine from it; the text carries TensorRT's messages."""


if TYPE_CHECKING or TENSORRT_IMPORTED:  # definitions that subclass or index TensorRT's types at import time
    _TORCH_DTYPES: dict[trt.DataType, torch.dtype] = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT64: torch.int64,
        trt.DataType.INT8: torch.int8,
        trt.DataType.UINT8: torch.uint8,
        trt.DataType.BOOL: torch.bool,
    }

    class TrtLogger(trt.ILogger):
        """Routes TensorRT's messages to Python logging and keeps the errors for exception texts."""

        def __init__(self, min_severity: trt.ILogger.Severity = trt.ILogger.Severity.WARNING) -> None:
            trt.ILogger.__init__(self)
            self.threshold = int(min_severity)
            self.errors: list[str] = []

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            level = int(severity)
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            if level <= self.threshold:
                _LOG.log(logging.ERROR if level <= int(trt.ILogger.Severity.ERROR) else
                         logging.WARNING if level == int(trt.ILogger.Severity.WARNING) else logging.INFO,
                         "TensorRT: %s", msg)

        def take_errors(self) -> str:
            text = "; ".join(self.errors[-5:])
            self.errors.clear()
            return text

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """INT8 calibration from sample inputs ({input name: float32 array of the calibration profile's opt shape}).

        Each ``get_batch`` copies one sample into CUDA buffers and returns their addresses; an empty list ends the
        calibration. The calibration cache is read from ``cache_file`` when it exists (no calibration pass then) and
        written there (atomically) after calibrating. With explicit-batch networks the batch is part of the input shape,
        so ``get_batch_size`` is 1.
        """

        def __init__(self, feeds: Feeds, cache_file: Path, shapes: Mapping[str, tuple[int, ...]],
                     device: torch.device) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._feeds: Iterator[Mapping[str, np.ndarray]] = iter(feeds)
            self.cache_file = Path(cache_file)
            self.shapes = dict(shapes)
            self.device = device
            self._buffers = {name: torch.empty(shape, dtype=torch.float32, device=device)
                             for name, shape in self.shapes.items()}
            self.batches = 0

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int]:
            feed = next(self._feeds, None)
            if feed is None:
                return []
            pointers = []
            for name in names:
                host = np.ascontiguousarray(feed[name], dtype=np.float32)
                if tuple(host.shape) != self.shapes[name]:
                    raise ConfigError(f"calibration sample {name!r} has shape {host.shape}; the calibration profile "
                                      f"expects {self.shapes[name]}")
                buffer = self._buffers[name]
                buffer.copy_(torch.from_numpy(host))
                pointers.append(int(buffer.data_ptr()))
            torch.cuda.synchronize(self.device)
            self.batches += 1
            return pointers

        def read_calibration_cache(self) -> bytes | None:  # TensorRT: the cache, or None when there is none
            if self.cache_file.is_file():
                _LOG.info("using INT8 calibration cache %s", self.cache_file)
                return self.cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache: memoryview | bytes) -> None:
            tmp = self.cache_file.with_name(f".{self.cache_file.name}.tmp{os.getpid()}")
            tmp.write_bytes(bytes(cache))
            os.replace(tmp, self.cache_file)


def torch_dtype(dtype: trt.DataType) -> torch.dtype:
    if dtype not in _TORCH_DTYPES:
        raise ConfigError(f"TensorRT tensor type {dtype} has no torch equivalent here")
    return _TORCH_DTYPES[dtype]


def _dims(shape: tuple[int, ...]) -> trt.Dims:
    return trt.Dims(list(shape))


def _shape(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def calibration_cache_path(onnx: Path, folder: Path) -> Path:
    """The INT8 calibration cache of ``onnx`` (depends on the network and the samples, not on the GPU)."""
    return folder / f"{onnx.stem}.{file_sha256(onnx)[:16]}.int8-calibration.cache"


def build_engine(onnx: Path, precision: str, profile: Profile, logger: TrtLogger, *,
                 workspace_bytes: int = DEFAULT_WORKSPACE_BYTES, calibration: Feeds | None = None,
                 calibration_cache: Path | None = None, device: torch.device | None = None) -> bytes:
    """Parse ``onnx`` and build a serialized engine for ``precision`` (fp32, fp16, int8) and ``profile``."""
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx}: {'; '.join(errors) or logger.take_errors()}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            _LOG.warning("this GPU has no fast FP16; TensorRT may choose FP32 kernels")
        config.set_flag(trt.BuilderFlag.FP16)  # layers INT8 cannot take fall back to FP16 rather than FP32

    optimization_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        optimization_profile.set_shape(name, _dims(lo), _dims(opt), _dims(hi))
    config.add_optimization_profile(optimization_profile)

    calibrator: EntropyCalibrator | None = None
    if precision == "int8":
        if not builder.platform_has_fast_int8:
            _LOG.warning("this GPU has no fast INT8; the engine may not be faster than FP16")
        config.set_flag(trt.BuilderFlag.INT8)
        if not is_quantized(onnx):  # implicit quantization: calibrate on the samples
            if calibration is None or calibration_cache is None:
                raise ConfigError(f"{onnx} has no Q/DQ nodes: INT8 needs calibration samples")
            calibrator = EntropyCalibrator(calibration, calibration_cache, {k: v[1] for k, v in profile.items()},
                                           device or torch.device("cuda"))
            config.int8_calibrator = calibrator
            config.set_calibration_profile(optimization_profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx}: {logger.take_errors()}")
    if calibrator is not None:
        _LOG.info("INT8 calibration used %d sample batches", calibrator.batches)
    return bytes(memoryview(serialized))


class TensorRTBackend:
    """Runs an ONNX network through a cached TensorRT engine on one CUDA device.

    ``shapes``: per input a fixed shape or (min, opt, max) shapes; inputs with static ONNX shapes may be omitted.
    ``quantization_samples``: returns sample inputs (opt shapes) for the INT8 calibration of a float ONNX file
    (TensorRT's implicit quantization). ``split_batch``: the inputs' leading axis holds independent items (a batch,
    pillars); inputs longer than the profile's maximum run in chunks of that maximum and the outputs are joined.
    """

    def __init__(self, onnx_path: str | Path, precision: str = "fp16", shapes: Mapping[str, object] | None = None,
                 *, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
                 quantization_samples: Callable[[], Feeds] | None = None, cache: EngineCache | None = None,
                 device_index: int = 0, force_rebuild: bool = False, split_batch: bool = False) -> None:
        reason = tensorrt_unavailable()
        if reason:
            raise ConfigError(reason)
        onnx = Path(onnx_path)
        self.device = torch.device("cuda", device_index)
        self.logger = TrtLogger()
        profile = profile_from_onnx(onnx, shapes)
        cache = cache or EngineCache()
        gpu = torch.cuda.get_device_name(self.device)
        spec = engine_spec(onnx, precision, profile, gpu, trt.__version__, workspace_bytes)
        folder = cache.paths(spec).artifact.parent

        def build(tmp: Path) -> dict[str, object]:
            calib_file = calibration_cache_path(onnx, folder)
            samples = quantization_samples() if quantization_samples is not None and precision == "int8" else None
            tmp.write_bytes(build_engine(onnx, precision, profile, self.logger, workspace_bytes=workspace_bytes,
                                         calibration=samples, calibration_cache=calib_file, device=self.device))
            return {"tensorrt": trt.__version__, "gpu": gpu, "precision": precision,
                    "explicit_quantization": precision == "int8" and is_quantized(onnx),
                    "calibration_cache": calib_file.name if precision == "int8" and calib_file.exists() else None}

        self.runtime = trt.Runtime(self.logger)
        result = cache.get_or_build(spec, build, self._deserialize, force=force_rebuild)
        self.engine: trt.ICudaEngine = result.value
        self.artifact = result.artifact
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = tuple(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        outputs = tuple(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self._dtypes = {n: torch_dtype(self.engine.get_tensor_dtype(n)) for n in names}
        self.profile = profile
        self.split_batch = split_batch
        self.info = BackendInfo("tensorrt", "cuda", precision, inputs, outputs,
                                f"TensorRT {trt.__version__} on {gpu}, engine {result.artifact.name} ({result.status})")
        self._alive: list[torch.Tensor] = []

    def _deserialize(self, path: Path) -> trt.ICudaEngine:
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineBuildError("TensorRT refused the engine (built by another TensorRT version or for another "
                                   f"GPU?): {self.logger.take_errors()}")
        return engine

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = set(self.info.inputs) - set(feeds)
        if missing:
            raise ConfigError(f"missing inputs {sorted(missing)}")
        if not self.split_batch:
            return self._run_once(feeds)
        limit = min(self.profile[name][2][0] for name in self.info.inputs)
        chunks = split_leading_axis({name: feeds[name] for name in self.info.inputs}, limit)
        return join_leading_axis([self._run_once(chunk) for chunk in chunks])

    def _run_once(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._alive = []
        outputs: dict[str, torch.Tensor] = {}
        with torch.cuda.stream(self.stream):
            for name in self.info.inputs:
                host = torch.from_numpy(np.ascontiguousarray(feeds[name])).to(self._dtypes[name])
                if not self.context.set_input_shape(name, _dims(tuple(host.shape))):
                    lo, _, hi = self.profile.get(name, ((), (), ()))
                    raise ConfigError(f"input {name!r} of shape {tuple(host.shape)} is outside the engine's "
                                      f"profile {lo}..{hi}")
                device = host.to(self.device, non_blocking=True)
                self._alive.append(device)  # TensorRT reads it asynchronously
                self.context.set_tensor_address(name, int(device.data_ptr()))
            for name in self.info.outputs:
                shape = _shape(self.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise ConfigError(f"output {name!r} has a data-dependent shape {shape}; not supported")
                outputs[name] = torch.empty(shape, dtype=self._dtypes[name], device=self.device)
                self.context.set_tensor_address(name, int(outputs[name].data_ptr()))
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution failed: {self.logger.take_errors()}")
            host_outputs = {n: (t.float() if t.is_floating_point() else t).cpu() for n, t in outputs.items()}
        self.stream.synchronize()
        return {n: t.numpy() for n, t in host_outputs.items()}
