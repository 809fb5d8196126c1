"""RGB-X segmentation inputs: sensor arrays to the 8-bit X image (:func:`encode_x`), and 8-bit images to the
normalised ``(1, 3, H, W)`` float32 tensors a model consumes.

The conventions are those the released CMX weights were trained and evaluated with (``UPSTREAM_CMX``):

- RGB: upstream reads images with ``cv2.imread(path, cv2.COLOR_BGR2RGB)``; that constant (4) acts as an imread *flag*
  (IMREAD_ANYCOLOR), so the network always saw OpenCV's **B,G,R** order: channel 0 = blue, normalised with the
  ImageNet *red* statistics (mean 0.485, std 0.229). Callers here pass true RGB (as ROS ``rgb8``); it is reordered.
- X (depth, thermal, LiDAR depth, ... already encoded to 8 bits): a single channel replicated to three and normalised
  with the same ImageNet mean/std; a three-channel X (e.g. HHA) is used as given.
- Arithmetic in float64 (``u8 / 255 - mean) / std``), then HWC -> CHW and a float32 cast, which reproduces upstream's
  tensors bit for bit (evaluated once per uint8 value into a look-up table, then gathered per pixel).

Images are ``(H, W, 3)`` / ``(H, W)`` uint8 arrays in pixel rows/columns; nothing is resized here.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.core.geometry import PinholeCamera, Transform
from ros_mmfusion.core.modalities.encoders import XEncoder
from ros_mmfusion.core.models.imagenet import IMAGENET_MEAN, IMAGENET_STD

X_NEEDS_CAMERA = ("lidar", "depth_hha")
"""X modalities whose encoding needs the colour camera's intrinsics (LiDAR projection, HHA's height and angle)."""


def encode_x(encoder: XEncoder, modality: str, raw: np.ndarray | None, size: tuple[int, int], *,
             camera: PinholeCamera | None = None, encoding: str = "",
             camera_from_lidar: Transform | None = None) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 X image of one raw X input, pixel-aligned with the RGB image of ``size`` (H, W):
    the one place that decides how depth, thermal and LiDAR become the network's X (the segmentation node, INT8
    calibration and training all call it).

    ``raw``: for ``lidar`` the points (``(N, 3+)`` array or structured cloud, LiDAR frame) projected with
    ``camera`` (the colour camera's intrinsics, scaled to ``size`` when calibrated at another resolution) and
    ``camera_from_lidar``; otherwise the X image, already registered to the colour camera (same size), with its ROS
    ``encoding`` (``32FC1`` metres, ``16UC1`` millimetres, ``mono16`` ...); ``depth_hha`` also needs ``camera``.
    None (X missing): the encoder's neutral image. MessageFormatError when the camera is missing where it is
    needed or the X image is not of the RGB image's size.
    """
    if raw is None:
        return encoder.neutral(*size)
    if modality == "lidar":
        if camera is None:
            raise MessageFormatError("no CameraInfo received yet: cannot project LiDAR into the camera")
        if (camera.height, camera.width) != size:
            camera = camera.scaled(size[1], size[0])
        return encoder.encode(raw, camera, camera_from_lidar=camera_from_lidar)
    if raw.shape[:2] != size:
        raise MessageFormatError(f"X image is {raw.shape[1]}x{raw.shape[0]} but RGB is {size[1]}x{size[0]}; "
                                 "register X to the colour camera first")
    if modality == "depth_hha":
        if camera is None:
            raise MessageFormatError("no CameraInfo received yet: HHA needs the intrinsics")
        return encoder.encode(raw, camera, encoding=encoding)
    return encoder.encode(raw, None, encoding=encoding)


@dataclass(frozen=True)
class RGBXNormalization:
    """How a model wants its inputs: per-position mean/std (on the 0..1 scale) and the RGB input's channel order."""

    rgb_mean: tuple[float, float, float] = IMAGENET_MEAN
    rgb_std: tuple[float, float, float] = IMAGENET_STD
    x_mean: tuple[float, float, float] = IMAGENET_MEAN
    x_std: tuple[float, float, float] = IMAGENET_STD
    rgb_order: str = "bgr"
    """Order fed to the network: ``"bgr"`` for the released CMX weights, ``"rgb"`` for weights trained on true RGB."""

    def __post_init__(self) -> None:
        if self.rgb_order not in ("rgb", "bgr"):
            raise ValueError(f"rgb_order {self.rgb_order!r}: expected 'rgb' or 'bgr'")


