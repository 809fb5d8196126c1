"""The backend interface: what every backend is (:class:`Backend`, :class:`BackendInfo`) and the names of the kinds and
precisions. The concrete backends import this module; the factory that picks one (:mod:`.factory`) sits above them."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")


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
