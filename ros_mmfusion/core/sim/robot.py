"""A differential-drive robot in the synthetic world (ROS-free): velocity commands in, pose, odometry and sensor frames
out, collisions with the world reported. The simulated-robot node (``ros_mmfusion/nodes/sim_robot.py``) wraps it.

Conventions follow Gazebo's diff-drive plugin as bridged by ros_gz_bridge: a command is a body-frame ``(v, w)``
(``geometry_msgs/Twist`` linear.x in m/s and angular.z in rad/s); a command older than ``command_timeout`` seconds
counts as zero (the robot stops when its controller goes quiet); the wheels follow the command within the velocity and
acceleration limits; odometry is in REP-105's ``odom`` frame, fixed where the robot started, ``base_link`` on the
ground, x forward, y left, z up.

Commands are checked before use (:func:`check_command`): a NaN or infinite component, or one beyond
``reject_above`` times the limit, is **rejected** (the previous command stays in force, the caller reports it);
anything else beyond the limits is **clamped**.

Motion is integrated exactly for constant ``(v, w)`` over each step (an arc), so the pose does not drift with the
step size. A move whose new footprint (a disc of ``radius``) hits the world's static geometry or an actor is not made:
the robot stays where it was, its velocity drops to zero and one collision is counted per contact (a robot pushing
against a wall for seconds is one collision).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.sim.mesh import rotation_z


@dataclass(frozen=True)
class DriveLimits:
    """Velocity (m/s, rad/s) and acceleration (m/s^2, rad/s^2) limits; ``max_reverse`` the largest backward speed.
    Accelerations of 0 mean unlimited."""

    max_linear: float = 0.5
    max_angular: float = 1.5
    max_reverse: float = 0.2
    max_linear_acceleration: float = 1.0
    max_angular_acceleration: float = 3.0
    reject_above: float = 10.0
    """A command component beyond ``reject_above`` times its limit is rejected, not clamped (a unit error: mm/s,
    deg/s, or garbage)."""

    def __post_init__(self) -> None:
        values = (self.max_linear, self.max_angular, self.max_reverse, self.max_linear_acceleration,
                  self.max_angular_acceleration, self.reject_above)
        if not all(math.isfinite(v) and v >= 0 for v in values) or self.reject_above < 1:
            raise ConfigError(f"drive limits must be finite and >= 0 (reject_above >= 1), got {values}")


@dataclass(frozen=True)
class CommandCheck:
    """What :func:`check_command` made of a command: ``accepted`` (False: rejected, keep the previous command),
    the velocities to use, and ``problem`` (empty when the command was used as given)."""

    accepted: bool
    linear: float
    angular: float
    problem: str = ""


def check_command(linear: float, angular: float, limits: DriveLimits) -> CommandCheck:
    """Reject non-finite or absurd commands, clamp the rest into the limits (see the module docstring)."""
    linear, angular = float(linear), float(angular)
    if not (math.isfinite(linear) and math.isfinite(angular)):
        return CommandCheck(False, 0.0, 0.0, f"command ({linear}, {angular}) is not finite: rejected")
    bound_v = max(limits.max_linear, limits.max_reverse, 1e-3) * limits.reject_above
    bound_w = max(limits.max_angular, 1e-3) * limits.reject_above
    if abs(linear) > bound_v or abs(angular) > bound_w:
        return CommandCheck(False, 0.0, 0.0, f"command ({linear:.3g} m/s, {angular:.3g} rad/s) is more than "
                                             f"{limits.reject_above:g} times the limits: rejected")
    v = min(max(linear, -limits.max_reverse), limits.max_linear)
    w = min(max(angular, -limits.max_angular), limits.max_angular)
    if v != linear or w != angular:
        return CommandCheck(True, v, w, f"command ({linear:.3g} m/s, {angular:.3g} rad/s) clamped to the limits "
                                        f"({v:.3g}, {w:.3g})")
    return CommandCheck(True, v, w)


def _approach(current: float, target: float, max_rate: float, dt: float) -> float:
    if max_rate <= 0:
        return target
    step = max_rate * dt
    return current + min(max(target - current, -step), step)


@dataclass
class RobotState:
    """Pose in the world frame (x, y metres, yaw radians) and body velocities (m/s, rad/s)."""

    x: float
    y: float
    yaw: float
    linear: float = 0.0
    angular: float = 0.0

    def transform(self, z: float = 0.0) -> Transform:
        return Transform(rotation_z(self.yaw), np.array([self.x, self.y, z]))


def integrate(state: RobotState, linear: float, angular: float, dt: float) -> tuple[float, float, float]:
    """(x, y, yaw) after ``dt`` seconds at constant body velocities: the exact arc (a straight line for w = 0)."""
    if abs(angular) < 1e-9:
        return (state.x + linear * dt * math.cos(state.yaw), state.y + linear * dt * math.sin(state.yaw), state.yaw)
    yaw1 = state.yaw + angular * dt
    r = linear / angular
    return (state.x + r * (math.sin(yaw1) - math.sin(state.yaw)), state.y - r * (math.cos(yaw1) - math.cos(state.yaw)),
            math.atan2(math.sin(yaw1), math.cos(yaw1)))


Collision = Callable[[float, float, float, float], bool]
"""``collides(x, y, radius, t)``: True when a disc of ``radius`` at world (x, y) touches something at time t."""


class DiffDriveRobot:
    """The robot's motion: commands (with their time), limits, collisions. Times are simulated seconds."""

    def __init__(self, start: RobotState, limits: DriveLimits = DriveLimits(), *, radius: float = 0.25,
                 command_timeout: float = 0.5, collides: Collision | None = None, z: float = 0.0,
                 T_world_odom: Transform | None = None) -> None:
        if not (math.isfinite(radius) and radius >= 0 and math.isfinite(command_timeout) and command_timeout > 0):
            raise ConfigError(f"radius must be >= 0 and command_timeout > 0, got {radius}, {command_timeout}")
        self.state = RobotState(start.x, start.y, start.yaw)
        self.start = RobotState(start.x, start.y, start.yaw)
        self.limits, self.radius, self.command_timeout, self.z = limits, radius, command_timeout, z
        self.collides = collides
        self.command = (0.0, 0.0)
        self.command_time = -math.inf
        self.collisions = 0
        self.in_contact = False
        self.distance = 0.0
        """Metres driven (path length)."""
        self.T_odom_world = (T_world_odom or self.start.transform(z)).inverse()

    def set_command(self, linear: float, angular: float, t: float) -> CommandCheck:
        """Take a command received at simulated time ``t``; returns the check (rejected ones change nothing)."""
        check = check_command(linear, angular, self.limits)
        if check.accepted:
            self.command, self.command_time = (check.linear, check.angular), t
        return check

    def step(self, t: float, dt: float) -> None:
        """Advance from ``t`` to ``t + dt``: velocities approach the (fresh) command within the acceleration limits,
        the pose follows unless the new footprint collides."""
        v_cmd, w_cmd = self.command if t - self.command_time <= self.command_timeout else (0.0, 0.0)
        s = self.state
        s.linear = _approach(s.linear, v_cmd, self.limits.max_linear_acceleration, dt)
        s.angular = _approach(s.angular, w_cmd, self.limits.max_angular_acceleration, dt)
        x, y, yaw = integrate(s, s.linear, s.angular, dt)
        if self.collides is not None and (x, y) != (s.x, s.y) and self.collides(x, y, self.radius, t + dt):
            if not self.in_contact:
                self.collisions += 1
            self.in_contact = True
            s.linear = s.angular = 0.0
            return
        self.in_contact = False
        self.distance += math.hypot(x - s.x, y - s.y)
        s.x, s.y, s.yaw = x, y, yaw

    def T_world_base(self) -> Transform:
        return self.state.transform(self.z)

    def T_odom_base(self) -> Transform:
        """``base_link`` in ``odom`` (REP-105: a fixed frame; by default where the robot started)."""
        return self.T_odom_world @ self.T_world_base()


