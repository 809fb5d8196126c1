"""``sim_robot_node``: a differential-drive robot in the synthetic world, driven by ``cmd_vel``, for closed-loop tests.

It plays the part Gazebo's diff-drive plugin and ros_gz_bridge play for a simulated robot, on the embedded world
(``core/sim``; the motion and checks are ``core.sim.robot``):

* input ``cmd_vel`` (relative name): geometry_msgs/Twist, or TwistStamped with ``cmd_vel_stamped``; a command older
  than ``command_timeout`` seconds of simulated time counts as zero. Non-finite or absurd commands (more than
  ``reject_above`` times a limit) and stale TwistStamped are rejected, others beyond the limits clamped: a throttled
  log line, a count and a WARN in ``/diagnostics``; the robot never stops working because of a command;
* outputs, stamped with simulated time: ``/clock`` (rosgraph_msgs/Clock, every physics step), ``odom``
  (nav_msgs/Odometry, odom -> base_link, REP-105) and ``/tf`` at ``odom_rate``, ``/tf_static`` (base_link -> sensor
  frames, latched), and the rendered sensors at ``camera_rate`` on the topics of recorded synthetic bags, relative
  names (``camera/color/image_raw``, ``camera/color/camera_info``; with ``sensors`` also depth, thermal, LiDAR and the
  ground truth), so the presets that replay synthetic bags run against it unchanged;
* collisions with the world (a disc of ``radius``): the robot stops, the contact is counted, logged and reported as
  WARN in ``/diagnostics``.

Simulated time advances one physics step per tick of a wall-clock timer at ``real_time_factor`` times real time
(0: as fast as the machine can); when rendering cannot keep up, simulated time slows down rather than skipping
frames, and the achieved factor is in ``/diagnostics``. The other nodes of the graph run with ``use_sim_time``.
"""
from __future__ import annotations

import math
import time

from geometry_msgs.msg import Twist, TwistStamped
from rosgraph_msgs.msg import Clock

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.health import Level
from ros_mmfusion.core.params import ParamSpec
from ros_mmfusion.core.sim.recorder import TOPICS, SimMessages
from ros_mmfusion.core.sim.robot import DriveLimits, SimulatedRobot
from ros_mmfusion.core.sim.scenarios import SCENARIOS
from ros_mmfusion.ros.builders import ns_to_stamp
from ros_mmfusion.ros.entry import run_node
from ros_mmfusion.ros.messages import message_class
from ros_mmfusion.ros.node_base import MmfusionNode, stamp_to_ns
from ros_mmfusion.ros.qos import LATCHED_QOS, OUTPUT_QOS

SENSOR_TOPICS = {
    "color": ("/camera/color/image_raw", "/camera/color/camera_info"),
    "depth": ("/camera/depth/image_rect_raw", "/camera/depth/camera_info"),
    "thermal": ("/thermal/image_raw", "/thermal/camera_info"),
    "lidar": ("/lidar/points",),
    "ground_truth": ("/ground_truth/semantic", "/ground_truth/instance", "/ground_truth/boxes",
                     "/ground_truth/points"),
}
"""The sensor groups ``sensors`` may name, and the synthetic bags' topics each publishes."""


