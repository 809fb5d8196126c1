"""Inference backends behind one small interface: named float32 numpy inputs in, named numpy outputs out.

``create_backend("torch" | "onnxruntime" | "onnxruntime-int8" | "tensorrt", ...)`` (:mod:`.factory`) builds one;
:mod:`.base` is the interface the concrete backends implement. Every model node takes ``backend`` and ``precision``
parameters and never touches a framework directly.
"""
from ros_mmfusion.core.inference.base import Backend, BackendInfo
from ros_mmfusion.core.inference.factory import create_backend

__all__ = ["Backend", "BackendInfo", "create_backend"]
