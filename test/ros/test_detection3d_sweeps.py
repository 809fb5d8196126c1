"""detection3d_node with ``sweeps: 2`` over real DDS: each cloud is merged with the previous one through the poses
/tf gives at the two stamps, exactly as the core ``SweepAccumulator`` merges them, and a cloud TF cannot place is
skipped with a WARN.

``centerpoint_pillar`` networks over 0..20.48 m x +-10.24 m with untrained weights through ONNX Runtime, one thread.
"""
from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import TransformStamped
from rclpy.parameter import Parameter
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray

from ros_mmfusion.core.detection3d.artifacts import DetectorSpec, build_detector
from ros_mmfusion.core.detection3d.pipeline import with_range
from ros_mmfusion.core.detection3d.preprocess import point_features
from ros_mmfusion.core.detection3d.sweeps import SweepAccumulator
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.models.pointpillars import VARIANTS
from ros_mmfusion.core.sim import Simulation
from ros_mmfusion.nodes.detection3d import Detection3DNode
from ros_mmfusion.ros.pointcloud import array_to_pointcloud2
from ros_mmfusion.ros.qos import LATCHED_QOS, OUTPUT_QOS
from ros_mmfusion.ros.tf import TF_QOS

NEAR = [0.0, -10.24, -3.0, 20.48, 10.24, 1.0]
T_BASE_LIDAR = Transform.from_xyz_rpy((0.3, 0.0, 1.8), (0.0, 0.0, 0.1))


def header(stamp_ns: int, frame: str) -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def stamped(parent: str, child: str, T: Transform, stamp_ns: int = 0) -> TransformStamped:
    msg = TransformStamped(header=header(stamp_ns, parent), child_frame_id=child)
    t = msg.transform
    t.translation.x, t.translation.y, t.translation.z = map(float, T.translation)
    t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w = map(float, T.quaternion())
    return msg


def test_two_sweeps_are_merged_through_tf_as_the_core_accumulator_merges_them(graph, tmp_path):
    sweep = Simulation("urban_day", size=(64, 48), beams=16).frame(0).lidar.points
    onnx_dir = str(tmp_path / "centerpoint_pillar")
    params = {"model": "centerpoint_pillar", "point_cloud_range": NEAR, "threads": 1, "score_thresholds": [0.1],
              "onnx_dir": onnx_dir, "sweeps": 2, "sweeps_frame": "odom", "sweeps_max_age": 0.5,
              "diagnostics_period": 0.2}
    node = graph.add(Detection3DNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))
    out, diags = graph.record(Detection3DArray, "detections"), graph.record(DiagnosticArray, "/diagnostics")
    cloud_pub = graph.publisher(PointCloud2, "points", OUTPUT_QOS)
    static_pub = graph.publisher(TFMessage, "/tf_static", LATCHED_QOS)
    dynamic_pub = graph.publisher(TFMessage, "/tf", TF_QOS)
    graph.wait_matched(cloud_pub)
    graph.wait_matched(dynamic_pub)
    graph.spin_until(lambda: node.detections_pub.get_subscription_count() > 0)
    t0 = time.time_ns()
    t1 = t0 + 100_000_000
    # the robot drives 1.5 m along odom x and turns 0.2 rad between the two sweeps
    odom_base = {t0: Transform.from_xyz_rpy((0, 0, 0), (0, 0, 0)), t1: Transform.from_xyz_rpy((1.5, 0, 0), (0, 0, 0.2))}
    static_pub.publish(TFMessage(transforms=[stamped("base_link", "lidar_link", T_BASE_LIDAR)]))
    dynamic_pub.publish(TFMessage(transforms=[stamped("odom", "base_link", T, t) for t, T in odom_base.items()]))
    assert graph.spin_until(lambda: node.tf.can_transform("odom", "lidar_link", t1))
    for k, t in enumerate((t0, t1)):
        cloud_pub.publish(array_to_pointcloud2(sweep, header(t, "lidar_link")))
        assert graph.spin_until(lambda k=k: len(out) > k, 30.0), (node.frames_skipped, node._extra_findings)

    accumulator = SweepAccumulator(max_sweeps=2, max_age=0.5)
    detector = build_detector(DetectorSpec(with_range(VARIANTS["centerpoint_pillar"], NEAR), onnx_dir=onnx_dir),
                              threads=1, intensity_scale=1 / 255)
    for msg, t in zip(out, (t0, t1), strict=True):
        merged = accumulator.push(t * 1e-9, (odom_base[t] @ T_BASE_LIDAR).matrix(), point_features(sweep))
        expected = detector(merged).detections
        assert len(msg.detections) == len(expected.boxes) > 0
        got = np.array([[d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z]
                        for d in msg.detections]).reshape(-1, 3)
        np.testing.assert_allclose(got, expected.boxes[:, :3], atol=1e-4)
    single = point_features(sweep)
    ego = (np.abs(single[:, 0]) < 1) & (np.abs(single[:, 1]) < 1)
    assert len(merged) == 2 * len(single) - ego.sum()  # the earlier sweep lost its points within 1 m of the sensor
    assert not np.array_equal(detector(single).detections.boxes, expected.boxes)  # merging changed the boxes

    # a cloud 2 s after the last odometry cannot be placed: skipped with a WARN naming the lookup
    cloud_pub.publish(array_to_pointcloud2(sweep, header(t1 + 2_000_000_000, "lidar_link")))
    assert graph.spin_until(lambda: node.frames_skipped == 1, 10.0)
    assert graph.spin_until(lambda: any(s.level[0] >= DiagnosticStatus.WARN[0] and "sweeps_frame <- cloud" in s.message
                                        for d in diags for s in d.status), 5.0)
    assert len(out) == 2


def test_sweeps_with_painting_is_refused_in_one_line(graph):
    """Painting scores the newest sweep's points, not the merged cloud: the combination is a start-up error."""
    import pytest

    from ros_mmfusion.core.errors import ConfigError

    params = {"painting": True, "sweeps": 2}
    with pytest.raises(ConfigError, match="parameter 'sweeps' .* does not combine with painting"):
        Detection3DNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
