"""sensor_msgs/Image and CompressedImage payloads <-> numpy arrays, without ROS.

The functions take and return plain field values (``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``,
``data``) so the same code serves rclpy messages and rosbags' message dataclasses, whose fields have the same names.

Array layout: ``(height, width)`` for one-channel encodings, ``(height, width, channels)`` otherwise; row 0 is the top
of the image, column 0 its left edge (the optical frame's x right, y down). Depth encodings keep their units: ``16UC1``
is millimetres, ``32FC1`` metres (REP-118); these functions never rescale.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ros_mmfusion.core.codec._buffers import (
    HOST_IS_BIGENDIAN,
    as_count,
    as_uint8,
    byte_order,
    dtype_is_bigendian,
    padded_rows,
)
from ros_mmfusion.core.codec._headers import ImageHeader, image_header, sniff_codec
from ros_mmfusion.core.codec.limits import DEFAULT_LIMITS, MAX_CHANNELS, MessageLimits
from ros_mmfusion.core.errors import MessageFormatError

# Named encodings of sensor_msgs/image_encodings -> (element dtype, channels).
_NAMED_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
    "rgb16": ("u2", 3), "bgr16": ("u2", 3), "rgba16": ("u2", 4), "bgra16": ("u2", 4),
    "mono8": ("u1", 1), "mono16": ("u2", 1),
    # Packed 4:2:2 YUV: two bytes a pixel, decoded as (H, W, 2) uint8 (no colour conversion here).
    "yuv422": ("u1", 2), "uyvy": ("u1", 2), "yuv422_yuy2": ("u1", 2), "yuyv": ("u1", 2),
}
for _pattern in ("rggb", "bggr", "gbrg", "grbg"):
    _NAMED_ENCODINGS[f"bayer_{_pattern}8"] = ("u1", 1)
    _NAMED_ENCODINGS[f"bayer_{_pattern}16"] = ("u2", 1)

# The OpenCV-style "<bits><U|S|F>C<channels>" encodings ("8UC3", "16UC1", "32FC1", ...).
_CV_DEPTHS: dict[str, str] = {"8U": "u1", "8S": "i1", "16U": "u2", "16S": "i2", "32S": "i4", "32F": "f4", "64F": "f8"}
_CV_PATTERN = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C(\d+)$")
# Known to ROS but not a plain pixel grid (planar chroma): refused with a specific message.
_PLANAR_ENCODINGS = frozenset({"nv21", "nv24", "nv12", "i420", "yuv420"})


def encoding_format(encoding: str) -> tuple[np.dtype, int]:
    """(native-order element dtype, channels) for an Image ``encoding``; MessageFormatError if unknown.

    Covers rgb8/bgr8/rgba8/bgra8 (and their 16-bit forms), mono8/mono16, bayer_*8/16, packed yuv422 variants and every
    ``<8U|8S|16U|16S|32S|32F|64F>C<n>`` (``8UC1``, ``16UC1`` depth in mm, ``32FC1`` depth in m, ...) with
    ``n`` from 1 to 512 (OpenCV's channel limit).
    """
    if not isinstance(encoding, str):
        raise MessageFormatError(f"Image.encoding must be a string, got {type(encoding).__name__}")
    named = _NAMED_ENCODINGS.get(encoding)
    if named is not None:
        return np.dtype(named[0]), named[1]
    match = _CV_PATTERN.match(encoding)
    if match is not None and 0 < int(match.group(2)) <= MAX_CHANNELS:
        return np.dtype(_CV_DEPTHS[match.group(1)]), int(match.group(2))
    if match is not None:
        raise MessageFormatError(
            f"Image.encoding {encoding!r} has {match.group(2)} channels: 1 to {MAX_CHANNELS} (OpenCV's CV_CN_MAX) "
            "are supported"
        )
    if encoding.lower() in _PLANAR_ENCODINGS:
        raise MessageFormatError(f"Image.encoding {encoding!r} is a planar YUV format, which is not supported")
    raise MessageFormatError(
        f"Image.encoding {encoding!r} is unknown: expected one of rgb8, bgr8, rgba8, bgra8, rgb16, bgr16, rgba16, "
        "bgra16, mono8, mono16, bayer_<pattern>8/16, yuv422, yuv422_yuy2 or <8U|8S|16U|16S|32S|32F|64F>C<channels>"
    )


@dataclass(frozen=True, eq=False)
class ImageFields:
    """The payload fields of a sensor_msgs/Image, named and typed like the message's own fields.

    ``data`` is a flat, C-contiguous uint8 ``np.ndarray`` of ``step * height`` bytes (what rosbags' Image wants as is;
    the rclpy adapter copies it into the message's ``array.array`` in one memcpy). When no padding or byte swap was
    needed it is a view of the encoded array, so do not modify that array while the fields are in use.
    ``is_bigendian`` is an int (0/1), as the message's uint8 field.
    """

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


def decode_image(
    height: int, width: int, encoding: str, is_bigendian: Any, step: int, data: Any, *,
    limits: MessageLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """The pixels of an Image as a numpy array, a view of ``data`` whenever possible.

    Shape ``(height, width)`` for one channel, else ``(height, width, channels)``; dtype per :func:`encoding_format`.
    Row padding (``step`` larger than ``width * bytes per pixel``) is skipped by striding, not copied. Multi-byte data
    whose ``is_bigendian`` differs from the host is byte-swapped into a new native-order array; otherwise the result
    shares memory with ``data`` (read-only when ``data`` is ``bytes``): copy it before modifying it in place.
    Bytes beyond ``step * height`` are ignored. Raises MessageFormatError for an unknown encoding, a ``step`` smaller
    than a row, ``data`` shorter than ``step * height``, or a size over ``limits`` (width/height/pixels,
    ``step * height`` against ``max_data_bytes``), checked before anything is allocated.
    """
    element, channels = encoding_format(encoding)
    height = as_count(height, "Image.height")
    width = as_count(width, "Image.width")
    step = as_count(step, "Image.step")
    limits.check_image("Image", width, height)
    limits.check_data_bytes(f"Image.step x height = {step} x {height} =", step * height)
    pixel_bytes = element.itemsize * channels
    item = f"{pixel_bytes} bytes per pixel ({encoding})"
    rows = padded_rows(data, "Image", height, width, pixel_bytes, step, "step", item)
    wire = element.newbyteorder(byte_order(is_bigendian)) if element.itemsize > 1 else element
    shape = (height, width) if channels == 1 else (height, width, channels)
    if height == 0 or width == 0:
        return np.zeros(shape, element)
    pixels = rows.view(wire).reshape(shape)
    if element.itemsize > 1 and bool(is_bigendian) != HOST_IS_BIGENDIAN:
        pixels = pixels.astype(element)
    return pixels


RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")
"""Colour encodings :func:`decode_rgb` accepts."""


def decode_rgb(
    height: int, width: int, encoding: str, is_bigendian: Any, step: int, data: Any, *,
    limits: MessageLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """A colour Image's pixels as contiguous ``(H, W, 3)`` uint8 in R,G,B order (a copy; alpha dropped).

    Accepts ``rgb8``, ``bgr8``, ``rgba8`` and ``bgra8``; any other encoding (mono, depth, 16-bit) raises
    MessageFormatError, as do malformed payloads, sizes over ``limits`` (see :func:`decode_image`) and an image
    without pixels (nothing a model or a map could use).
    """
    if encoding not in RGB_ENCODINGS:
        raise MessageFormatError(f"colour image has encoding {encoding!r}; expected one of {RGB_ENCODINGS}")
    pixels = decode_image(height, width, encoding, is_bigendian, step, data, limits=limits)
    if pixels.size == 0:
        raise MessageFormatError(f"colour image has no pixels (Image.width x height = {width} x {height})")
    if encoding.startswith("bgr"):
        pixels = pixels[..., 2::-1]
    return np.ascontiguousarray(pixels[..., :3])


def encode_image(
    array: np.ndarray, encoding: str, *, is_bigendian: bool | None = None, step: int | None = None
) -> ImageFields:
    """Image payload fields for ``array`` in ``encoding``; no copy when ``array`` is C-contiguous and unpadded.

    ``array`` must be ``(H, W)`` or ``(H, W, 1)`` for one-channel encodings and ``(H, W, C)`` otherwise, with the
    element type of the encoding (``uint8`` for rgb8, ``uint16`` for 16UC1 depth in mm, ``float32`` for 32FC1 depth in
    m, ...); byte order is free. ``is_bigendian`` picks the wire byte order (default: the array's own, native for
    native arrays). ``step`` pads each row to that many bytes (default: no padding). Raises MessageFormatError when
    the dtype or shape do not fit the encoding or ``step`` is smaller than a row.
    """
    element, channels = encoding_format(encoding)
    array = np.asarray(array)
    if array.dtype.kind != element.kind or array.dtype.itemsize != element.itemsize:
        raise MessageFormatError(
            f"encoding {encoding!r} needs {element.name} elements, got an array of {array.dtype.name}"
        )
    expected = "(H, W) or (H, W, 1)" if channels == 1 else f"(H, W, {channels})"
    if channels == 1 and array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if (channels == 1 and array.ndim != 2) or (channels > 1 and (array.ndim != 3 or array.shape[2] != channels)):
        raise MessageFormatError(f"encoding {encoding!r} needs an array of shape {expected}, got {array.shape}")
    source_big = dtype_is_bigendian(array.dtype)
    wire_big = source_big if is_bigendian is None else bool(is_bigendian)
    if element.itemsize > 1 and wire_big != source_big:
        array = array.astype(element.newbyteorder(byte_order(wire_big)))
    height, width = array.shape[:2]
    row_bytes = width * channels * element.itemsize
    step = row_bytes if step is None else as_count(step, "step")
    if step < row_bytes:
        raise MessageFormatError(
            f"step {step} is smaller than one row: width {width} x {channels * element.itemsize} bytes per pixel "
            f"({encoding}) = {row_bytes}"
        )
    if height * row_bytes == 0:
        data = np.zeros(step * height, np.uint8)
    elif step == row_bytes:
        data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    else:
        padded = np.zeros((height, step), np.uint8)
        padded[:, :row_bytes] = np.ascontiguousarray(array).reshape(height, -1).view(np.uint8)
        data = padded.reshape(-1)
    return ImageFields(height, width, encoding, int(wire_big), step, data)


# --- CompressedImage --------------------------------------------------------------------------------------------------

#: One-channel encodings a compressed grey image may declare, by the dtype they decode to.
_PLANE_ENCODINGS: dict[str, np.dtype] = {
    "mono8": np.dtype(np.uint8), "8UC1": np.dtype(np.uint8),
    "mono16": np.dtype(np.uint16), "16UC1": np.dtype(np.uint16),
}

# compressed_depth_image_transport prefixes the PNG with a 12-byte header: int32 format, float32 depthParam[2].
_DEPTH_HEADER = struct.Struct("<iff")


@dataclass(frozen=True)
class CompressedFormat:
    """A parsed CompressedImage ``format``: the original encoding (None if not stated), the codec, depth flag."""

    original_encoding: str | None
    codec: str
    compressed_depth: bool


def parse_compressed_format(format: str, data: np.ndarray | None = None) -> CompressedFormat:  # noqa: A002 - field name
    """Parse ``"jpeg"``, ``"png"``, ``"rgb8; jpeg compressed bgr8"``, ``"16UC1; compressedDepth png"``, ...

    When the string names no codec and ``data`` is given, the codec is sniffed from the JPEG/PNG magic bytes.
    """
    if not isinstance(format, str):
        raise MessageFormatError(f"CompressedImage.format must be a string, got {type(format).__name__}")
    head, sep, tail = format.partition(";")
    original = head.strip() if sep else None
    spec = (tail if sep else head).strip().lower()
    depth = "compresseddepth" in spec
    codec = ""
    for name, aliases in (("jpeg", ("jpeg", "jpg")), ("png", ("png",)), ("rvl", ("rvl",)), ("webp", ("webp",))):
        if any(alias in spec for alias in aliases):
            codec = name
            break
    if not codec and depth:
        codec = "png"  # the oldest compressedDepth publishers wrote no codec name
    if not codec and data is not None:
        codec = sniff_codec(data) or ""
    if not codec:
        raise MessageFormatError(
            f"CompressedImage.format {format!r} names no supported codec: expected 'jpeg', 'png' or "
            "'<encoding>; <jpeg|png> compressed <encoding>' (or '<encoding>; compressedDepth png')"
        )
    return CompressedFormat(original or None, codec, depth)


def decode_compressed(
    format: str,  # noqa: A002 - the message field's name
    data: Any,
    *,
    order: Literal["rgb", "bgr"] = "rgb",
    limits: MessageLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Decode a CompressedImage payload (JPEG, PNG, WebP, or compressedDepth PNG) with OpenCV.

    Colour images come back as ``(H, W, 3)`` uint8 in RGB order by default (``order="bgr"`` for OpenCV order), RGBA
    when the PNG has alpha; grey ones as ``(H, W)`` (uint8 or, for 16-bit PNG, uint16). compressedDepth payloads
    return depth in the original encoding's units: ``16UC1`` uint16 millimetres, ``32FC1`` float32 metres with NaN
    where no depth was recorded. Before decoding, the size of ``data`` is checked against ``max_compressed_bytes``
    and the width and height the PNG/JPEG/WebP header declares against ``limits`` (the decoded size, at up to 4
    channels, against ``max_data_bytes``). Raises MessageFormatError for an unknown format, data that is not a PNG,
    JPEG or WebP image, a size over a limit, or bytes that do not decode.
    """
    raw = as_uint8(data, "CompressedImage.data")
    limits.check_compressed_bytes("CompressedImage", raw.size)
    parsed = parse_compressed_format(format, raw)
    if parsed.codec == "rvl":
        raise MessageFormatError(f"CompressedImage.format {format!r}: RVL depth compression is not supported")
    if parsed.compressed_depth:
        return _decode_compressed_depth(format, parsed, raw, limits)
    header = _bounded_header(raw, "CompressedImage.data", parsed.codec, limits)
    image = _imdecode(raw, header, format)
    if image.ndim == 3 and order == "rgb":
        import cv2

        code = cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        image = cv2.cvtColor(image, code)
    return image


def _bounded_header(raw: np.ndarray, what: str, declared: str, limits: MessageLimits) -> ImageHeader:
    """The header of the compressed image in ``raw``, refused when what it declares exceeds ``limits``."""
    header = image_header(raw, what, declared)
    limits.check_image("CompressedImage", header.width, header.height)
    decoded = header.width * header.height * 4 * header.sample_bytes
    limits.check_data_bytes(f"CompressedImage decoded size {header.width} x {header.height} x 4 channels x "
                            f"{header.sample_bytes} bytes =", decoded)
    return header


def _imdecode(raw: np.ndarray, header: ImageHeader, format: str) -> np.ndarray:  # noqa: A002
    """OpenCV's decode of ``raw``, checked to have the size its ``header`` declared."""
    import cv2  # local: keeps the raw codec importable where OpenCV is absent

    try:
        image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise MessageFormatError(f"CompressedImage.data ({raw.size} bytes) does not decode as {header.codec} "
                                 f"(format {format!r}): {exc}") from None
    if image is None:
        raise MessageFormatError(
            f"CompressedImage.data ({raw.size} bytes) does not decode as {header.codec} (format {format!r})"
        )
    if image.shape[:2] not in ((header.height, header.width), (header.width, header.height)):  # EXIF may rotate
        raise MessageFormatError(f"CompressedImage.data decoded to {image.shape[1]} x {image.shape[0]} pixels but its "
                                 f"{header.codec} header declares {header.width} x {header.height}")
    return image


def _decode_compressed_depth(
    format: str, parsed: CompressedFormat, raw: np.ndarray, limits: MessageLimits  # noqa: A002
) -> np.ndarray:
    if raw.size <= _DEPTH_HEADER.size:
        raise MessageFormatError(
            f"CompressedImage.data has {raw.size} bytes: too short for a compressedDepth header (format {format!r})"
        )
    _, quant_a, quant_b = _DEPTH_HEADER.unpack(bytes(raw[: _DEPTH_HEADER.size]))
    png = raw[_DEPTH_HEADER.size :]
    header = _bounded_header(png, "CompressedImage.data after the 12-byte depth header", "png", limits)
    image = _imdecode(png, header, format) if header.codec == "png" else None
    if image is None or image.dtype != np.uint16 or image.ndim != 2:
        raise MessageFormatError(
            f"CompressedImage.data after the 12-byte depth header is not a 16-bit grey PNG (format {format!r})"
        )
    if parsed.original_encoding in (None, "16UC1", "mono16"):
        return image
    if parsed.original_encoding != "32FC1":
        raise MessageFormatError(
            f"CompressedImage.format {format!r}: compressedDepth of {parsed.original_encoding!r} is not supported "
            "(16UC1 or 32FC1 expected)"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.float32(quant_a) / (image.astype(np.float32) - np.float32(quant_b))
    depth[image == 0] = np.nan
    return depth


def encode_compressed(
    array: np.ndarray,
    codec: Literal["jpeg", "png"] = "jpeg",
    *,
    order: Literal["rgb", "bgr"] = "rgb",
    quality: int = 90,
    encoding: str | None = None,
) -> tuple[str, np.ndarray]:
    """(``format``, ``data``) of a CompressedImage holding ``array``, as image_transport's compressed publisher writes.

    ``array``: ``(H, W)`` uint8 (or uint16 for PNG) grey, or ``(H, W, 3)`` uint8 colour in ``order``. ``quality`` is
    the JPEG quality 1-100 (PNG ignores it). ``encoding``: the original encoding a grey image's format states before
    its ``;`` (default ``mono8``/``mono16``; ``16UC1`` for depth in millimetres, as a depth camera's compressed
    publisher writes); colour states ``rgb8``/``bgr8`` from ``order``. MessageFormatError when ``encoding`` does not
    fit the array. ``data`` is a flat uint8 array.
    """
    import cv2

    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8 and encoding is None:
        stated = f"{order}8"
        pixels = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if order == "rgb" else array
        target = "bgr8"
    elif array.ndim == 2 and (array.dtype == np.uint8 or (array.dtype == np.uint16 and codec == "png")):
        target = "mono8" if array.dtype == np.uint8 else "mono16"
        stated = target if encoding is None else encoding
        if _PLANE_ENCODINGS.get(stated) != array.dtype:
            raise MessageFormatError(f"encode_compressed: encoding {stated!r} does not fit a {array.dtype.name} grey "
                                     f"image; expected one of {', '.join(_PLANE_ENCODINGS)} of its depth")
        pixels = array
    else:
        raise MessageFormatError(
            f"encode_compressed({codec}) needs (H, W) uint8, (H, W) uint16 (png only) or (H, W, 3) uint8 (without "
            f"encoding), got {array.shape} {array.dtype.name}"
        )
    if codec not in ("jpeg", "png"):
        raise MessageFormatError(f"encode_compressed: codec must be 'jpeg' or 'png', got {codec!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == "jpeg" else []
    ok, buffer = cv2.imencode(".jpg" if codec == "jpeg" else ".png", pixels, params)
    if not ok:
        raise MessageFormatError(f"OpenCV could not encode a {array.shape} {array.dtype.name} array as {codec}")
    return f"{stated}; {codec} compressed {target}", buffer.reshape(-1)


# --- CompressedImage as a node input ----------------------------------------------------------------------------------



def decode_compressed_rgb(format: str, data: Any, *, limits: MessageLimits = DEFAULT_LIMITS) -> np.ndarray:  # noqa: A002
    """A colour CompressedImage (JPEG, PNG, WebP) as contiguous ``(H, W, 3)`` uint8 R,G,B (alpha dropped): what
    :func:`decode_rgb` gives for a raw colour Image.

    MessageFormatError (before decoding where the format or header tells) for a compressedDepth payload, a grey or
    16-bit image, and everything :func:`decode_compressed` refuses (sizes over ``limits``, undecodable bytes).
    """
    raw = as_uint8(data, "CompressedImage.data")
    parsed = parse_compressed_format(format, raw)
    if parsed.compressed_depth:
        raise MessageFormatError(f"colour image: CompressedImage.format {format!r} is a compressedDepth depth image")
    image = decode_compressed(format, raw, limits=limits)
    if image.ndim != 3 or image.shape[2] < 3 or image.dtype != np.uint8:
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise MessageFormatError(f"colour image: CompressedImage (format {format!r}) decodes to {channels} channel(s) "
                                 f"of {image.dtype.name}; expected 8-bit colour (3 or 4 channels)")
    return np.ascontiguousarray(image[..., :3])


def decode_compressed_plane(
    format: str,  # noqa: A002 - the message field's name
    data: Any,
    *,
    lossless: bool = False,
    limits: MessageLimits = DEFAULT_LIMITS,
) -> tuple[np.ndarray, str]:
    """A one-channel CompressedImage (depth, thermal, grey) as ``(H, W)`` pixels and the ROS encoding they are in.

    Formats, as image_transport's publishers write them: ``"<enc>; png compressed mono16"`` (plain 16-bit PNG, the
    ``compressed`` transport), ``"16UC1; compressedDepth png"`` / ``"32FC1; compressedDepth png"``
    (compressed_depth_image_transport: the 12-byte header, then a 16-bit PNG), ``"mono8; jpeg compressed mono8"``, or a
    bare ``"png"`` / ``"jpeg"``. The encoding is the one the format states (``mono8``, ``8UC1``, ``mono16``,
    ``16UC1``; ``16UC1`` or ``32FC1`` for compressedDepth), else the decoded depth's: ``mono8`` for 8 bits, ``16UC1``
    for 16 bits (unstated 16-bit grey is taken as REP-118 millimetres). Units stay the encoding's (``16UC1`` mm,
    ``32FC1`` m, ``mono16`` the camera's counts). ``lossless`` (depth inputs) refuses JPEG and WebP, whose errors
    would be metric depth errors. MessageFormatError for a colour image, a stated encoding that is not one channel
    or that the decoded pixels contradict (a ``16UC1; jpeg compressed mono8``), and everything
    :func:`decode_compressed` refuses.
    """
    raw = as_uint8(data, "CompressedImage.data")
    parsed = parse_compressed_format(format, raw)
    payload = raw[_DEPTH_HEADER.size :] if parsed.compressed_depth else raw
    actual = parsed.codec if parsed.codec != "png" else sniff_codec(payload) or "png"
    if lossless and actual != "png":
        raise MessageFormatError(f"CompressedImage (format {format!r}) is {actual}, which is lossy; this input needs "
                                 "lossless PNG (a 16-bit PNG or compressedDepth)")
    stated = parsed.original_encoding
    if parsed.compressed_depth:
        image = decode_compressed(format, raw, limits=limits)
        return image, "32FC1" if stated == "32FC1" else "16UC1"
    if stated is not None and stated not in _PLANE_ENCODINGS:
        raise MessageFormatError(f"CompressedImage.format {format!r}: encoding {stated!r} is not a one-channel 8- or "
                                 f"16-bit image; expected one of {', '.join(_PLANE_ENCODINGS)}")
    image = decode_compressed(format, raw, limits=limits)
    if image.ndim != 2:
        raise MessageFormatError(f"CompressedImage (format {format!r}) decodes to {image.shape[2]} channels; "
                                 "expected a one-channel (grey) image")
    if stated is None:
        return image, "mono8" if image.dtype == np.uint8 else "16UC1"
    if image.dtype != _PLANE_ENCODINGS[stated]:
        raise MessageFormatError(f"CompressedImage.format {format!r} states {stated} but the data decodes to "
                                 f"{image.dtype.itemsize * 8}-bit pixels")
    return image, stated
