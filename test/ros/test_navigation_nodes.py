"""ViNT navigation over real DDS: the waypoint controller alone (limits, timeout, goal, Twist/TwistStamped), and the
`navigation` preset replaying the corridor's second pass against a topomap of the first.

The preset test runs untrained ViNT weights, whose temporal distances are the same for every goal image (measured:
0.0104 for all candidates), so the model alone would never move the localised node. It therefore sets the
documented test hook ``distance_source: odometry`` (ground-truth distances from the live /odom and the topomap's
recorded poses); the model still runs on every step for the waypoints, through ONNX Runtime.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Int32

from ros_mmfusion.nodes.waypoint_controller import WaypointControllerNode
from ros_mmfusion.ros.builders import header
from ros_mmfusion.ros.node_base import stamp_to_ns
from ros_mmfusion.ros.qos import OUTPUT_QOS

RATE = 9.0


def start_controller(graph, stamped: bool = False, **params):
    values = {"max_linear_velocity": 0.2, "max_angular_velocity": 0.4, "max_linear_acceleration": 0.5,
              "max_angular_acceleration": 1.0, "waypoint_timeout": 0.4, "control_rate": RATE,
              "diagnostics_period": 0.2, "cmd_vel_stamped": stamped, **params}
    node = graph.add(WaypointControllerNode(parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
    cmds = graph.record(TwistStamped if stamped else Twist, "cmd_vel")
    waypoint_pub = graph.publisher(PoseStamped, "navigation/waypoint", OUTPUT_QOS)
    goal_pub = graph.publisher(Bool, "navigation/goal_reached", OUTPUT_QOS)
    graph.wait_matched(waypoint_pub)
    graph.wait_matched(goal_pub)
    assert graph.spin_until(lambda: node.cmd_pub.get_subscription_count() > 0)
    return node, cmds, waypoint_pub, goal_pub


def waypoint(x: float, y: float, frame: str = "base_link") -> PoseStamped:
    msg = PoseStamped(header=header(time.time_ns(), frame))
    msg.pose.position.x, msg.pose.position.y = x, y
    msg.pose.orientation.w = 1.0
    return msg


def velocities(cmds) -> np.ndarray:
    return np.array([[getattr(c, "twist", c).linear.x, getattr(c, "twist", c).angular.z] for c in cmds])


def assert_acceleration_limited(cmds: list[TwistStamped], linear: float, angular: float) -> None:
    """Successive TwistStamped commands differ by at most the limits times their stamp difference (the controller
    stamps each command with the node-clock time it computed it for); stops to zero are immediate by design.
    Tolerance 1e-6: the controller works in float seconds, whose resolution at today's epoch is 2.4e-7 s."""
    v = velocities(cmds)
    elapsed = np.diff([stamp_to_ns(c.header.stamp) for c in cmds]) / 1e9
    assert np.all(elapsed > 0)
    ramping = np.any(v[1:] != 0.0, axis=1)
    dv = np.abs(np.diff(v, axis=0))[ramping]
    assert np.all(dv[:, 0] <= linear * elapsed[ramping] + 1e-6), (dv[:, 0], elapsed[ramping])
    assert np.all(dv[:, 1] <= angular * elapsed[ramping] + 1e-6), (dv[:, 1], elapsed[ramping])


