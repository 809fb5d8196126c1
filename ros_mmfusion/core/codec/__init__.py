"""ROS-free message payload codecs: Image/CompressedImage, PointCloud2, CameraInfo and 3D-box geometry.

Every function takes or returns plain field values named like the message fields, so rclpy messages
(``ros_mmfusion.ros``) and rosbags' message dataclasses (the synthetic world) share one implementation.
Malformed payloads, and messages over the :class:`MessageLimits` the decoders take, raise
:class:`ros_mmfusion.core.errors.MessageFormatError`.
"""
from ros_mmfusion.core.codec.boxes import (
    BOX_EDGES,
    box_corners,
    box_line_list,
    class_color,
    quaternion_to_yaw,
    yaw_to_quaternion,
)
from ros_mmfusion.core.codec.camera import CameraIntrinsics, RegionOfInterest, intrinsics_from_fields
from ros_mmfusion.core.codec.image import (
    RGB_ENCODINGS,
    CompressedFormat,
    ImageFields,
    decode_compressed,
    decode_compressed_plane,
    decode_compressed_rgb,
    decode_image,
    decode_rgb,
    encode_compressed,
    encode_image,
    encoding_format,
    parse_compressed_format,
)
from ros_mmfusion.core.codec.limits import DEFAULT_LIMITS, LIMIT_PARAMS, MessageLimits
from ros_mmfusion.core.codec.pointcloud import (
    CloudField,
    CloudFields,
    PointFieldType,
    decode_cloud,
    dtype_to_fields,
    encode_cloud,
    field_values,
    fields_to_dtype,
    pack_rgb,
    structured_cloud,
    unpack_rgb,
    xyz_array,
)

__all__ = [
    "BOX_EDGES",
    "CameraIntrinsics",
    "CloudField",
    "CloudFields",
    "CompressedFormat",
    "DEFAULT_LIMITS",
    "ImageFields",
    "LIMIT_PARAMS",
    "MessageLimits",
    "PointFieldType",
    "RGB_ENCODINGS",
    "RegionOfInterest",
    "box_corners",
    "box_line_list",
    "class_color",
    "decode_cloud",
    "decode_compressed",
    "decode_compressed_plane",
    "decode_compressed_rgb",
    "decode_image",
    "decode_rgb",
    "dtype_to_fields",
    "encode_cloud",
    "encode_compressed",
    "encode_image",
    "encoding_format",
    "field_values",
    "fields_to_dtype",
    "intrinsics_from_fields",
    "pack_rgb",
    "parse_compressed_format",
    "quaternion_to_yaw",
    "structured_cloud",
    "unpack_rgb",
    "xyz_array",
    "yaw_to_quaternion",
]
