"""Sane bounds for sizes a user or a configuration file can ask for, so an absurd value is a clear error up front
instead of an allocation of terabytes (or an hour of work) later.

* Images a network runs at: each side 16..8192 pixels (``MAX_IMAGE_SIDE``): far above what networks at this scale
  (CMX, ViNT) are run at on a robot, far below what would exhaust memory on the first tensor.
* 3D detection ranges (``point_cloud_range``): every coordinate within +-500 m of the LiDAR (``MAX_RANGE_M``); the
  pillar grid grows with the square of the extent.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from ros_mmfusion.core.errors import ConfigError

MIN_IMAGE_SIDE = 16
MAX_IMAGE_SIDE = 8192
MAX_RANGE_M = 500.0


def check_image_size(height: int, width: int, what: str, minimum: int = MIN_IMAGE_SIDE) -> tuple[int, int]:
    """``(height, width)`` in pixels if each side is in ``minimum..MAX_IMAGE_SIDE``; else ConfigError (``what``)."""
    for side in (height, width):
        if not minimum <= side <= MAX_IMAGE_SIDE:
            raise ConfigError(f"{what}: {height}x{width} (HxW) is out of range; each side must be {minimum}.."
                              f"{MAX_IMAGE_SIDE} pixels")
    return height, width


def check_range(values: Sequence[float], what: str) -> tuple[float, ...]:
    """A ``(x_min, y_min, z_min, x_max, y_max, z_max)`` range in metres with every value finite and within
    +-``MAX_RANGE_M``; ConfigError naming ``what`` otherwise."""
    values = tuple(float(v) for v in values)
    if not all(math.isfinite(v) and abs(v) <= MAX_RANGE_M for v in values):
        raise ConfigError(f"{what} {list(values)}: every value must be a finite number of metres within "
                          f"+-{MAX_RANGE_M:g} m")
    return values
