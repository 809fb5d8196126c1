"""sensor_msgs/Image and CompressedImage <-> numpy, through the ROS-free codec in ``ros_mmfusion.core.codec``."""
from __future__ import annotations

from typing import Literal

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ros_mmfusion.core.codec.image import decode_compressed, decode_image, encode_compressed, encode_image
from ros_mmfusion.core.codec.limits import DEFAULT_LIMITS, MessageLimits
from ros_mmfusion.ros._msg_data import uint8_field


def image_to_numpy(msg: Image, *, limits: MessageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Pixels of ``msg`` as ``(H, W)`` or ``(H, W, C)``, a view of ``msg.data`` unless a byte swap was needed.

    Units are the encoding's (``16UC1`` depth in mm, ``32FC1`` in m); copy before modifying. Raises
    MessageFormatError for malformed messages and sizes over ``limits`` (a node passes its own, from its
    parameters; see :func:`ros_mmfusion.core.codec.decode_image`).
    """
    return decode_image(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data, limits=limits)


def numpy_to_image(
    array: np.ndarray,
    encoding: str,
    header: Header | None = None,
    *,
    is_bigendian: bool | None = None,
    step: int | None = None,
) -> Image:
    """An Image holding ``array`` in ``encoding`` (copied once into the message); ``header`` defaults to empty.

    See :func:`ros_mmfusion.core.codec.encode_image` for the shapes and dtypes each encoding takes.
    """
    fields = encode_image(array, encoding, is_bigendian=is_bigendian, step=step)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height = fields.height
    msg.width = fields.width
    msg.encoding = fields.encoding
    msg.is_bigendian = fields.is_bigendian
    msg.step = fields.step
    msg.data = uint8_field(fields.data)
    return msg


def compressed_to_numpy(
    msg: CompressedImage, order: Literal["rgb", "bgr"] = "rgb", *, limits: MessageLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Decode a CompressedImage: colour as ``(H, W, 3)`` uint8 RGB by default; its header's size is checked against
    ``limits`` before decoding (see ``core.codec.decode_compressed``)."""
    return decode_compressed(msg.format, msg.data, order=order, limits=limits)


def numpy_to_compressed(
    array: np.ndarray,
    codec: Literal["jpeg", "png"] = "jpeg",
    header: Header | None = None,
    *,
    order: Literal["rgb", "bgr"] = "rgb",
    quality: int = 90,
) -> CompressedImage:
    """A CompressedImage of ``array`` (colour in ``order``, or grey), ``format`` as image_transport writes it."""
    fmt, data = encode_compressed(array, codec, order=order, quality=quality)
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = fmt
    msg.data = uint8_field(data)
    return msg
