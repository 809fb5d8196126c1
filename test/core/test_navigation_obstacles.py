"""The waypoint controller's collision guard (core/navigation/obstacles.py): depth -> obstacle points in the robot's
frame, and commands checked against them (kept, steered, slowed, stopped); moving obstacles followed from frame to
frame and met where they will be."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import PinholeCamera
from ros_mmfusion.core.navigation.obstacles import CollisionGuard, ObstacleTracker, arc_poses, depth_obstacle_points
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
    # the edge of the view: points from the outermost sampled columns, or near max_range
    same, cut = depth_obstacle_points(wall, CAMERA, T_BASE_CAMERA, stride=1, cell=0.01, edges=True)
    np.testing.assert_array_equal(same, points)
    side = np.abs(points[:, 1]) > half_width - 0.03
    assert cut[side].all() and not cut[~side].any() and side.sum() >= 2
    assert depth_obstacle_points(wall, CAMERA, T_BASE_CAMERA, max_range=2.4, edges=True)[1].all()
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


def blob(x: float, y: float) -> np.ndarray:
    """A person-sized cluster of points (0.3 x 0.3 m) centred at ``(x, y)``."""
    return np.array([[x + dx, y + dy] for dx in (-0.15, -0.05, 0.05, 0.15) for dy in (-0.15, -0.05, 0.05, 0.15)])


def test_the_tracker_gives_a_walking_person_its_velocity_and_standing_things_none():
    tracker = ObstacleTracker()
    wall = np.array([[x, 2.0] for x in np.arange(-1.0, 5.0, 0.05)])  # 6 m of wall: structure, never moving
    bin_ = blob(2.0, -1.5)  # compact but standing
    walking = np.array([-1.2, 0.4])
    for k in range(6):
        t = 0.25 * k
        person = blob(*(np.array([4.0, -0.5]) + walking * t))
        velocities = tracker.update(t, np.vstack([wall, bin_, person]))
        assert not velocities[: len(wall) + len(bin_)].any(), "the wall and the standing bin do not move"
        v = velocities[len(wall) + len(bin_):]
        assert np.all(v == v[0]), "one velocity per cluster"
        if k <= 1:
            assert not v.any(), "a velocity once the person was followed over two frame pairs"
    np.testing.assert_allclose(v[0], walking, atol=0.05)  # smoothed over frames: within 5 cm/s after 6
    # seen closer than min_speed (a standing thing's centroid drifting as more of it comes into view): static
    drifting = ObstacleTracker()
    for k in range(4):
        assert not drifting.update(0.25 * k, blob(3.0 - 0.05 * k, 0.0)).any()
    # the same walk cut by the edge of the view: only a part seen, static
    edge = ObstacleTracker()
    for k in range(6):
        person = blob(*(np.array([4.0, -0.5]) + walking * 0.25 * k))
        assert not edge.update(0.25 * k, person, np.arange(len(person)) == 0).any()
    # a followed person then cut by the edge (walking out of view close by): keeps the velocity it had
    for k in range(6, 9):
        person = blob(*(np.array([4.0, -0.5]) + walking * 0.25 * k))
        v = tracker.update(0.25 * k, person, np.arange(len(person)) == 0)
        np.testing.assert_allclose(v, np.tile(v[0], (len(person), 1)))
        np.testing.assert_allclose(v[0], walking, atol=0.05)
    # time back (a replayed bag looping): no velocity from the jump
    assert not tracker.update(0.0, blob(4.0, -0.5)).any()
    assert tracker.update(0.25, np.zeros((0, 2))).shape == (0, 2)
    labels = tracker.clusters(np.vstack([blob(0.0, 0.0), blob(2.0, 0.0)]))
    assert len(set(labels[:16])) == 1 and len(set(labels[16:])) == 1 and labels[0] != labels[16]


def test_moving_obstacles_are_met_where_they_will_be():
    guard = CollisionGuard(radius=0.25, margin=0.15, horizon=2.0)
    # a person just left of the path walking away to the left: avoided when standing, passed when walking
    leaving = blob(1.6, 0.1)
    away = np.tile([0.0, 1.5], (len(leaving), 1))
    standing = guard.check(1.0, 0.0, leaving, 0.4)
    assert standing.state != "clear"
    assert guard.check(1.0, 0.0, leaving, 0.4, away).state == "clear"
    assert guard.check(1.0, 0.0, leaving, 0.4, np.zeros_like(leaving)) == standing, "zero velocity = standing"
    # a person beside the path walking into it: clear when standing; walking, no arc at speed is clear but
    # standing still is, so the robot waits for them to pass (creeping on would meet them)
    crossing = blob(1.6, 1.2)
    into = np.tile([0.0, -1.0], (len(crossing), 1))
    assert guard.check(1.0, 0.0, crossing, 0.4).state == "clear"
    assert guard.clearance(0.0, 0.0, crossing, into)[1] == math.inf
    decision = guard.check(1.0, 0.0, crossing, 0.4, into)
    assert (decision.state, decision.linear, decision.angular) == ("stop", 0.0, 0.0)
    # with a wall ahead as well (standing, blocking every arc), the wall's rule: slow towards it
    wall = np.array([[1.8, y] for y in np.linspace(-3.0, 3.0, 61)])
    both = guard.check(1.0, 0.0, np.vstack([wall, crossing]), 0.4, np.vstack([np.zeros_like(wall), into]))
    assert both.state == "slow"
    # someone walking at the robot from behind, a wall ahead: no arc is clear, but standing still is met first,
    # so the guard keeps the speed on the arc that meets anything latest instead of stopping
    behind = blob(-1.0, 1.0)
    points = np.vstack([wall, behind])
    velocities = np.vstack([np.zeros_like(wall), np.tile([1.06, -1.06], (len(behind), 1))])
    assert guard.check(1.0, 0.0, points, 0.4).state == "slow", "standing, the person is no concern"
    _, met_standing = guard.clearance(0.0, 0.0, points, velocities)
    assert met_standing < 1.0
    evading = guard.check(1.0, 0.0, points, 0.4, velocities)
    assert evading.state == "steer" and evading.linear == 1.0
    assert guard.clearance(1.0, evading.angular, points, velocities)[1] > met_standing


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="collision guard"):
        CollisionGuard(radius=0.0)
    with pytest.raises(ConfigError, match="collision guard"):
        CollisionGuard(horizon=0.1, step=0.2)
    with pytest.raises(ConfigError, match="obstacle tracker"):
        ObstacleTracker(smoothing=0.0)
    with pytest.raises(ValueError, match="finite"):
        ObstacleTracker().update(0.0, np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="at most 409.6 m"):  # the grid's memory stays bounded
        ObstacleTracker().clusters(np.array([[0.0, 0.0], [500.0, 0.0]]))
