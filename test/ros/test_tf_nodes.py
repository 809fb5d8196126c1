"""Nodes that take transforms from /tf and /tf_static over real DDS (ros/tf.py, MmfusionNode.lookup_transform).

lidar_depth_node with its extrinsic only from a latched /tf_static gives the same depth image as with the extrinsic
as a parameter; a missing or stale transform skips the cloud with a WARN until TF has it; detection3d_node publishes
its boxes in ``output_frame`` through a static and an interpolated dynamic transform. Detection uses the
``centerpoint_pillar`` network with random weights over a small range (as test_detection3d_node.py).
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import TransformStamped
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from ros_mmfusion.core.codec.pointcloud import structured_cloud
from ros_mmfusion.core.detection3d.artifacts import DetectorSpec, build_detector
from ros_mmfusion.core.detection3d.pipeline import with_range
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.models.pointpillars import VARIANTS
from ros_mmfusion.core.sim import Simulation
from ros_mmfusion.core.tf_buffer import transform_boxes
from ros_mmfusion.nodes.detection3d import Detection3DNode
from ros_mmfusion.nodes.lidar_depth import LidarDepthNode
from ros_mmfusion.ros.image import image_to_numpy, numpy_to_image
from ros_mmfusion.ros.node_base import stamp_to_ns
from ros_mmfusion.ros.pointcloud import array_to_pointcloud2
from ros_mmfusion.ros.qos import LATCHED_QOS, OUTPUT_QOS
from ros_mmfusion.ros.tf import TF_QOS

W, H, F = 64, 48, 40.0
K = [F, 0.0, 31.5, 0.0, F, 23.5, 0.0, 0.0, 1.0]
#: The rig: a LiDAR 1.8 m up, yawed 0.1 rad; a camera 1.5 m ahead, 0.2 m left, pitched down 0.05 rad, with its
#: optical frame (x right, y down, z forward).
T_BASE_LIDAR = Transform.from_xyz_rpy((0.3, 0.0, 1.8), (0.0, 0.0, 0.1))
T_BASE_CAMERA = Transform.from_xyz_rpy((1.5, 0.2, 1.4), (0.0, 0.05, 0.0))
T_CAMERA_OPTICAL = Transform.from_xyz_rpy((0.0, 0.0, 0.0), (-math.pi / 2, 0.0, -math.pi / 2))
CAMERA_FROM_LIDAR = (T_BASE_CAMERA @ T_CAMERA_OPTICAL).inverse() @ T_BASE_LIDAR
NEAR = [0.0, -10.24, -3.0, 20.48, 10.24, 1.0]


def header(stamp_ns: int, frame: str) -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def stamped(parent: str, child: str, T: Transform, stamp_ns: int = 0) -> TransformStamped:
    msg = TransformStamped(header=header(stamp_ns, parent), child_frame_id=child)
    x, q = T.translation, T.quaternion()
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = map(float, x)
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = map(float, q)
    return msg


def rig_tf_static() -> TFMessage:
    return TFMessage(transforms=[stamped("base_link", "lidar_link", T_BASE_LIDAR),
                                 stamped("base_link", "camera_link", T_BASE_CAMERA),
                                 stamped("camera_link", "camera_optical", T_CAMERA_OPTICAL)])


def camera_info(stamp_ns: int) -> CameraInfo:
    return CameraInfo(header=header(stamp_ns, "camera_optical"), width=W, height=H, k=K, d=[0.0] * 5,
                      distortion_model="plumb_bob", p=[F, 0.0, 31.5, 0.0, 0.0, F, 23.5, 0.0, 0.0, 0.0, 1.0, 0.0])


def scene_cloud() -> np.ndarray:
    """Points ahead of the rig in the LiDAR frame (a wall 8 m ahead and a post), most of them in the camera's view."""
    ys, zs = np.meshgrid(np.linspace(-3.0, 3.0, 25), np.linspace(-1.5, 0.5, 9))
    wall = np.stack([np.full(ys.size, 8.0), ys.ravel(), zs.ravel()], axis=1)
    post = np.stack([np.full(5, 4.0), np.full(5, -0.8), np.linspace(-1.6, -0.6, 5)], axis=1)
    xyz = np.concatenate([wall, post]).astype(np.float32)
    return structured_cloud(xyz, intensity=np.ones(len(xyz), np.float32))


def warned(diags: list, node_name: str, *texts: str) -> bool:
    return any(s.level[0] >= DiagnosticStatus.WARN[0] and s.name.endswith(node_name) and all(t in s.message
                                                                                             for t in texts)
               for d in diags for s in d.status)


