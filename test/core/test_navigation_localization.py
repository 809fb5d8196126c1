"""Topological localisation as the ViNT deployment does it, driven by known distances: the candidate window, the
closest-node update, subgoal choice with the close threshold, goal reached, single-goal-image mode; the frame-rate
sampler behind the context buffer; the odometry oracle."""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.navigation import (
    OdometryFilterLocalizer,
    PeriodicSampler,
    TopomapLocalizer,
    candidate_window,
    choose_subgoal,
    extrapolate_pose,
    odometry_oracle,
    odometry_temporal_distances,
)
from ros_mmfusion.core.navigation.localization import BELIEF_PAD_NODES

S = 1_000_000_000


@pytest.mark.parametrize("closest, radius, goal, window", [
    (0, 4, 20, (0, 5)),     # clipped at the start; radius + 1 ahead
    (10, 4, 20, (6, 15)),
    (18, 4, 20, (14, 20)),  # clipped at the goal
    (20, 4, 20, (16, 20)),
    (3, 0, 20, (3, 4)),
    (0, 2, 0, (0, 0)),      # goal is the first node
])
def test_window_spans_radius_behind_and_radius_plus_one_ahead_clipped_to_the_map(closest, radius, goal, window):
    assert candidate_window(closest, radius, goal) == window


def test_subgoal_is_the_closest_node_until_it_is_within_the_close_threshold():
    assert choose_subgoal(np.array([9.0, 5.0, 7.0]), 10, 3.0) == (11, 11)   # far: head for the closest node
    assert choose_subgoal(np.array([9.0, 2.0, 7.0]), 10, 3.0) == (11, 12)   # close: head for the next one
    assert choose_subgoal(np.array([9.0, 3.0, 7.0]), 10, 3.0) == (11, 12)   # at the threshold counts as close
    assert choose_subgoal(np.array([9.0, 7.0, 1.0]), 10, 3.0) == (12, 12)   # close but last in the window


def fake_route_distances(position: float, start: int, end: int, spacing: float = 1.0) -> np.ndarray:
    """Known answers: nodes every ``spacing`` m on a line, frames = metres ahead / 0.25, behind = +100."""
    nodes = np.arange(start, end + 1) * spacing
    ahead = nodes - position
    return np.abs(ahead) / 0.25 + np.where(ahead >= 0, 0.0, 100.0)


def test_localizer_follows_a_robot_along_the_route_and_reaches_the_goal():
    loc = TopomapLocalizer(num_nodes=8, goal_node=-1, radius=2, close_threshold=3.0)
    history = []
    for position in np.arange(0.0, 8.0, 0.25):
        start, end = loc.window()
        step = loc.update(fake_route_distances(position, start, end))
        history.append((position, step.closest_node, step.subgoal_node, step.goal_reached))
        assert step.window == (start, end)
        assert 0 <= step.subgoal_node - step.closest_node <= 1
    closest = [h[1] for h in history]
    assert closest == sorted(closest), "the closest node only moves forward along the route"
    assert closest[0] == 0 and closest[-1] == 7
    # within 0.75 m (3 frames) of the next node the robot heads one node further
    at_1_5 = next(h for h in history if h[0] == 1.5)
    assert at_1_5[1:3] == (2, 3)
    reached = [h[3] for h in history]
    first = reached.index(True)
    assert history[first][1] == 7 and all(reached[first:]), "goal reached when localised at the last node, and kept"


def test_closest_node_moves_back_at_most_the_radius_per_step():
    loc = TopomapLocalizer(num_nodes=30, radius=3)
    loc.closest_node = 20
    step = loc.update(np.r_[0.0, np.full(7, 50.0)])  # nodes 17..24: the first is best
    assert step.closest_node == 17 and step.window == (17, 24)
    step = loc.update(np.r_[0.0, np.full(7, 50.0)])
    assert step.closest_node == 14


