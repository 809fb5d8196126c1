"""Multi-sweep accumulation: past clouds land in the current LiDAR frame through the poses, lags are exact, the
window and sweep count bound what is kept, and bad sweeps are refused without changing anything."""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core.detection3d.sweeps import SweepAccumulator
from ros_mmfusion.core.errors import ConfigError, MessageFormatError


def pose(x: float, y: float, yaw: float, z: float = 1.8) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = (x, y, z)
    return T


def seen_from(T_world_lidar: np.ndarray, world_points: np.ndarray, intensity: float) -> np.ndarray:
    """The world points as the LiDAR at ``T_world_lidar`` measures them, with an intensity column."""
    T = np.linalg.inv(T_world_lidar)
    local = world_points @ T[:3, :3].T + T[:3, 3]
    return np.concatenate([local, np.full((len(local), 1), intensity)], axis=1).astype(np.float32)


def test_a_static_point_seen_from_two_poses_lands_at_one_place_with_exact_lags():
    world = np.array([[10.0, 5.0, 0.5], [-3.0, 20.0, 1.0]])
    T_old, T_new = pose(0.0, 0.0, 0.0), pose(4.0, 1.0, 0.3)
    acc = SweepAccumulator(max_sweeps=10, max_age=0.5)
    first = acc.push(100.0, T_old, seen_from(T_old, world, 7.0))
    assert first.shape == (2, 5) and np.all(first[:, 4] == 0)
    merged = acc.push(100.05, T_new, seen_from(T_new, world, 9.0))
    assert merged.shape == (4, 5) and merged.dtype == np.float32
    current, past = merged[:2], merged[2:]
    # the same world points, measured from two poses, coincide in the current frame
    np.testing.assert_allclose(past[:, :3], current[:, :3], atol=1e-5)
    np.testing.assert_allclose(current[:, :3], seen_from(T_new, world, 0)[:, :3], atol=1e-6)
    assert np.all(current[:, 3] == 9.0) and np.all(past[:, 3] == 7.0)
    assert np.all(current[:, 4] == 0) and np.all(past[:, 4] == np.float32(100.05 - 100.0))


def test_window_and_count_bound_the_sweeps_and_lags_follow_the_stamps():
    acc = SweepAccumulator(max_sweeps=3, max_age=0.25, ego_radius=0)
    cloud = np.array([[5.0, 0.0, 0.0, 1.0]], np.float32)
    for k in range(5):
        out = acc.push(10.0 + 0.1 * k, np.eye(4), cloud)
    assert acc.stamps == pytest.approx((10.2, 10.3, 10.4))  # max_sweeps 3
    np.testing.assert_array_equal(out[:, 4], np.float32([0.0, 10.4 - 10.3, 10.4 - 10.2]))
    acc2 = SweepAccumulator(max_sweeps=10, max_age=0.25, ego_radius=0)
    for t in (1.0, 1.1, 1.2, 1.3):
        out = acc2.push(t, np.eye(4), cloud)
    assert acc2.stamps == pytest.approx((1.1, 1.2, 1.3))  # 1.0 is 0.3 s old: beyond the window
    assert out.shape == (3, 5)


def test_one_sweep_is_todays_cloud_with_a_zero_lag_and_ego_points_go_only_from_past_sweeps():
    cloud = np.array([[0.5, 0.2, 0.0, 3.0], [8.0, 0.0, 0.0, 4.0]], np.float32)
    single = SweepAccumulator(max_sweeps=1)
    out = single.push(1.0, pose(1, 2, 0.5), cloud)
    np.testing.assert_array_equal(out[:, :4], cloud)
    assert np.all(out[:, 4] == 0)
    acc = SweepAccumulator(max_sweeps=2, max_age=1.0, ego_radius=1.0)
    acc.push(1.0, np.eye(4), cloud)
    out = acc.push(1.1, np.eye(4), cloud)
    assert out.shape == (3, 5)  # the past sweep's point within 1 m of its sensor is dropped, the current one's kept
    np.testing.assert_array_equal(out[:2, :4], cloud)


def test_time_going_backwards_restarts_and_a_repeated_stamp_replaces():
    acc = SweepAccumulator(max_sweeps=10, max_age=1.0, ego_radius=0)
    cloud = np.ones((4, 4), np.float32)
    acc.push(5.0, np.eye(4), cloud)
    acc.push(5.1, np.eye(4), cloud)
    acc.push(5.1, np.eye(4), cloud[:2])
    assert acc.stamps == (5.0, 5.1) and len(acc.merged()) == 6
    acc.push(1.0, np.eye(4), cloud)
    assert acc.stamps == (1.0,)


@pytest.mark.parametrize("stamp, T, points", [
    (float("nan"), np.eye(4), np.zeros((1, 4))),
    (1.0, np.eye(3), np.zeros((1, 4))),
    (1.0, np.full((4, 4), np.nan), np.zeros((1, 4))),
    (1.0, np.eye(4), np.zeros((3,))),
    (1.0, np.eye(4), np.zeros((2, 3))),
    (1.0, np.eye(4), np.array([["a", "b", "c", "d"]])),
])
def test_bad_sweeps_are_refused_and_change_nothing(stamp, T, points):
    acc = SweepAccumulator()
    acc.push(0.5, np.eye(4), np.zeros((2, 4), np.float32))
    with pytest.raises(MessageFormatError):
        acc.push(stamp, T, points)
    assert acc.stamps == (0.5,)


def test_bad_settings_are_config_errors():
    for kwargs in ({"max_sweeps": 0}, {"max_age": -1.0}, {"max_age": float("nan")}, {"ego_radius": -0.1}):
        with pytest.raises(ConfigError):
            SweepAccumulator(**kwargs)
