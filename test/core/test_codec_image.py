"""The ROS-free Image / CompressedImage codec: round trips for every encoding, padding, byte order, malformed input."""
from __future__ import annotations

import struct
import sys

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros_mmfusion.core.codec import decode_compressed, decode_image, encode_compressed, encode_image, encoding_format
from ros_mmfusion.core.codec.image import decode_rgb, parse_compressed_format
from ros_mmfusion.core.errors import MessageFormatError

HOST_BIG = sys.byteorder == "big"
ENCODINGS = [
    "rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16", "mono8", "mono16",
    "bayer_rggb8", "bayer_gbrg16", "yuv422", "yuv422_yuy2",
    "8UC1", "8UC2", "8UC3", "8UC4", "8SC1", "16UC1", "16UC3", "16SC1", "32SC1", "32SC2", "32FC1", "32FC3", "64FC1",
    "64FC4", "8UC7",
]
SETTINGS = settings(max_examples=120, deadline=None)
# Small images of every encoding, rows padded by 0-9 bytes, arbitrary pixel bytes (from ``seed``).
IMAGES = dict(encoding=st.sampled_from(ENCODINGS), height=st.integers(1, 7), width=st.integers(1, 7),
              padding=st.integers(0, 9), seed=st.integers(0, 2**32 - 1))


def random_pixels(encoding: str, height: int, width: int, seed: int) -> np.ndarray:
    """Arbitrary bytes (NaN payloads included for float encodings) shaped as the encoding's native array."""
    element, channels = encoding_format(encoding)
    shape = (height, width) if channels == 1 else (height, width, channels)
    count = int(np.prod(shape)) * element.itemsize
    return np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).view(element).reshape(shape)


def wire_bytes(pixels: np.ndarray, big: bool, step: int) -> bytes:
    """The Image.data a correct publisher would send: rows in the wire byte order, padded with junk to ``step``."""
    order = ">" if big else "<"
    wire = pixels.astype(pixels.dtype.newbyteorder(order)) if pixels.dtype.itemsize > 1 else pixels
    rows = wire.reshape(pixels.shape[0], -1).view(np.uint8)
    junk = np.full((pixels.shape[0], step - rows.shape[1]), 0xAB, np.uint8)
    return np.hstack([rows, junk]).tobytes()


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@SETTINGS
@given(**IMAGES, big=st.booleans())
def test_decode_reads_what_a_publisher_wrote(encoding, height, width, padding, big, seed):
    pixels = random_pixels(encoding, height, width, seed)
    step = pixels[0].nbytes + padding
    decoded = decode_image(height, width, encoding, int(big), step, wire_bytes(pixels, big, step))
    assert same_bits(decoded, pixels)
    assert decoded.dtype.isnative


@SETTINGS
@given(**IMAGES, big=st.one_of(st.none(), st.booleans()))
def test_encode_decode_round_trip(encoding, height, width, padding, big, seed):
    pixels = random_pixels(encoding, height, width, seed)
    step = pixels[0].nbytes + padding
    fields = encode_image(pixels, encoding, is_bigendian=big, step=step)
    assert (fields.height, fields.width, fields.encoding, fields.step) == (height, width, encoding, step)
    assert fields.data.dtype == np.uint8 and fields.data.size == step * height
    assert fields.is_bigendian == int(HOST_BIG if big is None else big) or pixels.dtype.itemsize == 1
    decoded = decode_image(fields.height, fields.width, fields.encoding, fields.is_bigendian, fields.step, fields.data)
    assert same_bits(decoded, pixels)


@pytest.mark.parametrize("container", [bytes, bytearray, lambda b: np.frombuffer(b, np.uint8)])
def test_decode_accepts_message_containers(container):
    pixels = random_pixels("16UC1", 3, 4, seed=1)
    data = container(wire_bytes(pixels, HOST_BIG, 10))
    assert same_bits(decode_image(3, 4, "16UC1", HOST_BIG, 10, data), pixels)


def test_decode_is_a_view_of_native_padded_data():
    pixels = random_pixels("rgb8", 4, 5, seed=2)
    data = np.frombuffer(wire_bytes(pixels, HOST_BIG, 5 * 3 + 3), np.uint8)
    decoded = decode_image(4, 5, "rgb8", 0, 18, data)
    assert np.shares_memory(decoded, data)
    depth = random_pixels("32FC1", 4, 5, seed=3)
    data = bytearray(wire_bytes(depth, HOST_BIG, 24))
    decoded = decode_image(4, 5, "32FC1", int(HOST_BIG), 24, data)
    assert np.shares_memory(decoded, np.frombuffer(data, np.uint8))


def test_decode_swaps_foreign_byte_order_into_a_native_copy():
    depth = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000  # millimetres
    data = np.frombuffer(wire_bytes(depth, not HOST_BIG, 8), np.uint8)
    decoded = decode_image(3, 4, "16UC1", int(not HOST_BIG), 8, data)
    assert decoded.dtype == np.dtype("=u2") and not np.shares_memory(decoded, data)
    np.testing.assert_array_equal(decoded, depth)


