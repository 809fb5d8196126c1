"""The differential-drive robot of the closed-loop simulator, and the closed-loop metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros_mmfusion.core.navigation.metrics import (
    ClosedLoopRun,
    closed_loop_metrics,
    cross_track_distances,
    summarize_closed_loop,
)
from ros_mmfusion.core.sim.robot import DiffDriveRobot, DriveLimits, RobotState, check_command, integrate


def drive(robot: DiffDriveRobot, v: float, w: float, seconds: float, dt: float = 0.01, t0: float = 0.0) -> float:
    t = t0
    for _ in range(round(seconds / dt)):
        robot.set_command(v, w, t)
        robot.step(t, dt)
        t += dt
    return t


def test_a_full_circle_returns_to_the_start_whatever_the_step():
    for steps in (7, 100, 1000):  # one turn at 0.5 rad/s takes 4 pi seconds, in steps of any size
        s = RobotState(1.0, 2.0, 0.3)
        for _ in range(steps):
            s.x, s.y, s.yaw = integrate(s, 0.4, 0.5, 4 * math.pi / steps)
        assert (s.x, s.y) == pytest.approx((1.0, 2.0), abs=1e-9) and math.cos(s.yaw - 0.3) == pytest.approx(1.0)


def test_straight_drive_respects_speed_and_acceleration_limits():
    robot = DiffDriveRobot(RobotState(0.0, 0.0, 0.0), DriveLimits(max_linear=0.5, max_linear_acceleration=1.0))
    drive(robot, 0.5, 0.0, 0.25)
    assert robot.state.linear == pytest.approx(0.25)  # 1 m/s^2 for 0.25 s
    drive(robot, 5.0, 0.0, 2.0, t0=0.25)  # clamped to 0.5 m/s
    assert robot.state.linear == pytest.approx(0.5) and robot.state.y == pytest.approx(0.0)
    # 0.03125 m while accelerating to 0.25, 0.09375 m more to reach 0.5, then 1.75 s at 0.5 m/s (velocity steps of
    # 0.01 s are applied before each move: a few millimetres more than the continuous ramp)
    assert robot.state.x == pytest.approx(0.03125 + 0.09375 + 0.875, abs=0.005)


def test_stale_commands_stop_the_robot():
    robot = DiffDriveRobot(RobotState(0.0, 0.0, 0.0), DriveLimits(max_linear_acceleration=0.0), command_timeout=0.5)
    robot.set_command(0.4, 0.0, 0.0)
    t = 0.0
    for _ in range(100):  # 2 s with no new command
        robot.step(t, 0.02)
        t += 0.02
    assert robot.state.linear == 0.0 and robot.state.x == pytest.approx(0.4 * 0.52, abs=0.01)


@pytest.mark.parametrize(("v", "w", "accepted", "problem"), [
    (float("nan"), 0.0, False, "not finite"),
    (0.1, float("inf"), False, "not finite"),
    (1e6, 0.0, False, "more than 10 times"),
    (0.8, 0.0, True, "clamped"),
    (-1.0, 0.0, True, "clamped"),
    (0.3, -0.5, True, ""),
])
def test_commands_are_rejected_or_clamped(v, w, accepted, problem):
    check = check_command(v, w, DriveLimits(max_linear=0.5, max_angular=1.5, max_reverse=0.2))
    assert check.accepted is accepted and problem in check.problem and (problem or not check.problem)
    if accepted:
        assert -0.2 <= check.linear <= 0.5 and -1.5 <= check.angular <= 1.5


def test_a_rejected_command_keeps_the_previous_one():
    robot = DiffDriveRobot(RobotState(0.0, 0.0, 0.0))
    robot.set_command(0.3, 0.1, 0.0)
    assert not robot.set_command(float("nan"), 0.0, 0.1).accepted
    assert robot.command == (0.3, 0.1)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
def test_no_command_makes_the_state_non_finite_or_exceed_the_limits(v, w):
    limits = DriveLimits()
    robot = DiffDriveRobot(RobotState(0.0, 0.0, 0.0), limits)
    drive(robot, v, w, 0.2)
    s = robot.state
    assert all(math.isfinite(a) for a in (s.x, s.y, s.yaw, s.linear, s.angular))
    assert -limits.max_reverse <= s.linear <= limits.max_linear and abs(s.angular) <= limits.max_angular


def test_a_wall_stops_the_robot_and_counts_one_collision_per_contact():
    def wall(x, y, radius, t):  # noqa: ARG001 - a wall at x = 1 m
        return x + radius >= 1.0

    robot = DiffDriveRobot(RobotState(0.0, 0.0, 0.0), DriveLimits(max_linear_acceleration=0.0), radius=0.25,
                           collides=wall)
    t = drive(robot, 0.5, 0.0, 4.0)
    assert robot.collisions == 1 and robot.state.x < 0.75 and robot.state.x > 0.7 and robot.state.linear == 0.0
    t = drive(robot, -0.2, 0.0, 1.0, t0=t)  # back off, then hit it again: a second contact
    drive(robot, 0.5, 0.0, 3.0, t0=t)
    assert robot.collisions == 2


def test_odometry_starts_at_the_identity_in_the_odom_frame():
    robot = DiffDriveRobot(RobotState(5.0, -3.0, 1.0), DriveLimits(max_linear_acceleration=0.0))
    assert np.allclose(robot.T_odom_base().matrix(), np.eye(4))
    drive(robot, 0.5, 0.0, 2.0)
    odom = robot.T_odom_base()
    assert odom.translation[:2] == pytest.approx([1.0, 0.0], abs=1e-6)  # 1 m straight ahead of where it started


def test_cross_track_and_closed_loop_metrics():
    route = np.array([[0.0, 0.0], [10.0, 0.0]])
    assert cross_track_distances(np.array([[5.0, 0.5], [12.0, 0.0], [-1.0, 0.0]]), route) == pytest.approx(
        [0.5, 2.0, 1.0])
    xs = np.linspace(0, 10, 21)
    run = ClosedLoopRun("r", np.linspace(0, 50, 21), np.stack([xs, np.full_like(xs, 0.2)], 1),
                        np.linspace(0, 50, 21), np.tile([0.2, 0.0], (21, 1)), route, (10.0, 0.0), 0, "goal")
    m = closed_loop_metrics(run)
    assert m["success"] and m["spl"] == pytest.approx(1.0) and m["cross_track_mean_m"] == pytest.approx(0.2)
    assert m["angular_rms_rad_s2"] == 0.0 and m["time_to_goal_s"] == pytest.approx(50.0)
    crashed = closed_loop_metrics(ClosedLoopRun(**{**run.__dict__, "collisions": 1, "ended": "collision"}))
    short = closed_loop_metrics(ClosedLoopRun(**{**run.__dict__, "xy": run.xy[:10]}))
    assert not crashed["success"] and crashed["spl"] == 0.0 and not short["success"]
    summary = summarize_closed_loop([m, crashed, short])
    assert summary["success_rate"] == pytest.approx(1 / 3) and summary["collisions"] == 1
