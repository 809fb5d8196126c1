"""The inference parameters every model node declares, one definition for the three (segmentation, detection,
navigation): which runtime, device and precision run the network, where built engines are cached, and
``build_only`` for preparing the engines ahead of time (Autoware's ``tensorrt_common`` behaviour)."""
from __future__ import annotations

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.base import resolve_backend
from ros_mmfusion.core.params import ParamSpec

NODE_BACKENDS = ("onnxruntime", "onnxruntime-int8", "torch", "tensorrt", "onnxruntime-cuda", "torch-cuda")


class EnginesBuilt(Exception):  # noqa: N818 - not an error: the outcome build_only asked for
    """Raised by a node's set-up with ``build_only``: its engines (or converted models) are in the cache; the text
    says which. The node entry point exits 0 with that line instead of spinning."""


def inference_params(backend_note: str = "") -> tuple[ParamSpec, ...]:
    """``backend``, ``device``, ``precision``, ``threads``, ``engine_cache_dir`` and ``build_only``, read-only.
    ``backend_note``: what the node's ``onnxruntime-int8`` does (calibration data), appended to ``backend``'s text."""
    return (
        ParamSpec("backend", "onnxruntime", "Inference backend: onnxruntime | onnxruntime-int8 | torch (CPU, or CUDA "
                  "with device cuda) | tensorrt (a TensorRT engine built on first use and cached) | onnxruntime-cuda "
                  "(ONNX Runtime's CUDA provider) | torch-cuda; the last three run on CUDA whatever 'device' says."
                  + (f" {backend_note}" if backend_note else ""), choices=NODE_BACKENDS, read_only=True),
        ParamSpec("device", "cpu", "Inference device of onnxruntime and torch.", choices=("cpu", "cuda"),
                  read_only=True),
        ParamSpec("precision", "fp32", "Inference precision: fp32; fp16 on CUDA (tensorrt, onnxruntime-cuda: a cached "
                  "fp16 copy of the model, torch-cuda); int8 with onnxruntime-int8 or tensorrt (calibrated on the "
                  "synthetic world on first use, or from a bag with `mmfusion build-engine --quantize-from BAG`).",
                  choices=("fp32", "fp16", "int8"), read_only=True),
        ParamSpec("threads", 0, "Inference threads (0: the runtime decides).", minimum=0, maximum=64, read_only=True),
        ParamSpec("engine_cache_dir", "", "Directory of built engines and converted models (TensorRT engines, fp16 and "
                  "INT8 ONNX files), each with a JSON sidecar; rebuilt when the model, GPU, TensorRT version or "
                  "precision changes. Empty: beside each ONNX file.", read_only=True),
        ParamSpec("build_only", False, "Build the model's engines (or converted models) into the cache, then exit 0 "
                  "without subscribing: prepares a robot ahead of time.", read_only=True),
    )


def check_precision(backend: str, device: str, precision: str, owner: str = "") -> None:
    """ConfigError (one line naming the parameters) for a precision the backend cannot run: fp16 on the CPU, int8
    outside onnxruntime-int8 and tensorrt."""
    prefix = f"{owner}: " if owner else ""
    runtime, where = resolve_backend(backend, device)
    if precision == "int8" and runtime not in ("onnxruntime-int8", "tensorrt"):
        raise ConfigError(f"{prefix}parameter 'precision': int8 needs backend onnxruntime-int8 or tensorrt, not "
                          f"{backend}")
    if precision == "fp16" and where != "cuda":
        raise ConfigError(f"{prefix}parameter 'precision': fp16 runs on CUDA (backend tensorrt, onnxruntime-cuda or "
                          f"torch-cuda, or device cuda), not on {backend} on the CPU")


def build_only_line(task: str, detail: str) -> str:
    """The line a node with ``build_only`` ends with."""
    return f"build_only: {task} ready ({detail}); exiting without running"
