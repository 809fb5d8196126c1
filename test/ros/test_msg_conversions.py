"""rclpy Image / CompressedImage / PointCloud2 / CameraInfo <-> numpy, including CDR round trips (no DDS needed)."""
from __future__ import annotations

import array
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header

from ros_mmfusion.core.codec import encoding_format, structured_cloud
from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.ros.builders import header
from ros_mmfusion.ros.camera_info import camera_info_to_intrinsics, intrinsics_to_camera_info
from ros_mmfusion.ros.image import compressed_to_numpy, image_to_numpy, numpy_to_compressed, numpy_to_image
from ros_mmfusion.ros.pointcloud import array_to_pointcloud2, pointcloud2_to_array, pointcloud2_to_xyz

HOST_BIG = sys.byteorder == "big"
ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "8UC4", "16UC1", "16UC3", "16SC1",
             "32SC1", "32FC1", "64FC1", "bayer_rggb8", "yuv422"]


def random_pixels(encoding: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    element, channels = encoding_format(encoding)
    shape = (height, width) if channels == 1 else (height, width, channels)
    raw = np.random.default_rng(seed).integers(0, 256, int(np.prod(shape)) * element.itemsize, dtype=np.uint8)
    return raw.view(element).reshape(shape)


def cdr_round_trip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("padding", "big"), [(0, None), (5, None), (3, True), (0, False)])
def test_image_round_trips_through_cdr(encoding, padding, big):
    pixels = random_pixels(encoding, 5, 7)
    step = pixels[0].nbytes + padding
    msg = numpy_to_image(pixels, encoding, header(1_700_000_000_123_456_789, "cam_optical_frame"),
                         is_bigendian=big, step=step)
    assert isinstance(msg.data, array.array) and msg.step == step
    back = cdr_round_trip(msg)
    assert back.header.frame_id == "cam_optical_frame" and back.header.stamp.nanosec == 123_456_789
    decoded = image_to_numpy(back)
    assert decoded.dtype == pixels.dtype and decoded.tobytes() == pixels.tobytes()


def test_image_decode_is_a_view_of_the_message_buffer():
    msg = numpy_to_image(random_pixels("rgb8", 4, 6), "rgb8", step=20)
    pixels = image_to_numpy(msg)
    assert np.shares_memory(pixels, np.frombuffer(msg.data, np.uint8))
    assert pixels.flags.writeable  # array.array buffers are writable; bytes ones would not be


@settings(max_examples=25, deadline=None)
@given(height=st.integers(1, 6), width=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_depth_images_keep_their_units(height, width, seed):
    depth_m = np.random.default_rng(seed).uniform(0.1, 80.0, (height, width)).astype(np.float32)
    np.testing.assert_array_equal(image_to_numpy(cdr_round_trip(numpy_to_image(depth_m, "32FC1"))), depth_m)
    depth_mm = (depth_m * 1000).astype(np.uint16)
    np.testing.assert_array_equal(image_to_numpy(cdr_round_trip(numpy_to_image(depth_mm, "16UC1"))), depth_mm)


def test_big_endian_image_from_a_foreign_publisher():
    depth = np.arange(12, dtype=np.uint16).reshape(3, 4) * 111
    msg = Image(height=3, width=4, encoding="16UC1", is_bigendian=1, step=8)
    msg.data = array.array("B", depth.astype(">u2").tobytes())
    decoded = image_to_numpy(msg)
    assert decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, depth)


def test_malformed_image_messages_raise_message_format_error():
    msg = Image(height=2, width=3, encoding="rgb8", is_bigendian=0, step=9)
    msg.data = array.array("B", bytes(10))
    with pytest.raises(MessageFormatError, match=r"Image.data has 10 bytes, expected step 9 x height 2 = 18"):
        image_to_numpy(msg)
    msg.step = 6
    with pytest.raises(MessageFormatError, match=r"Image.step 6 is smaller than one row"):
        image_to_numpy(msg)
    msg.encoding = "rgb9"
    with pytest.raises(MessageFormatError, match=r"Image.encoding 'rgb9' is unknown"):
        image_to_numpy(msg)