def test_the_extrinsic_from_tf_static_alone_gives_the_same_depth_as_the_parameter(graph):
    tf_pub = graph.publisher(TFMessage, "/tf_static", LATCHED_QOS)
    tf_pub.publish(rig_tf_static())  # latched before the nodes exist: they get it on joining
    by_tf = graph.add(LidarDepthNode())  # no extrinsic parameter: auto -> TF
    values = [*CAMERA_FROM_LIDAR.translation, *CAMERA_FROM_LIDAR.quaternion()]
    by_param = graph.add(LidarDepthNode(
        cli_args=["--ros-args", "-r", "__node:=lidar_depth_params", "-r", "lidar/depth_image:=params/depth_image"],
        parameter_overrides=[Parameter("camera_from_lidar", value=[float(v) for v in values])]))
    assert by_tf.tf is not None and by_param.tf is None, "only the node that needs TF has a buffer"
    assert "/tf_static" not in {s.topic_name for s in by_param.subscriptions}
    out_tf, out_param = graph.record(Image, "lidar/depth_image"), graph.record(Image, "params/depth_image")
    info_pub = graph.publisher(CameraInfo, "camera/camera_info", OUTPUT_QOS)
    cloud_pub = graph.publisher(PointCloud2, "lidar/points", OUTPUT_QOS)
    graph.wait_matched(cloud_pub)
    graph.spin_until(lambda: by_tf.depth_pub.get_subscription_count() and by_param.depth_pub.get_subscription_count())
    assert graph.spin_until(lambda: by_tf.tf.can_transform("camera_optical", "lidar_link"))
    stamp = time.time_ns()
    info_pub.publish(camera_info(stamp))
    assert graph.spin_until(lambda: by_tf.camera is not None and by_param.camera is not None)
    cloud_pub.publish(array_to_pointcloud2(scene_cloud(), header(stamp, "lidar_link")))
    assert graph.spin_until(lambda: out_tf and out_param), (by_tf.frames_skipped, by_tf._extra_findings)
    a, b = image_to_numpy(out_tf[0]), image_to_numpy(out_param[0])
    assert np.count_nonzero(a) > 50, "the scene must be in view"
    np.testing.assert_array_equal(a > 0, b > 0)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert out_tf[0].header.frame_id == "camera_optical" and stamp_to_ns(out_tf[0].header.stamp) == stamp


def test_a_missing_or_stale_transform_skips_the_cloud_with_a_warn_until_tf_has_it(graph):
    node = graph.add(LidarDepthNode(parameter_overrides=[Parameter("diagnostics_period", value=0.2),
                                                         Parameter("extrinsics_source", value="tf"),
                                                         Parameter("tf_tolerance", value=0.05)]))
    out = graph.record(Image, "lidar/depth_image")
    diags = graph.record(DiagnosticArray, "/diagnostics")
    info_pub = graph.publisher(CameraInfo, "camera/camera_info", OUTPUT_QOS)
    cloud_pub = graph.publisher(PointCloud2, "lidar/points", OUTPUT_QOS)
    static_pub = graph.publisher(TFMessage, "/tf_static", LATCHED_QOS)
    dynamic_pub = graph.publisher(TFMessage, "/tf", TF_QOS)
    graph.wait_matched(cloud_pub)
    graph.wait_matched(dynamic_pub)
    graph.spin_until(lambda: node.depth_pub.get_subscription_count() > 0)
    t0 = time.time_ns()
    info_pub.publish(camera_info(t0))
    assert graph.spin_until(lambda: node.camera is not None)

    cloud_pub.publish(array_to_pointcloud2(scene_cloud(), header(t0, "lidar_link")))
    assert graph.spin_until(lambda: node.frames_skipped == 1)
    assert graph.spin_until(lambda: warned(diags, "lidar_depth", "camera <- LiDAR", "unknown frame 'lidar_link'"),
                            5.0)
    assert not out

    # a malformed transform is left out (logged), the good one of the same message kept, the node keeps running
    bad = stamped("base_link", "radar", T_BASE_LIDAR, t0)
    bad.transform.rotation.w = 2.0
    dynamic_pub.publish(TFMessage(transforms=[bad, stamped("base_link", "imu", Transform(), t0)]))
    assert graph.spin_until(lambda: node._tf_listener.refused == 1)
    assert node.tf.frames == {"base_link", "imu"}

    # the camera side arrives latched; the LiDAR moves on /tf (a rig on a pan unit), last sample 1 s before the cloud
    static_pub.publish(TFMessage(transforms=rig_tf_static().transforms[1:]))
    dynamic_pub.publish(TFMessage(transforms=[stamped("base_link", "lidar_link", T_BASE_LIDAR, t0)]))
    assert graph.spin_until(lambda: node.tf.can_transform("camera_optical", "lidar_link", t0))
    stale = t0 + 1_000_000_000
    cloud_pub.publish(array_to_pointcloud2(scene_cloud(), header(stale, "lidar_link")))
    assert graph.spin_until(lambda: node.frames_skipped == 2)
    assert graph.spin_until(lambda: warned(diags, "lidar_depth", "extrapolation into the future", "1.000 s after"),
                            5.0)
    assert node.inputs["points"].dropped >= 2 and not out

    dynamic_pub.publish(TFMessage(transforms=[stamped("base_link", "lidar_link", T_BASE_LIDAR, stale)]))
    assert graph.spin_until(lambda: node.tf.can_transform("camera_optical", "lidar_link", stale + 1))
    cloud_pub.publish(array_to_pointcloud2(scene_cloud(), header(stale + 1, "lidar_link")))
    assert graph.spin_until(lambda: len(out) == 1), "once TF has the transform the node keeps working"
    assert "tf:camera <- LiDAR" not in node._extra_findings, "the WARN clears with the next good lookup"
    assert node.frames_skipped == 2


