"""Bounds on what one message may make a decoder, and the node behind it, allocate.

A message's size fields are attacker- or bug-controlled: one CameraInfo of 50000x50000 would ask ``lidar_depth`` for a
9.3 GiB depth image, a 389 KB PNG can claim 20000x20000 pixels. Every decoder in :mod:`ros_mmfusion.core.codec` takes
a :class:`MessageLimits` and refuses a message over a limit *before* allocating anything for it, with a
MessageFormatError naming the field, the value, the limit and the node parameter that raises it. Nodes expose each
limit as a parameter of the same name (``LIMIT_PARAMS``, part of the node base's common parameters).

Defaults, and why:

- ``max_image_side`` 8192 px: 8K video (7680x4320) and the largest machine-vision sensors in robotic use fit;
  a longer side is almost certainly a corrupt header (OpenCV's own ceiling is 2^20).
- ``max_image_pixels`` 40,000,000: 8K UHD is 33.2 Mpx, common 31 Mpx industrial cameras fit; a 40 Mpx float32
  depth image is 160 MB, which bounds what a camera_info-sized buffer (lidar_depth's depth image) costs.
- ``max_points`` 4,000,000: a 128-beam spinning LiDAR gives ~260k points a scan and accumulated or dense solid-state
  clouds stay around 1-2M; the (N, 3) float32 copy the nodes make is then at most 48 MB.
- ``max_point_step`` 1024 bytes: PCL's largest point types are 48-64 bytes and vendor formats (Ouster, Livox,
  Hesai) stay under 64; 1024 leaves room for many custom fields (also below numpy's 2^31 structured-itemsize limit).
- ``max_data_bytes`` 256 MiB: the payload bytes one raw Image (``step * height``) or PointCloud2
  (``row_step * height``) may declare, and the decoded size of a compressed image (at up to 4 channels of its
  sample size); a 40 Mpx rgb8 image is 120 MB, 4M points of 64 bytes 256 MB.
- ``max_compressed_bytes`` 64 MiB: a CompressedImage's ``data``; an 8K PNG of a natural scene is ~50 MB at most.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.params import ParamSpec

MiB = 1 << 20

#: OpenCV's CV_CN_MAX: no OpenCV function (nor cv_bridge) handles an image with more channels than this.
MAX_CHANNELS = 512


@dataclass(frozen=True)
class MessageLimits:
    """Per-message bounds (pixels, points, bytes); each field is also the name of the node parameter that sets it."""

    max_image_side: int = 8192
    max_image_pixels: int = 40_000_000
    max_points: int = 4_000_000
    max_point_step: int = 1024
    max_data_bytes: int = 256 * MiB
    max_compressed_bytes: int = 64 * MiB

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"message limit {field.name} must be a positive integer, got {value!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MessageLimits:
        """The limits among ``params`` (a node's parameter values); names absent there keep their defaults."""
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})

    @staticmethod
    def _refuse(what: str, value: int, limit: int, parameter: str, unit: str) -> MessageFormatError:
        return MessageFormatError(f"{what} {value} exceeds the limit of {limit} {unit} (parameter {parameter})")

    def check_image(self, message: str, width: int, height: int) -> None:
        """Refuse an image of ``width`` x ``height`` pixels (``message`` names its fields, e.g. ``"Image"``)."""
        for name, value in (("width", width), ("height", height)):
            if value > self.max_image_side:
                raise self._refuse(f"{message}.{name}", value, self.max_image_side, "max_image_side", "pixels")
        if width * height > self.max_image_pixels:
            raise self._refuse(f"{message}.width x height = {width} x {height} =", width * height,
                               self.max_image_pixels, "max_image_pixels", "pixels")

    def check_points(self, message: str, width: int, height: int) -> None:
        """Refuse a cloud of ``width * height`` points, or a side longer than that (an empty cloud of 2^63 rows)."""
        for name, value in (("width", width), ("height", height)):
            if value > self.max_points:
                raise self._refuse(f"{message}.{name}", value, self.max_points, "max_points", "points")
        if width * height > self.max_points:
            raise self._refuse(f"{message}.width x height = {width} x {height} =", width * height, self.max_points,
                               "max_points", "points")

    def check_point_step(self, message: str, point_step: int) -> None:
        """Refuse a point of more than ``max_point_step`` bytes."""
        if point_step > self.max_point_step:
            raise self._refuse(f"{message}.point_step", point_step, self.max_point_step, "max_point_step", "bytes")

    def check_data_bytes(self, what: str, size: int) -> None:
        """Refuse a payload (``what`` says how its size was computed) of more than ``max_data_bytes``."""
        if size > self.max_data_bytes:
            raise self._refuse(what, size, self.max_data_bytes, "max_data_bytes", "bytes")

    def check_compressed_bytes(self, message: str, size: int) -> None:
        """Refuse compressed ``data`` of more than ``max_compressed_bytes``."""
        if size > self.max_compressed_bytes:
            raise self._refuse(f"{message}.data has", size, self.max_compressed_bytes, "max_compressed_bytes",
                               "bytes")


DEFAULT_LIMITS = MessageLimits()
"""The documented defaults; decoders use them unless given other limits."""

_DESCRIPTIONS = {
    "max_image_side": "Refuse an Image, CompressedImage or CameraInfo (after ROI/binning) whose width or height is "
                      "larger (pixels).",
    "max_image_pixels": "Refuse an Image, CompressedImage or CameraInfo with more pixels (width x height).",
    "max_points": "Refuse a PointCloud2 with more points (width x height).",
    "max_point_step": "Refuse a PointCloud2 whose point_step is larger (bytes).",
    "max_data_bytes": "Refuse an Image (step x height) or PointCloud2 (row_step x height) declaring more payload "
                      "bytes, or a CompressedImage that would decode to more (4 channels assumed).",
    "max_compressed_bytes": "Refuse a CompressedImage whose data is larger (bytes).",
}
# Upper bounds of the parameters: OpenCV's decoder ceilings (2^20 px a side, 2^30 px) and numpy's 2^31-byte itemsize.
_MAXIMA = {"max_image_side": 1 << 20, "max_image_pixels": 1 << 30, "max_points": (1 << 31) - 1,
           "max_point_step": 1 << 20, "max_data_bytes": 1 << 36, "max_compressed_bytes": (1 << 31) - 1}

#: One node parameter per limit (same name, the default above); the node base declares them on every node.
LIMIT_PARAMS: tuple[ParamSpec, ...] = tuple(
    ParamSpec(f.name, f.default, _DESCRIPTIONS[f.name], minimum=1, maximum=_MAXIMA[f.name])
    for f in fields(MessageLimits)
)
