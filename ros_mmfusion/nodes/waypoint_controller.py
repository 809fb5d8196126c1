"""``waypoint_controller_node``: follows ViNT's chosen waypoint with the deployment's control law, within limits.

Inputs (relative names): ``navigation/waypoint`` (geometry_msgs/PoseStamped: x, y metres and the heading; in
``base_frame``, or in another frame, e.g. ``odom`` where vint_navigation publishes by default, moved into
``base_frame`` through TF at the waypoint's stamp; a missing or stale transform is a throttled log line, a WARN
finding ``tf:waypoint`` and the waypoint skipped, so the robot stops after ``waypoint_timeout``) and
``navigation/goal_reached`` (std_msgs/Bool), as ``vint_navigation_node`` publishes them. Output:
``cmd_vel``, geometry_msgs/Twist or, with ``cmd_vel_stamped``, TwistStamped (Nav2 Jazzy takes Twist, Kilted
TwistStamped; its stamp is the node-clock time the command was computed for), every ``1 / control_rate`` seconds
once the first waypoint has arrived.

The law (``core.navigation.control.vint_velocity``): ``v = dx / waypoint_dt``, ``w = atan2(dy, dx) / waypoint_dt``,
turning on the spot for a waypoint at or beside the robot, clipped to ``[0, max_linear_velocity]`` and
``[-max_angular_velocity, max_angular_velocity]``; successive commands change by at most the acceleration limits.
The command is zero, at once, when no waypoint has arrived for ``waypoint_timeout`` seconds (WARN) and while
``goal_reached`` is true. See docs/navigation.md.
"""
from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped
from std_msgs.msg import Bool

from ros_mmfusion.core.codec.boxes import quaternion_to_yaw
from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.core.health import Level
from ros_mmfusion.core.navigation.control import VelocityCommand, VelocityLimits, WaypointFollower
from ros_mmfusion.core.navigation.localization import transform_waypoints
from ros_mmfusion.core.params import ParamSpec
from ros_mmfusion.core.tf_buffer import TF_PARAMS
from ros_mmfusion.ros.builders import header as make_header
from ros_mmfusion.ros.entry import run_node
from ros_mmfusion.ros.node_base import MmfusionNode, stamp_to_ns

_LIMIT_PARAMS = ("max_linear_velocity", "max_angular_velocity", "max_linear_acceleration", "max_angular_acceleration")


def _goal_stall_timeout(waypoint_timeout: float) -> float:
    """Seconds without goal_reached before that input counts as stalled: at least 5 s (it is published per path)."""
    return max(5.0, waypoint_timeout)