class SimRobotNode(MmfusionNode):
    PARAMS = (
        ParamSpec("scenario", "indoor_corridor_pass2", "Synthetic scenario (its world, conditions, people and "
                  "platform).", choices=tuple(SCENARIOS), read_only=True),
        ParamSpec("seed", 0, "World seed (same seed, same world).", minimum=0, maximum=2**31 - 1, read_only=True),
        ParamSpec("width", 160, "Camera width (pixels).", minimum=16, maximum=4096, read_only=True),
        ParamSpec("height", 120, "Camera height (pixels).", minimum=16, maximum=4096, read_only=True),
        ParamSpec("sensors", ["color"], "Sensor groups to render: color, depth, thermal, lidar, ground_truth.",
                  read_only=True, check=lambda v: None if set(v) <= set(SENSOR_TOPICS) and v else
                  f"choose from {', '.join(SENSOR_TOPICS)}"),
        ParamSpec("camera_rate", 4.0, "Sensor frames per second of simulated time.", minimum=0.1, maximum=60.0,
                  read_only=True),
        ParamSpec("physics_rate", 50.0, "Physics steps (and /clock messages) per simulated second.", minimum=5.0,
                  maximum=1000.0, read_only=True),
        ParamSpec("odom_rate", 20.0, "Odometry and /tf messages per simulated second.", minimum=0.1, maximum=1000.0,
                  read_only=True),
        ParamSpec("real_time_factor", 1.0, "Simulated seconds per wall-clock second (0: as fast as possible).",
                  minimum=0.0, maximum=100.0, read_only=True),
        ParamSpec("start_time", 0.0, "Start at the scripted route's pose this many seconds into the scenario.",
                  minimum=0.0, maximum=1e5, read_only=True),
        ParamSpec("start_offset", [0.0, 0.0, 0.0], "Start pose perturbation: forward (m), left (m), yaw (rad).",
                  read_only=True, check=lambda v: None if len(v) == 3 and all(math.isfinite(x) for x in v) else
                  "three finite numbers: forward, left, yaw"),
        ParamSpec("max_linear_velocity", 0.5, "Largest forward speed (m/s).", minimum=0.0, maximum=10.0,
                  read_only=True),
        ParamSpec("max_reverse_velocity", 0.2, "Largest backward speed (m/s).", minimum=0.0, maximum=10.0,
                  read_only=True),
        ParamSpec("max_angular_velocity", 1.5, "Largest turn rate (rad/s).", minimum=0.0, maximum=20.0,
                  read_only=True),
        ParamSpec("max_linear_acceleration", 1.0, "m/s^2 (0: unlimited).", minimum=0.0, maximum=100.0,
                  read_only=True),
        ParamSpec("max_angular_acceleration", 3.0, "rad/s^2 (0: unlimited).", minimum=0.0, maximum=100.0,
                  read_only=True),
        ParamSpec("reject_above", 10.0, "Commands beyond this many times a limit are rejected, not clamped.",
                  minimum=1.0, maximum=1e6, read_only=True),
        ParamSpec("radius", 0.25, "Radius (m) of the robot's footprint for collisions.", minimum=0.0, maximum=5.0,
                  read_only=True),
        ParamSpec("command_timeout", 0.5, "Simulated seconds after which the last command counts as zero.",
                  minimum=0.01, maximum=60.0, read_only=True),
        ParamSpec("cmd_vel_stamped", False, "Subscribe geometry_msgs/TwistStamped instead of Twist.", read_only=True),
        ParamSpec("publish_clock", True, "Publish /clock (simulated time).", read_only=True),
    )

    def __init__(self, collides=None, **kwargs) -> None:
        """``collides``: the collision query (``core.sim.robot.Collision``; default: the world's own)."""
        self._collides = collides
        super().__init__("sim_robot", **kwargs)

    def configure(self) -> None:
        if self.get_parameter("use_sim_time").value:
            raise ConfigError(f"{self.get_name()}: use_sim_time must be false: this node makes the simulated time")
        p = self.params
        limits = DriveLimits(p["max_linear_velocity"], p["max_angular_velocity"], p["max_reverse_velocity"],
                             p["max_linear_acceleration"], p["max_angular_acceleration"], p["reject_above"])
        self.sim = SimulatedRobot(p["scenario"], p["seed"], (p["width"], p["height"]), start_time=p["start_time"],
                                  start_offset=tuple(p["start_offset"]), limits=limits, radius=p["radius"],
                                  command_timeout=p["command_timeout"], collides=self._collides)
        self.messages = SimMessages(self.sim.sim, "32FC1")
        self.topics = {t for group in p["sensors"] for t in SENSOR_TOPICS[group]}
        self.lidar = bool(self.topics & {"/lidar/points", "/ground_truth/boxes", "/ground_truth/points"})
        self.pubs = {topic: self.create_publisher(message_class(TOPICS[topic][0]), topic.lstrip("/"), OUTPUT_QOS)
                     for topic in sorted(self.topics)}
        self.odom_pub = self.create_publisher(message_class(TOPICS["/odom"][0]), "odom", OUTPUT_QOS)
        self.tf_pub = self.create_publisher(message_class(TOPICS["/tf"][0]), "/tf", OUTPUT_QOS)
        self.tf_static_pub = self.create_publisher(message_class(TOPICS["/tf_static"][0]), "/tf_static", LATCHED_QOS)
        self.clock_pub = self.create_publisher(Clock, "/clock", OUTPUT_QOS) if p["publish_clock"] else None
        self.tf_static_pub.publish(self._serialize("/tf_static", self.messages.tf_static(self.sim.stamp_ns)))
        self.sensor_subscription(TwistStamped if p["cmd_vel_stamped"] else Twist, "cmd_vel", self.on_cmd_vel,
                                 name="cmd_vel", required=False, check_stamp=False)
        self.dt = 1.0 / p["physics_rate"]
        self.steps = 0
        self.next_frame = 0.0
        self.next_odom = 0.0
        self.commands_rejected = 0
        self.commands_clamped = 0
        self.collisions_reported = 0
        self.render_seconds = 0.0
        self._wall_start = time.monotonic()
        self.history: list[tuple[float, float, float, float]] = []
        """(t, x, y, yaw) of the robot in the world frame after every physics step (for closed-loop metrics)."""
        self.command_log: list[tuple[float, float, float]] = []
        """(t, v, w) of every accepted command."""
        period = self.dt / p["real_time_factor"] if p["real_time_factor"] > 0 else 0.0
        self.work_timer(period, self.tick)

    def _serialize(self, topic: str, message) -> bytes:
        return bytes(self.messages.store.serialize_cdr(message, TOPICS[topic][0]))

    # -- input ------------------------------------------------------------------------------------------------------
    def on_cmd_vel(self, msg) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        if isinstance(msg, TwistStamped):
            age = (self.sim.stamp_ns - stamp_to_ns(msg.header.stamp)) / 1e9
            if abs(age) > self.params["command_timeout"]:
                self._reject(f"TwistStamped stamped {age:+.2f} s from the simulated time: stale, rejected")
                return
        check = self.sim.set_command(twist.linear.x, twist.angular.z)
        if not check.accepted:
            self._reject(check.problem)
            return
        if check.problem:
            self.commands_clamped += 1
            self.set_finding("commands", Level.WARN, f"{self.commands_clamped} command(s) clamped to the limits")
            self.log_throttled("clamped", "warn", f"cmd_vel: {check.problem}")
        self.command_log.append((self.sim.t, check.linear, check.angular))

    def _reject(self, problem: str) -> None:
        self.commands_rejected += 1
        self.inputs["cmd_vel"].on_malformed(problem)
        self.set_finding("commands", Level.WARN, f"{self.commands_rejected} command(s) rejected: {problem}")
        self.log_throttled("rejected", "warn", f"cmd_vel: {problem}")

    # -- simulation -------------------------------------------------------------------------------------------------
    def tick(self) -> None:
        self.run_guarded("simulation", self._tick)

    def _tick(self) -> None:
        sim = self.sim
        if sim.t + 1e-9 >= self.next_frame:  # sensors first: the frame of instant t, then the step to t + dt
            started = time.perf_counter()
            frame = sim.render(lidar=self.lidar)
            for topic, message in self.messages.frame_messages(frame, self.topics):
                self.pubs[topic].publish(self._serialize(topic, message))
            self.render_seconds += time.perf_counter() - started
            self.next_frame += 1.0 / self.params["camera_rate"]
            self.frames_processed += 1
        if sim.t + 1e-9 >= self.next_odom:
            ego, stamp = sim.ego_state(), sim.stamp_ns
            self.odom_pub.publish(self._serialize("/odom", self.messages.odometry(stamp, ego)))
            self.tf_pub.publish(self._serialize("/tf", self.messages.tf(stamp, ego.T_odom_base)))
            self.next_odom += 1.0 / self.params["odom_rate"]
        sim.step(self.dt)
        self.steps += 1
        s = sim.robot.state
        self.history.append((sim.t, s.x, s.y, s.yaw))
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=ns_to_stamp(sim.stamp_ns)))
        if sim.robot.collisions > self.collisions_reported:
            self.collisions_reported = sim.robot.collisions
            self.set_finding("collisions", Level.WARN, f"{sim.robot.collisions} collision(s) with the world")
            self.get_logger().warn(f"collision with {sim.last_hit or 'an obstacle'} at ({s.x:.2f}, {s.y:.2f}) m, "
                                   f"t = {sim.t:.2f} s ({sim.robot.collisions} so far)")

    @property
    def real_time_factor(self) -> float:
        """Simulated seconds per wall-clock second achieved so far."""
        return self.sim.t / max(time.monotonic() - self._wall_start, 1e-9)

    def diagnostic_values(self, report) -> dict[str, str]:
        values = super().diagnostic_values(report)
        values.update({"sim_time_s": f"{self.sim.t:.2f}", "real_time_factor": f"{self.real_time_factor:.2f}",
                       "collisions": str(self.sim.robot.collisions), "commands_rejected": str(self.commands_rejected),
                       "commands_clamped": str(self.commands_clamped)})
        return values


def main(args: list[str] | None = None) -> int:
    return run_node(SimRobotNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
