"""PyTorch backend (CPU or CUDA; fp32, or fp16 on CUDA)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.base import BackendInfo


class TorchBackend:
    def __init__(self, module, input_names: Sequence[str], output_names: Sequence[str], device: str = "cpu",
                 precision: str = "fp32", threads: int = 0) -> None:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but torch has no CUDA device here")
        if precision == "fp16" and device != "cuda":
            raise ConfigError("fp16 with the torch backend needs device 'cuda'")
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = module.eval().to(device=device, dtype=self._dtype)
        self.device = device
        self.info = BackendInfo("torch", device, precision, tuple(input_names), tuple(output_names),
                                f"torch {torch.__version__}")

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        missing = set(self.info.inputs) - set(feeds)
        if missing:
            raise ConfigError(f"missing inputs {sorted(missing)}")
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device, self._dtype) for n in self.info.inputs]
        with torch.inference_mode():
            out = self.module(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if len(outs) != len(self.info.outputs):
            raise ConfigError(f"model returned {len(outs)} outputs, expected {len(self.info.outputs)}")
        return {n: o.float().cpu().numpy() for n, o in zip(self.info.outputs, outs, strict=True)}