class WaypointControllerNode(MmfusionNode):
    PARAMS = (
        ParamSpec("max_linear_velocity", 0.2, "Largest forward speed (m/s); the deployment's max_v.", minimum=0.0,
                  maximum=10.0),
        ParamSpec("max_angular_velocity", 0.4, "Largest turn rate (rad/s); the deployment's max_w.", minimum=0.0,
                  maximum=10.0),
        ParamSpec("max_linear_acceleration", 0.5, "Largest change of forward speed (m/s^2); 0: unlimited.",
                  minimum=0.0, maximum=100.0),
        ParamSpec("max_angular_acceleration", 1.0, "Largest change of turn rate (rad/s^2); 0: unlimited.",
                  minimum=0.0, maximum=100.0),
        ParamSpec("waypoint_dt", 0.25, "Seconds the law gives itself to reach the waypoint: one frame period of the "
                  "navigation model (1 / 4 Hz).", minimum=0.01, maximum=10.0),
        ParamSpec("waypoint_timeout", 1.0, "Seconds without a waypoint after which the command is zero.",
                  minimum=0.05, maximum=60.0),
        ParamSpec("control_rate", 9.0, "Commands per second (the deployment's controller loop runs at 9 Hz).",
                  minimum=0.5, maximum=200.0, read_only=True),
        ParamSpec("cmd_vel_stamped", False, "Publish geometry_msgs/TwistStamped instead of Twist on cmd_vel.",
                  read_only=True),
        ParamSpec("base_frame", "base_link", "The robot body frame: waypoints in another frame are moved into it "
                  "through TF; frame_id of TwistStamped."),
        *TF_PARAMS,
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("waypoint_controller", **kwargs)

    def configure(self) -> None:
        p = self.params
        self.follower = WaypointFollower(self.velocity_limits(), p["waypoint_dt"], p["waypoint_timeout"])
        self.cmd_type = TwistStamped if p["cmd_vel_stamped"] else Twist
        self.cmd_pub = self.output_publisher(self.cmd_type, "cmd_vel")
        self.enable_tf()  # from the start, so a waypoint in another frame finds the history it needs
        # not "required": waypoints stopping is the expected end of a run, reported as WARN (and the robot stops)
        self.sensor_subscription(PoseStamped, "navigation/waypoint", self.on_waypoint, name="waypoint",
                                 required=False, stall_timeout=p["waypoint_timeout"])
        self.sensor_subscription(Bool, "navigation/goal_reached", self.on_goal_reached, name="goal_reached",
                                 required=False, stall_timeout=_goal_stall_timeout(p["waypoint_timeout"]))
        self.last_command: VelocityCommand | None = None
        self.work_timer(1.0 / p["control_rate"], self.on_control_tick)
        self.get_logger().info(f"following waypoints at {p['control_rate']:g} Hz: v <= {p['max_linear_velocity']} "
                               f"m/s, w <= {p['max_angular_velocity']} rad/s; {self.cmd_type.__name__} on cmd_vel")

    def on_parameters_changed(self, names: frozenset[str]) -> None:
        if "waypoint_timeout" in names:  # the limits, waypoint_dt and the timeout itself are read every tick
            self.inputs["waypoint"].stall_timeout = self.params["waypoint_timeout"]
            self.inputs["goal_reached"].stall_timeout = _goal_stall_timeout(self.params["waypoint_timeout"])

    def velocity_limits(self) -> VelocityLimits:
        return VelocityLimits(*(self.params[name] for name in _LIMIT_PARAMS))

    def on_waypoint(self, msg: PoseStamped) -> None:
        q = msg.pose.orientation
        yaw = quaternion_to_yaw((q.x, q.y, q.z, q.w))
        waypoint = np.array([msg.pose.position.x, msg.pose.position.y, math.cos(yaw), math.sin(yaw)])
        frame, base = msg.header.frame_id, self.params["base_frame"]
        if not frame:
            raise MessageFormatError(f"waypoint has no frame_id (expected {base!r} or a frame TF relates to it)")
        if frame != base:
            T = self.lookup_transform(base, frame, stamp_to_ns(msg.header.stamp), "waypoint", input_name="waypoint")
            if T is None:
                return
            waypoint = transform_waypoints(waypoint[None], T)[0]
        self.follower.on_waypoint(tuple(float(v) for v in waypoint), self.now_ns() / 1e9)

    def on_time_jump(self) -> None:
        self.follower.reset()  # a waypoint of the old timeline must not steer the robot

    def on_goal_reached(self, msg: Bool) -> None:
        if msg.data and not self.follower.goal_reached:
            self.get_logger().info("goal reached: stopping")
        self.follower.on_goal_reached(msg.data)

    def on_control_tick(self) -> None:
        p = self.params
        self.follower.limits = self.velocity_limits()  # parameters may change at run time
        self.follower.waypoint_dt, self.follower.timeout = p["waypoint_dt"], p["waypoint_timeout"]
        now_ns = self.now_ns()
        command = self.follower.command(now_ns / 1e9)
        if command.state == "timeout":
            self.set_finding("waypoints", Level.WARN, f"no waypoint for over {p['waypoint_timeout']:g} s: stopped")
        else:
            self.clear_finding("waypoints")
        self.last_command = command
        if command.state == "idle":
            return
        twist = Twist()
        twist.linear.x, twist.angular.z = float(command.linear), float(command.angular)
        if self.cmd_type is TwistStamped:
            self.cmd_pub.publish(TwistStamped(header=make_header(now_ns, p["base_frame"]), twist=twist))
        else:
            self.cmd_pub.publish(twist)


def main(args: list[str] | None = None) -> int:
    return run_node(WaypointControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