@pytest.fixture(scope="module")
def onnx_root(tmp_path_factory):
    return tmp_path_factory.mktemp("detection3d_tf_onnx")


def test_detection_publishes_boxes_in_the_output_frame_through_static_and_interpolated_tf(graph, onnx_root):
    sweep = Simulation("urban_day", size=(64, 48), beams=16).frame(0).lidar.points
    params = {"model": "centerpoint_pillar", "point_cloud_range": NEAR, "threads": 1, "score_thresholds": [0.1],
              "onnx_dir": str(onnx_root / "centerpoint_pillar"), "output_frame": "odom", "diagnostics_period": 0.2}
    node = graph.add(Detection3DNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))
    assert node.tf is not None
    out, markers = graph.record(Detection3DArray, "detections"), graph.record(MarkerArray, "detections/markers")
    diags = graph.record(DiagnosticArray, "/diagnostics")
    cloud_pub = graph.publisher(PointCloud2, "points", OUTPUT_QOS)
    static_pub = graph.publisher(TFMessage, "/tf_static", LATCHED_QOS)
    dynamic_pub = graph.publisher(TFMessage, "/tf", TF_QOS)
    graph.wait_matched(cloud_pub)
    graph.wait_matched(dynamic_pub)
    graph.spin_until(lambda: node.detections_pub.get_subscription_count() and node.markers_pub.get_subscription_count())
    t0 = time.time_ns()
    static_pub.publish(rig_tf_static())
    # odom -> base_link: the robot drives 2 m along odom x and turns 0.4 rad over 0.2 s around the cloud's stamp
    start, end = Transform.from_xyz_rpy((0, 0, 0), (0, 0, 0)), Transform.from_xyz_rpy((2, 0, 0), (0, 0, 0.4))
    dynamic_pub.publish(TFMessage(transforms=[stamped("odom", "base_link", start, t0 - 100_000_000),
                                              stamped("odom", "base_link", end, t0 + 100_000_000)]))
    assert graph.spin_until(lambda: node.tf.can_transform("odom", "lidar_link", t0))
    cloud_pub.publish(array_to_pointcloud2(sweep, header(t0, "lidar_link")))
    assert graph.spin_until(lambda: out and markers, 30.0), (node.frames_skipped, node._extra_findings)
    msg = out[0]
    assert msg.header.frame_id == "odom" and stamp_to_ns(msg.header.stamp) == t0
    assert markers[0].markers[0].header.frame_id == "odom"
    expected = build_detector(DetectorSpec(with_range(VARIANTS["centerpoint_pillar"], NEAR),
                                           onnx_dir=str(onnx_root / "centerpoint_pillar")),
                              threads=1, intensity_scale=1 / 255)(sweep).detections
    assert len(msg.detections) == len(expected.boxes) > 0
    T_odom_lidar = Transform.from_xyz_rpy((1, 0, 0), (0, 0, 0.2)) @ T_BASE_LIDAR  # halfway: interpolated
    centers, yaws = transform_boxes(T_odom_lidar, expected.boxes[:, :3], expected.boxes[:, 6])
    for det, center, yaw, box in zip(msg.detections, centers, yaws, expected.boxes, strict=True):
        c, s = det.bbox.center, det.bbox.size
        np.testing.assert_allclose([c.position.x, c.position.y, c.position.z], center, atol=1e-4)
        np.testing.assert_allclose([s.x, s.y, s.z], box[3:6], atol=1e-5)
        got_yaw = 2 * np.arctan2(c.orientation.z, c.orientation.w)
        assert abs(math.remainder(got_yaw - yaw, 2 * math.pi)) < 1e-4

    # a cloud 2 s after the last odometry: stale, skipped with a WARN naming the edge
    cloud_pub.publish(array_to_pointcloud2(sweep, header(t0 + 2_000_000_000, "lidar_link")))
    assert graph.spin_until(lambda: node.frames_skipped == 1, 10.0)
    assert graph.spin_until(lambda: warned(diags, "detection3d", "output_frame <- cloud", "odom -> base_link",
                                           "extrapolation into the future"), 5.0)
    assert len(out) == 1