def test_controller_ramps_within_limits_and_stops_when_waypoints_time_out(graph):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    node, cmds, waypoint_pub, _ = start_controller(graph)
    diags = graph.record(DiagnosticArray, "/diagnostics")
    graph.spin_for(0.5)
    assert cmds == [], "nothing is commanded before the first waypoint"
    for _ in range(20):  # 2 s of waypoints 0.2 m ahead, 0.1 m left (the law asks 0.8 m/s, 1.8 rad/s)
        waypoint_pub.publish(waypoint(0.2, 0.1))
        graph.spin_for(0.1)
    moving = len(cmds)
    assert moving >= 12
    graph.spin_for(1.2)
    v = velocities(cmds)
    assert np.all((v[:, 0] >= 0) & (v[:, 0] <= 0.2 + 1e-9)) and np.all(np.abs(v[:, 1]) <= 0.4 + 1e-9)
    assert v[moving - 1] == pytest.approx([0.2, 0.4]), "saturated at the velocity limits"
    assert np.all(np.diff(v[:moving], axis=0) >= 0), "a monotonic ramp, not a jump"
    assert v[0, 0] < 0.2, "the first command ramps up from rest (0.5 m/s^2 at 9 Hz: 0.056 m/s a tick)"
    assert np.all(v[-4:] == 0.0) and node.last_command.state == "timeout"
    assert graph.spin_until(lambda: any(s.level == DiagnosticStatus.WARN and "no waypoint" in s.message
                                        for d in diags for s in d.status), 3.0)


def test_controller_publishes_twist_stamped_limits_acceleration_stops_at_the_goal_and_skips_untransformable(graph):
    node, cmds, waypoint_pub, goal_pub = start_controller(graph, stamped=True)
    waypoint_pub.publish(waypoint(0.05, 0.0, frame="odom"))  # no TF relates odom to base_link here
    assert graph.spin_until(lambda: node.inputs["waypoint"].dropped == 1, 5.0)
    assert cmds == [], "a waypoint that cannot be moved into base_frame is not followed"
    assert "tf:waypoint" in node._extra_findings and node.frames_skipped == 1
    for _ in range(12):
        waypoint_pub.publish(waypoint(0.05, -0.02))
        graph.spin_for(0.1)
    assert graph.spin_until(lambda: len(cmds) >= 8, 5.0)
    assert all(c.header.frame_id == "base_link" for c in cmds)
    assert_acceleration_limited(cmds, 0.5, 1.0)
    v = velocities(cmds)
    assert v[-1, 0] == pytest.approx(0.2) and v[-1, 1] < 0, "0.05 m in 0.25 s asks 0.2 m/s; turning right"
    goal_pub.publish(Bool(data=True))
    for _ in range(5):
        waypoint_pub.publish(waypoint(0.05, 0.0))
        graph.spin_for(0.1)
    assert node.last_command.state == "goal" and np.all(velocities(cmds)[-3:] == 0.0)


def test_controller_moves_a_waypoint_in_the_odometry_frame_into_base_frame_through_tf(graph):
    """The robot stands at (1, 2) in odom facing +y (TF odom -> base_link on /tf); a waypoint 0.05 m ahead of it,
    given in odom as (1, 2.05), is straight ahead in base_link: full speed, no turn. Followed as given in base_link
    it would be (1, 2.05), far to the left: a saturated left turn."""
    import math

    from tf2_msgs.msg import TFMessage

    from ros_mmfusion.core.geometry import Transform
    from ros_mmfusion.ros.tf import TF_QOS

    from .test_tf_nodes import stamped

    node, cmds, waypoint_pub, _ = start_controller(graph, stamped=True, max_linear_acceleration=0.0,
                                                   max_angular_acceleration=0.0)
    tf_pub = graph.publisher(TFMessage, "/tf", TF_QOS)
    graph.wait_matched(tf_pub)
    T_odom_base = Transform.from_xyz_rpy((1.0, 2.0, 0.0), (0.0, 0.0, math.pi / 2))
    for _ in range(10):
        now = time.time_ns()
        tf_pub.publish(TFMessage(transforms=[stamped("odom", "base_link", T_odom_base, now - 50_000_000),
                                             stamped("odom", "base_link", T_odom_base, now + 50_000_000)]))
        graph.spin_for(0.02)
        waypoint_pub.publish(waypoint(1.0, 2.05, frame="odom"))
        graph.spin_for(0.08)
    assert graph.spin_until(lambda: len(cmds) >= 3, 5.0), (node.frames_skipped, node._extra_findings)
    # ahead; its heading (odom +x, the robot faces odom +y) points to the robot's right
    assert node.follower.waypoint == pytest.approx((0.05, 0.0, 0.0, -1.0), abs=1e-9)
    v = velocities(cmds)
    assert v[-1] == pytest.approx([0.2, 0.0]), "0.05 m straight ahead in 0.25 s: 0.2 m/s, no turn"
    assert node.inputs["waypoint"].dropped == 0 and "tf:waypoint" not in node._extra_findings


