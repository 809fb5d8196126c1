"""The ViNT deployment's waypoint-following law, velocity and acceleration limits, the waypoint timeout and the stop at
the goal, without ROS."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ros_mmfusion.core.navigation import (
    VelocityLimits,
    WaypointFollower,
    clip_angle,
    limit_acceleration,
    vint_velocity,
)

DT = 0.25  # one frame of a 4 Hz model


def test_law_drives_dx_over_dt_and_turns_by_the_bearing_over_dt():
    v, w = vint_velocity((0.04, 0.01), DT, max_linear=1.0, max_angular=1.0)
    assert v == pytest.approx(0.04 / DT)
    assert w == pytest.approx(math.atan2(0.01, 0.04) / DT)
    assert w == pytest.approx(math.atan(0.01 / 0.04) / DT), "same as the deployment's arctan(dy/dx) ahead"


def test_law_turns_on_the_spot_for_a_waypoint_beside_or_at_the_robot():
    assert vint_velocity((0.0, 0.3), DT, 1.0, 100.0) == (0.0, pytest.approx(math.pi / 2 / DT))
    assert vint_velocity((0.0, -0.3), DT, 1.0, 100.0) == (0.0, pytest.approx(-math.pi / 2 / DT))
    heading = 0.3
    v, w = vint_velocity((0.0, 0.0, math.cos(heading), math.sin(heading)), DT, 1.0, 100.0)
    assert v == 0.0 and w == pytest.approx(heading / DT)
    assert vint_velocity((0.0, 0.0), DT, 1.0, 1.0) == (0.0, 0.0)


def test_law_never_reverses_and_turns_towards_a_waypoint_behind():
    v, w = vint_velocity((-0.5, 0.1), DT, 1.0, 10.0)
    assert v == 0.0 and w > 0, "behind and to the left: turn left (atan2), not right (arctan)"


@pytest.mark.parametrize("waypoint", [(5.0, 0.0), (5.0, 5.0), (5.0, -5.0), (0.0, 1.0), (-1.0, -0.1)])
def test_law_respects_velocity_limits(waypoint):
    v, w = vint_velocity(waypoint, DT, max_linear=0.2, max_angular=0.4)
    assert 0.0 <= v <= 0.2 and -0.4 <= w <= 0.4


def test_clip_angle_wraps_into_minus_pi_to_pi():
    np.testing.assert_allclose([clip_angle(a) for a in (0.0, 3 * math.pi / 2, -3 * math.pi / 2, math.pi, 7.0)],
                               [0.0, -math.pi / 2, math.pi / 2, math.pi, 7.0 - 2 * math.pi])


def test_acceleration_limits_bound_the_change_per_elapsed_second():
    limits = VelocityLimits(1.0, 1.0, max_linear_acceleration=0.5, max_angular_acceleration=2.0)
    assert limit_acceleration((1.0, -1.0), (0.0, 0.0), 0.1, limits) == pytest.approx((0.05, -0.2))
    assert limit_acceleration((0.0, 0.0), (0.3, 0.3), 0.1, limits) == pytest.approx((0.25, 0.1))
    assert limit_acceleration((0.01, 0.0), (0.0, 0.0), 0.1, limits) == pytest.approx((0.01, 0.0))
    assert limit_acceleration((1.0, 1.0), (0.0, 0.0), 0.1, VelocityLimits(1.0, 1.0)) == (1.0, 1.0), "0 = unlimited"


def run_follower(follower: WaypointFollower, waypoint, seconds: float, rate: float = 10.0, t0: float = 0.0,
                 send_until: float | None = None):
    out = []
    for i in range(int(seconds * rate)):
        now = t0 + i / rate
        if send_until is None or now <= send_until:
            follower.on_waypoint(waypoint, now)
        out.append((now, follower.command(now)))
    return out


def test_follower_ramps_within_limits_then_holds_the_law_velocity():
    limits = VelocityLimits(0.2, 0.4, max_linear_acceleration=0.5, max_angular_acceleration=1.0)
    follower = WaypointFollower(limits, waypoint_dt=DT, timeout=1.0)
    commands = run_follower(follower, (0.2, 0.05, 1.0, 0.0), seconds=2.0)
    v = np.array([c.linear for _, c in commands])
    w = np.array([c.angular for _, c in commands])
    assert all(c.state == "tracking" for _, c in commands)
    assert np.all(np.abs(np.diff(v)) <= 0.5 * 0.1 + 1e-12) and np.all(np.abs(np.diff(w)) <= 1.0 * 0.1 + 1e-12)
    assert v.max() <= 0.2 and np.abs(w).max() <= 0.4
    assert v[-1] == pytest.approx(0.2) and w[-1] == pytest.approx(0.4), "saturated at the limits"


def test_follower_stops_at_once_when_waypoints_stop_arriving():
    follower = WaypointFollower(VelocityLimits(0.2, 0.4, 0.5, 1.0), waypoint_dt=DT, timeout=1.0)
    commands = run_follower(follower, (0.2, 0.0), seconds=4.0, send_until=1.5)
    moving = [c for t, c in commands if t <= 2.5]
    stopped = [(t, c) for t, c in commands if t > 2.5 + 1e-9]
    assert moving[-1].state == "tracking" and moving[-1].linear > 0.15, "still moving within the timeout"
    assert stopped and all(c.state == "timeout" and c.linear == 0.0 and c.angular == 0.0 for _, c in stopped)
    follower.on_waypoint((0.2, 0.0), 4.0)
    restart = follower.command(4.0)  # 0.1 s after the last command
    assert restart.state == "tracking" and 0.0 < restart.linear <= 0.5 * 0.1 + 1e-12, "ramps up again from rest"


def test_follower_stops_at_the_goal_and_idles_before_the_first_waypoint():
    follower = WaypointFollower(VelocityLimits(0.2, 0.4), waypoint_dt=DT, timeout=1.0)
    assert follower.command(0.0).state == "idle"
    follower.on_waypoint((0.2, 0.0), 0.1)
    assert follower.command(0.2).linear == pytest.approx(0.2)
    follower.on_goal_reached(True)
    follower.on_waypoint((0.2, 0.0), 0.3)
    stop = follower.command(0.35)
    assert stop.state == "goal" and (stop.linear, stop.angular) == (0.0, 0.0)


def test_follower_forgets_its_waypoint_when_the_clock_goes_back():
    follower = WaypointFollower(VelocityLimits(0.2, 0.4), waypoint_dt=DT, timeout=1.0)
    follower.on_waypoint((0.2, 0.0), 10.0)
    assert follower.command(10.1).state == "tracking"
    # Sim time of a looping bag restarts at 0.5 s: the old waypoint's age is unknown, so the robot must not keep
    # tracking it until the clock catches up with 11 s (which it would, were the age computed as now - 10.0 < 0).
    after = follower.command(0.5)
    assert after.state == "idle" and (after.linear, after.angular) == (0.0, 0.0)
    follower.on_waypoint((0.2, 0.0), 0.6)
    assert follower.command(0.7).state == "tracking"
