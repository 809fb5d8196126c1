"""vint_navigation_node's localisation choice over real DDS: the odometry filter (the default) falls back to the
deployment's window on a topomap without poses (an upstream ViNT one) with a WARN finding, and without odometry it
keeps navigating on the network alone with a WARN finding ``odometry_filter``. Random reduced weights, ONNX Runtime."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from nav_msgs.msg import Path
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from ros_mmfusion.core.health import Level
from ros_mmfusion.core.navigation.localization import OdometryFilterLocalizer, TopomapLocalizer
from ros_mmfusion.ros.builders import header
from ros_mmfusion.ros.image import numpy_to_image
from ros_mmfusion.ros.qos import OUTPUT_QOS

H, W = 48, 64


def image(k: int) -> np.ndarray:
    rng = np.random.default_rng(k)
    return cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (5, 5), 0)


def start_node(graph, topomap: str):
    from ros_mmfusion.nodes.vint_navigation import VintNavigationNode

    node = graph.add(VintNavigationNode(parameter_overrides=[
        Parameter("topomap_dir", value=topomap), Parameter("variant", value="vint_reduced"),
        Parameter("model_package", value=""), Parameter("threads", value=1), Parameter("path_frame", value=""),
        Parameter("diagnostics_period", value=0.2)]))
    paths = graph.record(Path, "navigation/path")
    pub = graph.publisher(Image, "image", OUTPUT_QOS)
    graph.wait_matched(pub)
    assert graph.spin_until(lambda: node.path_pub.get_subscription_count() > 0)
    return node, paths, pub


def drive(graph, node, pub, paths, frames: int) -> None:
    """Publish ``frames`` camera frames at the model's rate; at least three paths come back."""
    period_ns = int(1e9 / node.policy.frame_rate_hz)
    start = time.time_ns()
    for k in range(frames):
        pub.publish(numpy_to_image(image(k), "rgb8", header(start + k * period_ns, "camera")))
        graph.spin_for(0.05)
    assert graph.spin_until(lambda: len(paths) >= 3, 20.0), (len(paths), node.frames_skipped)


def test_a_topomap_without_poses_falls_back_to_the_window_with_a_warning(graph, tmp_path):
    topomap = tmp_path / "upstream_topomap"  # ViNT's format: 0.png, 1.png, ... and nothing else
    topomap.mkdir()
    for k in range(4):
        cv2.imwrite(str(topomap / f"{k}.png"), image(100 + k)[:, :, ::-1])
    node, paths, pub = start_node(graph, str(topomap))
    assert node.params["localization"] == "odometry_filter", "the default asks for the filter"
    assert type(node.policy.localizer) is TopomapLocalizer
    level, text = node._extra_findings["localization"]
    assert level == Level.WARN and "has no poses" in text and "window" in text
    drive(graph, node, pub, paths, node.policy.context_size + 4)
    assert node.health().level >= Level.WARN


def test_the_filter_without_odometry_keeps_navigating_and_says_so(graph, tmp_path):
    from ros_mmfusion.core.navigation import build_topomap
    from ros_mmfusion.core.sim import record

    record("indoor_corridor", tmp_path / "pass1", 12, size=(W, H), beams=16, rate=4.0)
    build_topomap(tmp_path / "pass1", "/camera/color/image_raw", 1.0, tmp_path / "map", "/odom")
    node, paths, pub = start_node(graph, str(tmp_path / "map"))
    assert isinstance(node.policy.localizer, OdometryFilterLocalizer) and "localization" not in node._extra_findings
    drive(graph, node, pub, paths, node.policy.context_size + 4)  # no /odom at all
    level, text = node._extra_findings["odometry_filter"]
    assert level == Level.WARN and "no odometry" in text
    assert node.frames_processed >= 3, "the network alone still localises and publishes"
    assert node.last_pose is None, "no motion update without odometry: the belief moved on the network alone"


def test_the_filter_counts_the_distance_driven_while_the_context_fills(graph, tmp_path):
    """A robot already driving (1 m/s along x) when the node starts: the filter is anchored at the odometry pose of
    the context's first frame, so its first step moves the belief by what was driven since (1.25 m over five 4 Hz
    frame periods on a map with nodes 1 m apart), not from where the robot is at that step."""
    from nav_msgs.msg import Odometry

    from ros_mmfusion.core.navigation import build_topomap
    from ros_mmfusion.core.sim import record

    record("indoor_corridor", tmp_path / "pass1", 12, size=(W, H), beams=16, rate=4.0)
    build_topomap(tmp_path / "pass1", "/camera/color/image_raw", 1.0, tmp_path / "map", "/odom")
    node, paths, pub = start_node(graph, str(tmp_path / "map"))
    odom_pub = graph.publisher(Odometry, "odom", OUTPUT_QOS)
    graph.wait_matched(odom_pub)
    period_ns = int(1e9 / node.policy.frame_rate_hz)
    start = time.time_ns()
    anchored = None
    for k in range(node.policy.context_size + 1):
        stamp = start + k * period_ns
        for dt in (-period_ns // 2, 0, period_ns // 2):  # odometry around each frame, as a 12 Hz source sends it
            odom = Odometry(header=header(stamp + dt, "odom"), child_frame_id="base_link")
            odom.pose.pose.position.x = (stamp + dt - start) / 1e9
            odom.pose.pose.orientation.w = 1.0
            odom.twist.twist.linear.x = 1.0
            odom_pub.publish(odom)
        graph.spin_for(0.05)
        pub.publish(numpy_to_image(image(k), "rgb8", header(stamp, "camera")))
        assert graph.spin_until(lambda k=k: node.inputs["image"].received > k, 5.0)
        if k == 0:
            anchored = None if node.last_pose is None else node.last_pose.copy()
    assert anchored is not None and abs(anchored[0]) < 1e-6, "anchored at the first frame's odometry pose"
    assert graph.spin_until(lambda: len(paths) >= 1, 20.0), node.frames_skipped
    driven = node.policy.context_size * period_ns / 1e9
    assert node.last_pose[0] == pytest.approx(driven, abs=1e-6)
    assert node.policy.localizer.position >= driven - 0.6, node.policy.localizer.belief