def test_explicit_goal_node_bounds_the_window_and_counts_as_reached_there():
    loc = TopomapLocalizer(num_nodes=10, goal_node=3, radius=4)
    assert loc.window() == (0, 3)
    step = loc.update([9.0, 8.0, 7.0, 6.0])
    assert step.closest_node == 3 and step.goal_reached
    with pytest.raises(ConfigError, match="outside"):
        TopomapLocalizer(num_nodes=10, goal_node=10)
    with pytest.raises(ValueError, match="4 distances for the 6 nodes 0..5"):
        TopomapLocalizer(num_nodes=10, radius=4).update([1.0, 2.0, 3.0, 4.0])


def test_single_goal_image_is_reached_within_the_close_threshold_only():
    loc = TopomapLocalizer(num_nodes=1, close_threshold=3.0)
    assert loc.window() == (0, 0)
    assert not loc.update([12.0]).goal_reached
    assert not loc.update([3.5]).goal_reached
    assert loc.update([2.5]).goal_reached
    assert loc.update([9.0]).goal_reached, "stays reached until reset"
    loc.reset()
    assert not loc.goal_reached and loc.closest_node == 0


def test_sampler_takes_4_hz_from_a_10_hz_camera_on_a_fixed_schedule():
    sampler = PeriodicSampler(0.25)
    taken = [t for t in range(0, 40) if sampler.offer(t * S // 10)]  # 4 s of 10 Hz frames (tenths of a second)
    assert taken == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 38]


def test_sampler_keeps_every_frame_of_a_jittery_camera_at_the_sampling_rate():
    rng = np.random.default_rng(0)
    stamps = (np.arange(40) * 0.25 + rng.uniform(-0.01, 0.01, 40)) * S
    sampler = PeriodicSampler(0.25)
    assert all(sampler.offer(int(s)) for s in stamps)


def test_sampler_restarts_after_a_gap_or_a_jump_back():
    sampler = PeriodicSampler(0.25)
    assert sampler.offer(0) and not sampler.offer(S // 10)
    assert sampler.offer(2 * S)  # a gap: taken, schedule restarts at 2 s
    assert not sampler.offer(2 * S + S // 10) and sampler.offer(2 * S + S // 4)
    assert sampler.offer(S // 2), "a stamp before the last taken (a looping bag) restarts the schedule"
    assert sampler.last_ns == S // 2


def test_odometry_oracle_counts_frames_ahead_and_penalises_nodes_behind():
    nodes = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    d = odometry_temporal_distances(np.array([0.5, 0.0, 0.0]), nodes, metres_per_frame=0.25)
    np.testing.assert_allclose(d, [2.0 + 100.0, 2.0, 6.0])
    # facing backwards, "ahead" flips
    d = odometry_temporal_distances(np.array([0.5, 0.0, np.pi]), nodes, metres_per_frame=0.25)
    np.testing.assert_allclose(d, [2.0, 102.0, 106.0])


def test_pose_extrapolation_uses_the_body_frame_twist():
    moved = extrapolate_pose(np.array([1.0, 2.0, np.pi / 2]), (1.0, 0.0), 0.5, 0.2)
    np.testing.assert_allclose(moved, [1.0, 2.2, np.pi / 2 + 0.1], atol=1e-12)


def test_odometry_oracle_takes_the_sample_nearest_the_frame_and_extrapolates_it_with_its_twist():
    nodes = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    odometry = [(0, np.array([0.0, 0.0, 0.0]), (1.0, 0.0), 0.0),  # 1 m/s forward
                (S // 2, np.array([0.4, 0.0, 0.0]), (1.0, 0.0), 0.0),
                (S, np.array([5.0, 0.0, 0.0]), (1.0, 0.0), 0.0)]
    distances = odometry_oracle(odometry, S // 2 + S // 10, nodes, metres_per_frame=0.25)  # 0.1 s after the 2nd
    # the robot is at x = 0.4 + 0.1 = 0.5 m: node 0 is behind it, nodes 1 and 2 are 0.5 and 1.5 m ahead
    np.testing.assert_allclose(distances(0, 2), [2.0 + 100.0, 2.0, 6.0], atol=1e-9)
    np.testing.assert_allclose(distances(1, 2), [2.0, 6.0], atol=1e-9)


def test_odometry_oracle_refuses_a_frame_without_odometry_near_it():
    nodes = np.zeros((2, 3))
    with pytest.raises(MessageFormatError, match="no odometry has arrived"):
        odometry_oracle([], 0, nodes, 0.25)
    far = [(0, np.zeros(3), (0.0, 0.0), 0.0)]
    with pytest.raises(MessageFormatError, match=r"nearest odometry is -0.60 s"):
        odometry_oracle(far, -S * 6 // 10, nodes, 0.25)
    odometry_oracle(far, S * 4 // 10, nodes, 0.25)  # within MAX_ODOM_EXTRAPOLATION_S


def test_odometry_waypoints_head_straight_for_the_node_and_stop_there():
    from ros_mmfusion.core.navigation.localization import odometry_waypoints

    # robot at (1, 1) facing +y; node 0.6 m ahead and 0.6 m to its right (world +x)
    wp = odometry_waypoints(np.array([1.0, 1.0, np.pi / 2]), np.array([1.6, 1.6, 0.0]), 5, 0.25)
    assert wp.shape == (5, 4)
    dist = np.hypot(wp[:, 0], wp[:, 1])
    assert np.allclose(dist, np.minimum(0.25 * np.arange(1, 6), np.hypot(0.6, 0.6)))
    assert np.allclose(wp[:, 0], wp[:, 0][0] / dist[0] * dist) and (wp[:, 0] > 0).all() and (wp[:, 1] < 0).all()
    assert np.allclose(wp[:, 2], np.sqrt(0.5)) and np.allclose(wp[:, 3], -np.sqrt(0.5))
    at_node = odometry_waypoints(np.array([2.0, 3.0, 0.0]), np.array([2.0, 3.0, 1.0]), 5, 0.25)
    assert np.allclose(at_node[:, :2], 0.0) and np.allclose(at_node[:, 2:], [1.0, 0.0])


def drive_filter(loc, positions, distances=fake_route_distances, spacing: float = 1.0):
    """Drive an OdometryFilterLocalizer along ``positions`` (metres), odometry exact; the steps it returns."""
    steps, previous = [], positions[0]
    for position in positions:
        loc.move(position - previous)
        previous = position
        start, end = loc.window()
        steps.append(loc.update(distances(position, start, end, spacing)))
    return steps


def test_filter_follows_the_route_reaches_the_goal_and_keeps_the_subgoal_rule():
    loc = OdometryFilterLocalizer(num_nodes=8, radius=2, close_threshold=3.0, edge_lengths=np.full(7, 1.0))
    positions = np.arange(0.0, 7.01, 0.25)
    steps = drive_filter(loc, positions)
    closest = [s.closest_node for s in steps]
    assert closest == sorted(closest) and closest[0] == 0 and closest[-1] == 7
    agree = 0
    for position, step in zip(positions, steps, strict=True):
        assert abs(step.closest_node - position) <= 0.5 + 1e-9, (position, step.closest_node)
        _, window_subgoal = choose_subgoal(step.distances, step.window[0], 3.0)  # the deployment's rule, same input
        assert abs(step.subgoal_node - window_subgoal) <= 1 and step.subgoal_node >= position - 1e-9
        agree += step.subgoal_node == window_subgoal
    assert agree >= 0.9 * len(steps)
    reached = [s.goal_reached for s in steps]
    assert reached.index(True) >= len(positions) - 3 and all(reached[reached.index(True):])


def test_filter_ignores_a_frame_that_claims_a_far_node_where_the_window_argmin_jumps():
    def liar(position, start, end, spacing):
        d = fake_route_distances(position, start, end, spacing)
        if abs(position - 2.75) < 1e-9:  # one frame: the window's last node looks right in front of the robot
            d[-1] = 0.0
        return d

    positions = np.arange(0.0, 5.01, 0.25)
    filtered = drive_filter(OdometryFilterLocalizer(num_nodes=20, radius=4, edge_lengths=np.full(19, 1.0)),
                            positions, liar)
    argmin = TopomapLocalizer(num_nodes=20, radius=4)
    jumped = [argmin.update(liar(p, *argmin.window(), 1.0)).closest_node for p in positions]
    at = int(np.flatnonzero(np.isclose(positions, 2.75))[0])
    assert jumped[at] == 8, "the deployment's rule jumps to the window's end"
    assert max(s.closest_node for s in filtered) <= 5 and filtered[at].closest_node == 3


def test_filter_on_odometry_alone_when_the_network_cannot_tell_nodes_apart_reaches_the_goal_on_time():
    """Equal distances for every node (a network that has never seen the place: measured on held-out sidewalks) say
    nothing: the belief follows odometry to the goal instead of being held half a node short of it (the window's
    last node used to end the measurement's support), and the goal counts as reached when the belief is more likely
    than not at or past it, not while the robot is still half a node short, nor by a pile beyond it."""
    loc = OdometryFilterLocalizer(num_nodes=11, radius=2, edge_lengths=np.full(10, 1.0))
    positions = np.arange(0.0, 11.01, 0.25)
    steps = drive_filter(loc, positions, distances=lambda position, start, end, spacing: np.full(end - start + 1,
                                                                                                  12.0))
    for position, step in zip(positions, steps, strict=True):
        assert abs(step.closest_node - min(position, 10.0)) <= 0.5 + 1e-9, (position, step.closest_node)
        if position < 9.75 - 1e-9 or position > 10.25 + 1e-9:
            assert step.goal_reached == (position > 10.0), (position, step.goal_reached)
    first = [s.goal_reached for s in steps].index(True)
    assert 9.75 <= positions[first] <= 10.25, positions[first]


def test_filter_moves_with_odometry_over_uneven_edges_and_without_the_network():
    loc = OdometryFilterLocalizer(num_nodes=4, radius=1, edge_lengths=[2.0, 0.5, 1.0], motion_noise=0.0)
    loc.move(1.0)
    assert loc.position == pytest.approx(0.5)   # half of the 2 m edge
    loc.move(1.0)
    assert loc.position == pytest.approx(1.0)
    loc.move(0.25)
    assert loc.position == pytest.approx(1.5)   # half of the 0.5 m edge
    loc.move(100.0)  # past the goal: kept at the end of the padding beyond it
    assert loc.position == pytest.approx(3.0 + BELIEF_PAD_NODES) and loc.belief.sum() == pytest.approx(1.0)
    for _ in range(2):  # the window follows the closest node (clamped to it) one update later
        start, end = loc.window()
        loc.update(np.zeros(end - start + 1))
    assert loc.closest_node == 3 and loc.goal_reached
    loc.reset()
    assert loc.position == 0.0 and loc.closest_node == 0 and not loc.goal_reached


def test_filter_refuses_bad_settings_and_input():
    with pytest.raises(ConfigError, match="edge_lengths"):
        OdometryFilterLocalizer(num_nodes=4, edge_lengths=[1.0, 1.0])
    with pytest.raises(ConfigError, match="edge_lengths"):
        OdometryFilterLocalizer(num_nodes=3, edge_lengths=[1.0, 0.0])
    with pytest.raises(ConfigError, match="filter settings"):
        OdometryFilterLocalizer(num_nodes=3, temperature=0.0)
    loc = OdometryFilterLocalizer(num_nodes=3)
    with pytest.raises(ValueError, match="finite"):
        loc.move(float("nan"))
    with pytest.raises(ValueError, match="distances for the"):
        loc.update([1.0])
