"""sensor_msgs/Image and CompressedImage <-> numpy, through the ROS-free codec in ``ros_mmfusion.core.codec``."""
from __future__ import annotations

from typing import Literal

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ros_mmfusion.core.codec.image import (
    decode_compressed,
    decode_compressed_plane,
    decode_compressed_rgb,
    decode_image,
    decode_rgb,
    encode_compressed,
    encode_image,
)
from ros_mmfusion.core.codec.limits import DEFAULT_LIMITS, MessageLimits
from ros_mmfusion.core.params import ParamSpec
from ros_mmfusion.ros._msg_data import uint8_field

TRANSPORTS = ("raw", "compressed")
"""Image transports an image input takes, named like image_transport's: ``raw`` is sensor_msgs/Image on the input's
topic, ``compressed`` sensor_msgs/CompressedImage on ``<topic>/compressed`` (JPEG/PNG, and compressed_depth's
``compressedDepth`` PNG for depth)."""


def transport_param(name: str, what: str) -> ParamSpec:
    """The read-only parameter ``name`` choosing the transport of the image input ``what`` (see :data:`TRANSPORTS`)."""
    return ParamSpec(name, "raw", f"Transport of {what}: 'raw' (sensor_msgs/Image on the topic) or 'compressed' "
                     "(sensor_msgs/CompressedImage on <topic>/compressed, as image_transport names it).",
                     choices=TRANSPORTS, read_only=True)


def transport_topic(topic: str, transport: str) -> str:
    """The topic an image input of base topic ``topic`` (resolved, after remapping) subscribes with ``transport``."""
    return f"{topic.rstrip('/')}/compressed" if transport == "compressed" else topic


def transport_type(transport: str) -> type:
    """The message class of ``transport``: Image for ``raw``, CompressedImage for ``compressed``."""
    return CompressedImage if transport == "compressed" else Image


def rgb_from_msg(msg: Image | CompressedImage, *, limits: MessageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """(H, W, 3) uint8 R,G,B of a colour Image (rgb8/bgr8/rgba8/bgra8) or CompressedImage (JPEG/PNG/WebP colour);
    MessageFormatError for grey, 16-bit or depth images, malformed messages and sizes over ``limits``."""
    if isinstance(msg, CompressedImage):
        return decode_compressed_rgb(msg.format, msg.data, limits=limits)
    return decode_rgb(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data, limits=limits)


def plane_from_msg(
    msg: Image | CompressedImage, *, lossless: bool = False, limits: MessageLimits = DEFAULT_LIMITS
) -> tuple[np.ndarray, str]:
    """(pixels, encoding) of an Image (any encoding, as :func:`image_to_numpy`) or of a one-channel CompressedImage
    (16-bit PNG, compressedDepth, 8-bit grey; see ``core.codec.decode_compressed_plane``, which ``lossless`` depth
    inputs call with JPEG refused). Units are the encoding's: ``16UC1`` mm, ``32FC1`` m, ``mono16`` counts."""
    if isinstance(msg, CompressedImage):
        return decode_compressed_plane(msg.format, msg.data, lossless=lossless, limits=limits)
    return image_to_numpy(msg, limits=limits), msg.encoding


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
    encoding: str | None = None,
) -> CompressedImage:
    """A CompressedImage of ``array`` (colour in ``order``, or grey: ``encoding`` ``16UC1`` for depth in mm),
    ``format`` as image_transport writes it (see ``core.codec.encode_compressed``)."""
    fmt, data = encode_compressed(array, codec, order=order, quality=quality, encoding=encoding)
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = fmt
    msg.data = uint8_field(data)
    return msg
