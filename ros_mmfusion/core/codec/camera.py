"""sensor_msgs/CameraInfo payloads -> validated pinhole intrinsics, without ROS.

Conventions of CameraInfo: ``k`` is the 3x3 intrinsic matrix of the raw (distorted) image in pixels, ``d`` the
distortion coefficients of ``distortion_model``, ``r`` the 3x3 rectification rotation (stereo), ``p`` the 3x4
projection of the rectified image; all refer to the full-resolution sensor, before ``binning_*`` and ``roi`` are
applied. Points are in the camera's optical frame (x right, y down, z forward, metres).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ros_mmfusion.core.codec._buffers import as_count
from ros_mmfusion.core.codec.limits import DEFAULT_LIMITS, MessageLimits
from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.core.geometry import PinholeCamera

# Coefficient counts OpenCV accepts for each model; an empty D means "no distortion" for any model.
_DISTORTION_LENGTHS: dict[str, tuple[int, ...]] = {
    "plumb_bob": (0, 4, 5, 8, 12, 14),
    "rational_polynomial": (0, 8, 12, 14),
    "equidistant": (0, 4),
}
# Models PinholeCamera can project with non-zero coefficients.
_PROJECTABLE_MODELS = tuple(_DISTORTION_LENGTHS)


@dataclass(frozen=True)
class RegionOfInterest:
    """CameraInfo ``roi`` in full-resolution pixels; all zeros (or the full size) means the whole sensor."""

    x_offset: int = 0
    y_offset: int = 0
    height: int = 0
    width: int = 0
    do_rectify: bool = False


@dataclass(frozen=True, eq=False)
class CameraIntrinsics:
    """Validated calibration of one camera (see the module docstring for the conventions).

    ``r`` is the identity and ``p`` is ``[k | 0]`` when the message left them all zero (uncalibrated stereo fields,
    common for monocular drivers); ``p_from_k`` records that. ``binning_*`` of 0 are stored as 1 (no subsampling).
    """

    height: int
    width: int
    k: np.ndarray
    d: np.ndarray
    distortion_model: str
    r: np.ndarray
    p: np.ndarray
    binning_x: int = 1
    binning_y: int = 1
    roi: RegionOfInterest = RegionOfInterest()
    frame_id: str = ""
    p_from_k: bool = False

    @property
    def fx(self) -> float:
        return float(self.k[0, 0])

    @property
    def fy(self) -> float:
        return float(self.k[1, 1])

    @property
    def cx(self) -> float:
        return float(self.k[0, 2])

    @property
    def cy(self) -> float:
        return float(self.k[1, 2])

    @property
    def is_distorted(self) -> bool:
        """Whether any distortion coefficient is non-zero."""
        return bool(np.any(self.d != 0))

    def image_k(self) -> np.ndarray:
        """K of the image actually published: ``k`` shifted by the ROI offset and divided by the binning factors."""
        k = self.k.copy()
        k[0, 2] -= self.roi.x_offset
        k[1, 2] -= self.roi.y_offset
        k[0, :] /= self.binning_x
        k[1, :] /= self.binning_y
        return k

    def pinhole(self) -> PinholeCamera:
        """The :class:`~ros_mmfusion.core.geometry.PinholeCamera` of the published (ROI/binned, raw) image.

        Raises MessageFormatError when ``d`` has non-zero coefficients of a model it cannot project (one other than
        plumb_bob, rational_polynomial and equidistant, e.g. ``fisheye``).
        """
        if self.is_distorted and self.distortion_model not in _PROJECTABLE_MODELS:
            raise MessageFormatError(
                f"CameraInfo.distortion_model {self.distortion_model!r} with non-zero d cannot be projected: "
                f"supported models are {', '.join(_PROJECTABLE_MODELS)} (or all-zero d)"
            )
        width, height = self.image_size()
        return PinholeCamera(k=self.image_k(), width=width, height=height, d=self.d.copy(),
                             distortion_model=self.distortion_model)

    def image_size(self) -> tuple[int, int]:
        """(width, height) in pixels of the image actually published (ROI and binning applied)."""
        width = self.roi.width if self.roi.width else self.width
        height = self.roi.height if self.roi.height else self.height
        return width // self.binning_x, height // self.binning_y


def _floats(values: Any, name: str) -> np.ndarray:
    """A message's float64[] field as a flat array; MessageFormatError for values that are not numbers."""
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MessageFormatError(f"CameraInfo.{name} must be a sequence of numbers: {exc}") from None


def _matrix(values: Any, size: int, shape: tuple[int, int], name: str) -> np.ndarray:
    array = _floats(values, name)
    if array.size != size:
        raise MessageFormatError(f"CameraInfo.{name} has {array.size} values, expected {size}")
    if not np.isfinite(array).all():
        raise MessageFormatError(f"CameraInfo.{name} contains non-finite values: {array.tolist()}")
    return array.reshape(shape)


