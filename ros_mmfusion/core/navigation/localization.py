"""Localisation in a topological map and subgoal choice, as in the ViNT deployment (``deployment/src/navigate.py``).

Every step scores the current context against the nodes of a window around the node the robot was last localised
at: ``start = max(closest - radius, 0)``, ``end = min(closest + radius + 1, goal)`` (both inclusive). The node with
the smallest predicted temporal distance becomes the new closest node. When that distance is above
``close_threshold`` the robot heads for the closest node itself (its waypoints are followed); when it is within the
threshold the robot is about to reach it and heads for the next node in the window instead. The goal is reached
when the closest node is the goal node.

Because only the window is scored, the closest node can move back by at most ``radius`` nodes per step and forward
by at most ``radius + 1``.

Temporal distance is the model's unit: the number of context frames (at the model's frame rate) it would take to
reach a node. :func:`odometry_temporal_distances` gives a ground-truth stand-in from odometry poses, for testing the
pipeline where an untrained or unsuitable model cannot localise.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.geometry import Transform, yaw_to_quaternion

BEHIND_PENALTY_FRAMES = 100.0
"""Added to the odometry oracle's distance of a node behind the robot: it cannot be reached by driving forward."""
MAX_ODOM_EXTRAPOLATION_S = 0.5
"""The odometry oracle refuses a camera frame further than this from the nearest odometry message (seconds)."""

OdometrySample = tuple[int, np.ndarray, tuple[float, float], float]
"""``(stamp ns, pose (x, y, yaw) metres/radians, body-frame linear velocity (vx, vy) m/s, yaw rate rad/s)``."""


def candidate_window(closest: int, radius: int, goal: int) -> tuple[int, int]:
    """``(start, end)``, inclusive node indices scored in one step."""
    start = max(closest - radius, 0)
    end = min(closest + radius + 1, goal)
    return start, max(start, end)


def choose_subgoal(distances: np.ndarray, start: int, close_threshold: float) -> tuple[int, int]:
    """``(closest node, subgoal node)``, absolute indices, from the distances of nodes ``start, start + 1, ...``.

    The subgoal is the closest node while it is farther than ``close_threshold``, else the next node of the window
    (the closest one again when it is the window's last).
    """
    distances = np.asarray(distances, dtype=np.float64).reshape(-1)
    if distances.size == 0:
        raise ValueError("no distances to choose from")
    best = int(np.argmin(distances))
    subgoal = best if distances[best] > close_threshold else min(best + 1, distances.size - 1)
    return start + best, start + subgoal


@dataclass(frozen=True)
class LocalizationStep:
    """One localisation update. Node indices are absolute (into the topomap)."""

    window: tuple[int, int]
    distances: np.ndarray
    closest_node: int
    subgoal_node: int
    goal_reached: bool

    @property
    def subgoal_offset(self) -> int:
        """Position of the subgoal inside the window (the row of its waypoints in a batch over the window)."""
        return self.subgoal_node - self.window[0]


