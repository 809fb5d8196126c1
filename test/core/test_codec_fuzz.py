"""Fuzzing every message decoder with seeded, malformed input: only MessageFormatError escapes, nothing allocates
beyond what the message limits allow, and no case takes a second.

Inputs are valid messages mutated the way a broken driver or a hostile peer would: random size fields (zero,
negative, huge, not integers), truncated or extended data, random encodings and formats, random bytes as PNG/JPEG/WebP,
and real PNG/JPEG/WebP headers claiming huge sizes. Each case runs under tracemalloc; its peak must stay below a bound
derived from the limits in force (small limits most of the time, so the bound is tight; the defaults otherwise).

``make test`` runs a few hundred examples per decoder (seconds); ``MMFUSION_SLOW_TESTS=1`` runs 10,000 each.
Runs are reproducible: ``derandomize=True`` and no example database.
"""
from __future__ import annotations

import array
import os
import struct
import time
import tracemalloc
import zlib
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ros_mmfusion.core.codec import (
    box_corners,
    decode_cloud,
    decode_compressed,
    decode_image,
    encode_cloud,
    encoding_format,
    intrinsics_from_fields,
    quaternion_to_yaw,
    structured_cloud,
    xyz_array,
)
from ros_mmfusion.core.codec.image import decode_rgb
from ros_mmfusion.core.codec.limits import DEFAULT_LIMITS, MessageLimits
from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.modalities.lidar import lidar_depth_image

SLOW = os.environ.get("MMFUSION_SLOW_TESTS") == "1"
FUZZ = settings(
    max_examples=10_000 if SLOW else 300, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True,
)
# Small limits make the allocation bound tight; the defaults check the documented configuration.
SMALL = MessageLimits(max_image_side=256, max_image_pixels=20_000, max_points=5_000, max_point_step=64,
                      max_data_bytes=1 << 20, max_compressed_bytes=64 << 10)
LIMITS = st.sampled_from([SMALL, SMALL, SMALL, DEFAULT_LIMITS])
SLACK = 1 << 20  # interpreter and bookkeeping allocations of one case (bytes)
MAX_SECONDS = 1.0

# Size fields: small, around the limits, beyond every limit, and values a typed message could not even hold.
SIZES = st.one_of(
    st.integers(0, 40),
    st.sampled_from([255, 256, 257, 5000, 8192, 8193, 20000, 50000, 2**16 - 1, 2**24, 2**31 - 1, 2**31, 2**32 - 1,
                     2**63, 2**64 + 1]),
)
ODD_SIZES = st.sampled_from([-1, -(2**31), 1.5, 3.0, float("nan"), float("inf"), None, "3", b"\x01", [4]])
SIZE_FIELD = st.one_of(SIZES, SIZES, SIZES, ODD_SIZES)
SEEDS = st.integers(0, 2**32 - 1)


def bounded_call(fn, bound: int) -> Any:
    """``fn()`` or None when it raised MessageFormatError; any other exception propagates (and fails the example).

    Asserts that the traced allocation peak of the call stays under ``bound`` bytes and that it took under a second
    of CPU time (all threads of the process; wall time would count the scheduler of a busy shared machine).
    """
    tracemalloc.start()  # traces only the call (tracing hypothesis' generation too would slow it down 5-fold)
    started = time.process_time()
    try:
        result = fn()
    except MessageFormatError:
        result = None
    finally:
        elapsed = time.process_time() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= bound, f"allocated {peak} bytes, bound {bound}"
    assert elapsed < MAX_SECONDS, f"took {elapsed:.2f} s of CPU time"
    return result


