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
MOTION_NOISE_FLOOR_NODES = 0.05
"""Blur (nodes, one standard deviation) of every motion step of :class:`OdometryFilterLocalizer`, on top of its
``motion_noise`` fraction of the distance."""
BELIEF_PAD_NODES = 2
"""Nodes of belief kept before the first node and beyond the goal (:class:`OdometryFilterLocalizer`)."""

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


class OdometryFilterLocalizer(TopomapLocalizer):
    """Markov localisation along the route: a belief over the robot's position between the map's nodes (cells of
    ``1 / cells_per_node`` node), moved by the distance the wheel odometry says the robot drove and weighed by the
    network's temporal distances. Beyond the ViNT deployment (whose closest node is the window's argmin each step,
    free to jump ``radius`` + 1 nodes in one frame period): the robot cannot skip five metres in a quarter second,
    and a repetitive corridor or a passer-by in view no longer throws it ahead or back.

    * **motion** (:meth:`move`): the belief shifts by the driven distance over the map's edge lengths (metres
      between consecutive nodes, from the topomap's poses: relative distances only, so the robot's odometry need not
      share the map's frame), blurred by ``motion_noise`` (a fraction of the distance: wheel slip and odometry
      error) plus ``MOTION_NOISE_FLOOR_NODES``;
    * **measurement** (:meth:`update`): which node looks nearest, not how near: the likelihood of a position is a
      mixture of Gaussians (``measurement_sigma`` nodes) half a node behind each scored node ``j`` (the node the
      deployment's argmin picks is the next one ahead), weighted by ``exp(-(d_j - min d) / temperature)`` with
      ``d_j`` the predicted temporal distance (frames), so a node behind (predicted far) hardly counts and a window
      of equal distances says nothing; a floor of ``floor`` times the peak keeps one bad frame from wiping out the
      belief. The distances' absolute values are not used: a network unsure of a view regresses them towards the
      mean of its training labels (the nearest node predicted 6-10 frames away when it is 1-3), which placed the
      robot nodes behind the truth step after step (2026-12-07, docs/navigation.md);
    * the mixture is normalised over the nodes at each position (the weight of the node a position belongs to), so
      equal distances leave the belief as odometry moved it, up to and past the goal;
    * the closest node is the node nearest the belief's mode; the goal is reached when the belief puts at least half
      its mass at or past the goal node (its median: a robot half a node short is not there yet); the
      subgoal is the first node at or ahead of the mode, or the one after it when that node's temporal distance is
      within ``close_threshold`` (the deployment's rule, whose argmin node is the one ahead: nodes behind are
      predicted far).
    """

    def __init__(self, num_nodes: int, goal_node: int = -1, radius: int = 4, close_threshold: float = 3.0,
                 start_node: int = 0, *, edge_lengths: Sequence[float] | None = None, motion_noise: float = 0.2,
                 measurement_sigma: float = 0.75, temperature: float = 3.0, floor: float = 0.05,
                 cells_per_node: int = 10) -> None:
        super().__init__(num_nodes, goal_node, radius, close_threshold, start_node)
        if not (motion_noise >= 0 and measurement_sigma > 0 and temperature > 0 and 0 <= floor < 1
                and cells_per_node >= 1):
            raise ConfigError("filter settings: measurement_sigma, temperature > 0, motion_noise >= 0, floor in "
                              "[0, 1), cells_per_node >= 1")
        edges = np.ones(max(num_nodes - 1, 0)) if edge_lengths is None else \
            np.asarray(edge_lengths, np.float64).reshape(-1)
        if edges.size != max(num_nodes - 1, 0) or not np.all(np.isfinite(edges)) or np.any(edges <= 0):
            raise ConfigError(f"edge_lengths: {max(num_nodes - 1, 0)} positive distances between consecutive nodes "
                              f"expected, got {edges.size}")
        self.edge_lengths = edges
        self.motion_noise = float(motion_noise)
        self.measurement_sigma, self.temperature, self.floor = float(measurement_sigma), float(temperature), floor
        self.cells_per_node = int(cells_per_node)
        pad = BELIEF_PAD_NODES * self.cells_per_node
        self.positions = np.arange(-pad, self.goal_node * self.cells_per_node + pad + 1) / self.cells_per_node
        """Node coordinate of every cell (0 = node 0, 1 = node 1, ...), ``BELIEF_PAD_NODES`` beyond the first node and
        the goal: belief moved past the route's ends stays spread out there instead of piling up in one end cell,
        whose pile would otherwise outgrow the true peak and declare the goal a node or two early (2026-12-07:
        sidewalk goals declared up to 2.4 m short)."""
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.belief = np.zeros_like(self.positions)
        self.belief[int(np.argmin(np.abs(self.positions - self.start_node)))] = 1.0

    @property
    def position(self) -> float:
        """The belief's mode in node coordinates."""
        return float(self.positions[int(np.argmax(self.belief))])

    def move(self, metres: float) -> None:
        """Shift the belief by ``metres`` driven (odometry; negative = backwards)."""
        if not np.isfinite(metres):
            raise ValueError(f"driven distance must be finite, got {metres}")
        pos = self.position
        k = min(max(int(pos), 0), max(self.edge_lengths.size - 1, 0))
        length = float(self.edge_lengths[k]) if self.edge_lengths.size else 1.0
        shift = metres / length
        sigma = MOTION_NOISE_FLOOR_NODES + self.motion_noise * abs(shift)
        cells = self.cells_per_node
        offsets = np.arange(-int(np.ceil((abs(shift) + 4 * sigma) * cells)),
                            int(np.ceil((abs(shift) + 4 * sigma) * cells)) + 1)
        kernel = np.exp(-0.5 * ((offsets / cells - shift) / sigma) ** 2)
        moved = np.convolve(self.belief, kernel / kernel.sum(), mode="full")
        lo = -offsets[0]
        core = moved[lo:lo + self.belief.size].copy()
        core[0] += moved[:lo].sum()  # mass pushed past the ends stays at them
        core[-1] += moved[lo + self.belief.size:].sum()
        self.belief = core / max(core.sum(), 1e-300)

    def update(self, distances: np.ndarray) -> LocalizationStep:
        start, end = self.window()
        distances = np.asarray(distances, dtype=np.float64).reshape(-1)
        if distances.size != end - start + 1:
            raise ValueError(f"{distances.size} distances for the {end - start + 1} nodes {start}..{end}")
        if self.num_nodes > 1:
            nodes = np.arange(start, end + 1)
            where = nodes - 0.5
            weight = np.exp(-(distances - distances.min()) / self.temperature)
            z = (self.positions[:, None] - where[None, :]) / self.measurement_sigma
            kernel = np.exp(-0.5 * z ** 2)
            # normalised over the nodes: how strongly the node a position belongs to is preferred, so equal
            # distances say nothing anywhere (an unnormalised mixture falls off past the window's last node and
            # held the belief half a node short of the goal when the network could not tell the nodes apart)
            likelihood = (kernel * weight[None, :]).sum(axis=1) / np.maximum(kernel.sum(axis=1), 1e-300)
            likelihood += self.floor * likelihood.max()
            posterior = self.belief * likelihood
            total = posterior.sum()
            self.belief = posterior / total if total > 0 else np.full_like(self.belief, 1.0 / self.belief.size)
            position = self.position
            closest = min(max(int(round(position)), start), end)
            ahead = min(max(int(np.ceil(position - 1e-9)), start), end)
        else:
            closest = ahead = 0
        subgoal = ahead if distances[ahead - start] > self.close_threshold else min(ahead + 1, end)
        self.closest_node = closest
        if self.num_nodes == 1:
            reached = bool(distances[0] <= self.close_threshold)
        else:  # more likely than not at or past the goal node: the belief's median, which a pile cannot drag
            reached = float(self.belief[self.positions >= self.goal_node - 1e-9].sum()) >= 0.5
        self.goal_reached = self.goal_reached or reached
        return LocalizationStep((start, end), distances, closest, subgoal, self.goal_reached)


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
    xy = T_target_source.apply_planar(wp[:, :2])
    heading = wp[:, 2:4] @ T_target_source.rotation[:2, :2].T
    yaw = np.arctan2(heading[:, 1], heading[:, 0])
    return np.column_stack([xy, np.cos(yaw), np.sin(yaw)])
