"""Following a ViNT waypoint with a differential-drive robot: the deployment's control law plus limits (ROS-free).

The law (``deployment/src/pd_controller.py`` of the ViNT deployment) turns one waypoint ``(dx, dy[, cos, sin])`` in
``base_link`` (metres; x forward, y left) into a linear velocity ``v`` (m/s) and an angular velocity ``w`` (rad/s),
giving itself ``dt`` seconds (one frame period, ``1 / frame_rate``) to get there:

* waypoint at the robot (``|dx|, |dy| < eps``) with a heading: turn on the spot towards the heading,
  ``v = 0, w = wrap(atan2(sin, cos)) / dt``;
* waypoint straight to the side (``|dx| < eps``): turn on the spot, ``v = 0, w = sign(dy) * (pi / 2) / dt``;
* otherwise ``v = dx / dt`` and ``w = atan2(dy, dx) / dt``;

then ``v`` is clipped to ``[0, max_linear]`` (never backwards) and ``w`` to ``[-max_angular, max_angular]``.
The deployment writes ``arctan(dy / dx)``, which equals ``atan2(dy, dx)`` for every waypoint ahead (``dx > 0``);
for a waypoint behind, ``arctan`` turns away from it and ``atan2`` towards it, so ``atan2`` is used here.

:class:`WaypointFollower` adds what a robot needs around the law: acceleration limits between successive commands,
zero velocity once no waypoint has arrived for ``timeout`` seconds (the deployment uses 1 s) and at the goal.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

EPS = 1e-8
"""Below this |dx| (metres) the law turns on the spot, as the deployment's ``EPS``."""


def clip_angle(theta: float) -> float:
    """``theta`` wrapped into ``(-pi, pi]`` radians."""
    wrapped = math.fmod(theta + math.pi, 2.0 * math.pi)
    if wrapped <= 0.0:
        wrapped += 2.0 * math.pi
    return wrapped - math.pi


def vint_velocity(waypoint: Sequence[float], dt: float, max_linear: float, max_angular: float,
                  eps: float = EPS) -> tuple[float, float]:
    """``(v, w)`` (m/s, rad/s) that take the robot to ``waypoint`` (``(dx, dy)`` or ``(dx, dy, cos, sin)``, metres in
    ``base_link``) in ``dt`` seconds, clipped to ``[0, max_linear]`` and ``[-max_angular, max_angular]``."""
    if len(waypoint) not in (2, 4):
        raise ValueError(f"a waypoint is (dx, dy) or (dx, dy, cos, sin), got {len(waypoint)} numbers")
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt}")
    dx, dy = float(waypoint[0]), float(waypoint[1])
    if len(waypoint) == 4 and abs(dx) < eps and abs(dy) < eps:
        v, w = 0.0, clip_angle(math.atan2(float(waypoint[3]), float(waypoint[2]))) / dt
    elif abs(dx) < eps:
        v, w = 0.0, math.copysign(math.pi / 2.0, dy) / dt if dy != 0.0 else 0.0
    else:
        v, w = dx / dt, math.atan2(dy, dx) / dt
    return min(max(v, 0.0), max_linear), min(max(w, -max_angular), max_angular)


@dataclass(frozen=True)
class VelocityLimits:
    """Velocity (m/s, rad/s) and acceleration (m/s^2, rad/s^2) limits; an acceleration of 0 means unlimited."""

    max_linear: float = 0.2
    max_angular: float = 0.4
    max_linear_acceleration: float = 0.0
    max_angular_acceleration: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_linear", "max_angular", "max_linear_acceleration", "max_angular_acceleration"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _step_towards(current: float, target: float, max_step: float) -> float:
    return target if math.isinf(max_step) else current + min(max(target - current, -max_step), max_step)


def limit_acceleration(target: tuple[float, float], previous: tuple[float, float], elapsed: float,
                       limits: VelocityLimits) -> tuple[float, float]:
    """``target`` moved no further from ``previous`` than the acceleration limits allow in ``elapsed`` seconds."""
    elapsed = max(float(elapsed), 0.0)
    v_step = limits.max_linear_acceleration * elapsed if limits.max_linear_acceleration > 0 else math.inf
    w_step = limits.max_angular_acceleration * elapsed if limits.max_angular_acceleration > 0 else math.inf
    return _step_towards(previous[0], target[0], v_step), _step_towards(previous[1], target[1], w_step)


@dataclass(frozen=True)
class VelocityCommand:
    """A command and why: ``tracking`` (following a waypoint), ``timeout`` (waypoints stopped arriving: zero),
    ``goal`` (goal reached: zero) or ``idle`` (no waypoint yet: nothing should be published); the waypoint
    controller's collision guard (``core.navigation.obstacles``) adds ``guard_steer``, ``guard_slow``, ``guard_stop``
    and ``blind`` (no usable depth: zero)."""

    linear: float
    angular: float
    state: str


class WaypointFollower:
    """The control loop's state: the latest waypoint and when it arrived, the goal flag, the last command.

    Times are seconds on one monotonic clock (the node clock). Stopping (timeout, goal) is immediate and bypasses the
    deceleration limit: a stale waypoint or a reached goal is a reason to stop now. Tracking commands change by at
    most the acceleration limits times the time since the previous command.
    """

    def __init__(self, limits: VelocityLimits = VelocityLimits(), waypoint_dt: float = 0.25, timeout: float = 1.0,
                 eps: float = EPS) -> None:
        if not waypoint_dt > 0:
            raise ValueError(f"waypoint_dt must be positive, got {waypoint_dt}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.limits, self.waypoint_dt, self.timeout, self.eps = limits, waypoint_dt, timeout, eps
        self.reset()

    def reset(self) -> None:
        self.waypoint: tuple[float, ...] | None = None
        self.waypoint_time: float | None = None
        self.goal_reached = False
        self.last: tuple[float, float] = (0.0, 0.0)
        self.last_time: float | None = None

    def on_waypoint(self, waypoint: Sequence[float], now: float) -> None:
        self.waypoint, self.waypoint_time = tuple(float(v) for v in waypoint), float(now)

    def on_goal_reached(self, reached: bool) -> None:
        self.goal_reached = bool(reached)

    def command(self, now: float) -> VelocityCommand:
        """The velocity to send at time ``now``. A clock that went back past the last waypoint or command (sim time
        of a looping bag, a restarted simulator) voids the state: the age of that waypoint is unknown, so the
        follower forgets it and stops until the next one."""
        if (self.waypoint_time is not None and now < self.waypoint_time) or \
                (self.last_time is not None and now < self.last_time):
            self.reset()
        if self.waypoint is None or self.waypoint_time is None:
            state, target = "idle", (0.0, 0.0)
        elif self.goal_reached:
            state, target = "goal", (0.0, 0.0)
        elif now - self.waypoint_time > self.timeout:
            state, target = "timeout", (0.0, 0.0)
        else:
            state = "tracking"
            raw = vint_velocity(self.waypoint, self.waypoint_dt, self.limits.max_linear, self.limits.max_angular,
                                self.eps)
            elapsed = 0.0 if self.last_time is None else now - self.last_time
            target = limit_acceleration(raw, self.last, elapsed, self.limits)
        self.last, self.last_time = target, float(now)
        return VelocityCommand(target[0], target[1], state)