def test_data_assignment_stays_fast_with_field_checks_on():
    """Guards the array.array path: bytes or ndarray assignment takes ~200 ms here with ROS_PYTHON_CHECK_FIELDS=1."""
    rgb = np.zeros((720, 1280, 3), np.uint8)
    cloud = structured_cloud(np.zeros((120_000, 3)), intensity=np.zeros(120_000, np.float32))
    numpy_to_image(rgb, "rgb8")
    start = time.perf_counter()
    numpy_to_image(rgb, "rgb8")
    array_to_pointcloud2(cloud)
    assert time.perf_counter() - start < 0.05


def test_compressed_image_round_trips():
    y, x = np.mgrid[0:32, 0:48]
    rgb = np.stack([x * 5, y * 7, x + y], axis=-1).astype(np.uint8)
    msg = numpy_to_compressed(rgb, "png", header(5, "cam"))
    assert isinstance(msg, CompressedImage) and msg.format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(compressed_to_numpy(cdr_round_trip(msg)), rgb)
    jpeg = compressed_to_numpy(numpy_to_compressed(rgb, "jpeg", quality=95))
    assert np.abs(jpeg.astype(int) - rgb).mean() < 4


def test_malformed_compressed_image_raises():
    msg = CompressedImage(format="jpeg")
    msg.data = array.array("B", b"not a jpeg")
    with pytest.raises(MessageFormatError, match=r"does not decode as jpeg"):
        compressed_to_numpy(msg)


# --- PointCloud2 ------------------------------------------------------------------------------------------------------


def lidar_cloud(n: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-50, 50, (n, 3))
    xyz[::17] = np.nan
    return structured_cloud(xyz, intensity=rng.uniform(0, 255, n).astype(np.float32),
                            ring=rng.integers(0, 64, n).astype(np.uint16), t=rng.uniform(0, 0.1, n).astype(np.float64))


def test_pointcloud2_from_our_encoder_round_trips_through_rclpy_serialization():
    cloud = lidar_cloud()
    msg = array_to_pointcloud2(cloud, header(42, "lidar"))
    assert msg.is_dense is False and msg.height == 1 and msg.width == len(cloud)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("intensity", 12, PointField.FLOAT32, 1), ("ring", 16, PointField.UINT16, 1), ("t", 24, PointField.FLOAT64, 1),
    ]
    back = cdr_round_trip(msg)
    decoded = pointcloud2_to_array(back)
    assert decoded.dtype == cloud.dtype
    assert decoded.tobytes() == cloud.tobytes()
    np.testing.assert_array_equal(pointcloud2_to_xyz(back), pointcloud2_to_xyz(msg))
    assert pointcloud2_to_xyz(back).shape == (len(cloud) - len(cloud[::17]), 3)


def test_organized_big_endian_cloud_round_trips():
    xyz = np.random.default_rng(1).normal(size=(4, 8, 3))
    msg = cdr_round_trip(array_to_pointcloud2(structured_cloud(xyz), is_bigendian=not HOST_BIG))
    assert (msg.height, msg.width, msg.is_bigendian, msg.row_step) == (4, 8, not HOST_BIG, 8 * 12)
    decoded = pointcloud2_to_array(msg)
    assert decoded.shape == (4, 8)
    np.testing.assert_array_equal(decoded["z"], xyz[..., 2].astype(np.float32))


def test_cloud_decode_is_a_view_of_the_message_buffer():
    msg = array_to_pointcloud2(lidar_cloud(50))
    assert np.shares_memory(pointcloud2_to_array(msg), np.frombuffer(msg.data, np.uint8))


def test_hand_built_cloud_with_padding_fields_decodes():
    """A driver-style layout: x y z, 4 bytes of padding, intensity, ring; point_step 32; rows padded."""
    msg = PointCloud2(height=2, width=3, is_bigendian=False, point_step=32, row_step=100, is_dense=True)
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=1)
                  for n, o, d in [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 16, 7), ("ring", 20, 4)]]
    raw = np.zeros((2, 100), np.uint8)
    for row in range(2):
        for col in range(3):
            point = np.zeros(1, [("xyz", "<f4", 3), ("pad", "V4"), ("i", "<f4"), ("ring", "<u2"), ("rest", "V10")])
            point["xyz"] = [row, col, 1.0]
            point["i"] = 10 * row + col
            point["ring"] = row
            raw[row, col * 32:(col + 1) * 32] = point.view(np.uint8)
    msg.data = array.array("B", raw.tobytes())
    cloud = pointcloud2_to_array(msg)
    assert cloud.shape == (2, 3)
    np.testing.assert_array_equal(cloud["intensity"], [[0, 1, 2], [10, 11, 12]])
    np.testing.assert_array_equal(cloud["ring"], [[0, 0, 0], [1, 1, 1]])