class TopomapLocalizer:
    """The localisation state: the closest node, the goal, and whether it was reached.

    With a one-node map (single-goal-image mode) the closest node is always the goal, so the goal counts as reached
    when its distance is within ``close_threshold`` instead. ``goal_reached`` stays set once reached, until
    :meth:`reset`: the robot stops at the goal, as the deployment does.
    """

    def __init__(self, num_nodes: int, goal_node: int = -1, radius: int = 4, close_threshold: float = 3.0,
                 start_node: int = 0) -> None:
        if num_nodes < 1:
            raise ConfigError("a topomap needs at least one node")
        if radius < 0:
            raise ConfigError(f"radius must be >= 0, got {radius}")
        goal = goal_node + num_nodes if goal_node < 0 else goal_node
        if not 0 <= goal < num_nodes:
            raise ConfigError(f"goal node {goal_node} is outside the topomap's {num_nodes} nodes")
        if not 0 <= start_node <= goal:
            raise ConfigError(f"start node {start_node} must be in 0..{goal} (the goal node)")
        self.num_nodes, self.goal_node, self.radius = num_nodes, goal, radius
        self.close_threshold = float(close_threshold)
        self.start_node = start_node
        self.closest_node = start_node
        self.goal_reached = False

    def window(self) -> tuple[int, int]:
        return candidate_window(self.closest_node, self.radius, self.goal_node)

    def update(self, distances: np.ndarray) -> LocalizationStep:
        """Localise with the temporal distances of the current window's nodes (in window order)."""
        start, end = self.window()
        distances = np.asarray(distances, dtype=np.float64).reshape(-1)
        if distances.size != end - start + 1:
            raise ValueError(f"{distances.size} distances for the {end - start + 1} nodes {start}..{end}")
        closest, subgoal = choose_subgoal(distances, start, self.close_threshold)
        self.closest_node = closest
        if self.num_nodes == 1:
            reached = bool(distances[0] <= self.close_threshold)
        else:
            reached = closest == self.goal_node
        self.goal_reached = self.goal_reached or reached
        return LocalizationStep((start, end), distances, closest, subgoal, self.goal_reached)

    def reset(self) -> None:
        self.closest_node = self.start_node
        self.goal_reached = False


def odometry_temporal_distances(robot_xy_yaw: np.ndarray, nodes_xy_yaw: np.ndarray, metres_per_frame: float,
                                behind_penalty: float = BEHIND_PENALTY_FRAMES) -> np.ndarray:
    """Temporal distances (frames) of ``nodes_xy_yaw`` ``(N, 3)`` from the robot pose, both in one odometry frame.

    A node ahead of the robot (``x >= 0`` in the robot's frame) is its straight-line distance divided by
    ``metres_per_frame`` (how far the robot drives per context frame) frames away; a node behind it gets
    ``behind_penalty`` frames more. A ground-truth oracle for tests and evaluation, not a localisation method: it
    needs odometry that shares its frame with the map's poses (the synthetic world's passes do).
    """
    if not metres_per_frame > 0:
        raise ValueError(f"metres_per_frame must be positive, got {metres_per_frame}")
    robot = np.asarray(robot_xy_yaw, dtype=np.float64).reshape(3)
    nodes = np.asarray(nodes_xy_yaw, dtype=np.float64).reshape(-1, 3)
    delta = nodes[:, :2] - robot[:2]
    cos, sin = np.cos(robot[2]), np.sin(robot[2])
    ahead = cos * delta[:, 0] + sin * delta[:, 1]
    frames = np.hypot(delta[:, 0], delta[:, 1]) / metres_per_frame
    return frames + np.where(ahead >= 0.0, 0.0, behind_penalty)


def extrapolate_pose(xy_yaw: np.ndarray, linear_xy: tuple[float, float], angular_z: float, dt: float) -> np.ndarray:
    """A planar pose ``(x, y, yaw)`` moved ``dt`` seconds on with a body-frame twist (odometry's ``twist``, in the
    child frame): bridges the few milliseconds between an odometry message and a camera frame."""
    x, y, yaw = (float(v) for v in np.asarray(xy_yaw, dtype=np.float64).reshape(3))
    vx, vy = linear_xy
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([x + (c * vx - s * vy) * dt, y + (s * vx + c * vy) * dt, yaw + angular_z * dt])


def odometry_oracle(odometry: Iterable[OdometrySample], stamp_ns: int, nodes_xy_yaw: np.ndarray,
                    metres_per_frame: float, max_extrapolation_s: float = MAX_ODOM_EXTRAPOLATION_S
                    ) -> Callable[[int, int], np.ndarray]:
    """The odometry-oracle distance function ``(start, end) -> distances`` of nodes ``start..end`` for the camera
    frame stamped ``stamp_ns``: the robot's pose then (:func:`odometry_robot_pose`) against the topomap's node poses
    ``nodes_xy_yaw`` ``(N, 3)`` in the odometry frame (:func:`odometry_temporal_distances`)."""
    robot = odometry_robot_pose(odometry, stamp_ns, max_extrapolation_s)
    nodes = np.asarray(nodes_xy_yaw, dtype=np.float64).reshape(-1, 3)
    return lambda start, end: odometry_temporal_distances(robot, nodes[start:end + 1], metres_per_frame)


