"""lidar_depth_node and bag_player_node over real DDS, with a real rosbag2 written by rosbags."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from ros_mmfusion.core.bagio import BagSource, typestore
from ros_mmfusion.core.codec.pointcloud import structured_cloud
from ros_mmfusion.nodes.bag_player import BagPlayerNode
from ros_mmfusion.nodes.lidar_depth import LidarDepthNode
from ros_mmfusion.ros.image import image_to_numpy
from ros_mmfusion.ros.node_base import stamp_to_ns
from ros_mmfusion.ros.pointcloud import array_to_pointcloud2
from ros_mmfusion.ros.qos import OUTPUT_QOS

W, H, F = 64, 48, 40.0
#: The hand-made inputs here carry no /tf_static: the extrinsic comes from camera_from_lidar (its default: a camera at
#: the LiDAR origin looking along LiDAR +x). test_tf_nodes.py covers the extrinsic from TF.
BY_PARAMETERS = Parameter("extrinsics_source", value="parameters")
K = [F, 0.0, 31.5, 0.0, F, 23.5, 0.0, 0.0, 1.0]


def header(stamp_ns: int, frame: str) -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def camera_info(stamp_ns: int) -> CameraInfo:
    return CameraInfo(header=header(stamp_ns, "camera_optical"), width=W, height=H, k=K, d=[0.0] * 5,
                      distortion_model="plumb_bob", p=[F, 0.0, 31.5, 0.0, 0.0, F, 23.5, 0.0, 0.0, 0.0, 1.0, 0.0])


def lidar_depth_graph(graph):
    """A running lidar_depth_node (default extrinsic: camera at the LiDAR origin looking along LiDAR +x), its output
    recorder, and publishers for its inputs, all matched."""
    node = graph.add(LidarDepthNode(parameter_overrides=[BY_PARAMETERS]))
    depth_out = graph.record(Image, "lidar/depth_image")
    info_pub = graph.publisher(CameraInfo, "camera/camera_info", OUTPUT_QOS)
    cloud_pub = graph.publisher(PointCloud2, "lidar/points", OUTPUT_QOS)
    graph.wait_matched(cloud_pub)
    graph.spin_until(lambda: node.depth_pub.get_subscription_count() > 0)
    return node, depth_out, info_pub, cloud_pub


def test_lidar_points_land_at_their_pixels_with_the_clouds_stamp(graph):
    node, depth_out, info_pub, cloud_pub = lidar_depth_graph(graph)
    stamp = time.time_ns()
    info_pub.publish(camera_info(stamp))
    assert graph.spin_until(lambda: node.camera is not None)
    # LiDAR frame x forward, y left, z up: (5, 0, 0) is the image centre; (4, 1, 0.5) is left of and above it.
    xyz = np.array([[5.0, 0.0, 0.0], [4.0, 1.0, 0.5], [-3.0, 0.0, 0.0], [np.nan, 0, 0]], np.float32)
    cloud = structured_cloud(xyz, intensity=np.ones(4, np.float32))
    cloud_pub.publish(array_to_pointcloud2(cloud, header(stamp, "lidar")))
    assert graph.spin_until(lambda: len(depth_out) == 1)
    msg = depth_out[0]
    assert stamp_to_ns(msg.header.stamp) == stamp and msg.header.frame_id == "camera_optical"
    depth = image_to_numpy(msg)
    assert depth.shape == (H, W) and msg.encoding == "32FC1"
    u, v = 31.5 + F * (-1.0 / 4.0), 23.5 + F * (-0.5 / 4.0)
    assert depth[24, 32] == 5.0 or depth[23, 31] == 5.0 or depth[24, 31] == 5.0 or depth[23, 32] == 5.0
    assert depth[int(np.rint(v)), int(np.rint(u))] == 4.0
    assert np.count_nonzero(depth) == 2, "the point behind the camera and the NaN point must not appear"


def test_empty_cloud_is_skipped_and_counted_not_fatal(graph):
    """Before any CameraInfo the latest cloud waits for it (a bag may list the frame's CameraInfo after its cloud) and
    an older waiting one is skipped and counted; an empty cloud is counted malformed, not fatal."""
    node, depth_out, info_pub, cloud_pub = lidar_depth_graph(graph)
    stamp = time.time_ns()
    ahead = np.array([[5.0, 0, 0]], np.float32)
    cloud_pub.publish(array_to_pointcloud2(structured_cloud(ahead), header(stamp - 2, "lidar")))
    assert graph.spin_until(lambda: node.inputs["points"].received == 1)
    cloud_pub.publish(array_to_pointcloud2(structured_cloud(ahead), header(stamp - 1, "lidar")))
    assert graph.spin_until(lambda: node.frames_skipped == 1), "the older cloud waiting for CameraInfo is skipped"
    info_pub.publish(camera_info(stamp))
    assert graph.spin_until(lambda: len(depth_out) == 1), "the cloud that waited for CameraInfo is projected"
    assert stamp_to_ns(depth_out[0].header.stamp) == stamp - 1 and node.frames_skipped == 1
    empty = structured_cloud(np.full((2, 3), np.nan, np.float32))
    cloud_pub.publish(array_to_pointcloud2(empty, header(stamp + 1, "lidar")))
    assert graph.spin_until(lambda: node.inputs["points"].malformed == 1)
    cloud_pub.publish(array_to_pointcloud2(structured_cloud(ahead), header(stamp + 2, "lidar")))
    assert graph.spin_until(lambda: len(depth_out) == 2), "the node must keep working after a bad cloud"


def write_bag(path: Path, frames: int = 5, period_ns: int = 100_000_000) -> list[int]:
    """A small MCAP bag: CameraInfo + Image + PointCloud2 per frame, sharing one stamp per frame."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore()
    T = store.types
    start = 1_700_000_000_000_000_000
    stamps = [start + i * period_ns for i in range(frames)]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {name: writer.add_connection(topic, typ, typestore=store) for name, topic, typ in (
            ("info", "/camera/camera_info", "sensor_msgs/msg/CameraInfo"),
            ("image", "/camera/image", "sensor_msgs/msg/Image"),
            ("cloud", "/lidar/points", "sensor_msgs/msg/PointCloud2"))}
        for i, s in enumerate(stamps):
            hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=s // 10**9, nanosec=s % 10**9),
                                           frame_id="camera_optical")
            roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
            info = T["sensor_msgs/msg/CameraInfo"](
                header=hdr, height=H, width=W, distortion_model="plumb_bob", d=np.zeros(5), k=np.array(K),
                r=np.eye(3).ravel(), p=np.array([F, 0, 31.5, 0, 0, F, 23.5, 0, 0, 0, 1, 0], float), binning_x=0,
                binning_y=0, roi=roi)
            img = T["sensor_msgs/msg/Image"](header=hdr, height=H, width=W, encoding="mono8", is_bigendian=0, step=W,
                                             data=np.full(W * H, i, np.uint8))
            pts = np.array([[5.0, 0.0, 0.0, 1.0]], np.float32)
            fields = [T["sensor_msgs/msg/PointField"](name=n, offset=4 * k, datatype=7, count=1)
                      for k, n in enumerate(("x", "y", "z", "intensity"))]
            lidar_hdr = T["std_msgs/msg/Header"](stamp=hdr.stamp, frame_id="lidar")
            cloud = T["sensor_msgs/msg/PointCloud2"](header=lidar_hdr, height=1, width=1, fields=fields,
                                                     is_bigendian=False, point_step=16, row_step=16,
                                                     data=pts.view(np.uint8).ravel(), is_dense=True)
            for name, msg in (("info", info), ("image", img), ("cloud", cloud)):
                writer.write(conns[name], s, store.serialize_cdr(msg, msg.__msgtype__))
    return stamps