def test_encode_is_zero_copy_for_contiguous_native_arrays():
    rgb = random_pixels("rgb8", 6, 4, seed=4)
    assert np.shares_memory(encode_image(rgb, "rgb8").data, rgb)
    depth = np.ones((2, 3), np.float32)
    assert np.shares_memory(encode_image(depth, "32FC1").data, depth)


def test_encode_takes_big_endian_arrays_as_they_are():
    depth = np.arange(6, dtype=">u2").reshape(2, 3)
    fields = encode_image(depth, "16UC1")
    assert fields.is_bigendian == 1 and fields.data.tobytes() == depth.tobytes()
    native = encode_image(depth, "16UC1", is_bigendian=HOST_BIG)
    np.testing.assert_array_equal(native.data.view("=u2").reshape(2, 3), depth)


def test_one_channel_encodings_accept_a_trailing_unit_axis():
    mono = np.zeros((3, 4, 1), np.uint8)
    assert encode_image(mono, "mono8").step == 4


def test_empty_image_round_trips():
    assert decode_image(0, 5, "rgb8", 0, 15, b"").shape == (0, 5, 3)
    fields = encode_image(np.zeros((0, 4), np.uint16), "16UC1")
    assert fields.data.size == 0 and fields.step == 8


# --- malformed input ------------------------------------------------------------------------------------------------


def test_unknown_encoding_is_named():
    with pytest.raises(MessageFormatError, match=r"Image.encoding 'rgb9' is unknown"):
        decode_image(1, 1, "rgb9", 0, 3, bytes(3))
    with pytest.raises(MessageFormatError, match="planar"):
        encoding_format("nv21")


def test_step_smaller_than_a_row_is_rejected_with_the_numbers():
    with pytest.raises(MessageFormatError, match=r"Image.step 8 is smaller than one row: width 3 x 3 bytes .* = 9"):
        decode_image(2, 3, "rgb8", 0, 8, bytes(18))
    with pytest.raises(MessageFormatError, match=r"step 5 is smaller than one row"):
        encode_image(np.zeros((2, 3), np.uint16), "16UC1", step=5)


def test_short_data_is_rejected_with_the_numbers():
    with pytest.raises(MessageFormatError, match=r"Image.data has 17 bytes, expected step 9 x height 2 = 18"):
        decode_image(2, 3, "rgb8", 0, 9, bytes(17))


def test_negative_or_fractional_sizes_are_rejected():
    with pytest.raises(MessageFormatError, match=r"Image.height must be an unsigned integer, got -1"):
        decode_image(-1, 3, "mono8", 0, 3, b"")
    with pytest.raises(MessageFormatError, match=r"Image.step must be an unsigned integer, got 2.5"):
        decode_image(1, 1, "mono8", 0, 2.5, b"xx")


def test_non_bytes_data_is_rejected():
    with pytest.raises(MessageFormatError, match=r"Image.data must be bytes-like .* got object"):
        decode_image(1, 1, "mono8", 0, 1, object())


@pytest.mark.parametrize(
    ("array", "encoding", "pattern"),
    [
        (np.zeros((2, 2, 3), np.float32), "rgb8", r"'rgb8' needs uint8 elements, got an array of float32"),
        (np.zeros((2, 2), np.uint8), "rgb8", r"'rgb8' needs an array of shape \(H, W, 3\), got \(2, 2\)"),
        (np.zeros((2, 2, 3), np.uint16), "16UC1", r"needs an array of shape \(H, W\) or \(H, W, 1\), got \(2, 2, 3\)"),
        (np.zeros((2, 2), np.int16), "16UC1", r"needs uint16 elements, got an array of int16"),
    ],
)
def test_encode_rejects_arrays_that_do_not_fit_the_encoding(array, encoding, pattern):
    with pytest.raises(MessageFormatError, match=pattern):
        encode_image(array, encoding)


# --- CompressedImage --------------------------------------------------------------------------------------------------


def gradient(height: int = 24, width: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 7 % 256, y * 9 % 256, (x + y) * 3 % 256], axis=-1).astype(np.uint8)


def test_png_round_trip_is_exact_and_rgb_ordered():
    rgb = gradient()
    fmt, data = encode_compressed(rgb, "png")
    assert fmt == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(decode_compressed(fmt, data), rgb)
    np.testing.assert_array_equal(decode_compressed(fmt, data, order="bgr"), rgb[..., ::-1])


def test_jpeg_keeps_colours_in_rgb_order():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    fmt, data = encode_compressed(red, "jpeg", quality=95)
    decoded = decode_compressed(fmt, data)
    assert decoded.shape == (16, 16, 3) and decoded[..., 0].min() > 240 and decoded[..., 2].max() < 15


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "JPEG", "bgr8; jpeg compressed bgr8", "rgb8; jpeg compressed bgr8", ""])
def test_compressed_format_variants_decode(fmt):
    ok, buffer = cv2.imencode(".jpg", gradient()[..., ::-1])
    assert ok
    decoded = decode_compressed(fmt, buffer.tobytes())
    assert decoded.shape == (24, 32, 3) and np.abs(decoded.astype(int) - gradient()).mean() < 6


