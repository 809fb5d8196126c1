"""RGB-X fusion segmentation pipeline (ROS-free): resize to the model input, normalise, infer, resize back.

``FusionSegmenter(spec, backend=...)`` turns an RGB image and a pixel-aligned, 8-bit encoded X image (see
``core/modalities``) into class ids and per-pixel confidence at the RGB image's size.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.inference import Backend, create_backend
from ros_mmfusion.core.onnx_export import cache_dir, export_once, export_onnx
from ros_mmfusion.core.preprocess.segmentation import RGBXNormalization, rgbx_inputs

INPUTS = ("rgb", "x")
OUTPUTS = ("logits",)


@dataclass(frozen=True)
class SegmentationModelSpec:
    """Which network, its weights and how it wants its inputs.

    ``weights``: our state_dict (``.pt``) or an upstream CMX checkpoint (``.pth``); empty means untrained (random
    weights: only for tests and timing). ``onnx``: an exported file for the onnxruntime backend; empty means export
    on first use into the cache directory. ``input_size``: (height, width) the network runs at.
    """

    variant: str = "cmx_mit_b0"
    num_classes: int = 12
    decoder_embed_dim: int = 512
    input_size: tuple[int, int] = (480, 640)
    rgb_order: str = "bgr"
    weights: str = ""
    onnx: str = ""
    class_names: tuple[str, ...] = field(default_factory=tuple)
    x_modality: str = "depth"
    x_params: dict = field(default_factory=dict)
    ignore_index: int = 0

    @classmethod
    def from_package(cls, directory: str | Path) -> SegmentationModelSpec:
        """Read a model package: ``model.yaml`` (format ``ros_mmfusion/model/v1``) and the weights beside it."""
        import yaml

        directory = Path(directory)
        path = directory / "model.yaml"
        if not path.is_file():
            raise ConfigError(f"model package {directory}: no model.yaml")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != "ros_mmfusion/model/v1" \
                or data.get("task") != "segmentation":
            raise ConfigError(f"{path}: not a ros_mmfusion segmentation model package")
        try:
            x = data.get("x_modality") or {}
            return cls(variant=data["variant"], num_classes=int(data["num_classes"]),
                       decoder_embed_dim=int(data["decoder_embed_dim"]),
                       input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                       rgb_order=data.get("rgb_order", "bgr"),
                       weights=str(directory / data["weights"]) if data.get("weights") else "",
                       onnx=str(directory / data["onnx"]) if data.get("onnx") else "",
                       class_names=tuple(data.get("class_names") or ()), x_modality=x.get("name", "depth"),
                       x_params=dict(x.get("params") or {}), ignore_index=int(data.get("ignore_index", 0)))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"{path}: missing or bad field: {exc}") from None

    def palette(self) -> np.ndarray:
        """(256, 3) uint8 RGB colour per class id: the suite's label colours when the classes are the suite's label
        set, else distinct generated colours."""
        from ros_mmfusion.core import labels

        if list(self.class_names) == labels.label_names():
            return labels.palette()
        rng = np.random.default_rng(12345)
        lut = rng.integers(40, 255, (256, 3)).astype(np.uint8)
        lut[0] = 0
        return lut

    def __post_init__(self) -> None:
        from ros_mmfusion.core.limits import check_image_size

        check_image_size(*self.input_size, "input_size", minimum=32)
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    @property
    def normalization(self) -> RGBXNormalization:
        return RGBXNormalization(rgb_order=self.rgb_order)


@dataclass
class SegmentationResult:
    labels: np.ndarray  # (H, W) uint8 class ids
    confidence: np.ndarray  # (H, W) float32 softmax probability of the chosen class


def build_module(spec: SegmentationModelSpec, deploy: bool = True):
    """The PyTorch CMX model of ``spec`` with its weights loaded (strict); with ``deploy`` its decoder is folded
    for inference (:func:`~ros_mmfusion.core.models.cmx.fold_for_inference`: same logits, far less compute)."""
    from ros_mmfusion.core.models import cmx
    from ros_mmfusion.core.models.checkpoints import load_weights_file

    model = cmx.build_cmx(spec.variant, num_classes=spec.num_classes, decoder_embed_dim=spec.decoder_embed_dim)
    if spec.weights:
        cmx.load_checkpoint(model, load_weights_file(spec.weights), strict=True)
    return cmx.fold_for_inference(model) if deploy else model.eval()


def onnx_for(spec: SegmentationModelSpec) -> Path:
    """The ONNX file of ``spec``: the configured one (exported there on first use when missing), or one exported
    into the cache directory, named from the variant, classes, input size and the weights' content hash."""
    if spec.onnx:
        path = Path(spec.onnx)
    else:
        key = f"deploy-v1/{spec.variant}/{spec.num_classes}/{spec.decoder_embed_dim}/{spec.input_size}"
        digest = hashlib.sha256(key.encode())
        if spec.weights:
            digest.update(Path(spec.weights).read_bytes())
        path = cache_dir() / "onnx" / f"{spec.variant}-{digest.hexdigest()[:16]}.onnx"

    def export(tmp: Path) -> None:
        import torch

        h, w = spec.input_size
        export_onnx(build_module(spec), (torch.zeros(1, 3, h, w), torch.zeros(1, 3, h, w)), tmp, INPUTS, OUTPUTS,
                    {"rgb": {0: "batch", 2: "height", 3: "width"}, "x": {0: "batch", 2: "height", 3: "width"},
                     "logits": {0: "batch", 2: "height", 3: "width"}})

    return export_once(path, export)  # atomic: concurrent nodes never read a half-written file


