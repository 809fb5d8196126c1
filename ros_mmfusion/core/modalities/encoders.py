"""X-modality encoders for RGB-X fusion segmentation, chosen by name from configuration.

Every encoder turns one raw X input into the ``(H, W, 3)`` uint8 image that
:func:`ros_mmfusion.core.segmentation.preprocess.x_input` normalises for the model, pixel-aligned with the camera
whose RGB image it accompanies (this module does not resize; the caller resizes both images to the model input):

======================  ============================================================  ==========================
name                    raw input                                                     neutral (missing X)
======================  ============================================================  ==========================
``"depth"``             depth image, ``32FC1`` metres / ``16UC1`` millimetres          ``"no_data"``: all 0
``"depth_hha"``         the same depth image + the camera intrinsics                  ``"mean"``: (124, 116, 104)
``"thermal"``           ``mono8`` / ``mono16`` / ``32FC1`` thermal image               ``"mean"``: (124, 116, 104)
``"lidar"``             LiDAR points (LiDAR frame) + intrinsics + camera<-LiDAR        ``"no_data"``: all 0
======================  ============================================================  ==========================

``neutral(height, width)`` is the input used when the modality is missing (see the segmentation node's
missing-modality policy). Two kinds, selectable per encoder with ``neutral_fill``:

- ``"no_data"``: zeros, what the encoder itself emits for pixels without a measurement (depth holes, no LiDAR
  return), so a depth-trained model sees "nothing measured anywhere";
- ``"mean"``: the ImageNet mean colour ``round(255 * (0.485, 0.456, 0.406))``, which the upstream normalisation maps
  to ~0 in every channel (|x| < 0.01), i.e. a zero input to the X branch. Used where the encoding has no "no data"
  value that training images contained (HHA, thermal).

Construct with :func:`make_encoder` (``ConfigError`` for an unknown name or parameter, or an invalid value); encode
with ``encoder.encode(raw, camera, **context)``. Malformed inputs raise ``MessageFormatError``; a camera or extrinsic
the encoder needs but was not given raises ``ConfigError``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import cv2
import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.geometry import PinholeCamera, Transform
from ros_mmfusion.core.modalities.depth import (
    HHA_CHANNEL_ORDERS,
    HHA_SCHEMES,
    as_image_plane,
    depth_metres,
    encode_depth,
    encode_hha,
    gravity_up,
    gupta_hha_channels,
    hha_channels,
    quantize_gupta,
)
from ros_mmfusion.core.modalities.lidar import lidar_depth_image, lidar_points_xyz
from ros_mmfusion.core.modalities.thermal import THERMAL_ENCODINGS, encode_thermal
from ros_mmfusion.core.models.imagenet import IMAGENET_MEAN

NEUTRAL_FILLS = ("no_data", "mean")
#: The "mean" neutral colour: ImageNet mean on the 0..255 scale, normalising to ~0 per channel.
MEAN_COLOUR = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)


@runtime_checkable
class XEncoder(Protocol):
    """What the segmentation node needs from an X-modality encoder."""

    name: ClassVar[str]

    def encode(self, raw: np.ndarray, camera: PinholeCamera | None = None, **context: Any) -> np.ndarray:
        """``(H, W, 3)`` uint8 X image aligned with ``camera``'s pixels (H, W from ``raw`` or ``camera``)."""
        ...

    def neutral(self, height: int, width: int) -> np.ndarray:
        """``(height, width, 3)`` uint8 X image standing in for a missing modality."""
        ...


def neutral_image(height: int, width: int, fill: str) -> np.ndarray:
    """``(height, width, 3)`` uint8: zeros for ``"no_data"``, :data:`MEAN_COLOUR` for ``"mean"``."""
    if fill not in NEUTRAL_FILLS:
        raise ConfigError(f"neutral_fill {fill!r}: expected one of {NEUTRAL_FILLS}")
    if height <= 0 or width <= 0:
        raise ConfigError(f"neutral image size must be positive, got {width}x{height}")
    out = np.zeros((height, width, 3), np.uint8)
    if fill == "mean":
        out[...] = MEAN_COLOUR
    return out


