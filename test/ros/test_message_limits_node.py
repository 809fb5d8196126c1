"""Message limits in a running node over real DDS: lidar_depth_node given a 50000x50000 CameraInfo and a PointCloud2
header claiming 4 billion points stays alive, allocates nothing for them, reports them as malformed in /diagnostics
and keeps producing depth images from the next valid frames (issue 11: one 20000x20000 CameraInfo took 4.8 GB)."""
from __future__ import annotations

import time

import numpy as np
import psutil
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterType
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from ros_mmfusion.core.codec.limits import DEFAULT_LIMITS
from ros_mmfusion.core.codec.pointcloud import structured_cloud
from ros_mmfusion.nodes.lidar_depth import LidarDepthNode
from ros_mmfusion.ros.image import image_to_numpy
from ros_mmfusion.ros.pointcloud import array_to_pointcloud2
from ros_mmfusion.ros.qos import OUTPUT_QOS

from .test_lidar_depth_and_player import H, W, camera_info, header

RSS_GROWTH_LIMIT = 200 << 20  # bytes


def latest_values(diagnostics: list[DiagnosticArray]) -> dict[str, str]:
    status = [s for d in diagnostics for s in d.status if s.name.endswith("lidar_depth")]
    return {kv.key: kv.value for kv in status[-1].values} if status else {}


def huge_cloud_header(stamp_ns: int) -> PointCloud2:
    """A PointCloud2 whose header claims 2^32 - 1 points of 16 bytes (64 GiB) and carries 16 bytes."""
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    return PointCloud2(header=header(stamp_ns, "lidar"), height=1, width=2**32 - 1, fields=fields, point_step=16,
                       row_step=2**32 - 16, data=bytes(16), is_dense=True)  # the largest uint32 row


def test_huge_camera_info_and_cloud_header_are_malformed_and_cost_nothing(graph):
    node = graph.add(LidarDepthNode(parameter_overrides=[Parameter("diagnostics_period", value=0.2),
                                                         Parameter("extrinsics_source", value="parameters"),
                                                         Parameter("input_timeout", value=30.0)]))
    depth_out = graph.record(Image, "lidar/depth_image")
    diagnostics = graph.record(DiagnosticArray, "/diagnostics")
    info_pub = graph.publisher(CameraInfo, "camera/camera_info", OUTPUT_QOS)
    cloud_pub = graph.publisher(PointCloud2, "lidar/points", OUTPUT_QOS)
    graph.wait_matched(cloud_pub)
    graph.wait_matched(info_pub)
    graph.spin_until(lambda: node.depth_pub.get_subscription_count() > 0)
    point = structured_cloud(np.array([[5.0, 0.0, 0.0]], np.float32))
    stamp = time.time_ns()
    info_pub.publish(camera_info(stamp))
    assert graph.spin_until(lambda: node.camera is not None)
    process = psutil.Process()
    rss_before = process.memory_info().rss

    huge = camera_info(stamp + 1)
    huge.width = huge.height = 50000
    info_pub.publish(huge)
    assert graph.spin_until(lambda: node.inputs["camera_info"].malformed == 1), \
        "a 50000x50000 CameraInfo must be refused as malformed (and never used for a depth image)"
    assert (node.camera.width, node.camera.height) == (W, H), "the last valid calibration stays in use"
    cloud_pub.publish(huge_cloud_header(stamp + 2))
    assert graph.spin_until(lambda: node.inputs["points"].malformed == 1), \
        "a cloud header claiming 2^32 - 1 points must be refused as malformed"

    cloud_pub.publish(array_to_pointcloud2(point, header(stamp + 3, "lidar")))
    assert graph.spin_until(lambda: len(depth_out) == 1), "the node must keep working after the refused inputs"
    assert image_to_numpy(depth_out[0]).shape == (H, W)
    growth = process.memory_info().rss - rss_before
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.0f} MiB"

    assert graph.spin_until(lambda: latest_values(diagnostics).get("camera_info.malformed") == "1"
                            and latest_values(diagnostics).get("points.malformed") == "1", 5.0)
    assert latest_values(diagnostics)["frames_processed"] == "1"


def test_limits_are_parameters_with_descriptors_that_take_effect_at_run_time(graph):
    node = graph.add(LidarDepthNode())
    descriptor = node.describe_parameter("max_image_side")
    assert descriptor.type == ParameterType.PARAMETER_INTEGER and "pixels" in descriptor.description
    assert descriptor.integer_range[0].from_value == 1
    assert node.get_parameter("max_image_pixels").value == DEFAULT_LIMITS.max_image_pixels
    assert not node.set_parameters([Parameter("max_points", value=0)])[0].successful
    assert node.set_parameters([Parameter("max_image_side", value=32)])[0].successful

    info_pub = graph.publisher(CameraInfo, "camera/camera_info", OUTPUT_QOS)
    graph.wait_matched(info_pub)
    info_pub.publish(camera_info(time.time_ns()))  # 64 x 48: over the new limit
    assert graph.spin_until(lambda: node.inputs["camera_info"].malformed == 1)
    assert node.camera is None
    assert node.set_parameters([Parameter("max_image_side", value=64)])[0].successful
    info_pub.publish(camera_info(time.time_ns()))
    assert graph.spin_until(lambda: node.camera is not None)
