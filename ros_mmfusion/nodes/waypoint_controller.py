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
``goal_reached`` is true.

With ``obstacle_guard`` the node also takes a depth camera (``depth/image``: sensor_msgs/Image 32FC1 metres or
16UC1 millimetres; ``depth/camera_info``) and checks every tracking command against the obstacles it sees
(``core.navigation.obstacles``): points ``guard_min_height``..``guard_max_height`` above ``base_frame``'s ground
plane within ``guard_max_range``, kept in ``guard_fixed_frame`` (odometry) so they stay put while the robot moves
between depth frames. A command whose arc over ``guard_horizon`` seconds comes closer than ``guard_radius +
guard_margin`` to a point is steered to the nearest clear turn rate, else slowed or stopped; interventions are
counted in ``/diagnostics``. With ``guard_track_motion`` compact obstacles (people) are followed from image to image
in ``guard_fixed_frame`` and each arc pose is checked against where they will be at its time. A depth image is
turned into obstacles at the first control tick at which TF relates its camera to ``base_frame`` and ``base_frame``
to ``guard_fixed_frame`` at its stamp (image and odometry arrive in either order). Obstacles older than
``guard_timeout`` seconds (none yet, no depth, no transform) stop the robot with
a WARN finding ``obstacles`` naming why: a blind guard does not drive. See docs/navigation.md.
"""
from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Bool

from ros_mmfusion.core.codec.boxes import quaternion_to_yaw
from ros_mmfusion.core.errors import MessageFormatError, TransformLookupError
from ros_mmfusion.core.health import Level
from ros_mmfusion.core.modalities.depth import depth_metres
from ros_mmfusion.core.navigation.control import VelocityCommand, VelocityLimits, WaypointFollower, limit_acceleration
from ros_mmfusion.core.navigation.localization import transform_waypoints
from ros_mmfusion.core.navigation.obstacles import (
    GUARD_STATES,
    CollisionGuard,
    ObstacleTracker,
    depth_obstacle_points,
)
from ros_mmfusion.core.params import ParamSpec
from ros_mmfusion.core.tf_buffer import TF_PARAMS
from ros_mmfusion.ros.builders import header as make_header
from ros_mmfusion.ros.entry import run_node
from ros_mmfusion.ros.image import image_to_numpy
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
        ParamSpec("obstacle_guard", False, "Check commands against the depth camera's obstacles (depth/image, "
                  "depth/camera_info): steer, slow or stop so the arc stays clear.", read_only=True),
        ParamSpec("guard_radius", 0.25, "The robot's footprint radius (m) for the guard.", minimum=0.01, maximum=5.0),
        ParamSpec("guard_margin", 0.15, "Clearance the guard keeps beyond the footprint (m).", minimum=0.0,
                  maximum=5.0),
        ParamSpec("guard_horizon", 2.0, "Seconds of a command's arc that must stay clear.", minimum=0.2,
                  maximum=10.0),
        ParamSpec("guard_min_height", 0.1, "Lowest obstacle height above base_frame's ground plane (m): below is "
                  "floor.", minimum=-5.0, maximum=5.0),
        ParamSpec("guard_max_height", 1.8, "Highest obstacle height (m): above the robot passes under.", minimum=0.0,
                  maximum=10.0),
        ParamSpec("guard_max_range", 4.0, "Depth beyond this distance (m) is ignored.", minimum=0.2, maximum=50.0),
        ParamSpec("guard_timeout", 1.0, "Seconds without a usable depth image after which the guard stops the "
                  "robot.", minimum=0.05, maximum=60.0),
        ParamSpec("guard_fixed_frame", "odom", "Frame the obstacles are kept in between depth images (odometry); "
                  "empty: base_frame at the image's stamp (no motion compensation).", read_only=True),
        ParamSpec("guard_track_motion", True, "Follow compact obstacles (people) from depth image to depth image in "
                  "guard_fixed_frame and check each arc against where they will be; false (or no "
                  "guard_fixed_frame): every obstacle stands still."),
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
        # (node-clock ns received, points (N, 2) in the kept frame, their velocities (N, 2) m/s or None)
        self.obstacles: tuple[int, np.ndarray, np.ndarray | None] | None = None
        self.tracker = ObstacleTracker()
        self.pending_depth: tuple | None = None  # the latest depth image not yet turned into obstacles
        self.guard_wait = ""  # why it is still pending
        self.guard_counts = {state: 0 for state in GUARD_STATES if state != "clear"}
        if p["obstacle_guard"]:
            self.camera_info_subscription("depth/camera_info", stall_timeout=5.0)
            self.sensor_subscription(Image, "depth/image", self.on_depth, name="depth",
                                     stall_timeout=p["guard_timeout"])
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
        self.obstacles = self.pending_depth = None
        self.tracker.reset()

    def on_depth(self, msg: Image) -> None:
        """Decode and check a depth image; it becomes obstacles at the next control tick (:meth:`update_obstacles`),
        when the transforms for its stamp have had time to arrive."""
        if self.camera is None:
            raise MessageFormatError("a depth image before any depth/camera_info: skipped until calibration arrives")
        depth = depth_metres(image_to_numpy(msg, limits=self.limits), msg.encoding)
        if depth.shape != (self.camera.height, self.camera.width):
            raise MessageFormatError(f"depth image {depth.shape[1]}x{depth.shape[0]} does not match its camera_info "
                                     f"{self.camera.width}x{self.camera.height}")
        if not msg.header.frame_id:
            raise MessageFormatError("depth image has no frame_id")
        self.pending_depth = (self.now_ns(), stamp_to_ns(msg.header.stamp), msg.header.frame_id, depth, self.camera)

    def update_obstacles(self) -> None:
        """The pending depth image as obstacle points in the kept frame, once TF relates its camera to the base frame
        (and the base frame to the kept one) at its stamp; until then it waits (a depth image and the odometry of
        its instant arrive in either order), and the reason is kept for the blind-guard finding."""
        if self.pending_depth is None:
            return
        p = self.params
        received, stamp, frame, depth, camera = self.pending_depth
        base, kept = p["base_frame"], self.kept_frame()
        buffer = self.enable_tf()
        try:
            T_base_camera = buffer.lookup(base, frame, stamp)
            T_kept_base = buffer.lookup(kept, base, stamp)
        except TransformLookupError as exc:
            self.guard_wait = f"depth image {frame!r}: {exc}"
            return
        points, cut = depth_obstacle_points(depth, camera, T_base_camera, min_height=p["guard_min_height"],
                                            max_height=p["guard_max_height"], max_range=p["guard_max_range"],
                                            edges=True)
        points = T_kept_base.apply_planar(points)
        velocities = self.tracker.update(stamp / 1e9, points, cut) if self.tracking() else None
        self.obstacles = (received, points, velocities)
        self.pending_depth, self.guard_wait = None, ""

    def kept_frame(self) -> str:
        """The frame obstacles are kept in between depth images: ``guard_fixed_frame``, else ``base_frame``."""
        return self.params["guard_fixed_frame"] or self.params["base_frame"]

    def tracking(self) -> bool:
        """Whether obstacles get velocities: ``guard_track_motion`` with a fixed frame to follow them in."""
        return bool(self.params["guard_track_motion"] and self.params["guard_fixed_frame"])

    def guard_command(self, command: VelocityCommand, now_ns: int, previous: tuple[float, float],
                      elapsed: float) -> VelocityCommand:
        """``command`` checked against the latest obstacles (``obstacle_guard``); zero when they are too old.
        ``previous`` is the command sent ``elapsed`` seconds ago (a steered turn keeps the acceleration limits)."""
        p = self.params
        if not p["obstacle_guard"]:
            return command
        self.update_obstacles()
        if command.state != "tracking":
            return command
        base, kept = p["base_frame"], self.kept_frame()
        points, velocities, why = None, None, self.guard_wait or "no depth image"
        if self.obstacles is not None and (now_ns - self.obstacles[0]) / 1e9 <= p["guard_timeout"]:
            received, kept_points, kept_velocities = self.obstacles
            try:
                T = self.enable_tf().lookup(base, kept, 0)
                points = T.apply_planar(kept_points)
            except TransformLookupError as exc:
                why = f"obstacles in {kept!r}: {exc}"
            if points is not None and kept_velocities is not None and self.tracking():
                velocities = kept_velocities @ T.rotation[:2, :2].T  # into base_frame (a fixed frame's velocities)
                points = points + velocities * max(now_ns - received, 0) / 1e9  # moved on since their image
        if points is None:
            text = f"collision guard blind for over {p['guard_timeout']:g} s ({why}): stopped"
            self.set_finding("obstacles", Level.WARN, text)
            self.log_throttled("guard", "warn", text)
            self.follower.last = (0.0, 0.0)
            return VelocityCommand(0.0, 0.0, "blind")
        self.clear_finding("obstacles")
        guard = CollisionGuard(p["guard_radius"], p["guard_margin"], p["guard_horizon"])
        decision = guard.check(command.linear, command.angular, points, p["max_angular_velocity"], velocities)
        if decision.state == "clear":
            return command
        self.guard_counts[decision.state] += 1
        self.log_throttled("guard:" + decision.state, "info",
                           f"collision guard: {decision.state} (v {command.linear:.2f} -> {decision.linear:.2f} m/s, "
                           f"w {command.angular:+.2f} -> {decision.angular:+.2f} rad/s; clearance "
                           f"{decision.clearance:.2f} m)")
        linear, angular = decision.linear, decision.angular
        if decision.state == "steer":  # a turn within the acceleration limits; slowing and stopping are at once
            linear, angular = limit_acceleration((linear, angular), previous, elapsed, self.follower.limits)
        self.follower.last = (linear, angular)  # the next command's acceleration starts here
        return VelocityCommand(linear, angular, "guard_" + decision.state)

    def diagnostic_values(self, report) -> dict[str, str]:
        guard = {f"guard_{state}": str(n) for state, n in self.guard_counts.items()} \
            if self.params["obstacle_guard"] else {}
        return {**super().diagnostic_values(report), **guard}

    def on_goal_reached(self, msg: Bool) -> None:
        if msg.data and not self.follower.goal_reached:
            self.get_logger().info("goal reached: stopping")
        self.follower.on_goal_reached(msg.data)

    def on_control_tick(self) -> None:
        p = self.params
        self.follower.limits = self.velocity_limits()  # parameters may change at run time
        self.follower.waypoint_dt, self.follower.timeout = p["waypoint_dt"], p["waypoint_timeout"]
        now_ns = self.now_ns()
        previous, last_time = self.follower.last, self.follower.last_time
        command = self.follower.command(now_ns / 1e9)
        elapsed = 0.0 if last_time is None else max(now_ns / 1e9 - last_time, 0.0)
        command = self.guard_command(command, now_ns, previous, elapsed)
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
