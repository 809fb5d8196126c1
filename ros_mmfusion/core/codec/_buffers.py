"""Byte-buffer plumbing shared by the image and point-cloud codecs (private)."""
from __future__ import annotations

import sys
from typing import Any, Literal

import numpy as np

from ros_mmfusion.core.errors import MessageFormatError

HOST_IS_BIGENDIAN = sys.byteorder == "big"


def as_uint8(data: Any, what: str) -> np.ndarray:
    """A flat uint8 view of a message's ``data`` field, without copying where the container allows it.

    Accepts what the two message flavours hold (rclpy: ``array.array('B')``; rosbags: a uint8 ``np.ndarray``) plus
    ``bytes``, ``bytearray``, ``memoryview`` and, slowly, a list of ints. ``what`` names the field in error messages.
    """
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8 and data.ndim == 1:
            return data
        flat = np.ascontiguousarray(data).reshape(-1)
        return flat.view(np.uint8) if flat.size else np.zeros(0, np.uint8)
    if isinstance(data, (list, tuple)):
        values = np.asarray(data)
        if values.size and (values.dtype.kind not in "iub" or values.min() < 0 or values.max() > 255):
            raise MessageFormatError(f"{what}: a list of ints in [0, 255] was expected")
        return values.astype(np.uint8).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError) as exc:
        kind = type(data).__name__
        raise MessageFormatError(f"{what} must be bytes-like or a uint8 array, got {kind} ({exc})") from exc


def as_count(value: Any, what: str) -> int:
    """``value`` as a non-negative int (message size fields are unsigned); MessageFormatError otherwise."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MessageFormatError(f"{what} must be an unsigned integer, got {value!r}") from exc
    if number != value or number < 0:
        raise MessageFormatError(f"{what} must be an unsigned integer, got {value!r}")
    return number


ByteOrder = Literal["<", ">", "="]


def byte_order(is_bigendian: Any) -> Literal["<", ">"]:
    """numpy byte-order character for a message's ``is_bigendian`` flag."""
    return ">" if bool(is_bigendian) else "<"


def dtype_is_bigendian(dtype: np.dtype) -> bool:
    """Whether ``dtype`` (a scalar dtype) stores big-endian bytes; single-byte types follow the host."""
    if dtype.byteorder == ">":
        return True
    if dtype.byteorder == "<":
        return False
    return HOST_IS_BIGENDIAN


def padded_rows(
    data: Any, message: str, height: int, width: int, item_bytes: int, stride: int, stride_name: str, item: str
) -> np.ndarray:
    """``(height, width * item_bytes)`` uint8 view of a message's ``data`` whose rows start every ``stride`` bytes.

    Checks what every row-major payload needs: ``stride`` covers a row of ``width`` items of ``item_bytes`` (``item``
    describes one in the error text) and ``data`` holds ``stride * height`` bytes; ``message`` names the message type.
    """
    row_bytes = width * item_bytes
    if stride < row_bytes:
        raise MessageFormatError(
            f"{message}.{stride_name} {stride} is smaller than one row: width {width} x {item} = {row_bytes}"
        )
    raw = as_uint8(data, f"{message}.data")
    if raw.size < stride * height:
        expected = f"{stride_name} {stride} x height {height} = {stride * height}"
        raise MessageFormatError(f"{message}.data has {raw.size} bytes, expected {expected}")
    return raw[: height * stride].reshape(height, stride)[:, :row_bytes]