def test_bag_player_replays_a_bag_restamped_into_a_running_pipeline(graph, tmp_path):
    bag = tmp_path / "bag"
    stamps = write_bag(bag)
    with BagSource(bag) as source:
        assert source.message_counts == {"/camera/camera_info": 5, "/camera/image": 5, "/lidar/points": 5}
    images = graph.record(Image, "/camera/image")
    depth_out = graph.record(Image, "lidar/depth_image")
    lidar = graph.add(LidarDepthNode(parameter_overrides=[BY_PARAMETERS]))
    graph.spin_until(lambda: lidar.depth_pub.get_subscription_count() > 0)
    started = time.time_ns()
    player = graph.add(BagPlayerNode(parameter_overrides=[Parameter("bag", value=str(bag)),
                                                          Parameter("start_delay", value=1.0)]))
    # The first cloud may beat the first CameraInfo (no ordering across topics): it is skipped, not fatal.
    ok = graph.spin_until(lambda: player.finished.is_set() and len(images) == 5
                          and len(depth_out) + lidar.frames_skipped == 5, 15.0)
    assert ok, (player.finished.is_set(), len(images), len(depth_out), player.published, lidar.frames_skipped)
    assert [int(image_to_numpy(m)[0, 0]) for m in images] == [0, 1, 2, 3, 4]
    new = [stamp_to_ns(m.header.stamp) for m in images]
    assert all(n > started for n in new), "restamped onto the wall clock at playback"
    assert np.allclose(np.diff(new), np.diff(stamps)), "the recorded spacing is kept"
    out_stamps = [stamp_to_ns(m.header.stamp) for m in depth_out]
    assert set(out_stamps) <= set(new) and out_stamps == sorted(set(out_stamps)), "outputs keep input stamps"
    assert lidar.frames_skipped <= 1, "only a cloud that beats the first CameraInfo may be skipped"
    assert player.published == {"/camera/camera_info": 5, "/camera/image": 5, "/lidar/points": 5}


