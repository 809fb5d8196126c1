"""Inference backends behind one small interface: named float32 numpy inputs in, named numpy outputs out.

``create_backend("torch" | "onnxruntime", ...)``; the TensorRT backend joins with the backends issue. Every model
node takes ``backend`` and ``precision`` parameters and never touches a framework directly.
"""
from ros_mmfusion.core.inference.base import Backend, BackendInfo, create_backend

__all__ = ["Backend", "BackendInfo", "create_backend"]
