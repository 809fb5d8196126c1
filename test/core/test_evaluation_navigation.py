"""Navigation metrics on hand-built trajectories (core/navigation/metrics.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ros_mmfusion.core.navigation.metrics import (
    LocalisationAccumulator,
    NavigationRecord,
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
    assert r["accuracy_within_1"] == 1.0  # the one miss is a neighbour
    assert localisation_accuracy([0, 3, 2, 7], nodes, truth)["accuracy_within_1"] == 0.5  # 2 off; 7 is no node
    assert localisation_accuracy([0, 1, 2, 5], nodes, truth, tolerance=1)["accuracy"] == 1.0
    assert localisation_accuracy([], nodes, np.zeros((0, 2)))["accuracy"] is None


def test_accumulators_merged_over_runs_equal_one_accumulation_of_all_frames():
    nodes = np.stack([np.arange(6.0), np.zeros(6)], axis=1)
    truth = np.array([[0.1, 0.2], [1.4, 0.0], [2.6, -0.3], [5.2, 0.0], [3.1, 0.0]])
    published = [0, 1, 2, 5, 7]  # the last is no node of the map
    first, second = LocalisationAccumulator(tolerance=1), LocalisationAccumulator(tolerance=1)
    first.add(published[:2], nodes, truth[:2])
    second.add(published[2:], nodes, truth[2:])
    first.merge(second)
    assert first.results() == localisation_accuracy(published, nodes, truth, tolerance=1)
    assert first.results()["frames"] == 5 and first.results()["accuracy"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="tolerance"):
        first.merge(LocalisationAccumulator(tolerance=0))

    frames = [(1.0, [[0.25, 0], [0.5, 0]]), (2.0, [[0.25, 0.1], [0.5, 0.2]]), (9.9, [[0.25, 0]] * 2)]
    whole, a, b = WaypointAccumulator(0.25), WaypointAccumulator(0.25), WaypointAccumulator(0.25)
    for i, (t, wp) in enumerate(frames):
        whole.add(_straight(0.7), t, wp)
        (a if i == 0 else b).add(_straight(0.7), t, wp)
    a.merge(b)
    assert a.results() == whole.results() and a.results()["skipped"] == 1
    with pytest.raises(ValueError, match="dt"):
        a.merge(WaypointAccumulator(0.5))


def test_navigation_record_pairs_paths_with_closest_nodes_and_scores_them_against_odometry():
    nodes = np.stack([np.arange(12.0), np.zeros(12)], axis=1)  # a node every metre along the drive
    record = NavigationRecord(nodes, dt_s=0.25)
    for t in np.arange(0.0, 10.01, 0.5):  # 1 m/s along x from x = 0
        record.add_odometry(round(t * 1e9), t, 0.0, 0.0)
    for t, node in ((1.0, 1), (2.0, 2), (3.0, 4)):
        record.add_path(round(t * 1e9), [(0.25, 0.0), (0.5, 0.0), (0.75, 0.1)])
        record.add_closest_node(node)
    record.add_path(round(4.0 * 1e9), [(0.25, 0.0)] * 3)  # its closest node never arrived
    notes: list[str] = []
    r = record.results(notes, "/odom")
    assert notes == ["navigation: 4 paths but 3 closest-node indices arrived; the first 3 were paired"]
    assert r["paths"] == 4 and r["topomap_nodes"] == 12
    assert r["localisation"]["frames"] == 3 and r["localisation"]["accuracy"] == pytest.approx(2 / 3)
    assert r["localisation"]["accuracy_within_1"] == 1.0
    assert r["waypoints"]["frames"] == 4 and r["waypoints"]["FDE_m"] == pytest.approx((3 * 0.1 + 0.5) / 4)
    assert r["trajectory"]["localised_node"] == [1, 2, 4] and r["trajectory"]["truth_xy"][2] == [3.0, 0.0]
    notes.clear()
    assert NavigationRecord(nodes, 0.25).results(notes, "/odom") is None
    assert notes == ["navigation metrics skipped: no navigation/path arrived"]
    record.odom = record.odom[:1]
    assert record.results(notes, "/odom") is None and notes[-1].endswith("fewer than 2 /odom messages arrived")


def test_a_path_in_the_odometry_frame_scores_as_its_body_frame_twin():
    """The robot drives a quarter circle; each path is added once in the body frame and once moved into the odometry
    frame with the pose at its stamp (as vint_navigation's path_frame odom does): the waypoint errors agree."""
    from ros_mmfusion.core.navigation.localization import planar_pose_transform, transform_waypoints

    nodes = np.zeros((2, 2))
    body, odom = NavigationRecord(nodes, dt_s=0.25), NavigationRecord(nodes, dt_s=0.25)
    times = np.arange(0.0, 6.01, 0.05)
    poses = np.stack([np.sin(times / 4), 1 - np.cos(times / 4), times / 4], axis=1)  # radius 1 m, 0.25 rad/s
    for record in (body, odom):
        for t, pose in zip(times, poses, strict=True):
            record.add_odometry(round(t * 1e9), *pose)
    for t in (1.0, 2.0, 3.0):
        xy = [(0.1, 0.02), (0.2, 0.05), (0.3, 0.1)]
        body.add_path(round(t * 1e9), xy)
        pose = poses[int(round(t / 0.05))]
        moved = transform_waypoints(np.array([(x, y, 1.0, 0.0) for x, y in xy]), planar_pose_transform(pose))
        odom.add_path(round(t * 1e9), [tuple(p) for p in moved[:, :2]], in_odometry_frame=True)
    a, b = body.results([], "/odom")["waypoints"], odom.results([], "/odom")["waypoints"]
    assert a["frames"] == b["frames"] == 3
    assert b["ADE_m"] == pytest.approx(a["ADE_m"], abs=1e-9) and b["FDE_m"] == pytest.approx(a["FDE_m"], abs=1e-9)
    # the odometry-frame path scored as if it were in the body frame would be far off (a regression check)
    naive = NavigationRecord(nodes, dt_s=0.25)
    naive.odom, naive.paths = odom.odom, odom.paths
    naive.paths_in_odometry_frame = [False] * len(odom.paths)
    assert naive.results([], "/odom")["waypoints"]["ADE_m"] > a["ADE_m"] + 0.1


def test_transform_waypoints_moves_positions_and_rotates_headings():
    from ros_mmfusion.core.navigation.localization import planar_pose_transform, transform_waypoints

    T = planar_pose_transform((1.0, 2.0, math.pi / 2))  # at (1, 2) facing +y
    moved = transform_waypoints(np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]), T)
    np.testing.assert_allclose(moved, [[1.0, 3.0, 0.0, 1.0], [0.0, 2.0, -1.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(transform_waypoints(moved, T.inverse()), [[1, 0, 1, 0], [0, 1, 0, 1]], atol=1e-12)


def test_apply_planar_moves_ground_points_and_drops_a_tilt():
    from ros_mmfusion.core.geometry import Transform

    T = Transform.from_xyz_rpy((1.0, 2.0, 0.5), (0.0, 0.0, math.pi / 2))  # at (1, 2), 0.5 m up, facing +y
    np.testing.assert_allclose(T.apply_planar([[1.0, 0.0], [0.0, 1.0]]), [[1.0, 3.0], [0.0, 2.0]], atol=1e-12)
    tilted = Transform.from_xyz_rpy((0.0, 0.0, 0.0), (0.0, 0.3, 0.0))  # pitched: x keeps its ground projection
    np.testing.assert_allclose(tilted.apply_planar([[2.0, 0.0]]), [[2.0 * math.cos(0.3), 0.0]], atol=1e-12)
    assert T.apply_planar(np.zeros((0, 2))).shape == (0, 2)