def _onnx_path(spec: SegmentationModelSpec, backend: str, precision: str) -> Path | None:
    """The ONNX file ``backend`` runs: the INT8 (QDQ) model for onnxruntime-int8 and TensorRT int8 (quantized on
    first use, see ``core/inference/segmentation_calibration.py``), the fp32 export for onnxruntime and tensorrt."""
    if backend == "onnxruntime-int8" or (backend == "tensorrt" and precision == "int8"):
        from ros_mmfusion.core.inference.segmentation_calibration import int8_onnx_for

        return int8_onnx_for(spec, tensorrt=backend == "tensorrt")
    return onnx_for(spec) if backend in ("onnxruntime", "tensorrt") else None


class FusionSegmenter:
    """Segments RGB + X images with the backend ``backend`` ("torch", "onnxruntime", "onnxruntime-int8" or
    "tensorrt")."""

    def __init__(self, spec: SegmentationModelSpec, backend: str = "onnxruntime", device: str = "cpu",
                 precision: str = "fp32", threads: int = 0) -> None:
        self.spec = spec
        self.backend: Backend = create_backend(
            backend, input_names=INPUTS, output_names=OUTPUTS, module_factory=lambda: build_module(spec),
            onnx_path=_onnx_path(spec, backend, precision), device=device, precision=precision, threads=threads,
            shapes={name: (1, 3, *spec.input_size) for name in INPUTS})

    def preprocess(self, rgb: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
        """Resize both images to the model input (RGB bilinear; X nearest, so sparse depth stays exact) and
        normalise them."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise MessageFormatError(f"RGB image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        if x.dtype != np.uint8 or x.shape[:2] != rgb.shape[:2]:
            raise MessageFormatError(f"X image must be uint8 and the RGB image's size {rgb.shape[:2]}, "
                                     f"got {x.shape} {x.dtype}")
        h, w = self.spec.input_size
        if rgb.shape[:2] != (h, w):
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
            x = cv2.resize(x, (w, h), interpolation=cv2.INTER_NEAREST)
        rgb_t, x_t = rgbx_inputs(rgb, x, self.spec.normalization)
        return {"rgb": rgb_t, "x": x_t}

    def __call__(self, rgb: np.ndarray, x: np.ndarray) -> SegmentationResult:
        logits = self.backend.run(self.preprocess(rgb, x))["logits"][0]  # (C, h, w)
        return postprocess(logits, rgb.shape[:2])


def postprocess(logits: np.ndarray, size: tuple[int, int]) -> SegmentationResult:
    """Class ids and softmax confidence of ``(C, h, w)`` logits, resized (bilinear on logits) to ``size`` (H, W)."""
    h, w = size
    c = logits.shape[0]
    if logits.shape[1:] != (h, w):
        hwc = cv2.resize(np.ascontiguousarray(logits.transpose(1, 2, 0)), (w, h), interpolation=cv2.INTER_LINEAR)
        logits = hwc.reshape(h, w, c).transpose(2, 0, 1)  # cv2 drops the channel axis when c == 1
    labels = np.argmax(logits, axis=0).astype(np.uint8)
    top = np.max(logits, axis=0)
    confidence = 1.0 / np.sum(np.exp(logits - top[None]), axis=0)
    return SegmentationResult(labels, confidence.astype(np.float32))
