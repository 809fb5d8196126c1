"""Message limits in the ROS-free codec: what one message may make a decoder allocate, refused before allocating.

Regression tests of issue 11: a 20000x20000 CameraInfo and a small PNG that inflates to 20000x20000 were accepted;
``64FC9999`` images, ``point_step`` >= 2^31, binning larger than the image and ``fisheye`` with non-zero D raised
other exception types than MessageFormatError.
"""
from __future__ import annotations

import struct
import tracemalloc
import zlib
from dataclasses import fields
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from ros_mmfusion.core.codec import decode_cloud, decode_compressed, decode_image, intrinsics_from_fields
from ros_mmfusion.core.codec._headers import image_header
from ros_mmfusion.core.codec.image import decode_rgb
from ros_mmfusion.core.codec.limits import DEFAULT_LIMITS, LIMIT_PARAMS, MessageLimits
from ros_mmfusion.core.codec.pointcloud import PointFieldType
from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.geometry import rasterize_depth

K = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
XYZ = [("x", 0, PointFieldType.FLOAT32, 1), ("y", 4, PointFieldType.FLOAT32, 1), ("z", 8, PointFieldType.FLOAT32, 1)]


def camera(height=480, width=640, **overrides):
    base = dict(height=height, width=width, distortion_model="plumb_bob", d=[0.0] * 5, k=K, r=[0.0] * 9,
                p=[0.0] * 12)
    base.update(overrides)
    return intrinsics_from_fields(**base)


