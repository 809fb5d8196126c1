"""sensor_msgs/CameraInfo <-> :class:`~ros_mmfusion.core.codec.camera.CameraIntrinsics`."""
from __future__ import annotations

from sensor_msgs.msg import CameraInfo, RegionOfInterest
from std_msgs.msg import Header

from ros_mmfusion.core.codec.camera import CameraIntrinsics, intrinsics_from_fields
from ros_mmfusion.core.codec.limits import DEFAULT_LIMITS, MessageLimits

__all__ = ["CameraIntrinsics", "camera_info_to_intrinsics", "intrinsics_to_camera_info"]


def camera_info_to_intrinsics(msg: CameraInfo, *, limits: MessageLimits = DEFAULT_LIMITS) -> CameraIntrinsics:
    """Validated intrinsics of ``msg`` (pixels; optical frame ``msg.header.frame_id``).

    Raises MessageFormatError for an uncalibrated camera (K all zeros), inconsistent fields, or an image size over
    ``limits`` (the sensor's and the published one after ROI/binning); works on rosbags' CameraInfo dataclasses too
    (same field names).
    """
    return intrinsics_from_fields(
        msg.height, msg.width, msg.distortion_model, msg.d, msg.k, msg.r, msg.p,
        msg.binning_x, msg.binning_y, msg.roi, msg.header.frame_id, limits=limits,
    )


def intrinsics_to_camera_info(intrinsics: CameraIntrinsics, header: Header | None = None) -> CameraInfo:
    """A CameraInfo carrying ``intrinsics``; ``header`` defaults to an empty one with ``intrinsics.frame_id``."""
    msg = CameraInfo()
    msg.header = header if header is not None else Header(frame_id=intrinsics.frame_id)
    msg.height = intrinsics.height
    msg.width = intrinsics.width
    msg.distortion_model = intrinsics.distortion_model
    msg.d = intrinsics.d.astype(float).tolist()
    msg.k = intrinsics.k.reshape(-1).tolist()
    msg.r = intrinsics.r.reshape(-1).tolist()
    msg.p = intrinsics.p.reshape(-1).tolist()
    msg.binning_x = intrinsics.binning_x
    msg.binning_y = intrinsics.binning_y
    roi = intrinsics.roi
    msg.roi = RegionOfInterest(
        x_offset=roi.x_offset, y_offset=roi.y_offset, height=roi.height, width=roi.width, do_rectify=roi.do_rectify
    )
    return msg