def odometry_waypoints(robot_xy_yaw: np.ndarray, node_xy_yaw: np.ndarray, count: int, spacing: float) -> np.ndarray:
    """``(count, 4)`` metric waypoints ``(x, y, cos, sin)`` in the robot's frame on the straight line to a node,
    ``spacing`` metres apart and never beyond it, all heading along that line: the odometry oracle's waypoints
    (what a perfect policy that knows where the subgoal is would predict), for the closed-loop upper bound."""
    robot = np.asarray(robot_xy_yaw, dtype=np.float64).reshape(3)
    node = np.asarray(node_xy_yaw, dtype=np.float64).reshape(3)
    c, s = np.cos(robot[2]), np.sin(robot[2])
    dx, dy = node[0] - robot[0], node[1] - robot[1]
    local = np.array([c * dx + s * dy, -s * dx + c * dy])
    dist = float(np.hypot(*local))
    unit = local / dist if dist > 1e-9 else np.array([1.0, 0.0])
    reach = np.minimum(spacing * np.arange(1, count + 1), dist)
    return np.column_stack([reach * unit[0], reach * unit[1], np.full(count, unit[0]), np.full(count, unit[1])])


def odometry_robot_pose(odometry: Iterable[OdometrySample], stamp_ns: int,
                        max_extrapolation_s: float = MAX_ODOM_EXTRAPOLATION_S) -> np.ndarray:
    """The robot's ``(x, y, yaw)`` at ``stamp_ns``: the odometry sample nearest in stamp, extrapolated with its twist
    (:func:`extrapolate_pose`). MessageFormatError when no odometry has arrived or the nearest sample is more than
    ``max_extrapolation_s`` seconds away."""
    samples = list(odometry)
    if not samples:
        raise MessageFormatError("an odometry oracle is on but no odometry has arrived yet")
    odom_stamp, pose, linear, angular = min(samples, key=lambda o: abs(o[0] - stamp_ns))
    dt = (stamp_ns - odom_stamp) / 1e9
    if abs(dt) > max_extrapolation_s:
        raise MessageFormatError(f"the nearest odometry is {dt:+.2f} s from the image")
    return extrapolate_pose(pose, linear, angular, dt)


def planar_pose_transform(pose_xy_yaw: Sequence[float]) -> Transform:
    """``T_frame_base`` of a planar robot pose ``(x, y, yaw)`` (metres, radians) given in some frame (odometry's)."""
    x, y, yaw = (float(v) for v in pose_xy_yaw)
    return Transform.from_xyz_quat((x, y, 0.0), yaw_to_quaternion(yaw))


def transform_waypoints(waypoints: np.ndarray, T_target_source: Transform) -> np.ndarray:
    """``(N, 4)`` waypoints ``(x, y, cos heading, sin heading)`` in the source frame (metres) moved into the target
    frame: positions through ``T_target_source`` (z = 0), headings rotated and re-normalised; the planar part only (a
    tilt between the frames is dropped, the robot drives on the ground plane)."""
    wp = np.asarray(waypoints, np.float64).reshape(-1, 4)
    zeros = np.zeros((len(wp), 1))
    xy = T_target_source.apply(np.hstack([wp[:, :2], zeros]))[:, :2]
    heading = (np.hstack([wp[:, 2:4], zeros]) @ T_target_source.rotation.T)[:, :2]
    yaw = np.arctan2(heading[:, 1], heading[:, 0])
    return np.column_stack([xy, np.cos(yaw), np.sin(yaw)])