def roi(x_offset=0, y_offset=0, height=0, width=0):
    return SimpleNamespace(x_offset=x_offset, y_offset=y_offset, height=height, width=width, do_rectify=False)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(side: int) -> bytes:
    """A real 1-bit grey PNG of ``side`` x ``side`` zero pixels: ~50 KB that OpenCV inflates to side^2 bytes."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def peak_bytes(fn) -> tuple[int, BaseException | None]:
    """(peak traced allocation in bytes, the exception) of calling ``fn``."""
    tracemalloc.start()
    try:
        fn()
        error = None
    except Exception as exc:  # noqa: BLE001 - the caller checks the type
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, error


# --- the limits object ------------------------------------------------------------------------------------------------

def test_defaults_are_the_documented_ones_and_every_limit_is_a_parameter():
    assert DEFAULT_LIMITS == MessageLimits(max_image_side=8192, max_image_pixels=40_000_000, max_points=4_000_000,
                                           max_point_step=1024, max_data_bytes=256 << 20,
                                           max_compressed_bytes=64 << 20)
    assert [p.name for p in LIMIT_PARAMS] == [f.name for f in fields(MessageLimits)]
    assert all(p.default == getattr(DEFAULT_LIMITS, p.name) and p.minimum == 1 for p in LIMIT_PARAMS)
    assert MessageLimits.from_params({"max_points": 7, "log_throttle": 5.0}) == MessageLimits(max_points=7)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10"])
def test_limits_must_be_positive_integers(value):
    with pytest.raises(ConfigError, match="max_points must be a positive integer"):
        MessageLimits(max_points=value)


# --- CameraInfo -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("side", "pattern"), [
    (20000, r"CameraInfo.width 20000 exceeds the limit of 8192 pixels \(parameter max_image_side\)"),
    (50000, r"CameraInfo.width 50000 exceeds the limit of 8192 pixels \(parameter max_image_side\)"),
])
def test_huge_camera_info_is_refused_naming_the_limit(side, pattern):
    with pytest.raises(MessageFormatError, match=pattern):
        camera(side, side)


def test_camera_info_pixel_count_and_raised_limits():
    with pytest.raises(MessageFormatError, match=r"CameraInfo.width x height = 8000 x 6000 = 48000000 exceeds the "
                                                 r"limit of 40000000 pixels \(parameter max_image_pixels\)"):
        camera(6000, 8000)
    roomy = MessageLimits(max_image_side=20000, max_image_pixels=400_000_000)
    assert camera(6000, 8000, limits=roomy).image_size() == (8000, 6000)


def test_the_depth_image_a_camera_info_can_cost_is_bounded_by_the_limits():
    """lidar_depth allocates a (height, width) float32 image per cloud from the CameraInfo: bounded by the limits."""
    limits = MessageLimits(max_image_side=512, max_image_pixels=100_000)
    pinhole = camera(300, 300, limits=limits).pinhole()
    peak, error = peak_bytes(lambda: rasterize_depth(pinhole, np.array([[0.0, 0.0, 5.0]])))
    assert error is None and peak < limits.max_image_pixels * 4 + 65536
    with pytest.raises(MessageFormatError, match="max_image_pixels"):
        camera(400, 300, limits=limits)


def test_binning_larger_than_the_image_is_malformed():
    with pytest.raises(MessageFormatError, match=r"binning_x x binning_y = 1000 x 1000 leaves no pixel of the "
                                                 r"640 x 480 image"):
        camera(binning_x=1000, binning_y=1000)
    assert camera(binning_x=2, binning_y=4).image_size() == (320, 120)


def test_roi_outside_the_sensor_and_empty_cameras_are_malformed():
    with pytest.raises(MessageFormatError, match=r"roi.x_offset 600 \+ width 100 lies outside the 640-pixel sensor"):
        camera(roi=roi(x_offset=600, width=100, height=10))
    with pytest.raises(MessageFormatError, match=r"roi.y_offset 1 \+ height 480 lies outside the 480-pixel sensor"):
        camera(roi=roi(y_offset=1))
    with pytest.raises(MessageFormatError, match=r"width x height is 0 x 0"):
        camera(0, 0)
    assert camera(roi=roi(10, 20, 100, 200)).image_size() == (200, 100)


def test_fisheye_with_coefficients_is_malformed_when_projected():
    intrinsics = camera(distortion_model="fisheye", d=[0.1, 0.01, 0.0, 0.0])  # kept: the caller decides
    with pytest.raises(MessageFormatError, match=r"distortion_model 'fisheye' with non-zero d cannot be projected"):
        intrinsics.pinhole()
    assert not camera(distortion_model="fisheye", d=[0.0] * 4).pinhole().is_distorted


@pytest.mark.parametrize(("overrides", "pattern"), [
    (dict(d=["a"] * 5), r"CameraInfo.d must be a sequence of numbers"),
    (dict(k=[object()] * 9), r"CameraInfo.k must be a sequence of numbers"),
    (dict(d=[np.inf] * 5), r"CameraInfo.d contains non-finite values"),
])
def test_non_numeric_calibration_fields_are_malformed(overrides, pattern):
    with pytest.raises(MessageFormatError, match=pattern):
        camera(**overrides)


# --- Image ------------------------------------------------------------------------------------------------------------

def test_channel_counts_beyond_opencv_are_malformed():
    for height, width in ((10, 0), (1, 1), (0, 0)):
        with pytest.raises(MessageFormatError, match=r"'64FC9999' has 9999 channels: 1 to 512"):
            decode_image(height, width, "64FC9999", 0, 0, b"")
    with pytest.raises(MessageFormatError, match="has 99999999999999999999 channels"):
        decode_image(10, 0, "8UC99999999999999999999", 0, 0, b"")
    assert decode_image(1, 1, "8UC512", 0, 512, bytes(512)).shape == (1, 1, 512)


@pytest.mark.parametrize(("height", "width", "step", "pattern"), [
    (1, 9000, 27000, r"Image.width 9000 exceeds the limit of 8192 pixels \(parameter max_image_side\)"),
    (50000, 50000, 150000, r"Image.width 50000 exceeds the limit of 8192 pixels"),
    (8000, 8000, 24000, r"= 64000000 exceeds the limit of 40000000 pixels \(parameter max_image_pixels\)"),
    (1, 1, 2**32 - 1, r"Image.step x height = 4294967295 x 1 = 4294967295 exceeds the limit of 268435456 bytes "
                      r"\(parameter max_data_bytes\)"),
])
def test_huge_image_headers_are_refused_before_the_data_is_read(height, width, step, pattern):
    for decode in (decode_image, decode_rgb):
        with pytest.raises(MessageFormatError, match=pattern):
            decode(height, width, "rgb8", 0, step, b"")


def test_colour_images_without_pixels_are_malformed():
    """decode_rgb feeds models (segmentation, navigation): an empty image would fail inside OpenCV instead."""
    assert decode_image(0, 5, "rgb8", 0, 15, b"").shape == (0, 5, 3)  # the plain codec keeps empty images
    with pytest.raises(MessageFormatError, match=r"colour image has no pixels \(Image.width x height = 5 x 0\)"):
        decode_rgb(0, 5, "rgb8", 0, 15, b"")


# --- PointCloud2 ------------------------------------------------------------------------------------------------------

def test_point_step_beyond_numpy_is_malformed():
    for width, row_step in ((1, 2**31), (0, 0)):
        with pytest.raises(MessageFormatError, match=r"PointCloud2.point_step 2147483648 exceeds the limit of 1024 "
                                                     r"bytes \(parameter max_point_step\)"):
            decode_cloud(1, width, XYZ, 0, 2**31, row_step, bytes(16))


@pytest.mark.parametrize(("height", "width", "row_step", "pattern"), [
    (1, 2**32 - 1, 0, r"PointCloud2.width 4294967295 exceeds the limit of 4000000 points \(parameter max_points\)"),
    (3000, 3000, 36000, r"= 9000000 exceeds the limit of 4000000 points"),
    (2**63, 0, 0, r"PointCloud2.height 9223372036854775808 exceeds the limit of 4000000 points"),  # found by fuzzing
    (1, 1, 2**31, r"PointCloud2.row_step 2147483648 exceeds the limit of 268435456 bytes \(parameter max_data_bytes\)"),
    (2000, 1000, 200_000, r"PointCloud2.row_step x height = 200000 x 2000 = 400000000 exceeds the limit"),
])
def test_huge_cloud_headers_are_refused_before_the_data_is_read(height, width, row_step, pattern):
    with pytest.raises(MessageFormatError, match=pattern):
        decode_cloud(height, width, XYZ, 0, 12, row_step, b"")


def test_more_fields_than_point_bytes_is_malformed():
    many = [(f"f{i}", i, PointFieldType.UINT8, 1) for i in range(20)]
    with pytest.raises(MessageFormatError, match=r"has 20 fields, more than point_step 16 has bytes"):
        decode_cloud(1, 1, many, 0, 16, 16, bytes(16))


# --- CompressedImage --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bomb():
    return bomb_png(20000)


def test_decompression_bomb_png_is_refused_before_decoding(bomb):
    assert len(bomb) < 100_000
    peak, error = peak_bytes(lambda: decode_compressed("png", bomb))
    assert isinstance(error, MessageFormatError)
    assert "CompressedImage.width 20000 exceeds the limit of 8192 pixels (parameter max_image_side)" in str(error)
    assert peak < 4 << 20, f"{peak} bytes traced: the image must not be decoded"


def test_the_same_png_decodes_when_the_limits_allow_it():
    small = bomb_png(300)
    assert decode_compressed("png", small).shape == (300, 300)
    with pytest.raises(MessageFormatError, match=r"300 x 300 = 90000 exceeds the limit of 50000 pixels"):
        decode_compressed("png", small, limits=MessageLimits(max_image_pixels=50_000))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header is rewritten to claim ``width`` x ``height``."""
    ok, data = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    raw = bytearray(data.tobytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def test_jpeg_and_webp_headers_claiming_huge_sizes_are_refused():
    with pytest.raises(MessageFormatError, match=r"CompressedImage.width 60000 exceeds .*max_image_side"):
        decode_compressed("jpeg", jpeg_claiming(60000, 600))
    with pytest.raises(MessageFormatError, match=r"7000 x 7000 = 49000000 exceeds .*\(parameter max_image_pixels\)"):
        decode_compressed("rgb8; jpeg compressed bgr8", jpeg_claiming(7000, 7000))
    ok, webp = cv2.imencode(".webp", np.zeros((4, 4, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])
    raw = bytearray(webp.tobytes())
    raw[21:25] = struct.pack("<I", (16383 << 14) | 16383)  # VP8L: 16384 x 16384
    with pytest.raises(MessageFormatError, match=r"CompressedImage.width 16384 exceeds"):
        decode_compressed("webp", bytes(raw))


@pytest.mark.parametrize(("ext", "params", "shape", "dtype"), [
    (".png", [], (37, 53), np.uint16), (".png", [], (37, 53, 4), np.uint8), (".jpg", [], (37, 53), np.uint8),
    (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], (37, 53, 3), np.uint8),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], (37, 53, 3), np.uint8),  # VP8L
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 60], (37, 53, 3), np.uint8),  # VP8
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 60], (37, 53, 4), np.uint8),  # VP8X (alpha)
])
def test_header_sizes_match_what_opencv_decodes(ext, params, shape, dtype):
    pixels = np.random.default_rng(3).integers(0, 200, shape).astype(dtype)
    ok, data = cv2.imencode(ext, pixels, params)
    header = image_header(data.reshape(-1), "data", ext)
    assert (header.height, header.width) == (37, 53) == cv2.imdecode(data, cv2.IMREAD_UNCHANGED).shape[:2]
    assert decode_compressed(ext[1:], data).shape[:2] == (37, 53)


def test_compressed_size_limit_and_foreign_containers():
    ok, png = cv2.imencode(".png", np.zeros((16, 16), np.uint8))
    with pytest.raises(MessageFormatError, match=rf"CompressedImage.data has {png.size} exceeds the limit of 64 bytes "
                                                 r"\(parameter max_compressed_bytes\)"):
        decode_compressed("png", png, limits=MessageLimits(max_compressed_bytes=64))
    ok, bmp = cv2.imencode(".bmp", np.zeros((16, 16, 3), np.uint8))  # OpenCV would decode it, unchecked
    with pytest.raises(MessageFormatError, match=r"does not decode as png: it starts with b'BM.*not a PNG, JPEG or "
                                                 r"WebP signature"):
        decode_compressed("png", bmp)


def test_compressed_depth_png_is_bounded_too(bomb):
    with pytest.raises(MessageFormatError, match=r"CompressedImage.width 20000 exceeds"):
        decode_compressed("16UC1; compressedDepth png", bytes(12) + bomb)
