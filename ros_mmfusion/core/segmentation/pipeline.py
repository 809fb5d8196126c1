"""RGB-X fusion segmentation pipeline (ROS-free): resize to the model input, normalise, infer, resize back.

``FusionSegmenter(spec, backend)`` turns an RGB image and a pixel-aligned, 8-bit encoded X image (see
:func:`~ros_mmfusion.core.segmentation.preprocess.encode_x`) into class ids and per-pixel confidence at the RGB
image's size. It receives its backend, built by :func:`ros_mmfusion.core.segmentation.artifacts.build_backend`.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.inference.base import Backend
from ros_mmfusion.core.model_package import ModelPackage, WeightsOrigin, read_package, weights_origin
from ros_mmfusion.core.segmentation.preprocess import RGBXNormalization, rgbx_inputs

INPUTS = ("rgb", "x")
OUTPUTS = ("logits",)


def package_x_params(x_modality: dict) -> dict:
    """The X encoder parameters a model package's ``x_modality`` entry states. A ``depth_hha`` package that names no
    ``hha_scheme`` predates the published (Gupta) encoding becoming the default and was trained on ``legacy`` HHA:
    the package's metadata, not the encoder's default, decides what its network is fed."""
    params = dict(x_modality.get("params") or {})
    if x_modality.get("name") == "depth_hha":
        params.setdefault("hha_scheme", "legacy")
    return params


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

    package: ModelPackage | None = field(default=None, compare=False, repr=False)
    """The model package this spec was read from (None: built in code)."""

    @classmethod
    def from_package(cls, directory: str | Path) -> SegmentationModelSpec:
        """Read a model package (``core.model_package.read_package``: ``model.yaml`` of format
        ``ros_mmfusion/model/v1``, task ``segmentation``, and the weights beside it)."""
        package = read_package(directory, "segmentation")
        data = package.data
        try:
            x = data.get("x_modality") or {}
            return cls(variant=package.variant, num_classes=int(data["num_classes"]),
                       decoder_embed_dim=int(data["decoder_embed_dim"]),
                       input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                       rgb_order=data.get("rgb_order", "bgr"), weights=package.weights,
                       onnx=str(package.directory / data["onnx"]) if data.get("onnx") else "",
                       class_names=tuple(data.get("class_names") or ()), x_modality=x.get("name", "depth"),
                       x_params=package_x_params(x), ignore_index=int(data.get("ignore_index", 0)),
                       package=package)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"{package.directory / 'model.yaml'}: missing or bad field: {exc}") from None

    @property
    def origin(self) -> WeightsOrigin:
        """Where the weights come from (trained package, file, fixture or random), with their sha256."""
        return weights_origin(self.weights, self.package)

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
    confidence: np.ndarray | None  # (H, W) float32 softmax probability of the chosen class (None: not asked for)


class FusionSegmenter:
    """Segments RGB + X images of the model ``spec`` with ``backend`` (inputs ``INPUTS``, output ``OUTPUTS``; see
    ``artifacts.build_backend``). Without a backend it only makes network inputs (:meth:`network_inputs`: INT8
    calibration, accuracy checks)."""

    def __init__(self, spec: SegmentationModelSpec, backend: Backend | None = None) -> None:
        self.spec = spec
        self.backend = backend

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

    def network_inputs(self, samples: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """The network inputs (``rgb``, ``x``: ``(1, 3, H, W)`` float32 at ``spec.input_size``) of each
        ``(rgb, x)`` sample, made by :meth:`preprocess` exactly as :meth:`__call__` makes them."""
        for rgb, x in samples:
            yield self.preprocess(rgb, x)

    def __call__(self, rgb: np.ndarray, x: np.ndarray, *, confidence: bool = True) -> SegmentationResult:
        """Class ids (and, with ``confidence``, the softmax confidence) at the RGB image's size."""
        if self.backend is None:
            raise ConfigError("this FusionSegmenter was built without a backend: it only makes network inputs")
        logits = self.backend.run(self.preprocess(rgb, x))["logits"][0]  # (C, h, w)
        return postprocess(logits, rgb.shape[:2], confidence=confidence)


def _argmax_planes(logits: np.ndarray) -> np.ndarray:
    """``(h, w)`` uint8 index of the largest of ``(C, h, w)`` logits, the first on ties (as ``np.argmax(axis=0)``),
    one vectorised pass per class instead of a per-pixel reduction over a short axis."""
    top = logits[0].copy()
    labels = np.zeros(top.shape, np.uint8)
    for c in range(1, logits.shape[0]):
        better = logits[c] > top
        labels[better] = c
        np.maximum(top, logits[c], out=top)
    return labels


_NEIGHBOURS = np.ones((3, 3), np.uint8)


