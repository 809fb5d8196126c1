"""``sim_robot_node`` over real DDS: commands move it, it publishes simulated time, odometry, TF and camera frames,
bad commands are rejected or clamped with a diagnostic, collisions stop it."""
from __future__ import annotations

import math

import pytest
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from ros_mmfusion.nodes.sim_robot import SimRobotNode
from ros_mmfusion.ros.node_base import stamp_to_ns
from ros_mmfusion.ros.qos import LATCHED_QOS
from test.ros.harness import Graph

# ``graph``: test/ros/conftest.py (rclpy initialised, an executor with a probe node)


def make(graph: Graph, collides=None, **params) -> SimRobotNode:
    overrides = {"real_time_factor": 0.0, "width": 64, "height": 48, "scenario": "indoor_corridor", **params}
    return graph.add(SimRobotNode(collides=collides, parameter_overrides=[Parameter(k, value=v)
                                                                       for k, v in overrides.items()]))


def twist(v: float, w: float) -> Twist:
    msg = Twist()
    msg.linear.x, msg.angular.z = v, w
    return msg


def test_commands_drive_the_robot_and_every_output_carries_simulated_time(graph):
    images, infos = graph.record(Image, "camera/color/image_raw"), graph.record(CameraInfo, "camera/color/camera_info")
    odom, clock = graph.record(Odometry, "odom"), graph.record(Clock, "/clock")
    static = graph.record(TFMessage, "/tf_static", LATCHED_QOS)
    cmd = graph.publisher(Twist, "cmd_vel")
    node = make(graph)
    graph.wait_matched(cmd)
    assert graph.spin_until(lambda: node.sim.t > 0.5 and images and odom and static)
    start_x = node.sim.robot.state.x, node.sim.robot.state.y
    # the robot drives while commands keep coming (the command timeout is 0.5 s of simulated time)
    for _ in range(60):
        cmd.publish(twist(0.4, 0.0))
        graph.spin_until(lambda n=node.sim.t: node.sim.t > n + 0.05, 2.0)
    moved = math.hypot(node.sim.robot.state.x - start_x[0], node.sim.robot.state.y - start_x[1])
    assert moved > 0.3, moved
    assert odom[-1].pose.pose.position.x > 0.3 and odom[-1].header.frame_id == "odom"
    assert odom[-1].child_frame_id == "base_link"
    assert images[-1].header.frame_id == "camera_color_optical_frame" and images[-1].encoding == "rgb8"
    assert (images[-1].width, images[-1].height) == (64, 48) and infos
    stamps = [stamp_to_ns(m.header.stamp) for m in images]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert abs(stamp_to_ns(clock[-1].clock) - node.sim.stamp_ns) < 0.2e9  # /clock is the simulated time
    frames = {t.child_frame_id for t in static[-1].transforms}
    assert "camera_color_optical_frame" in frames
    # a quiet controller stops the robot
    graph.spin_until(lambda: node.sim.robot.state.linear == 0.0, 5.0)
    assert node.sim.robot.state.linear == 0.0


@pytest.mark.parametrize(("v", "w", "counter", "problem"), [
    (float("nan"), 0.0, "commands_rejected", "not finite"),
    (0.3, float("inf"), "commands_rejected", "not finite"),
    (1e9, 0.0, "commands_rejected", "more than 10 times"),
    (0.9, 0.0, "commands_clamped", "clamped"),
])
def test_bad_commands_are_rejected_or_clamped_and_reported(graph, v, w, counter, problem):
    cmd = graph.publisher(Twist, "cmd_vel")
    node = make(graph)
    graph.wait_matched(cmd)
    cmd.publish(twist(v, w))
    assert graph.spin_until(lambda: getattr(node, counter) == 1, 5.0)
    level, text = node._extra_findings["commands"]
    assert level.name == "WARN" and problem in text
    s = node.sim.robot.state
    assert all(math.isfinite(a) for a in (s.x, s.y, s.yaw, s.linear, s.angular)) and s.linear <= 0.5
    t = node.sim.t
    assert graph.spin_until(lambda: node.sim.t > t + 0.5, 5.0), "the simulation keeps running"


def test_stale_stamped_commands_are_rejected(graph):
    cmd = graph.publisher(TwistStamped, "cmd_vel")
    node = make(graph, cmd_vel_stamped=True)
    graph.wait_matched(cmd)
    graph.spin_until(lambda: node.sim.t > 2.0, 10.0)
    msg = TwistStamped()
    msg.twist.linear.x = 0.3
    msg.header.stamp.sec = 1_704_067_200  # the simulated clock's start: 2 s old by now
    cmd.publish(msg)
    assert graph.spin_until(lambda: node.commands_rejected == 1, 5.0)
    assert "stale" in node._extra_findings["commands"][1] and node.sim.robot.command == (0.0, 0.0)


def test_a_collision_stops_the_robot_and_is_reported(graph):
    def wall_ahead(x, y, radius, t):  # noqa: ARG001 - a wall 0.6 m in front of the start pose
        return (x - x0) * math.cos(yaw0) + (y - y0) * math.sin(yaw0) + radius >= 0.6

    cmd = graph.publisher(Twist, "cmd_vel")
    node = make(graph, collides=wall_ahead)
    x0, y0, yaw0 = node.sim.robot.state.x, node.sim.robot.state.y, node.sim.robot.state.yaw
    graph.wait_matched(cmd)
    for _ in range(80):
        cmd.publish(twist(0.5, 0.0))
        graph.spin_until(lambda n=node.sim.t: node.sim.t > n + 0.05, 2.0)
    assert node.sim.robot.collisions == 1 and node.sim.robot.state.linear == 0.0
    assert node._extra_findings["collisions"][0].name == "WARN"
    assert node.diagnostic_values(node.health())["collisions"] == "1"