def replicate(plane: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 -> ``(H, W, 3)`` with the plane in every channel (upstream's ``cv2.merge([x, x, x])``)."""
    return cv2.merge([plane, plane, plane])


def as_transform(value: Any, what: str) -> Transform | None:
    """A Transform from a Transform, a 4x4 matrix, or 7 numbers ``x y z qx qy qz qw`` (as in the param files)."""
    if value is None or isinstance(value, Transform):
        return value
    array = np.asarray(value, dtype=np.float64)
    if array.shape == (4, 4):
        return Transform.from_matrix(array)
    if array.shape == (7,) and abs(np.linalg.norm(array[3:]) - 1.0) < 1e-3:
        return Transform.from_xyz_quat(array[:3], array[3:])
    raise ConfigError(f"{what}: expected a Transform, a 4x4 matrix or x y z qx qy qz qw (unit quaternion), "
                      f"got {array.shape} {value!r}")


def _depth_encoding(raw: np.ndarray, encoding: str | None) -> str:
    if encoding is not None:
        return encoding
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint16:
        return "16UC1"
    if isinstance(raw, np.ndarray) and np.issubdtype(raw.dtype, np.floating):
        return "32FC1"
    dtype = raw.dtype if isinstance(raw, np.ndarray) else type(raw).__name__
    raise MessageFormatError(f"depth image: cannot infer the encoding of a {dtype} array; pass encoding='32FC1' "
                             "(metres) or '16UC1' (millimetres)")


def _check_positive(**values: float) -> None:
    for key, value in values.items():
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ConfigError(f"{key} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class DepthEncoder:
    """Depth as one 8-bit channel replicated to three (upstream CMX's raw-depth input, ``x_is_single_channel``).

    Input: ``32FC1`` metres (NaN/inf/<=0 = no data) or ``16UC1`` millimetres (0 = no data), ``(H, W)`` or
    ``(H, W, 1)``; ``encoding=None`` infers it from the dtype (float -> 32FC1, uint16 -> 16UC1).
    Output: 0 = no data; valid depths 1..255 linear over ``0..max_depth`` metres (10 m suits indoor RGB-D, 80 m
    outdoor), saturating beyond. ``near_bright=False``: far is bright (value proportional to depth);
    ``near_bright=True``: near is bright. ``camera`` is not needed.
    """

    name: ClassVar[str] = "depth"
    max_depth: float = 10.0
    near_bright: bool = False
    neutral_fill: str = "no_data"

    def __post_init__(self) -> None:
        _check_positive(max_depth=self.max_depth)
        neutral_image(1, 1, self.neutral_fill)

    def encode(self, raw: np.ndarray, camera: PinholeCamera | None = None, *,
               encoding: str | None = None) -> np.ndarray:
        return self.encode_metres(depth_metres(raw, _depth_encoding(raw, encoding)))

    def encode_metres(self, depth_m: np.ndarray) -> np.ndarray:
        """The encoding of a float depth image in metres (0/NaN/inf = no data)."""
        return replicate(encode_depth(as_image_plane(depth_m, "depth image"), self.max_depth, self.near_bright))

    def neutral(self, height: int, width: int) -> np.ndarray:
        return neutral_image(height, width, self.neutral_fill)


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class HHAEncoder:
    """Depth as HHA: horizontal disparity, height above the floor, angle of the surface normal with gravity.

    Input as :class:`DepthEncoder` plus ``camera`` (the depth image's intrinsics, same size; required). Channels
    (``channel_order="dha"``: 0 disparity, 1 height, 2 angle, i.e. R, G, B as the published HHA PNGs store them;
    ``"ahd"`` reversed, what CMX's network saw after reading those PNGs with OpenCV), each uint8. Two schemes:

    ``hha_scheme="gupta"`` (default): Gupta et al., ECCV 2014, as their released code computes it (the encoding of
    the NYU Depth V2 HHA images behind CMX's NYU checkpoints; :func:`~ros_mmfusion.core.modalities.depth.
    gupta_hha_channels`): disparity ``31000 / z`` with ``z`` in cm clamped to >= 100 cm; height above the floor in cm;
    angle between the normal and gravity in degrees + 38 (NaN normal: 180 deg); each rounded and saturated. Gravity
    is re-estimated from the normals (``refine_gravity``, default on) starting from ``camera_from_body`` (else a
    level camera); the floor is ``camera_height`` below the camera when given, else the ``floor_percentile``-th
    (default 0: the lowest) point, with upstream's 130 cm default when that is less than 90 cm below the camera.
    ``min_depth``/``max_height`` are not used. Pixels without depth encode as upstream's code encodes a zero depth.

    ``hha_scheme="legacy"``: this suite's first scales (model packages trained on them say so in their metadata):
    disparity ``255 * min_depth / z``, height ``255 * h / max_height``, angle ``255 * a / 180``; invalid pixels 0;
    normals from a ``normal_window`` (default 5) total-least-squares fit; gravity refined only with
    ``refine_gravity=True``; floor at the ``floor_percentile``-th (default 1) point.
    """

    name: ClassVar[str] = "depth_hha"
    hha_scheme: str = "gupta"
    min_depth: float = 0.5
    max_height: float = 3.0
    camera_height: float | None = None
    camera_from_body: Any = None
    refine_gravity: bool | None = None
    floor_percentile: float | None = None
    normal_window: int = 5
    channel_order: str = "dha"
    neutral_fill: str = "mean"

    def __post_init__(self) -> None:
        if self.hha_scheme not in HHA_SCHEMES:
            raise ConfigError(f"hha_scheme {self.hha_scheme!r}: expected one of {HHA_SCHEMES}")
        _check_positive(min_depth=self.min_depth, max_height=self.max_height)
        if self.camera_height is not None:
            _check_positive(camera_height=self.camera_height)
        if self.floor_percentile is None:
            object.__setattr__(self, "floor_percentile", 0.0 if self.hha_scheme == "gupta" else 1.0)
        if self.refine_gravity is None:
            object.__setattr__(self, "refine_gravity", self.hha_scheme == "gupta")
        if not 0 <= self.floor_percentile <= 50:
            raise ConfigError(f"floor_percentile must be in [0, 50], got {self.floor_percentile}")
        if not isinstance(self.normal_window, int) or self.normal_window < 3 or self.normal_window % 2 == 0:
            raise ConfigError(f"normal_window must be an odd integer >= 3, got {self.normal_window!r}")
        if self.channel_order not in HHA_CHANNEL_ORDERS:
            raise ConfigError(f"channel_order {self.channel_order!r}: expected one of {HHA_CHANNEL_ORDERS}")
        if self.camera_from_body is not None and not isinstance(self.camera_from_body, Transform):
            array = np.asarray(self.camera_from_body, dtype=np.float64)
            value = array if array.shape == (3, 3) else as_transform(self.camera_from_body, "camera_from_body")
            object.__setattr__(self, "camera_from_body", value)
        gravity_up(self.camera_from_body)
        neutral_image(1, 1, self.neutral_fill)

    def encode(self, raw: np.ndarray, camera: PinholeCamera | None = None, *, encoding: str | None = None,
               camera_from_body: Transform | np.ndarray | None = None,
               camera_height: float | None = None) -> np.ndarray:
        if camera is None:
            raise ConfigError("depth_hha needs the camera intrinsics (CameraInfo) of the depth image")
        depth = depth_metres(raw, _depth_encoding(raw, encoding))
        camera_height = self.camera_height if camera_height is None else camera_height
        camera_from_body = self.camera_from_body if camera_from_body is None else camera_from_body
        if self.hha_scheme == "gupta":
            planes = gupta_hha_channels(depth, camera, camera_height=camera_height, camera_from_body=camera_from_body,
                                        estimate_gravity=self.refine_gravity, floor_percentile=self.floor_percentile)
            return quantize_gupta(planes, self.channel_order)
        channels = hha_channels(
            depth, camera, camera_height=camera_height, camera_from_body=camera_from_body,
            refine=self.refine_gravity, floor_percentile=self.floor_percentile, normal_window=self.normal_window)
        return encode_hha(channels, self.min_depth, self.max_height, self.channel_order)

    def neutral(self, height: int, width: int) -> np.ndarray:
        return neutral_image(height, width, self.neutral_fill)


@dataclass(frozen=True)
class ThermalEncoder:
    """Thermal image as one white-hot 8-bit channel replicated to three (upstream's MFNet-style input).

    Input: ``mono8``/``8UC1`` uint8, ``mono16``/``16UC1`` uint16 (raw counts or e.g. centikelvin) or ``32FC1``
    float; ``encoding=None`` infers it from the dtype. Normalisation: the ``percentiles`` (low, high) of each frame
    map to 0..255 (default 1st..99th), or, when ``window_k`` = (cold, hot) kelvin is set, that fixed window with
    ``temperature_K = value * kelvin_per_count + kelvin_offset`` (both required then). ``clahe_clip`` > 0 adds CLAHE.
    NaN/inf pixels encode as 0. ``camera`` is not needed.
    """

    name: ClassVar[str] = "thermal"
    percentiles: tuple[float, float] = (1.0, 99.0)
    window_k: tuple[float, float] | None = None
    kelvin_per_count: float | None = None
    kelvin_offset: float = 0.0
    clahe_clip: float = 0.0
    clahe_tiles: int = 8
    neutral_fill: str = "mean"

    def __post_init__(self) -> None:
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        object.__setattr__(self, "percentiles", (float(low), float(high)))
        if self.window_k is not None:
            cold, hot = self.window_k
            if not 0 <= cold < hot:
                raise ConfigError(f"window_k must be (cold, hot) kelvin with 0 <= cold < hot, got {self.window_k}")
            if self.kelvin_per_count is None:
                raise ConfigError("window_k needs kelvin_per_count (the unit of the thermal values, e.g. 0.01 "
                                  "for centikelvin)")
            object.__setattr__(self, "window_k", (float(cold), float(hot)))
        if self.kelvin_per_count is not None:
            _check_positive(kelvin_per_count=self.kelvin_per_count)
        if self.clahe_clip < 0 or not isinstance(self.clahe_tiles, int) or self.clahe_tiles < 1:
            raise ConfigError(f"clahe_clip must be >= 0 and clahe_tiles a positive integer, got {self.clahe_clip}, "
                              f"{self.clahe_tiles!r}")
        neutral_image(1, 1, self.neutral_fill)

    def encode(self, raw: np.ndarray, camera: PinholeCamera | None = None, *,
               encoding: str | None = None) -> np.ndarray:
        if encoding is None:
            dtype = raw.dtype if isinstance(raw, np.ndarray) else None
            encoding = {np.dtype(np.uint8): "mono8", np.dtype(np.uint16): "mono16"}.get(dtype)
            if encoding is None and dtype is not None and np.issubdtype(dtype, np.floating):
                encoding = "32FC1"
            if encoding is None:
                raise MessageFormatError(f"thermal image: cannot infer the encoding of {dtype or type(raw).__name__}; "
                                         f"pass one of {', '.join(THERMAL_ENCODINGS)}")
        plane = encode_thermal(raw, encoding, percentiles=self.percentiles, window_k=self.window_k,
                               kelvin_per_count=self.kelvin_per_count, kelvin_offset=self.kelvin_offset,
                               clahe_clip=self.clahe_clip, clahe_tiles=self.clahe_tiles)
        return replicate(plane)

    def neutral(self, height: int, width: int) -> np.ndarray:
        return neutral_image(height, width, self.neutral_fill)


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class LidarEncoder:
    """LiDAR points projected into the camera, densified, then encoded exactly as :class:`DepthEncoder` does.

    Input: points in the LiDAR frame, metres (a structured cloud with x, y, z, or an ``(N, 3+)`` array), the camera
    (required) and ``camera_from_lidar`` (camera optical <- LiDAR; here or per call, required). Points beyond
    ``max_range`` metres are dropped; ``fill_kernel`` > 1 fills empty pixels with the nearest depth in that window
    (0/1: sparse). The depth image (:func:`lidar_depth_image`) is then encoded with ``max_depth``/``near_bright``,
    so a model trained on depth images can take LiDAR. Pixels without a return are 0.
    """

    name: ClassVar[str] = "lidar"
    max_depth: float = 80.0
    near_bright: bool = False
    max_range: float = 100.0
    fill_kernel: int = 5
    camera_from_lidar: Any = None
    neutral_fill: str = "no_data"

    def __post_init__(self) -> None:
        _check_positive(max_range=self.max_range)
        if not isinstance(self.fill_kernel, int) or self.fill_kernel < 0:
            raise ConfigError(f"fill_kernel must be a non-negative integer, got {self.fill_kernel!r}")
        object.__setattr__(self, "camera_from_lidar", as_transform(self.camera_from_lidar, "camera_from_lidar"))
        self.depth_encoder()

    def depth_encoder(self) -> DepthEncoder:
        return DepthEncoder(max_depth=self.max_depth, near_bright=self.near_bright, neutral_fill=self.neutral_fill)

    def depth_image(self, raw: np.ndarray, camera: PinholeCamera | None,
                    camera_from_lidar: Transform | None = None) -> np.ndarray:
        """The ``(H, W)`` float32 depth image in metres (0 = no return) that :meth:`encode` encodes."""
        if camera is None:
            raise ConfigError("lidar needs the camera intrinsics (CameraInfo) to project the points into")
        extrinsic = as_transform(camera_from_lidar, "camera_from_lidar") or self.camera_from_lidar
        if extrinsic is None:
            raise ConfigError("lidar needs camera_from_lidar (camera optical frame <- LiDAR frame)")
        return lidar_depth_image(lidar_points_xyz(raw), extrinsic, camera, self.max_range, self.fill_kernel)

    def encode(self, raw: np.ndarray, camera: PinholeCamera | None = None, *,
               camera_from_lidar: Transform | None = None) -> np.ndarray:
        return self.depth_encoder().encode_metres(self.depth_image(raw, camera, camera_from_lidar))

    def neutral(self, height: int, width: int) -> np.ndarray:
        return neutral_image(height, width, self.neutral_fill)


ENCODERS: dict[str, type] = {cls.name: cls for cls in (DepthEncoder, HHAEncoder, ThermalEncoder, LidarEncoder)}


def make_encoder(name: str, params: Mapping[str, Any] | None = None) -> XEncoder:
    """The encoder called ``name`` ("depth", "depth_hha", "thermal", "lidar") with ``params`` (its field names).

    YAML lists are accepted for tuple parameters (``percentiles: [1, 99]``) and for transforms (7 numbers).
    ConfigError for an unknown name or parameter, or an invalid value.
    """
    cls = ENCODERS.get(name)
    if cls is None:
        raise ConfigError(f"X encoder {name!r} is unknown; expected one of {', '.join(ENCODERS)}")
    params = dict(params or {})
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ConfigError(f"X encoder {name!r}: unknown parameter(s) {unknown}; expected some of {sorted(fields)}")
    for key in ("percentiles", "window_k"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    try:
        return cls(**params)
    except (TypeError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"X encoder {name!r}: invalid parameters {params}: {error}") from error


__all__ = ["ENCODERS", "MEAN_COLOUR", "NEUTRAL_FILLS", "DepthEncoder", "HHAEncoder", "LidarEncoder", "ThermalEncoder",
           "XEncoder", "as_transform", "make_encoder", "neutral_image", "replicate"]