def random_bytes(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


@st.composite
def mutated_data(draw, data: bytes) -> Any:
    """``data`` truncated, extended, replaced, or in another container (some of which a message cannot hold)."""
    how = draw(st.sampled_from(["same", "same", "truncate", "extend", "random", "empty", "container", "odd"]))
    if how == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if how == "extend":
        return data + random_bytes(draw(SEEDS), draw(st.integers(1, 64)))
    if how == "random":
        return random_bytes(draw(SEEDS), draw(st.integers(0, 2 * len(data) + 8)))
    if how == "empty":
        return b""
    if how == "container":
        kind = draw(st.sampled_from(["array", "ndarray", "bytearray", "memoryview", "int16-array", "list"]))
        return {"array": lambda: array.array("B", data), "ndarray": lambda: np.frombuffer(data, np.uint8).copy(),
                "bytearray": lambda: bytearray(data), "memoryview": lambda: memoryview(data),
                "int16-array": lambda: np.frombuffer(data[: len(data) // 2 * 2], np.int16).copy(),
                "list": lambda: list(data[:64])}[kind]()
    if how == "odd":
        return draw(st.sampled_from([None, 7, "text", 1.5, [300, -1], object()]))
    return data


# --- sensor_msgs/Image ------------------------------------------------------------------------------------------------

VALID_ENCODINGS = ["rgb8", "bgra8", "rgb16", "mono8", "mono16", "bayer_rggb8", "yuv422", "8UC3", "16UC1", "32FC1",
                   "64FC4", "8SC2", "32SC1"]
ENCODINGS = st.one_of(
    st.sampled_from(VALID_ENCODINGS),
    st.sampled_from(["64FC9999", "8UC0", "8UC512", "8UC513", "32FC", "nv12", "", "RGB8", "bayer_xxxx8"]),
    st.from_regex(r"\A(8U|8S|16U|16S|32S|32F|64F)C[0-9]{1,25}\Z"),
    st.text(max_size=12),
    st.sampled_from([None, 5, b"rgb8"]),
)


@st.composite
def image_messages(draw) -> dict[str, Any]:
    """Fields of an Image: a valid one, then up to four of its fields replaced."""
    encoding = draw(st.sampled_from(VALID_ENCODINGS))
    element, channels = encoding_format(encoding)
    height, width = draw(st.integers(0, 12)), draw(st.integers(0, 12))
    step = width * channels * element.itemsize + draw(st.integers(0, 8))
    msg = dict(height=height, width=width, encoding=encoding, is_bigendian=draw(st.booleans()), step=step,
               data=random_bytes(draw(SEEDS), step * height))
    for _ in range(draw(st.integers(0, 4))):
        field = draw(st.sampled_from(["height", "width", "step", "encoding", "is_bigendian", "data"]))
        if field in ("height", "width", "step"):
            msg[field] = draw(SIZE_FIELD)
        elif field == "encoding":
            msg[field] = draw(ENCODINGS)
        elif field == "is_bigendian":
            msg[field] = draw(st.sampled_from([0, 1, 2, 255, None, "yes"]))
        else:
            msg[field] = draw(mutated_data(msg["data"] if isinstance(msg["data"], bytes) else b""))
    return msg


def payload_size(data: Any) -> int:
    try:
        return memoryview(data).nbytes
    except TypeError:
        return 8 * len(data) if isinstance(data, list) else 0


def check_image(pixels: np.ndarray | None, msg: dict[str, Any], limits: MessageLimits) -> None:
    if pixels is None:
        return
    assert pixels.shape[:2] == (msg["height"], msg["width"])
    assert max(pixels.shape[:2]) <= limits.max_image_side
    assert pixels.shape[0] * pixels.shape[1] <= limits.max_image_pixels
    assert pixels.nbytes <= limits.max_data_bytes


@FUZZ
@given(msg=image_messages(), limits=LIMITS)
def test_fuzz_raw_image(msg, limits):
    # A view, a byte-swapped copy or an RGB copy: never more than the payload the limits let through, twice.
    bound = 2 * min(limits.max_data_bytes, payload_size(msg["data"])) + SLACK
    check_image(bounded_call(lambda: decode_image(**msg, limits=limits), bound), msg, limits)
    check_image(bounded_call(lambda: decode_rgb(**msg, limits=limits), bound), msg, limits)


# --- sensor_msgs/CompressedImage --------------------------------------------------------------------------------------

FORMATS = st.one_of(
    st.sampled_from(["png", "jpeg", "jpg", "webp", "rgb8; jpeg compressed bgr8", "bgr8; png compressed bgr8",
                     "mono16; png compressed mono16", "16UC1; compressedDepth png", "32FC1; compressedDepth png",
                     "32FC1; compressedDepth", "8UC3; compressedDepth png", "16UC1; compressedDepth rvl", "", "h264",
                     "tiff", "bmp"]),
    st.text(max_size=30),
)
CLAIMS = st.one_of(st.integers(0, 300), st.sampled_from([8192, 8193, 20000, 50000, 65535, 2**24, 2**31 - 1,
                                                         2**32 - 1]))


@st.composite
def encoded_image(draw) -> bytes:
    """A small, real PNG (8/16-bit, 1-4 channels), JPEG (baseline or progressive) or WebP (VP8, VP8L, VP8X)."""
    codec = draw(st.sampled_from(["png", "jpeg", "webp"]))
    channels = draw(st.sampled_from([1, 3, 4] if codec != "jpeg" else [1, 3]))
    if codec == "webp":
        channels = max(channels, 3)
    shape = (draw(st.integers(1, 24)), draw(st.integers(1, 24))) + ((channels,) if channels > 1 else ())
    dtype = np.uint16 if codec == "png" and draw(st.booleans()) else np.uint8
    pixels = np.random.default_rng(draw(SEEDS)).integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    params = {"png": [cv2.IMWRITE_PNG_COMPRESSION, draw(st.integers(0, 9))],
              "jpeg": [cv2.IMWRITE_JPEG_PROGRESSIVE, int(draw(st.booleans()))],
              "webp": [cv2.IMWRITE_WEBP_QUALITY, draw(st.sampled_from([40, 101]))]}[codec]
    ok, data = cv2.imencode({"png": ".png", "jpeg": ".jpg", "webp": ".webp"}[codec], pixels, params)
    assert ok
    return data.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@st.composite
def claiming_header(draw) -> bytes:
    """A well-formed PNG, JPEG or WebP header that claims ``CLAIMS`` x ``CLAIMS`` pixels, then random bytes."""
    width, height = draw(CLAIMS), draw(CLAIMS)
    tail = random_bytes(draw(SEEDS), draw(st.integers(0, 300)))
    kind = draw(st.sampled_from(["png", "jpeg", "vp8l", "vp8x"]))
    if kind == "png":
        bit_depth, colour = draw(st.sampled_from([(1, 0), (8, 0), (16, 0), (8, 2), (16, 2), (8, 3), (8, 4), (16, 6)]))
        ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
        idat = zlib.compress(tail) if draw(st.booleans()) else tail
        return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    if kind == "jpeg":
        sof = draw(st.sampled_from([0xC0, 0xC1, 0xC2, 0xCF]))
        components = bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
        frame = struct.pack(">BHHB", 8, height & 0xFFFF, width & 0xFFFF, 3) + components
        app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        return b"\xff\xd8" + app0 + b"\xff\xff" + bytes([0xFF, sof]) + struct.pack(">H", 2 + len(frame)) + frame + tail
    w, h = max(1, min(width, 1 << 24)) - 1, max(1, min(height, 1 << 24)) - 1
    if kind == "vp8l":
        bits = (w & 0x3FFF) | (h & 0x3FFF) << 14
        chunk = b"VP8L" + struct.pack("<I", 5 + len(tail)) + b"\x2f" + struct.pack("<I", bits)
    else:
        chunk = b"VP8X" + struct.pack("<I", 10) + bytes(4) + w.to_bytes(3, "little") + h.to_bytes(3, "little")
    body = b"WEBP" + chunk + tail
    return b"RIFF" + struct.pack("<I", len(body)) + body


@st.composite
def compressed_messages(draw) -> dict[str, Any]:
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "header", "header", "random"]))
    if kind in ("valid", "mutated"):
        data = draw(encoded_image())
    elif kind == "header":
        data = draw(claiming_header())
    else:
        magic = draw(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x00\x00\x00WEBP", b"BM"]))
        data = magic + random_bytes(draw(SEEDS), draw(st.integers(0, 400)))
    if kind == "mutated":
        raw = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            position = draw(st.integers(0, len(raw) - 1))
            raw[position] = draw(st.integers(0, 255))
        data = bytes(raw)
    if draw(st.booleans()):
        data = draw(mutated_data(data))
    fmt = draw(FORMATS)
    if "compressedDepth" in fmt and isinstance(data, bytes) and draw(st.booleans()):
        data = struct.pack("<iff", 0, draw(st.floats(-1e6, 1e6)), draw(st.floats(-1e6, 1e6))) + data
    return dict(format=fmt, data=data, order=draw(st.sampled_from(["rgb", "bgr"])))


@FUZZ
@given(msg=compressed_messages(), limits=LIMITS)
def test_fuzz_compressed_image(msg, limits):
    # OpenCV's output (<= max_data_bytes by the header check), one colour-converted or float depth copy, and the
    # comparison temporaries of the depth path.
    bound = 3 * limits.max_data_bytes + 2 * payload_size(msg["data"]) + SLACK
    image = bounded_call(lambda: decode_compressed(**msg, limits=limits), bound)
    if image is not None:
        assert image.ndim in (2, 3) and image.size > 0
        assert max(image.shape[:2]) <= limits.max_image_side
        assert image.shape[0] * image.shape[1] <= limits.max_image_pixels
        assert image.nbytes <= limits.max_data_bytes


# --- sensor_msgs/PointCloud2 ------------------------------------------------------------------------------------------

DATATYPES = st.one_of(st.integers(1, 8), st.sampled_from([0, 9, 255, -1, 2**31, 1.0, None, "7"]))


@st.composite
def cloud_messages(draw) -> dict[str, Any]:
    """Fields of a PointCloud2 from a real structured cloud, then up to four fields (or PointFields) replaced."""
    count = draw(st.integers(0, 40))
    rng = np.random.default_rng(draw(SEEDS))
    extra = {"intensity": rng.random(count, np.float32)} if draw(st.booleans()) else {}
    if draw(st.booleans()):
        extra["ring"] = rng.integers(0, 128, count).astype(np.uint16)
    cloud = structured_cloud(rng.normal(size=(count, 3)).astype(np.float32), **extra)
    if count and count % 4 == 0 and draw(st.booleans()):
        cloud = cloud.reshape(4, -1)  # organized
    encoded = encode_cloud(cloud, is_bigendian=draw(st.booleans()))
    fields = [(f.name, f.offset, f.datatype, f.count) for f in encoded.fields]
    msg = dict(height=encoded.height, width=encoded.width, fields=fields, is_bigendian=encoded.is_bigendian,
               point_step=encoded.point_step, row_step=encoded.row_step, data=encoded.data.tobytes())
    for _ in range(draw(st.integers(0, 4))):
        what = draw(st.sampled_from(["height", "width", "point_step", "row_step", "field", "fields", "is_bigendian",
                                     "data"]))
        if what in ("height", "width", "point_step", "row_step"):
            msg[what] = draw(SIZE_FIELD)
        elif what == "field" and isinstance(msg["fields"], list) and msg["fields"] \
                and all(isinstance(f, tuple) and len(f) == 4 for f in msg["fields"]):
            index = draw(st.integers(0, len(msg["fields"]) - 1))
            name, offset, datatype, count_ = msg["fields"][index]
            part = draw(st.integers(0, 3))
            names = st.sampled_from(["", "x", "y", "z", "rgb", None, 3])
            value = draw([names, SIZE_FIELD, DATATYPES, SIZE_FIELD][part])
            replaced = [name, offset, datatype, count_]
            replaced[part] = value
            msg["fields"] = [*msg["fields"][:index], tuple(replaced), *msg["fields"][index + 1 :]]
        elif what == "fields":
            current = msg["fields"] if isinstance(msg["fields"], list) else []
            msg["fields"] = draw(st.sampled_from([
                [], current * 2, current[::-1], [("x", 0, 7)] * 3, [("x", 0, 7, 1, 9)], ["x"], None, 5,
                [(f"f{i}", i, 2, 1) for i in range(3000)],
            ]))
        elif what == "is_bigendian":
            msg[what] = draw(st.sampled_from([0, 1, 2, None, "no"]))
        else:
            msg["data"] = draw(mutated_data(msg["data"] if isinstance(msg["data"], bytes) else b""))
    return msg


@FUZZ
@given(msg=cloud_messages(), limits=LIMITS)
def test_fuzz_pointcloud2(msg, limits):
    data_bytes = min(limits.max_data_bytes, payload_size(msg["data"]))
    # A view or a byte-order-converted copy, then the (N, 3) float32 xyz copy and its finite mask.
    bound = 2 * data_bytes + 16 * min(limits.max_points, data_bytes) + SLACK

    def decode_xyz():
        cloud = decode_cloud(**msg, limits=limits)
        assert cloud.size <= limits.max_points and cloud.nbytes <= limits.max_data_bytes
        return xyz_array(cloud)

    xyz = bounded_call(decode_xyz, bound)
    if xyz is not None:
        assert xyz.ndim == 2 and xyz.shape[1] == 3 and xyz.shape[0] <= limits.max_points


# --- sensor_msgs/CameraInfo -------------------------------------------------------------------------------------------

FLOATS = st.one_of(st.floats(-1e4, 1e4), st.sampled_from([0.0, 1.0, -1.0, 1e300, -1e300, float("nan"), float("inf")]))


def float_list(size: int):
    sizes = st.one_of(st.just(size), st.just(size), st.integers(0, 16))
    return sizes.flatmap(lambda n: st.lists(FLOATS, min_size=n, max_size=n)) | st.sampled_from([["a"] * size, [None]])


@st.composite
def camera_info_messages(draw) -> dict[str, Any]:
    k = [draw(st.floats(1.0, 2000.0)), 0.0, draw(FLOATS), 0.0, draw(st.floats(1.0, 2000.0)), draw(FLOATS), 0.0, 0.0,
         1.0]
    msg = dict(height=draw(st.integers(1, 64)), width=draw(st.integers(1, 64)),
               distortion_model=draw(st.sampled_from(["plumb_bob", "rational_polynomial", "equidistant"])),
               d=[0.0] * 5, k=k, r=[0.0] * 9, p=[0.0] * 12, binning_x=0, binning_y=0,
               roi=SimpleNamespace(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False), frame_id="camera")
    if msg["distortion_model"] == "equidistant":
        msg["d"] = [0.0] * 4
    for _ in range(draw(st.integers(0, 4))):
        what = draw(st.sampled_from(["height", "width", "binning_x", "binning_y", "roi", "distortion_model", "d", "k",
                                     "r", "p"]))
        if what in ("height", "width", "binning_x", "binning_y"):
            msg[what] = draw(SIZE_FIELD)
        elif what == "roi":
            msg["roi"] = SimpleNamespace(x_offset=draw(SIZE_FIELD), y_offset=draw(SIZE_FIELD), height=draw(SIZE_FIELD),
                                         width=draw(SIZE_FIELD), do_rectify=draw(st.booleans()))
        elif what == "distortion_model":
            msg[what] = draw(st.sampled_from(["fisheye", "equidistant", "plumb_bob", "", "kannala_brandt"])
                             | st.text(max_size=10))
        else:
            msg[what] = draw(float_list({"d": 5, "k": 9, "r": 9, "p": 12}[what]))
    return msg


@FUZZ
@given(msg=camera_info_messages(), limits=LIMITS, points=st.lists(st.tuples(FLOATS, FLOATS, FLOATS), max_size=20))
def test_fuzz_camera_info(msg, limits, points):
    """Intrinsics, the PinholeCamera the nodes build, and lidar_depth's depth image: bounded by the image limits."""
    lidar = np.array(points, np.float32).reshape(-1, 3)
    # The float32 depth image, the densified copy and its float temporaries, per pixel the limits allow.
    bound = 6 * 4 * limits.max_image_pixels + SLACK

    def depth_image():
        camera = intrinsics_from_fields(**msg, limits=limits).pinhole()
        assert camera.width <= limits.max_image_side and camera.height <= limits.max_image_side
        assert camera.width * camera.height <= limits.max_image_pixels
        with np.errstate(all="ignore"):
            return lidar_depth_image(lidar, Transform(), camera, 100.0, fill_kernel=3)

    depth = bounded_call(depth_image, bound)
    if depth is not None:
        assert depth.dtype == np.float32 and depth.size <= limits.max_image_pixels


# --- 3D boxes and orientations read from messages ---------------------------------------------------------------------

ARRAYS = st.tuples(st.integers(0, 6), st.integers(0, 5), SEEDS, st.booleans()).map(
    lambda t: np.where(np.random.default_rng(t[2]).random((t[0], t[1])) < 0.1 if t[3] else False, np.nan,
                       np.random.default_rng(t[2]).normal(size=(t[0], t[1])) * 1e3))


@FUZZ
@given(quaternion=ARRAYS, centres=ARRAYS, sizes=ARRAYS, yaws=ARRAYS)
def test_fuzz_boxes(quaternion, centres, sizes, yaws):
    """Odometry orientations and box fields of any shape or value: a yaw/corners, or MessageFormatError."""
    with np.errstate(all="ignore"):
        yaw = bounded_call(lambda: quaternion_to_yaw(quaternion), SLACK)
        if yaw is not None:
            assert np.shape(yaw) == quaternion.shape[:-1]
        corners = bounded_call(lambda: box_corners(centres, sizes, yaws.reshape(-1)), SLACK)
        if corners is not None:
            assert corners.shape[1:] == (8, 3)