def depth_camera(graph, rig):
    """Publishers of a depth camera on the synthetic robot's rig: its mounting sent on /tf_static; returns
    ``send(depth (H, W) metres, stamp ns)`` that publishes its camera_info and image."""
    from sensor_msgs.msg import CameraInfo
    from tf2_msgs.msg import TFMessage

    from ros_mmfusion.core.codec.camera import CameraIntrinsics
    from ros_mmfusion.ros.camera_info import intrinsics_to_camera_info
    from ros_mmfusion.ros.image import numpy_to_image
    from ros_mmfusion.ros.qos import LATCHED_QOS, SENSOR_QOS

    from .test_tf_nodes import stamped

    frame, camera = rig.depth.frame_id, rig.depth.camera
    static_pub = graph.publisher(TFMessage, "/tf_static", LATCHED_QOS)
    info_pub = graph.publisher(CameraInfo, "depth/camera_info", SENSOR_QOS)
    depth_pub = graph.publisher(Image, "depth/image", SENSOR_QOS)
    for pub in (static_pub, info_pub, depth_pub):
        graph.wait_matched(pub)
    static_pub.publish(TFMessage(transforms=[stamped("base_link", frame, rig.depth.T_base_sensor)]))
    k = camera.k
    info = intrinsics_to_camera_info(CameraIntrinsics(camera.height, camera.width, k, np.zeros(5), "plumb_bob",
                                                      np.eye(3), np.hstack([k, np.zeros((3, 1))])))

    def send(depth: np.ndarray, stamp: int) -> None:
        info.header = header(stamp, frame)
        info_pub.publish(info)
        depth_pub.publish(numpy_to_image(depth.astype(np.float32), "32FC1", header(stamp, frame)))

    return send


def test_controller_guard_slows_before_a_wall_seen_by_depth_and_stops_when_depth_stops(graph):
    """A depth camera (the synthetic robot's rig, TF on /tf_static) sees a wall 1 m in front of its lens; the waypoint
    asks 1 m/s straight ahead. The guard slows the robot (every turn within 0.4 rad/s meets the wall inside 2 s),
    counts it in /diagnostics, and stops it with a WARN finding once depth stops arriving."""
    from ros_mmfusion.core.health import Level
    from ros_mmfusion.core.sim.sensors import make_rig

    node, cmds, waypoint_pub, _ = start_controller(
        graph, stamped=True, max_linear_velocity=1.0, max_linear_acceleration=0.0, max_angular_acceleration=0.0,
        obstacle_guard=True, guard_fixed_frame="", guard_timeout=0.5, waypoint_timeout=1.0)
    send = depth_camera(graph, make_rig("robot", 32, 24))
    wall = np.full((24, 32), 1.0, np.float32)
    for _ in range(15):
        send(wall, time.time_ns())
        waypoint_pub.publish(waypoint(0.25, 0.0))
        graph.spin_for(0.1)
    assert graph.spin_until(lambda: node.guard_counts["slow"] >= 3, 5.0), (node.guard_counts, node._extra_findings)
    assert node.obstacles[2] is None, "no velocities without a fixed frame to follow obstacles in"
    v = velocities(cmds)
    assert len(v) >= 5 and v[-1, 0] < 0.6, "slowed below the 1 m/s the waypoint asks"
    assert node.last_command.state in ("guard_slow", "guard_stop") and "obstacles" not in node._extra_findings
    for _ in range(10):  # waypoints go on, depth does not: the blind guard stops the robot
        waypoint_pub.publish(waypoint(0.25, 0.0))
        graph.spin_for(0.1)
    assert node.last_command.state == "blind" and np.all(velocities(cmds)[-3:] == 0.0)
    assert node._extra_findings["obstacles"][0] == Level.WARN
    report = node.health()
    assert node.diagnostic_values(report)["guard_slow"] == str(node.guard_counts["slow"])