def intrinsics_from_fields(
    height: int,
    width: int,
    distortion_model: str,
    d: Any,
    k: Any,
    r: Any,
    p: Any,
    binning_x: int = 0,
    binning_y: int = 0,
    roi: Any = None,
    frame_id: str = "",
    *,
    limits: MessageLimits = DEFAULT_LIMITS,
) -> CameraIntrinsics:
    """Validate CameraInfo fields into :class:`CameraIntrinsics`; ``roi``: any object with RegionOfInterest's fields.

    Raises MessageFormatError when ``k`` is all zeros (the camera is uncalibrated), when fx/fy are not positive or
    the last row of ``k`` is not ``[0, 0, 1]``, when an array has the wrong length or a non-finite value, or when
    ``d``'s length does not fit a known ``distortion_model``; and for sizes: an empty image, a ROI outside the sensor,
    binning that leaves no pixel, or a sensor or published image over ``limits`` (width/height/pixels), checked
    before anything is allocated. Unknown models are kept as they are (:meth:`CameraIntrinsics.pinhole` refuses them
    with non-zero ``d``).
    """
    k_matrix = _matrix(k, 9, (3, 3), "k")
    if not k_matrix.any():
        raise MessageFormatError("CameraInfo.k is all zeros: the camera is uncalibrated")
    if k_matrix[0, 0] <= 0 or k_matrix[1, 1] <= 0:
        raise MessageFormatError(
            f"CameraInfo.k has non-positive focal lengths fx={k_matrix[0, 0]}, fy={k_matrix[1, 1]} (pixels)"
        )
    if not np.allclose(k_matrix[2], (0.0, 0.0, 1.0)):
        raise MessageFormatError(f"CameraInfo.k's last row is {k_matrix[2].tolist()}, expected [0, 0, 1]")
    d_array = _floats(d, "d")
    if not np.isfinite(d_array).all():
        raise MessageFormatError(f"CameraInfo.d contains non-finite values: {d_array.tolist()}")
    allowed = _DISTORTION_LENGTHS.get(distortion_model)
    if allowed is not None and d_array.size not in allowed:
        raise MessageFormatError(
            f"CameraInfo.d has {d_array.size} coefficients, but {distortion_model!r} takes one of {allowed}"
        )
    r_matrix = _matrix(r, 9, (3, 3), "r")
    if not r_matrix.any():
        r_matrix = np.eye(3)
    p_matrix = _matrix(p, 12, (3, 4), "p")
    p_from_k = not p_matrix.any()
    if p_from_k:
        p_matrix = np.hstack([k_matrix, np.zeros((3, 1))])
    height, width = as_count(height, "CameraInfo.height"), as_count(width, "CameraInfo.width")
    limits.check_image("CameraInfo", width, height)
    if width == 0 or height == 0:
        raise MessageFormatError(f"CameraInfo.width x height is {width} x {height}: a calibrated camera has pixels")
    region = RegionOfInterest()
    if roi is not None:
        region = RegionOfInterest(
            as_count(roi.x_offset, "CameraInfo.roi.x_offset"),
            as_count(roi.y_offset, "CameraInfo.roi.y_offset"),
            as_count(roi.height, "CameraInfo.roi.height"),
            as_count(roi.width, "CameraInfo.roi.width"),
            bool(roi.do_rectify),
        )
    for axis, offset, extent, size in (("x", region.x_offset, region.width, width),
                                       ("y", region.y_offset, region.height, height)):
        if offset + (extent or size) > size:
            side = "width" if axis == "x" else "height"
            raise MessageFormatError(f"CameraInfo.roi.{axis}_offset {offset} + {side} {extent or size} lies outside "
                                     f"the {size}-pixel sensor {side}")
    intrinsics = CameraIntrinsics(
        height=height,
        width=width,
        k=k_matrix,
        d=d_array,
        distortion_model=str(distortion_model),
        r=r_matrix,
        p=p_matrix,
        binning_x=max(1, as_count(binning_x, "CameraInfo.binning_x")),
        binning_y=max(1, as_count(binning_y, "CameraInfo.binning_y")),
        roi=region,
        frame_id=frame_id,
        p_from_k=p_from_k,
    )
    published_width, published_height = intrinsics.image_size()
    if published_width == 0 or published_height == 0:
        raise MessageFormatError(
            f"CameraInfo.binning_x x binning_y = {intrinsics.binning_x} x {intrinsics.binning_y} leaves no pixel of "
            f"the {region.width or width} x {region.height or height} image"
        )
    return intrinsics