def test_malformed_pointcloud2_messages_raise():
    msg = array_to_pointcloud2(lidar_cloud(10))
    msg.fields[3].datatype = 9
    with pytest.raises(MessageFormatError, match=r"PointField 'intensity' has unknown datatype 9"):
        pointcloud2_to_array(msg)
    msg = array_to_pointcloud2(lidar_cloud(10))
    msg.data = msg.data[:-1]
    with pytest.raises(MessageFormatError, match=r"PointCloud2.data has 319 bytes, expected row_step 320 x height 1"):
        pointcloud2_to_array(msg)
    msg = array_to_pointcloud2(lidar_cloud(10))
    msg.point_step = 20
    with pytest.raises(MessageFormatError, match=r"point_step 20 is smaller than the fields' extent: 't' ends at byte"):
        pointcloud2_to_array(msg)


def test_rosbags_bytes_decode_identically_with_rclpy():
    """What the synthetic world writes with rosbags reads back, through rclpy, as the same pixels and points."""
    from rosbags.typesys import Stores, get_typestore

    from ros_mmfusion.core.codec import encode_cloud, encode_image

    store = get_typestore(Stores.ROS2_JAZZY)
    types = store.types
    hdr = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=7, nanosec=9), frame_id="f")
    pixels = random_pixels("rgb8", 6, 5, seed=3)
    img = encode_image(pixels, "rgb8", step=16)
    image_msg = types["sensor_msgs/msg/Image"](header=hdr, height=img.height, width=img.width, encoding=img.encoding,
                                               is_bigendian=img.is_bigendian, step=img.step, data=img.data)
    raw = store.serialize_cdr(image_msg, "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(image_to_numpy(deserialize_message(bytes(raw), Image)), pixels)

    cloud = lidar_cloud(40)
    enc = encode_cloud(cloud)
    field_t = types["sensor_msgs/msg/PointField"]
    cloud_msg = types["sensor_msgs/msg/PointCloud2"](
        header=hdr, height=enc.height, width=enc.width,
        fields=[field_t(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in enc.fields],
        is_bigendian=enc.is_bigendian, point_step=enc.point_step, row_step=enc.row_step, data=enc.data,
        is_dense=enc.is_dense)
    raw = store.serialize_cdr(cloud_msg, "sensor_msgs/msg/PointCloud2")
    back = deserialize_message(bytes(raw), PointCloud2)
    assert back.is_dense is False
    assert pointcloud2_to_array(back).tobytes() == cloud.tobytes()


# --- CameraInfo -------------------------------------------------------------------------------------------------------


def camera_info(k: list[float]) -> CameraInfo:
    return CameraInfo(header=Header(frame_id="cam_optical_frame"), height=480, width=640,
                      distortion_model="plumb_bob", d=[0.1, -0.02, 0.0, 0.0, 0.0], k=k,
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[500.0, 0.0, 320.0, 0.0, 0.0, 500.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                      binning_x=2, binning_y=2,
                      roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def test_camera_info_round_trips_through_intrinsics():
    msg = camera_info([500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])
    intrinsics = camera_info_to_intrinsics(cdr_round_trip(msg))
    assert intrinsics.frame_id == "cam_optical_frame" and intrinsics.fx == 500.0 and intrinsics.binning_x == 2
    assert intrinsics.image_size() == (320, 240)
    back = intrinsics_to_camera_info(intrinsics)
    assert list(back.k) == list(msg.k) and list(back.d) == list(msg.d) and list(back.p) == list(msg.p)
    assert back.header.frame_id == "cam_optical_frame" and back.binning_y == 2
    serialize_message(back)


def test_uncalibrated_camera_info_is_rejected():
    with pytest.raises(MessageFormatError, match=r"CameraInfo.k is all zeros: the camera is uncalibrated"):
        camera_info_to_intrinsics(camera_info([0.0] * 9))
