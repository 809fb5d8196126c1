"""ONNX Runtime backend: the CPU provider, or the CUDA provider (``onnxruntime-cuda``: needs the onnxruntime-gpu
build and a CUDA device)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.base import BackendInfo
from ros_mmfusion.core.onnx_export import ort_session

CUDA_PROVIDER = "CUDAExecutionProvider"


def providers_for(device: str, available: list[str]) -> list[str]:
    """Execution providers in preference order for ``device``: the CPU provider, or the CUDA provider with the CPU
    one behind it (for the few operators CUDA lacks); ConfigError when this onnxruntime has no CUDA provider."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if CUDA_PROVIDER not in available:
        raise ConfigError(f"device 'cuda' requested but this onnxruntime offers only {available} "
                          "(the CUDA provider comes with the onnxruntime-gpu package)")
    return [CUDA_PROVIDER, "CPUExecutionProvider"]


class OnnxRuntimeBackend:
    """A session of the ONNX file ``path``, which holds the network in ``precision`` (fp32, or the fp16 copy of
    ``fp16.py``: float32 inputs and outputs either way; the factory picks the file)."""

    def __init__(self, path: Path, device: str = "cpu", precision: str = "fp32", threads: int = 0) -> None:
        import onnxruntime as ort

        if precision not in ("fp32", "fp16"):
            raise ConfigError(f"the onnxruntime backend runs fp32 or fp16 ONNX files, not {precision}")
        providers = providers_for(device, ort.get_available_providers())
        try:
            self.session = ort_session(path, threads, providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ConfigError(f"cannot load ONNX model {path}: {exc}") from None
        if device == "cuda" and CUDA_PROVIDER not in self.session.get_providers():
            # ONNX Runtime falls back to the CPU when the CUDA libraries do not load: say so instead of running there
            raise ConfigError(f"onnxruntime could not start its CUDA provider (CUDA or cuDNN libraries missing or of "
                              f"another version?); the session has only {self.session.get_providers()}")
        inputs = tuple(i.name for i in self.session.get_inputs())
        outputs = tuple(o.name for o in self.session.get_outputs())
        kind = "onnxruntime-cuda" if device == "cuda" else "onnxruntime"
        self.info = BackendInfo(kind, device, precision, inputs, outputs,
                                f"onnxruntime {ort.__version__} {self.session.get_providers()} {precision}")

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = set(self.info.inputs) - set(feeds)
        if missing:
            raise ConfigError(f"missing inputs {sorted(missing)}")
        arrays = {n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.info.inputs}
        outs = self.session.run(list(self.info.outputs), arrays)
        return {n: np.asarray(o, dtype=np.float32) if o.dtype == np.float16 else o
                for n, o in zip(self.info.outputs, outs, strict=True)}