@pytest.fixture(scope="module")
def lidar_package(tiny_thermal_package, tmp_path_factory) -> str:
    """The tiny random-weight segmentation package with LiDAR as its X modality (same network, X input 3 channels)."""
    import shutil

    import yaml

    root = tmp_path_factory.mktemp("lidar_pkg") / "pkg"
    shutil.copytree(tiny_thermal_package, root, ignore=shutil.ignore_patterns("*.onnx"))
    model = yaml.safe_load((root / "model.yaml").read_text())
    model["x_modality"] = {"name": "lidar", "params": {"max_depth": 20.0, "fill_kernel": 3}}
    (root / "model.yaml").write_text(yaml.safe_dump(model))
    return str(root)


def test_lidar_x_segmentation_takes_its_extrinsic_from_tf_as_from_the_parameter(graph, lidar_package):
    from ros_mmfusion.nodes.fusion_segmentation import FusionSegmentationNode

    common = [Parameter("model_package", value=lidar_package), Parameter("threads", value=1),
              Parameter("missing_x_policy", value="skip"), Parameter("publish_confidence", value=True)]
    static_pub = graph.publisher(TFMessage, "/tf_static", LATCHED_QOS)
    static_pub.publish(rig_tf_static())
    by_tf = graph.add(FusionSegmentationNode(parameter_overrides=common))
    values = [float(v) for v in (*CAMERA_FROM_LIDAR.translation, *CAMERA_FROM_LIDAR.quaternion())]
    by_param = graph.add(FusionSegmentationNode(
        cli_args=["--ros-args", "-r", "__node:=segmentation_params", "-r",
                  "segmentation/confidence:=params/confidence"],
        parameter_overrides=[*common, Parameter("camera_from_lidar", value=values)]))
    assert by_tf.tf is not None and by_param.tf is None
    out_tf, out_param = graph.record(Image, "segmentation/confidence"), graph.record(Image, "params/confidence")
    rgb_pub = graph.publisher(Image, "rgb/image", OUTPUT_QOS)
    info_pub = graph.publisher(CameraInfo, "rgb/camera_info", OUTPUT_QOS)
    x_pub = graph.publisher(PointCloud2, "x/points", OUTPUT_QOS)
    graph.wait_matched(x_pub)
    graph.spin_until(lambda: by_tf.confidence_pub.get_subscription_count() > 0
                     and by_param.confidence_pub.get_subscription_count() > 0)
    assert graph.spin_until(lambda: by_tf.tf.can_transform("camera_optical", "lidar_link"))
    t0 = time.time_ns()
    info_pub.publish(camera_info(t0))
    assert graph.spin_until(lambda: by_tf.camera is not None and by_param.camera is not None)
    rgb = np.full((H, W, 3), 90, np.uint8)
    rgb_pub.publish(numpy_to_image(rgb, "rgb8", header(t0, "camera_optical")))
    x_pub.publish(array_to_pointcloud2(scene_cloud(), header(t0, "lidar_link")))
    assert graph.spin_until(lambda: out_tf and out_param, 20.0), (by_tf.frames_skipped, by_tf._extra_findings)
    np.testing.assert_allclose(image_to_numpy(out_tf[0]), image_to_numpy(out_param[0]), atol=1e-5)
    # the same cloud without a camera <- LiDAR transform (an unknown LiDAR frame): skipped with a WARN
    rgb_pub.publish(numpy_to_image(rgb, "rgb8", header(t0 + 10**8, "camera_optical")))
    x_pub.publish(array_to_pointcloud2(scene_cloud(), header(t0 + 10**8, "velodyne")))
    assert graph.spin_until(lambda: by_tf.frames_skipped == 1 and len(out_param) == 2, 20.0)
    assert "unknown frame 'velodyne'" in by_tf._extra_findings["tf:camera <- LiDAR"][1]
    assert len(out_tf) == 1