def test_a_looping_one_second_bag_keeps_the_pipeline_running(graph, tmp_path):
    """A 1 s bag replayed in a loop with its recorded stamps: every loop steps time back 0.9 s. Before the fix that
    was "out of order" (under the 2 s jump threshold) and never advanced the guard, so the node published one loop
    and then nothing for good; now each loop is a time jump that resets the node within one frame."""
    bag = tmp_path / "bag"
    write_bag(bag, frames=10)
    depth_out = graph.record(Image, "lidar/depth_image")
    lidar = graph.add(LidarDepthNode(parameter_overrides=[BY_PARAMETERS]))
    graph.spin_until(lambda: lidar.depth_pub.get_subscription_count() > 0)
    player = graph.add(BagPlayerNode(parameter_overrides=[
        Parameter("bag", value=str(bag)), Parameter("loop", value=True), Parameter("restamp", value=False),
        Parameter("start_delay", value=0.5)]))
    ok = graph.spin_until(lambda: player.published["/lidar/points"] >= 40, 15.0)
    graph.spin_for(0.3)
    assert ok, player.published
    clouds = player.published["/lidar/points"]
    loops = clouds // 10
    assert loops - 1 <= lidar.time_jumps <= loops, ("one reset per loop, not one per input", lidar.time_jumps, clouds)
    # A cloud may beat its CameraInfo across topics (skipped, as in any replay); a jump costs at most one frame.
    assert len(depth_out) >= clouds - 1 - 2 * lidar.time_jumps, (len(depth_out), clouds, lidar.frames_skipped)
    late = [stamp_to_ns(m.header.stamp) for m in depth_out[-5:]]
    assert late, "outputs keep coming in the last loop"


def test_camera_from_lidar_set_at_run_time_moves_the_next_depth_image_and_read_only_ones_are_refused(graph):
    """Over DDS, as `ros2 param set` does: a writable parameter takes effect on the next output, a read-only one is
    refused, and camera_from_lidar is refused where it would do nothing (a calibration file takes precedence)."""
    node, depth_out, info_pub, cloud_pub = lidar_depth_graph(graph)
    stamp = time.time_ns()
    info_pub.publish(camera_info(stamp))
    assert graph.spin_until(lambda: node.camera is not None)
    point = structured_cloud(np.array([[5.0, 0.0, 0.0]], np.float32))

    def depth_pixel(k: int) -> tuple[int, int]:
        cloud_pub.publish(array_to_pointcloud2(point, header(stamp + k, "lidar")))
        assert graph.spin_until(lambda: len(depth_out) == k)
        rows, cols = np.nonzero(image_to_numpy(depth_out[-1]))
        assert len(rows) == 1
        return int(rows[0]), int(cols[0])

    row, col = depth_pixel(1)
    assert abs(col - 31.5) <= 0.5  # default extrinsic: the point straight ahead lands at the image centre
    # Camera 1 m to the LiDAR's left (+y), same orientation: the point now appears 1 m to the camera's right, so
    # (optical x right) u = cx + F * 1 / 5 = 39.5.
    moved = [0.0, 0.0, 0.0, 0.5, -0.5, 0.5, 0.5]
    moved[0] = 1.0  # translation in the camera optical frame: x right
    result = graph.set_parameters("lidar_depth", [Parameter("camera_from_lidar", value=moved)])
    assert result[0].successful, result[0].reason
    row2, col2 = depth_pixel(2)
    assert row2 == row and abs(col2 - (31.5 + F * 1.0 / 5.0)) <= 0.5

    refused = graph.set_parameters("lidar_depth", [Parameter("calibration_file", value="/tmp/calibration.yaml")])
    assert not refused[0].successful and "read-only" in refused[0].reason.lower()
    bad = graph.set_parameters("lidar_depth", [Parameter("camera_from_lidar", value=[0.0, 0.0, 0.0, 1.0, 1.0, 0.0,
                                                                                      0.0])])
    assert not bad[0].successful and "unit length" in bad[0].reason
    assert depth_pixel(3) == (row2, col2), "a refused change must leave the extrinsic as it was"


def test_camera_from_lidar_is_refused_while_a_calibration_file_gives_the_extrinsic(graph, tmp_path):
    from ros_mmfusion.core.sim.calibration import write_calibration
    from ros_mmfusion.core.sim.sensors import make_rig

    path = write_calibration(tmp_path / "calibration.yaml", make_rig("car", W, H))
    node = graph.add(LidarDepthNode(parameter_overrides=[Parameter("calibration_file", value=str(path))]))
    before, default = node.camera_from_lidar.matrix(), list(node.params["camera_from_lidar"])
    result = graph.set_parameters("lidar_depth", [Parameter("camera_from_lidar",
                                                            value=[1.0, 0.0, 0.0, 0.5, -0.5, 0.5, 0.5])])
    assert not result[0].successful and "calibration_file" in result[0].reason
    np.testing.assert_array_equal(node.camera_from_lidar.matrix(), before)
    assert node.params["camera_from_lidar"] == default