def upsampled_labels(logits: np.ndarray, size: tuple[int, int], resized: np.ndarray | None = None) -> np.ndarray:
    """``argmax`` over classes of ``logits`` (``(C, h, w)``) resized bilinearly to ``size`` (H, W; H >= h, W >= w)
    as ``cv2.resize(..., INTER_LINEAR)`` resizes them, computed where it can differ from the low-resolution argmax
    only.

    A bilinear output pixel is a convex combination of at most 2x2 source pixels, all within one pixel of its
    nearest source pixel. Where that source pixel and its 8 neighbours all have the same argmax ``k``, the combination's
    logit ``k`` is at least every other class's (each source pixel's is; rounded sums and products with non-negative
    weights keep the order), so the label is ``k`` without interpolating anything. Only the other pixels (class
    boundaries: a few percent of them) are interpolated, from their 2x2 source pixels with cv2's weights (half-pixel
    centres, clamped at the borders), or read from ``resized`` (``(H, W, C)``, the whole resized logits) when the
    caller has it. No full-resolution ``(H, W, C)`` array is made otherwise: at 640x480 and 15 classes it is 18 MB,
    freshly allocated and page-faulted every frame. Identical to ``np.argmax`` of the resized logits except where
    two classes' interpolated logits are equal within rounding.
    """
    c, h, w = logits.shape
    big_h, big_w = size
    low = _argmax_planes(logits)
    uniform = (cv2.erode(low, _NEIGHBOURS) == cv2.dilate(low, _NEIGHBOURS)).view(np.uint8)
    labels = cv2.resize(low, (big_w, big_h), interpolation=cv2.INTER_NEAREST)
    unsure = np.flatnonzero(cv2.resize(uniform, (big_w, big_h), interpolation=cv2.INTER_NEAREST) == 0)
    if not unsure.size:
        return labels
    if resized is not None:  # (C, N): one pass per class again, not a reduction per pixel
        labels.reshape(-1)[unsure] = _argmax_planes(np.ascontiguousarray(resized.reshape(-1, c)[unsure].T))
        return labels
    rows, cols = np.divmod(unsure, big_w)
    y0, y1, wy = (a[rows] for a in _bilinear_taps(big_h, h))
    x0, x1, wx = (a[cols] for a in _bilinear_taps(big_w, w))
    y0, y1 = y0 * w, y1 * w  # source rows as offsets into a flattened plane
    corners, wx0, wy0 = (y0 + x0, y0 + x1, y1 + x0, y1 + x1), 1 - wx, 1 - wy
    best, found = None, np.zeros(unsure.size, np.uint8)
    for k, plane in enumerate(logits.reshape(c, -1)):  # along x in rows y0 and y1, then along y; first max wins
        a, b, d, e = (plane[i] for i in corners)
        value = (a * wx0 + b * wx) * wy0 + (d * wx0 + e * wx) * wy
        if best is None:
            best = value
        else:
            found[value > best] = k
            np.maximum(best, value, out=best)
    labels.reshape(-1)[unsure] = found
    return labels


@functools.lru_cache(maxsize=16)
def _bilinear_taps(out: int, src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cv2's INTER_LINEAR taps along one axis from ``src`` to ``out`` samples: first and second source index and
    the float32 weight of the second, with half-pixel centres and the borders clamped (weight 0); read-only."""
    f = (np.arange(out, dtype=np.float64) + 0.5) * (src / out) - 0.5
    i0 = np.floor(f).astype(np.int64)
    weight = (f - i0).astype(np.float32)
    before, after = i0 < 0, i0 >= src - 1
    i0[before], weight[before] = 0, 0.0
    i0[after], weight[after] = src - 1, 0.0
    i1 = np.minimum(i0 + 1, src - 1)
    for a in (i0, i1, weight):
        a.flags.writeable = False
    return i0, i1, weight


def postprocess(logits: np.ndarray, size: tuple[int, int], *, confidence: bool = True) -> SegmentationResult:
    """Class ids and (with ``confidence``) softmax confidence of ``(C, h, w)`` logits, resized (bilinear on logits)
    to ``size`` (H, W). The labels are the argmax of the resized logits (see :func:`upsampled_labels` for how an
    upsampling finds it without resizing every class); the confidence, only when asked for (it costs the whole
    resize and an exponential per class and pixel), is ``1 / sum(exp(logits - max))``."""
    h, w = size
    c = logits.shape[0]
    upsampling = h >= logits.shape[1] and w >= logits.shape[2]
    if logits.shape[1:] == (h, w):
        labels = _argmax_planes(logits)
        chw = logits
    elif upsampling and not confidence:
        return SegmentationResult(upsampled_labels(logits, size), None)
    else:
        hwc = cv2.resize(np.ascontiguousarray(logits.transpose(1, 2, 0)), (w, h), interpolation=cv2.INTER_LINEAR)
        hwc = hwc.reshape(h, w, c)  # cv2 drops the channel axis when c == 1
        labels = upsampled_labels(logits, size, hwc) if upsampling else np.argmax(hwc, axis=2).astype(np.uint8)
        chw = hwc.transpose(2, 0, 1)
    if not confidence:
        return SegmentationResult(labels, None)
    top = np.max(chw, axis=0)
    return SegmentationResult(labels, (1.0 / np.sum(np.exp(chw - top[None]), axis=0)).astype(np.float32))


def class_colours(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 colour image of ``(H, W)`` uint8 class ids through a ``(256, 3)`` uint8 ``palette``
    (``SegmentationModelSpec.palette``): ``palette[labels]``, as one table look-up per channel."""
    if labels.dtype != np.uint8 or labels.ndim != 2 or palette.shape != (256, 3) or palette.dtype != np.uint8:
        raise ValueError(f"expected (H, W) uint8 labels and a (256, 3) uint8 palette, got {labels.shape} "
                         f"{labels.dtype} and {palette.shape} {palette.dtype}")
    return cv2.LUT(cv2.merge([labels, labels, labels]), np.ascontiguousarray(palette).reshape(256, 1, 3))
