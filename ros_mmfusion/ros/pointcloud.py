"""sensor_msgs/PointCloud2 <-> numpy structured arrays, through the ROS-free codec in ``ros_mmfusion.core.codec``."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from ros_mmfusion.core.codec.limits import DEFAULT_LIMITS, MessageLimits
from ros_mmfusion.core.codec.pointcloud import decode_cloud, encode_cloud, xyz_array
from ros_mmfusion.ros._msg_data import uint8_field


def pointcloud2_to_array(msg: PointCloud2, *, limits: MessageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Points of ``msg`` as a structured array (``(N,)`` if ``height == 1``, else ``(height, width)``).

    A view of ``msg.data`` unless a byte swap was needed; field units are the sender's (x, y, z in metres in
    ``msg.header.frame_id``). Raises MessageFormatError for malformed messages and sizes over ``limits`` (points,
    point_step, row_step, bytes; a node passes its own, from its parameters).
    """
    return decode_cloud(msg.height, msg.width, msg.fields, msg.is_bigendian, msg.point_step, msg.row_step, msg.data,
                        limits=limits)


def pointcloud2_to_xyz(
    msg: PointCloud2, remove_nans: bool = True, *, limits: MessageLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """``(N, 3)`` float32 x, y, z in metres (``msg.header.frame_id``), non-finite points dropped by default."""
    return xyz_array(pointcloud2_to_array(msg, limits=limits), remove_nans=remove_nans)


def array_to_pointcloud2(
    array: np.ndarray, header: Header | None = None, *, is_bigendian: bool | None = None
) -> PointCloud2:
    """A PointCloud2 of a structured array (``(N,)`` unorganized or ``(H, W)`` organized), copied once.

    Field layout (offsets, padding) follows the dtype; ``is_dense`` is computed from non-finite x/y/z.
    """
    fields = encode_cloud(array, is_bigendian=is_bigendian)
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height = fields.height
    msg.width = fields.width
    msg.fields = [
        PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in fields.fields
    ]
    msg.is_bigendian = fields.is_bigendian
    msg.point_step = fields.point_step
    msg.row_step = fields.row_step
    msg.data = uint8_field(fields.data)
    msg.is_dense = fields.is_dense
    return msg