class SimulatedRobot:
    """A scenario's robot driven by velocity commands instead of its scripted route: the world, its sensors and
    actors as :class:`~ros_mmfusion.core.sim.simulator.Simulation` renders them, the motion of a
    :class:`DiffDriveRobot`. It starts at the scripted route's pose at ``start_time`` seconds, moved by
    ``start_offset`` (forward m, left m, yaw rad, in the robot's frame: the pose perturbation of a closed-loop
    trial). Simulated time ``t`` starts at 0; stamps count from ``start_stamp_ns``. Collisions: ``collides`` (robot
    time), or by default the world's static geometry and actors (:class:`~.clearance.WorldCollision`, world time)."""

    def __init__(self, scenario: str, seed: int = 0, size: tuple[int, int] = (160, 120), beams: int = 16, *,
                 start_time: float = 0.0, start_offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 limits: DriveLimits = DriveLimits(), radius: float = 0.25, command_timeout: float = 0.5,
                 collides: Collision | None = None, start_stamp_ns: int | None = None) -> None:
        from ros_mmfusion.core.sim.simulator import START_STAMP_NS, Simulation

        self.sim = Simulation(scenario, seed=seed, size=size, beams=beams,
                              start_stamp_ns=START_STAMP_NS if start_stamp_ns is None else start_stamp_ns)
        self.start_time = float(start_time)
        if collides is None:
            from ros_mmfusion.core.sim.clearance import WorldCollision

            world = WorldCollision(self.sim.world)

            def collides(x: float, y: float, radius: float, t: float) -> bool:
                if world.static.hits(x, y, radius):
                    self.last_hit = "static geometry"
                    return True
                actor = world.actor_hit(x, y, radius, self.start_time + t)
                if actor:
                    self.last_hit = f"actor {actor}"
                return bool(actor)
        x, y, z, yaw = self.sim.ego.route.pose(self.start_time)
        fwd, left, dyaw = (float(v) for v in start_offset)
        c, s = math.cos(yaw), math.sin(yaw)
        start = RobotState(x + fwd * c - left * s, y + fwd * s + left * c,
                           math.atan2(math.sin(yaw + dyaw), math.cos(yaw + dyaw)))
        # odom is the scenario's (the scripted route's pose at time 0), as in its recorded bags: a topological map
        # recorded on another pass of the route shares the frame, whatever the perturbed start
        self.robot = DiffDriveRobot(start, limits, radius=radius, command_timeout=command_timeout, collides=collides,
                                    z=z, T_world_odom=self.sim.ego.T_world_odom)
        self.t = 0.0
        self.frames = 0
        self.last_hit = ""
        """What the last collision hit ("static geometry", "actor <instance id>"; "" with ``collides`` given)."""

    @property
    def stamp_ns(self) -> int:
        return self.sim.start_stamp_ns + round(self.t * 1e9)

    def set_command(self, linear: float, angular: float) -> CommandCheck:
        return self.robot.set_command(linear, angular, self.t)

    def step(self, dt: float) -> None:
        """Advance simulated time by ``dt`` seconds."""
        self.robot.step(self.t, dt)
        self.t += dt

    def ego_state(self):
        """The robot as the sensors and the recorder's messages see it (an ``EgoState``)."""
        from ros_mmfusion.core.sim.ego import EgoState

        s = self.robot.state
        return EgoState(self.robot.T_world_base(), self.robot.T_odom_base(), np.array([s.linear, 0.0, 0.0]),
                        np.array([0.0, 0.0, s.angular]))

    def render(self, lidar: bool = False):
        """The sensors at the robot's current pose and time (a ``SimFrame`` stamped now); frames count up."""
        from dataclasses import replace

        frame = self.sim.frame_at(self.frames, self.start_time + self.t, self.ego_state(), lidar=lidar)
        self.frames += 1
        return replace(frame, stamp_ns=self.stamp_ns, time_s=self.t)

    def route_xy(self, t0: float, t1: float, step: float = 0.25) -> np.ndarray:
        """(N, 2) world x, y of the scripted route from ``t0`` to ``t1`` seconds (the mapped route), every ``step``."""
        times = np.append(np.arange(t0, t1, step), t1)
        return np.array([self.sim.ego.route.pose(float(t))[:2] for t in times])


__all__ = ["Collision", "CommandCheck", "DiffDriveRobot", "DriveLimits", "RobotState", "SimulatedRobot",
           "check_command", "integrate"]
