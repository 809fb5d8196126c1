"""The backend interface and its factory."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ros_mmfusion.core.errors import ConfigError

BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class BackendInfo:
    kind: str
    device: str
    precision: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    detail: str = ""


class Backend(Protocol):
    """Runs one network: ``run({input name: array}) -> {output name: array}``; arrays are float32 (fp16 is internal)."""

    info: BackendInfo

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def create_backend(kind: str, *, input_names: Sequence[str], output_names: Sequence[str],
                   module_factory: Callable[[], object] | None = None, onnx_path: str | Path | None = None,
                   device: str = "cpu", precision: str = "fp32", threads: int = 0) -> Backend:
    """Build the backend ``kind``.

    ``torch`` needs ``module_factory`` (returns an ``nn.Module`` with weights loaded, taking the inputs positionally
    in ``input_names`` order); ``onnxruntime`` needs ``onnx_path``. ``device`` is "cpu" or "cuda"; ``precision`` fp32
    or fp16 (fp16 on CUDA only); ``threads`` 0 lets the runtime choose.
    """
    if kind not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {kind!r} (tensorrt arrives with the backends issue)")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {device!r}")
    if kind == "torch":
        if module_factory is None:
            raise ConfigError("the torch backend needs a model")
        from ros_mmfusion.core.inference.torch_backend import TorchBackend

        return TorchBackend(module_factory(), input_names, output_names, device, precision, threads)
    if onnx_path is None or not Path(onnx_path).is_file():
        raise ConfigError(f"the onnxruntime backend needs an ONNX file; {onnx_path!s} does not exist "
                          "(export one with `mmfusion export`)")
    from ros_mmfusion.core.inference.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(Path(onnx_path), device, precision, threads)
