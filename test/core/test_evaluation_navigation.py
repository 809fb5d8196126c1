"""Navigation metrics on hand-built trajectories (core/evaluation/navigation.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ros_mmfusion.core.evaluation.navigation import (
    Trajectory,
    WaypointAccumulator,
    displacement_errors,
    future_in_body_frame,
    localisation_accuracy,
    nearest_node,
)


def _straight(yaw: float = 0.0, speed: float = 1.0) -> Trajectory:
    t = np.arange(0, 10.01, 0.5)
    xy = np.stack([speed * t * math.cos(yaw) + 3, speed * t * math.sin(yaw) - 2], axis=1)
    return Trajectory.build(t, xy, np.full(t.size, yaw))


def test_future_of_a_straight_drive_is_straight_ahead_in_any_heading():
    for yaw in (0.0, 1.0, math.pi, -2.5):
        future = future_in_body_frame(_straight(yaw), 2.25, 5, 0.25)
        np.testing.assert_allclose(future, np.stack([0.25 * np.arange(1, 6), np.zeros(5)], axis=1), atol=1e-9)
    assert future_in_body_frame(_straight(), 9.5, 5, 0.25) is None  # runs past the end of odometry


def test_turning_robot_future_is_on_the_left():
    # a 1 m circle counter-clockwise at 1 rad/s: a quarter turn on, the robot is at (1, 1) in its start frame
    t = np.linspace(0, 6, 6001)
    traj = Trajectory.build(t, np.stack([np.sin(t), 1 - np.cos(t)], axis=1), t)  # yaw = t, crosses pi: unwrapped
    future = future_in_body_frame(traj, 3.0, 1, math.pi / 2)
    np.testing.assert_allclose(future[0], [1.0, 1.0], atol=1e-3)


def test_ade_fde():
    ade, fde = displacement_errors([[1, 0], [2, 0], [3, 0]], [[1, 0], [2, 1], [3, 2]])
    assert ade == pytest.approx(1.0) and fde == pytest.approx(2.0)
    acc = WaypointAccumulator(dt=0.25)
    assert acc.add(_straight(0.7), 1.0, [[0.25, 0], [0.5, 0], [0.75, 0], [1.0, 0]])
    assert acc.add(_straight(0.7), 2.0, [[0.25, 0.1], [0.5, 0.2], [0.75, 0.3], [1.0, 0.4]])
    assert not acc.add(_straight(0.7), 9.9, [[0.25, 0]] * 4)
    r = acc.results()
    assert r["frames"] == 2 and r["skipped"] == 1
    assert r["ADE_m"] == pytest.approx((0 + 0.25) / 2) and r["FDE_m"] == pytest.approx(0.2)


def test_localisation_accuracy_against_the_nearest_node():
    nodes = np.stack([np.arange(6.0), np.zeros(6)], axis=1)  # a node every metre along x
    truth = np.array([[0.1, 0.2], [1.4, 0.0], [2.6, -0.3], [5.2, 0.0]])
    assert nearest_node(nodes, truth).tolist() == [0, 1, 3, 5]
    r = localisation_accuracy([0, 1, 2, 5], nodes, truth)
    assert r["accuracy"] == pytest.approx(0.75) and r["max_index_error"] == 1 and r["mean_index_error"] == 0.25
    assert localisation_accuracy([0, 1, 2, 5], nodes, truth, tolerance=1)["accuracy"] == 1.0
    assert localisation_accuracy([], nodes, np.zeros((0, 2)))["accuracy"] is None