UPSTREAM_CMX = RGBXNormalization()
"""The released CMX checkpoints' convention (B,G,R fed; ImageNet mean/std for both inputs)."""


@lru_cache(maxsize=16)
def _normalization_lut(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(C, 256)`` float32: ``(v / 255 - mean[c]) / std[c]`` for every uint8 value ``v``, computed in float64 with
    the very operations of the per-pixel formula, so a table look-up gives the same float32 bit for bit."""
    values = np.arange(256, dtype=np.float64)[:, None] / 255.0
    table = (values - np.asarray(mean, dtype=np.float64)) / np.asarray(std, dtype=np.float64)
    table = np.ascontiguousarray(table.T, dtype=np.float32)
    table.flags.writeable = False
    return table


def _normalized_planes(planes: list[np.ndarray], mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(1, C, H, W)`` float32 of ``C`` uint8 ``(H, W)`` planes (views are fine), plane ``c`` normalised with
    ``mean[c]``/``std[c]`` through :func:`_normalization_lut` (one gather per plane, no float64 image)."""
    table = _normalization_lut(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    out = np.empty((1, len(planes), *planes[0].shape), np.float32)
    for c, plane in enumerate(planes):
        np.take(table[c], plane, out=out[0, c])
    return out


def normalize_image(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(H, W, C)`` uint8 -> ``(1, C, H, W)`` float32 ``(image / 255 - mean) / std``, as computed in float64 and cast
    (through a per-channel look-up table of the 256 values: the same bits, without a float64 image).

    ``mean`` and ``std`` apply by channel position of ``image``.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != len(mean) or len(mean) != len(std):
        raise ValueError(f"expected (H, W, {len(mean)}) uint8, got {image.shape} {image.dtype}")
    return _normalized_planes([image[..., c] for c in range(image.shape[2])], mean, std)


def rgb_input(rgb: np.ndarray, norm: RGBXNormalization = UPSTREAM_CMX) -> np.ndarray:
    """``(H, W, 3)`` uint8 image in **R,G,B** order -> ``(1, 3, H, W)`` float32 RGB-branch input."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"RGB image: expected (H, W, 3), got {rgb.shape}")
    fed = rgb[..., ::-1] if norm.rgb_order == "bgr" else rgb
    return normalize_image(fed, norm.rgb_mean, norm.rgb_std)


def x_input(x: np.ndarray, norm: RGBXNormalization = UPSTREAM_CMX) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` uint8 X image -> ``(1, 3, H, W)`` float32 X-branch input.

    One channel is replicated to three (upstream's ``cv2.merge([x, x, x])``; here by normalising the one plane with
    each channel's statistics); three channels are used in their order.
    """
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim == 2:
        if x.dtype != np.uint8:
            raise ValueError(f"expected (H, W) uint8, got {x.shape} {x.dtype}")
        return _normalized_planes([x, x, x], norm.x_mean, norm.x_std)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"X image: expected (H, W), (H, W, 1) or (H, W, 3), got {x.shape}")
    return normalize_image(x, norm.x_mean, norm.x_std)


def rgbx_inputs(rgb: np.ndarray, x: np.ndarray,
                norm: RGBXNormalization = UPSTREAM_CMX) -> tuple[np.ndarray, np.ndarray]:
    """Both model inputs from an R,G,B uint8 image and a pixel-aligned uint8 X image of the same size."""
    if rgb.shape[:2] != x.shape[:2]:
        raise ValueError(f"RGB {rgb.shape[:2]} and X {x.shape[:2]} images differ in size; align X to the camera first")
    return rgb_input(rgb, norm), x_input(x, norm)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RGBXNormalization", "UPSTREAM_CMX", "X_NEEDS_CAMERA", "encode_x",
           "normalize_image", "rgb_input", "x_input", "rgbx_inputs"]