def test_grey_and_16bit_png_decode_to_two_dimensions():
    depth_mm = (np.arange(24 * 32, dtype=np.uint16) * 37).reshape(24, 32)
    fmt, data = encode_compressed(depth_mm, "png")
    assert fmt == "mono16; png compressed mono16"
    decoded = decode_compressed(fmt, data)
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, depth_mm)


def compressed_depth_payload(inverse: np.ndarray, quant_a: float = 0.0, quant_b: float = 0.0) -> bytes:
    ok, png = cv2.imencode(".png", inverse)
    assert ok
    return struct.pack("<iff", 0, quant_a, quant_b) + png.tobytes()


def test_compressed_depth_16uc1_is_millimetres_after_the_header():
    depth_mm = (np.arange(12, dtype=np.uint16) * 250).reshape(3, 4)
    decoded = decode_compressed("16UC1; compressedDepth png", compressed_depth_payload(depth_mm))
    np.testing.assert_array_equal(decoded, depth_mm)


def test_compressed_depth_32fc1_inverts_the_quantisation():
    quant_a, max_depth = 100.0 * 101.0, 10.0
    quant_b = 1.0 - quant_a / max_depth
    depth_m = np.array([[0.5, 1.0], [2.5, np.nan]], np.float32)
    inverse = np.where(np.isnan(depth_m), 0, np.round(quant_a / np.nan_to_num(depth_m, nan=1.0) + quant_b))
    decoded = decode_compressed("32FC1; compressedDepth png", compressed_depth_payload(inverse.astype(np.uint16),
                                                                                        quant_a, quant_b))
    assert decoded.dtype == np.float32 and np.isnan(decoded[1, 1])
    np.testing.assert_allclose(decoded[~np.isnan(depth_m)], depth_m[~np.isnan(depth_m)], rtol=1e-3)


def test_garbage_compressed_data_says_what_failed():
    with pytest.raises(MessageFormatError, match=r"CompressedImage.data \(5 bytes\) does not decode as jpeg"):
        decode_compressed("jpeg", b"\xff\xd8\xff\x00\x01")
    with pytest.raises(MessageFormatError, match=r"names no supported codec"):
        decode_compressed("h264", b"\x00\x00\x00\x01")
    with pytest.raises(MessageFormatError, match=r"too short for a compressedDepth header"):
        decode_compressed("16UC1; compressedDepth png", b"\x00" * 12)
    with pytest.raises(MessageFormatError, match=r"RVL depth compression is not supported"):
        decode_compressed("16UC1; compressedDepth rvl", b"\x00" * 40)


def test_parse_compressed_format_reports_the_original_encoding():
    parsed = parse_compressed_format("16UC1; compressedDepth png")
    assert (parsed.original_encoding, parsed.codec, parsed.compressed_depth) == ("16UC1", "png", True)
    assert parse_compressed_format("png").original_encoding is None


# --- the same codec on rosbags' message dataclasses -------------------------------------------------------------------


def test_rosbags_image_decodes_through_the_core_codec():
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    image_t = store.types["sensor_msgs/msg/Image"]
    header_t, time_t = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    depth = (np.arange(20, dtype=np.uint16) * 300).reshape(4, 5)
    fields = encode_image(depth, "16UC1", step=12)
    msg = image_t(header=header_t(stamp=time_t(sec=3, nanosec=0), frame_id="cam_optical_frame"), height=fields.height,
                  width=fields.width, encoding=fields.encoding, is_bigendian=fields.is_bigendian, step=fields.step,
                  data=fields.data)
    raw = store.serialize_cdr(msg, image_t.__msgtype__)
    back = store.deserialize_cdr(raw, image_t.__msgtype__)
    decoded = decode_image(back.height, back.width, back.encoding, back.is_bigendian, back.step, back.data)
    np.testing.assert_array_equal(decoded, depth)
    assert np.shares_memory(decoded, back.data)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_decode_rgb_gives_rgb_order_without_alpha_for_every_colour_encoding(encoding):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    pixels = rgb[..., ::-1] if encoding.startswith("bgr") else rgb
    if encoding.endswith("a8"):
        pixels = np.dstack([pixels, np.full((5, 7), 200, np.uint8)])
    f = encode_image(pixels, encoding, step=pixels.shape[1] * pixels.shape[2] + 3)  # padded rows
    out = decode_rgb(f.height, f.width, f.encoding, f.is_bigendian, f.step, f.data)
    assert out.flags.c_contiguous and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)


def test_decode_rgb_refuses_non_colour_encodings():
    f = encode_image(np.zeros((2, 2), np.uint8), "mono8")
    with pytest.raises(MessageFormatError, match="colour image has encoding 'mono8'"):
        decode_rgb(f.height, f.width, f.encoding, f.is_bigendian, f.step, f.data)
