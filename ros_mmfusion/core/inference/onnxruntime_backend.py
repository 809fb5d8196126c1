"""ONNX Runtime backend: CPU, plus the CUDA and TensorRT execution providers when the installed build has them."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.base import BackendInfo
from ros_mmfusion.core.onnx_export import ort_session


def providers_for(device: str, available: list[str]) -> list[str]:
    """Execution providers in preference order for ``device``; ConfigError when the device is not offered."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if not wanted:
        raise ConfigError(f"device 'cuda' requested but this onnxruntime offers only {available}")
    return wanted + ["CPUExecutionProvider"]


class OnnxRuntimeBackend:
    def __init__(self, path: Path, device: str = "cpu", precision: str = "fp32", threads: int = 0) -> None:
        import onnxruntime as ort

        if precision != "fp32":
            raise ConfigError("the onnxruntime backend runs the ONNX file's own precision; export fp16 separately")
        providers = providers_for(device, ort.get_available_providers())
        try:
            self.session = ort_session(path, threads, providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ConfigError(f"cannot load ONNX model {path}: {exc}") from None
        inputs = tuple(i.name for i in self.session.get_inputs())
        outputs = tuple(o.name for o in self.session.get_outputs())
        self.info = BackendInfo("onnxruntime", device, precision, inputs, outputs,
                                f"onnxruntime {ort.__version__} {self.session.get_providers()}")

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = set(self.info.inputs) - set(feeds)
        if missing:
            raise ConfigError(f"missing inputs {sorted(missing)}")
        arrays = {n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.info.inputs}
        return dict(zip(self.info.outputs, self.session.run(list(self.info.outputs), arrays), strict=True))