@pytest.mark.parametrize("track", [True, False])
def test_controller_guard_follows_a_person_walking_across_the_depth_image(graph, track):
    """A person (a band of depth 2 m, 8 of 64 columns, the rest no return) walks across the depth image to the robot's
    right, two columns per 0.1 s (about 1 m/s at that range), the robot standing at the odometry origin. With
    ``guard_track_motion`` the obstacles kept in odom carry that velocity (to the right, -y); without, none."""
    from tf2_msgs.msg import TFMessage

    from ros_mmfusion.core.geometry import Transform
    from ros_mmfusion.core.sim.sensors import make_rig
    from ros_mmfusion.ros.tf import TF_QOS

    from .test_tf_nodes import stamped

    rig = make_rig("robot", 64, 48)
    node, _, waypoint_pub, _ = start_controller(graph, obstacle_guard=True, guard_track_motion=track)
    send = depth_camera(graph, rig)
    tf_pub = graph.publisher(TFMessage, "/tf", TF_QOS)
    graph.wait_matched(tf_pub)
    start, origin = time.time_ns(), Transform.from_xyz_rpy((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    for k in range(12):
        stamp = start + k * 100_000_000
        tf_pub.publish(TFMessage(transforms=[stamped("odom", "base_link", origin, stamp - 50_000_000),
                                             stamped("odom", "base_link", origin, stamp + 50_000_000)]))
        depth = np.full((48, 64), np.nan, np.float32)
        depth[:, 16 + 2 * k: 24 + 2 * k] = 2.0
        send(depth, stamp)
        waypoint_pub.publish(waypoint(0.05, 0.0))
        graph.spin_for(0.1)
    assert graph.spin_until(lambda: node.obstacles is not None and node.pending_depth is None, 5.0), node.guard_wait
    points, moving = node.obstacles[1], node.obstacles[2]
    assert len(points) >= 3 and np.all(np.abs(points[:, 0] - 2.2) < 0.3), "the person 2 m ahead of the lens, in odom"
    if not track:
        assert moving is None
        return
    speed = 2 * 2.0 * 2.0 * math.tan(math.radians(40.0)) / 64 / 0.1  # two columns of 64 over 80 degrees at 2 m
    v = moving.mean(axis=0)
    assert np.all(moving == moving[0]), "one cluster, one velocity"
    assert v[1] == pytest.approx(-speed, rel=0.25) and abs(v[0]) < 0.2 * speed, (v, speed)


class Recorder(Node):
    """Every message of the navigation outputs, in arrival order."""

    TOPICS = {"/navigation/path": Path, "/navigation/waypoint": PoseStamped, "/navigation/goal_reached": Bool,
              "/navigation/closest_node": Int32, "/cmd_vel": TwistStamped, "/camera/color/image_raw": Image,
              "/odom": Odometry}

    def __init__(self) -> None:
        super().__init__("navigation_recorder")
        self.messages: dict[str, list] = {t: [] for t in self.TOPICS}
        for topic, msg_type in self.TOPICS.items():
            self.create_subscription(msg_type, topic, self.messages[topic].append, OUTPUT_QOS)


def test_second_pass_replayed_through_the_navigation_preset_localises_forward_and_commands_within_limits(
        tmp_path, monkeypatch):
    from ros_mmfusion import presets
    from ros_mmfusion.core.navigation import build_topomap
    from ros_mmfusion.core.sim import record
    from ros_mmfusion.launcher import run_in_process

    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))
    record("indoor_corridor", tmp_path / "pass1", 24, size=(96, 72), beams=16, rate=4.0)  # 6 s: nodes at 0..5 m
    record("indoor_corridor_pass2", tmp_path / "pass2", 28, size=(96, 72), beams=16, rate=4.0)  # 7 s, to 6.75 m
    topomap = build_topomap(tmp_path / "pass1", "/camera/color/image_raw", 1.0, tmp_path / "map", "/odom").topomap
    goal = len(topomap) - 1
    radius = 2
    preset = presets.load("navigation", {"bag": str(tmp_path / "pass2"), "topomap": str(tmp_path / "map")}, {
        "bag_player": {"start_delay": 1.5, "topics": ["/camera/color/image_raw", "/odom", "/tf", "/tf_static",
                                                      "/camera/depth/image_rect_raw", "/camera/depth/camera_info"]},
        "vint_navigation": {"distance_source": "odometry", "radius": radius, "threads": 1},
        "waypoint_controller": {"waypoint_timeout": 0.5, "cmd_vel_stamped": True}})
    limits = preset.nodes[2].parameters
    rclpy.init()
    try:
        recorder = Recorder()
        finished: list[float] = []

        def done(nodes) -> bool:
            if nodes[0].finished.is_set() and not finished:
                finished.append(time.monotonic())
            return bool(finished) and time.monotonic() - finished[0] > 1.5

        nodes = run_in_process(preset, until=done, duration=90.0, extra_nodes=[recorder])
    finally:
        rclpy.try_shutdown()
    out = recorder.messages
    images = {stamp_to_ns(m.header.stamp) for m in out["/camera/color/image_raw"]}
    assert len(images) == 28
    paths, waypoints = out["/navigation/path"], out["/navigation/waypoint"]
    # the context is full after 6 frames at 4 Hz: every later frame gives one step (a few may be lost to load)
    assert 16 <= len(paths) <= 23 and len(waypoints) == len(paths), (len(paths), len(waypoints))
    assert {stamp_to_ns(m.header.stamp) for m in paths + waypoints} <= images, "stamped with the input images"
    # in the odometry frame (path_frame: odom), moved with the replayed /odom: ahead of the robot along the corridor
    assert all(m.header.frame_id == "odom" and len(m.poses) == 5 for m in paths)
    odom = {stamp_to_ns(m.header.stamp): m for m in out["/odom"]}
    for path in paths:
        robot = odom.get(stamp_to_ns(path.header.stamp))
        if robot is not None:  # the corridor runs along odom +x; the path starts near the robot, within 2 m
            first = path.poses[0].pose.position
            assert abs(first.x - robot.pose.pose.position.x) < 2.0 and abs(first.y - robot.pose.pose.position.y) < 2.0
    assert [stamp_to_ns(m.header.stamp) for m in waypoints] == [stamp_to_ns(m.header.stamp) for m in paths]
    closest = [m.data for m in out["/navigation/closest_node"]]
    reached = [m.data for m in out["/navigation/goal_reached"]]
    assert len(closest) == len(reached) == len(paths)
    assert min(np.diff(closest)) >= -radius, closest
    assert closest[0] < closest[-1] == goal and closest == sorted(closest), closest
    first = reached.index(True)
    assert closest[first] == goal and all(reached[first:]) and not any(reached[:first])
    assert nodes[1].frames_processed == len(paths)
    assert nodes[1].model.origin.trained and nodes[1].model.origin.package == "vint_reduced_recovery24"  # the default
    # velocity commands: within the limits and acceleration-limited while tracking; zero at the goal
    v = velocities(out["/cmd_vel"])
    assert len(v) >= 20  # 9 Hz for over 5 s
    assert np.all((v[:, 0] >= 0) & (v[:, 0] <= limits["max_linear_velocity"] + 1e-9))
    assert np.all(np.abs(v[:, 1]) <= limits["max_angular_velocity"] + 1e-9)
    assert_acceleration_limited(out["/cmd_vel"], limits["max_linear_acceleration"],
                                limits["max_angular_acceleration"])
    assert np.any(v != 0.0), "the controller followed the waypoints before the goal"
    assert np.all(v[-5:] == 0.0) and nodes[2].last_command.state in ("goal", "timeout")
