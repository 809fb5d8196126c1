"""Thermal images as X-modality inputs: 8/16-bit or float radiometric frames to an 8-bit, white-hot image.

Inputs are ``mono8`` / ``8UC1`` (uint8), ``mono16`` / ``16UC1`` (uint16: raw sensor counts, or a radiometric unit such
as centikelvin, e.g. FLIR "TLinear" output) or ``32FC1`` (float, e.g. kelvin or degrees Celsius). Two normalisations:

- **percentile** (default, unit-free): the ``low``-th .. ``high``-th percentiles of the frame's finite pixels map to
  ``0 .. 255``, clipping outside. Robust to dead pixels and a few very hot or cold ones; per frame, so the same
  temperature may encode differently from frame to frame (the contrast a network trained on auto-gained thermal
  video such as MFNet expects).
- **fixed window** (needs the unit): ``temperature_K = value * kelvin_per_count + kelvin_offset``, then
  ``window_k = (cold, hot)`` kelvin maps to ``0 .. 255``. Stable across frames. An 8-bit (``mono8``) image has no
  radiometric unit: with a window set it is used as it is (MFNet's 8-bit thermal images, what upstream CMX's RGB-T
  checkpoints were trained on, reach the network unchanged).

Hot is bright. Non-finite pixels (NaN/inf, floats only) are excluded from the percentiles and encode as 0.
Optional CLAHE (OpenCV contrast-limited adaptive histogram equalisation) runs on the 8-bit result.
"""
from __future__ import annotations

import cv2
import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.modalities.depth import as_image_plane

#: Thermal encodings -> the array dtype kinds each accepts.
THERMAL_ENCODINGS = {"mono8": "u1", "8UC1": "u1", "mono16": "u2", "16UC1": "u2", "32FC1": "f"}


def thermal_values(raw: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W)`` float32 values in the encoding's own unit and the ``(H, W)`` mask of finite pixels.

    MessageFormatError for an unknown encoding, a dtype that does not match it, or a shape other than ``(H, W)`` /
    ``(H, W, 1)``.
    """
    kind = THERMAL_ENCODINGS.get(encoding)
    if kind is None:
        raise MessageFormatError(f"thermal image: encoding {encoding!r} is not supported; expected one of "
                                 f"{', '.join(THERMAL_ENCODINGS)}")
    plane = as_image_plane(raw, f"thermal image ({encoding})")
    matches = np.issubdtype(plane.dtype, np.floating) if kind == "f" else plane.dtype == np.dtype(kind)
    if not matches:
        expected = "a float" if kind == "f" else f"a {np.dtype(kind)}"
        raise MessageFormatError(f"thermal image: encoding {encoding} needs {expected} array, got {plane.dtype}")
    values = plane.astype(np.float32)
    finite = np.isfinite(values) if kind == "f" else np.ones(values.shape, bool)
    return values, finite


def thermal_range(values: np.ndarray, finite: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """The ``percentiles`` of the finite values, in their unit; ``(0, 0)`` when no pixel is finite."""
    if not np.any(finite):
        return 0.0, 0.0
    sample = values[finite] if not finite.all() else values.ravel()
    low, high = np.percentile(sample, percentiles)
    return float(low), float(high)


def encode_thermal(raw: np.ndarray, encoding: str, *, percentiles: tuple[float, float] = (1.0, 99.0),
                   window_k: tuple[float, float] | None = None, kelvin_per_count: float | None = None,
                   kelvin_offset: float = 0.0, clahe_clip: float = 0.0, clahe_tiles: int = 8) -> np.ndarray:
    """``(H, W)`` uint8 white-hot thermal image (0 = cold end or no data, 255 = hot end).

    With ``window_k`` set (kelvin, cold < hot) the fixed window is used and ``kelvin_per_count`` must give the unit
    (0.01 for centikelvin, 1.0 for a kelvin ``32FC1``; ``kelvin_offset`` 273.15 for a Celsius one); otherwise the
    ``percentiles`` of the frame. A frame whose range collapses (all one value) encodes as 0. ``clahe_clip`` > 0
    applies CLAHE with that clip limit over a ``clahe_tiles`` x ``clahe_tiles`` grid.
    """
    values, finite = thermal_values(raw, encoding)
    if window_k is not None and THERMAL_ENCODINGS[encoding] == "u1":
        # An 8-bit thermal image is already display-scaled (MFNet's images, upstream CMX's RGB-T input, are such):
        # it carries no radiometric unit, so a kelvin window cannot apply; it is used as it is.
        scaled = np.ascontiguousarray(as_image_plane(raw, "thermal image"))
    elif window_k is not None:
        if kelvin_per_count is None:
            raise ConfigError("a fixed thermal window (window_k) needs the unit: set kelvin_per_count "
                              "(e.g. 0.01 for centikelvin mono16, 1.0 for a kelvin 32FC1)")
        low, high = ((k - kelvin_offset) / kelvin_per_count for k in window_k)
    else:
        low, high = thermal_range(values, finite, percentiles)
    if window_k is None or THERMAL_ENCODINGS[encoding] != "u1":
        span = high - low
        if span == 0 or not np.isfinite(span):
            scaled = np.zeros(values.shape, np.uint8)
        else:
            scaled = np.rint(np.clip((np.where(finite, values, low) - low) * (255.0 / span), 0, 255)).astype(np.uint8)
    if clahe_clip > 0:
        scaled = cv2.createCLAHE(clipLimit=clahe_clip, tileGridSize=(clahe_tiles, clahe_tiles)).apply(scaled)
    scaled[~finite] = 0
    return scaled


__all__ = ["THERMAL_ENCODINGS", "encode_thermal", "thermal_range", "thermal_values"]
