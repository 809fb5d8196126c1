"""The waypoint controller's collision guard (core/navigation/obstacles.py): depth -> obstacle points in the robot's
frame, and commands checked against them (kept, steered, slowed, stopped)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import PinholeCamera
from ros_mmfusion.core.navigation.obstacles import CollisionGuard, arc_poses, depth_obstacle_points
from ros_mmfusion.core.sim.sensors import make_rig

RIG = make_rig("robot", 80, 60)  # the synthetic robot: camera 0.20 m ahead of base_link, 0.45 m up, looking ahead
CAMERA, T_BASE_CAMERA = RIG.depth.camera, RIG.depth.T_base_sensor


def floor_depth(camera: PinholeCamera, height: float) -> np.ndarray:
    """Optical z of a level floor ``height`` metres below a level camera (NaN at and above the horizon)."""
    rows = np.arange(camera.height, dtype=np.float64) - camera.k[1, 2]
    z = np.where(rows > 0.5, height * camera.k[1, 1] / np.maximum(rows, 1e-9), np.nan)
    return np.repeat(z[:, None], camera.width, axis=1).astype(np.float32)


def test_a_wall_ahead_becomes_points_at_its_distance_and_the_floor_none():
    wall = np.full((CAMERA.height, CAMERA.width), 2.0, np.float32)  # a wall 2 m in front of the lens
    points = depth_obstacle_points(wall, CAMERA, T_BASE_CAMERA, stride=1, cell=0.01)
    assert len(points) > 50
    np.testing.assert_allclose(points[:, 0], 2.2, atol=1e-6)  # lens 0.2 m ahead of base_link
    half_width = 2.0 * math.tan(math.radians(40.0))  # 80 degree field of view
    assert points[:, 1].min() == pytest.approx(-half_width, abs=0.1) and points[:, 1].max() == pytest.approx(
        half_width, abs=0.1)
    floor = floor_depth(CAMERA, 0.45)
    assert len(depth_obstacle_points(floor, CAMERA, T_BASE_CAMERA)) == 0, "the floor is not an obstacle"
    low = depth_obstacle_points(floor, CAMERA, T_BASE_CAMERA, min_height=-0.05)
    assert len(low) > 0, "with the floor let in, its points appear"
    holes = wall.copy()
    holes[:, : CAMERA.width // 2] = np.nan  # no return on the left half of the image (the robot's left)
    holes[:5] = 0.0
    left_free = depth_obstacle_points(holes, CAMERA, T_BASE_CAMERA)
    assert len(left_free) and np.all(left_free[:, 1] <= 0.05), "NaN and 0 pixels give no points"
    far = depth_obstacle_points(wall, CAMERA, T_BASE_CAMERA, max_range=1.5)
    assert len(far) == 0
    with pytest.raises(ValueError, match="does not match"):
        depth_obstacle_points(wall[:10], CAMERA, T_BASE_CAMERA)


def test_arcs_are_exact():
    straight = arc_poses(1.0, 0.0, 1.0, 0.25)
    np.testing.assert_allclose(straight, [[0.25, 0], [0.5, 0], [0.75, 0], [1.0, 0]])
    quarter = arc_poses(1.0, math.pi / 2, 1.0, 0.5)  # a quarter circle of radius 2 / pi to the left
    r = 2 / math.pi
    np.testing.assert_allclose(quarter[-1], [r, r], atol=1e-12)
    assert quarter[0, 1] > 0


def test_a_person_beside_the_path_is_steered_around_and_a_clear_path_kept():
    guard = CollisionGuard(radius=0.25, margin=0.15, horizon=2.0)
    beside = np.array([[2.5, 1.5], [1.0, -1.2]])
    kept = guard.check(1.0, 0.1, beside, max_angular=0.4)
    assert (kept.linear, kept.angular, kept.state) == (1.0, 0.1, "clear")
    person = np.array([[1.6, y] for y in np.linspace(0.15, 0.45, 7)])  # just left of the straight path
    decision = guard.check(1.0, 0.0, person, max_angular=0.4)
    assert decision.state == "steer" and decision.linear == 1.0
    assert decision.angular < 0, "turns right, away from the person on the left"
    assert decision.clearance >= 0.4 - 1e-9
    assert guard.clearance(1.0, decision.angular, person)[1] == math.inf
    # the nearest clear turn: one candidate less would hit the person
    step = 0.8 / (guard.turn_candidates - 1)
    assert guard.clearance(1.0, decision.angular + step, person)[1] < math.inf
    assert guard.check(0.0, 0.3, person, 0.4).state == "clear", "turning on the spot sweeps nothing ahead"


def test_a_wall_across_the_path_slows_then_stops():
    guard = CollisionGuard(radius=0.25, margin=0.15, horizon=2.0)
    wall = np.array([[1.2, y] for y in np.linspace(-3.0, 3.0, 61)])
    slowed = guard.check(1.0, 0.0, wall, max_angular=0.4)
    assert slowed.state == "slow" and 0.0 < slowed.linear < 0.5
    near = wall - [0.85, 0.0]  # 0.35 m ahead: inside the margin already
    stopped = guard.check(1.0, 0.0, near, max_angular=0.4)
    assert stopped.state == "stop" and stopped.linear == 0.0
    beside = np.array([[0.0, 0.3], [0.1, 0.3]])  # already closer than the margin, beside the robot
    assert guard.check(1.0, 0.0, beside, 0.4).state == "clear", "driving past it gets no closer"
    assert guard.check(1.0, 0.0, np.zeros((0, 2)), 0.4).state == "clear"


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="collision guard"):
        CollisionGuard(radius=0.0)
    with pytest.raises(ConfigError, match="collision guard"):
        CollisionGuard(horizon=0.1, step=0.2)
