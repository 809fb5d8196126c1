"""The backend interface: what every backend is (:class:`Backend`, :class:`BackendInfo`) and the names of the kinds and
precisions. The concrete backends import this module; the factory that picks one (:mod:`.factory`) sits above them."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "tensorrt", "onnxruntime-cuda", "torch-cuda")
PRECISIONS = ("fp32", "fp16", "int8")
CUDA_BACKENDS = {"tensorrt": "tensorrt", "onnxruntime-cuda": "onnxruntime", "torch-cuda": "torch"}
"""Backends that run on a CUDA device whatever ``device`` says, and the runtime each one is: ``onnxruntime-cuda`` is
ONNX Runtime's CUDA execution provider, ``torch-cuda`` PyTorch on CUDA (the same as ``torch`` with device cuda)."""


def resolve_backend(kind: str, device: str) -> tuple[str, str]:
    """``(runtime kind, device)`` of the backend name ``kind`` asked for on ``device``: the CUDA backends of
    :data:`CUDA_BACKENDS` name their device themselves (``onnxruntime-cuda`` -> ``("onnxruntime", "cuda")``,
    ``tensorrt`` -> ``("tensorrt", "cuda")``); the others run on ``device``."""
    if kind in CUDA_BACKENDS:
        return CUDA_BACKENDS[kind], "cuda"
    return kind, device


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
