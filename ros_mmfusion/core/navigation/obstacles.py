"""The waypoint controller's collision guard: a depth camera's obstacles checked against the command's arc.

A learned waypoint policy (ViNT) keeps to the mapped route; it does not see that a person stands half a metre
beside it. The guard is the deployment's last safety layer, in the spirit of Nav2's collision monitor but steering
rather than only braking:

1. :func:`depth_obstacle_points`: every ``stride``-th pixel of a depth image (optical z, metres; NaN, inf or 0 =
   no return) back-projected along the camera's rays, moved into the robot's frame, and kept when its height
   above the frame's ground plane lies in ``[min_height, max_height]`` and it lies within ``max_range`` metres: the
   obstacles as ``(N, 2)`` x (forward), y (left) points, thinned to one per ``cell`` metre square;
2. :class:`CollisionGuard`: the command ``(v, w)`` is rolled out as a unicycle arc for ``horizon`` seconds; when a
   point comes closer than ``radius + margin`` to the arc, the guard takes the turn rate nearest the command whose
   arc stays clear (same speed), or, when none is clear, the clearest turn at a speed that reaches the first
   conflict no sooner than after ``horizon`` seconds (zero when the conflict is at the robot already);
3. :class:`ObstacleTracker` (optional): compact clusters of points followed from depth frame to depth frame in a
   fixed frame give each point a velocity; the guard then checks each arc pose against where the points will be at
   its time (a person crossing ahead who will have passed does not stop the robot; one walking at it is met
   early); when every arc is blocked only by moving obstacles it stops and lets them pass, and when even stopping
   would be met by one it takes the arc at speed that meets anything latest.

Pure numpy, no ROS: ``waypoint_controller`` feeds it (``obstacle_guard``), tests and the closed-loop probe call it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import PinholeCamera, Transform
from ros_mmfusion.core.modalities.depth import camera_rays

GUARD_STATES = ("clear", "steer", "slow", "stop")
"""What the guard did to a command: nothing, changed its turn rate, slowed it, stopped it."""
EDGE_BAND = 0.3
"""Metres inside ``max_range`` within which :func:`depth_obstacle_points` marks points as at the edge of view."""
MAX_GRID_CELLS = 2048
"""Cells along each axis of :meth:`ObstacleTracker.clusters`' grid (409 m at the default 0.2 m link; a depth camera's
points within ``guard_max_range`` <= 50 m span 500)."""


def depth_obstacle_points(depth: np.ndarray, camera: PinholeCamera, T_base_camera: Transform, *,
                          min_height: float = 0.1, max_height: float = 1.8, max_range: float = 4.0,
                          stride: int = 2, cell: float = 0.05, edges: bool = False):
    """Obstacle points ``(N, 2)`` (x, y metres in the base frame) seen in ``depth`` ``(H, W)`` (optical z, metres).

    ``T_base_camera`` moves optical-frame points into the base frame, whose z is the height above the ground the
    robot drives on. Pixels without a return (NaN, inf, <= 0) are skipped; the rays are the depth modality's
    (:func:`~ros_mmfusion.core.modalities.depth.camera_rays`: cached per calibration, any distortion undone).
    With ``edges`` also an ``(N,)`` mask of the points at the edge of what is seen (from the image's leftmost or
    rightmost sampled columns, or within ``EDGE_BAND`` of ``max_range``): a thing cut there shows only a part
    that moves with the robot (:class:`ObstacleTracker` does not follow it)."""
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2 or d.shape != (camera.height, camera.width):
        raise ValueError(f"depth image {d.shape} does not match the camera's {camera.height}x{camera.width}")
    if stride < 1 or not cell > 0:
        raise ValueError(f"stride >= 1 and cell > 0 expected, got {stride}, {cell}")
    ray_x, ray_y = (r[::stride, ::stride] for r in camera_rays(camera))
    z = d[::stride, ::stride]
    valid = np.isfinite(z) & (z > 0)
    border = np.zeros(z.shape, dtype=bool)
    border[:, [0, -1]] = True
    border = border[valid]
    z = z[valid]
    optical = np.column_stack([ray_x[valid] * z, ray_y[valid] * z, z])
    base = T_base_camera.apply(optical) if len(optical) else np.zeros((0, 3))
    reach = np.hypot(base[:, 0], base[:, 1])
    keep = (base[:, 2] >= min_height) & (base[:, 2] <= max_height) & (reach <= max_range)
    xy = base[keep, :2]
    if not len(xy):
        return (np.zeros((0, 2)), np.zeros(0, dtype=bool)) if edges else np.zeros((0, 2))
    _, first, cell_of = np.unique(np.floor(xy / cell).astype(np.int64), axis=0, return_index=True,
                                  return_inverse=True)
    order = np.argsort(first)
    points = xy[first[order]]
    if not edges:
        return points
    cut = np.zeros(len(first), dtype=bool)  # per cell: any of its points at an edge
    np.logical_or.at(cut, cell_of.reshape(-1), (border | (reach > max_range - EDGE_BAND))[keep])
    return points, cut[order]


def arc_poses(linear: float, angular: float, horizon: float, step: float) -> np.ndarray:
    """``(K, 2)`` x, y of a unicycle starting at the origin heading +x, driving ``linear`` m/s and turning
    ``angular`` rad/s, every ``step`` seconds from ``step`` to ``horizon`` (exact arcs, not Euler steps)."""
    t = np.arange(1, int(math.floor(horizon / step + 1e-9)) + 1) * step
    if abs(angular) < 1e-9:
        return np.column_stack([linear * t, np.zeros_like(t)])
    r = linear / angular
    return np.column_stack([r * np.sin(angular * t), r * (1.0 - np.cos(angular * t))])


@dataclass(frozen=True)
class GuardDecision:
    linear: float
    angular: float
    state: str
    """One of :data:`GUARD_STATES`."""
    clearance: float
    """Smallest distance (m) from the chosen arc to an obstacle point (inf without points)."""


@dataclass
class CollisionGuard:
    """Checks commands against obstacle points in the robot's frame (see the module docstring)."""

    radius: float = 0.25
    """The robot's footprint radius (m)."""
    margin: float = 0.15
    """Clearance kept beyond the footprint (m)."""
    horizon: float = 2.0
    """Seconds of the command's arc that must stay clear."""
    step: float = 0.1
    """Seconds between the arc's checked poses."""
    turn_candidates: int = 21
    """Turn rates tried, evenly over [-max_angular, max_angular]."""

    def __post_init__(self) -> None:
        if not (self.radius > 0 and self.margin >= 0 and self.horizon > 0 and 0 < self.step <= self.horizon
                and self.turn_candidates >= 3):
            raise ConfigError(f"collision guard: radius > 0, margin >= 0, 0 < step <= horizon and >= 3 turn "
                              f"candidates expected, got {self.radius}, {self.margin}, {self.step}, {self.horizon}, "
                              f"{self.turn_candidates}")

    def _limit(self, points: np.ndarray) -> float:
        """How close an arc may come to ``points``: ``radius + margin``, or, for a robot already closer than that,
        no closer than it is now (driving past something that near is allowed)."""
        now = float(np.hypot(points[:, 0], points[:, 1]).min())
        return min(self.radius + self.margin, max(now - 0.01, self.radius))

    def _arc_distances(self, linear: float, angular: float, points: np.ndarray,
                       velocities: np.ndarray | None = None) -> np.ndarray:
        """``(K,)`` distance from each pose of the arc to its nearest point of ``points`` (non-empty), the points
        moved by ``velocities`` (m/s, same shape) to the pose's time."""
        poses = arc_poses(linear, angular, self.horizon, self.step)
        where = points[None, :, :]
        if velocities is not None:
            times = np.arange(1, len(poses) + 1)[:, None, None] * self.step
            where = where + velocities[None, :, :] * times
        return np.sqrt(((poses[:, None, :] - where) ** 2).sum(axis=2)).min(axis=1)

    def _first_conflict(self, distances: np.ndarray, limit: float) -> float:
        close = np.flatnonzero(distances < limit)
        return float((close[0] + 1) * self.step) if close.size else math.inf

    def clearance(self, linear: float, angular: float, points: np.ndarray,
                  velocities: np.ndarray | None = None) -> tuple[float, float]:
        """(smallest distance from the arc's poses to ``points`` (moved by ``velocities`` to each pose's time),
        seconds to the first pose closer than ``radius + margin`` and than the robot is now; inf when none is)."""
        if not len(points):
            return math.inf, math.inf
        distances = self._arc_distances(linear, angular, points, velocities)
        return float(distances.min()), self._first_conflict(distances, self._limit(points))

    def check(self, linear: float, angular: float, points: np.ndarray, max_angular: float,
              velocities: np.ndarray | None = None) -> GuardDecision:
        """The command to send instead of ``(linear, angular)`` given obstacle ``points`` ``(N, 2)`` and, when
        known, their ``velocities`` ``(N, 2)`` (m/s in the same frame; see :class:`ObstacleTracker`)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        vel = None if velocities is None else np.asarray(velocities, dtype=np.float64).reshape(pts.shape)
        moving = vel is not None and bool(np.any(vel != 0.0))
        vel = vel if moving else None
        clearance, conflict = self.clearance(linear, angular, pts, vel)
        if not math.isfinite(conflict) or linear <= 0:
            return GuardDecision(linear, angular, "clear", clearance)
        limit = self._limit(pts)
        # every pose lies within linear * horizon of the robot, a point moves at most |v| * horizon: a point further
        # than both plus the limit cannot conflict with any candidate arc (the 21 candidates then see tens of points,
        # not thousands)
        reach = linear * self.horizon + limit + (0.0 if vel is None else np.hypot(vel[:, 0], vel[:, 1]) * self.horizon)
        keep = np.hypot(pts[:, 0], pts[:, 1]) < reach
        near, near_vel = pts[keep], None if vel is None else vel[keep]
        turns = [float(w) for w in np.linspace(-max_angular, max_angular, self.turn_candidates)]
        conflicts = [self._first_conflict(self._arc_distances(linear, w, near, near_vel), limit) for w in turns]
        clear = [(abs(w - angular), w) for w, t in zip(turns, conflicts, strict=True) if not math.isfinite(t)]
        if clear:
            _, w = min(clear)  # the turn nearest the command (the rightmost of two as near)
            return GuardDecision(linear, w, "steer", self.clearance(linear, w, pts, vel)[0])
        latest = max(conflicts)  # no clear turn: the latest conflict, then the clearest arc (over all points)
        tied = [(self.clearance(linear, w, pts, vel)[0], w) for w, t in zip(turns, conflicts, strict=True)
                if t == latest]
        c, w = max(tied, key=lambda cw: cw[0])  # the first (rightmost) of equally clear arcs
        if near_vel is not None:
            # something moving meets even a robot that stops (a person walking at it): the arc that meets it
            # latest, at speed, when that is later than standing still
            _, met_standing = self.clearance(0.0, 0.0, near, near_vel)
            if latest > met_standing:
                return GuardDecision(linear, w, "steer", c)
            # only moving things block every arc (the standing ones leave one clear): wait for them to pass rather
            # than creep on into their way
            standing = near[~np.any(near_vel != 0.0, axis=1)]
            if not len(standing) or any(not math.isfinite(self._first_conflict(
                    self._arc_distances(linear, t, standing), limit)) for t in turns):
                return GuardDecision(0.0, 0.0, "stop", c)
        travel = max(latest - self.step, 0.0) * linear  # metres to the pose before the conflict
        slow = min(linear, travel / self.horizon)
        return GuardDecision(slow, w, "slow" if slow > 0 else "stop", c)


@dataclass
class ObstacleTracker:
    """Velocities of the obstacle points of successive depth frames, all in one fixed frame (odometry).

    Each frame's points are grouped into clusters (points linked within ``link`` metres). A cluster no wider
    than ``max_extent`` (a person, a bin, a cart) is matched to the nearest compact cluster of the previous frame
    whose centroid it could have reached at ``max_speed``; the centroid's displacement over the frames' time gives
    its velocity, smoothed over frames (``smoothing`` weight on the new estimate). Wider clusters (walls, parked cars,
    hedges) and clusters slower than ``min_speed`` (a centroid also shifts as the robot sees more of a standing
    thing) are static: velocity zero. A velocity counts once a cluster was followed over ``confirm`` frame pairs (a
    brief mismatch, say at an occlusion boundary, moves nothing). A cluster cut by the edge of the view (a wall
    running out of it, a person half in it) measures nothing, as its visible part moves with the view: it keeps the
    velocity of the track it continues (a person walking out of view at close range), else it stands still.
    Clusters are matched where the previous frame's would be by now (constant velocity)."""

    link: float = 0.2
    """Points in neighbouring cells of this size (m) belong to one cluster."""
    max_extent: float = 1.2
    """Widest cluster followed (m, along x and y); wider ones are structure."""
    max_speed: float = 3.0
    """Fastest obstacle matched from frame to frame (m/s)."""
    min_speed: float = 0.5
    """Slower clusters stand still (m/s)."""
    smoothing: float = 0.6
    """Weight of each new velocity measurement against the track's previous velocity."""
    confirm: int = 2
    """Frame pairs a cluster is followed over before its velocity counts."""
    _last: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)
    """(time s, compact clusters' centroids (M, 2), their velocities (M, 2), frame pairs followed (M,)) of the
    previous frame."""

    def __post_init__(self) -> None:
        if not (self.link > 0 and self.max_extent > 0 and self.max_speed > 0 and 0 <= self.min_speed
                and 0 < self.smoothing <= 1 and self.confirm >= 1):
            raise ConfigError(f"obstacle tracker: link, max_extent, max_speed > 0, min_speed >= 0, smoothing in "
                              f"(0, 1] and confirm >= 1 expected, got {self.link}, {self.max_extent}, "
                              f"{self.max_speed}, {self.min_speed}, {self.smoothing}, {self.confirm}")

    def reset(self) -> None:
        self._last = None

    def clusters(self, points: np.ndarray) -> np.ndarray:
        """``(N,)`` cluster index of each point: connected components (8-neighbourhood, OpenCV) of the ``link``-metre
        grid cells the points fall in, numbered in the order of each one's first cell (by x, then y). ValueError for
        points that are not finite or spread over more than ``MAX_GRID_CELLS`` cells along an axis (the grid's
        memory stays bounded)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if not len(pts):
            return np.zeros(0, dtype=np.int64)
        if not np.isfinite(pts).all():
            raise ValueError("obstacle points must be finite")
        cells = np.floor(pts / self.link).astype(np.int64)
        cells -= cells.min(axis=0)
        shape = cells.max(axis=0) + 1
        if shape.max() > MAX_GRID_CELLS:
            raise ValueError(f"obstacle points spread over {shape.max() * self.link:g} m: at most "
                             f"{MAX_GRID_CELLS * self.link:g} m along an axis")
        grid = np.zeros(tuple(shape), dtype=np.uint8)
        grid[cells[:, 0], cells[:, 1]] = 1
        count, grid_labels = cv2.connectedComponents(grid, connectivity=8)
        labels = grid_labels[cells[:, 0], cells[:, 1]].astype(np.int64) - 1
        first = np.full(count - 1, np.iinfo(np.int64).max)  # each component's first cell, row-major = by x, then y
        np.minimum.at(first, labels, cells[:, 0] * shape[1] + cells[:, 1])
        rank = np.empty(count - 1, dtype=np.int64)
        rank[np.argsort(first)] = np.arange(count - 1)
        return rank[labels]

    def update(self, time_s: float, points: np.ndarray, cut: np.ndarray | None = None) -> np.ndarray:
        """``(N, 2)`` velocity (m/s, the points' frame) of each of this frame's ``points`` ``(N, 2)`` seen at
        ``time_s`` seconds. A cluster with a point marked in ``cut`` ``(N,)`` (at the edge of the view:
        :func:`depth_obstacle_points` ``edges``) measures nothing: it keeps the velocity of the track it continues,
        else it stands still."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        at_edge = np.zeros(len(pts), dtype=bool) if cut is None else np.asarray(cut, dtype=bool).reshape(len(pts))
        velocities = np.zeros_like(pts)
        labels = self.clusters(pts)
        compact = []  # (label, centroid, cut by the edge of the view)
        for k in range(int(labels.max()) + 1 if len(labels) else 0):
            inside = labels == k
            members = pts[inside]
            if np.all(members.max(axis=0) - members.min(axis=0) <= self.max_extent):
                compact.append((k, members.mean(axis=0), bool(at_edge[inside].any())))
        centroids = np.array([c for _, c, _ in compact]).reshape(-1, 2)
        tracked, followed = np.zeros_like(centroids), np.zeros(len(centroids), dtype=np.int64)
        kept = centroids.copy()  # the centroid the next frame is matched against
        last, dt = self._last, 0.0 if self._last is None else time_s - self._last[0]
        if last is not None and dt > 0 and len(last[1]) and len(centroids):
            predicted = last[1] + last[2] * dt  # where the previous frame's clusters went on to
            gaps = np.hypot(*(centroids[:, None, :] - predicted[None, :, :]).transpose(2, 0, 1))
            taken_new, taken_old = set(), set()
            for flat in np.argsort(gaps, axis=None):  # nearest pairs first, one to one
                i, j = np.unravel_index(flat, gaps.shape)
                if gaps[i, j] > self.max_speed * dt + self.link:
                    break
                if i in taken_new or j in taken_old:
                    continue
                taken_new.add(i)
                taken_old.add(j)
                if compact[i][2]:  # cut: its centroid says nothing; the track coasts on its velocity
                    tracked[i], followed[i], kept[i] = last[2][j], last[3][j], predicted[j]
                    continue
                measured = (centroids[i] - last[1][j]) / dt
                tracked[i] = self.smoothing * measured + (1.0 - self.smoothing) * last[2][j]
                followed[i] = last[3][j] + 1
        self._last = (float(time_s), kept, tracked, followed)  # after a jump back in time: the new start
        for (k, _, _), v, n in zip(compact, tracked, followed, strict=True):
            if n >= self.confirm and np.hypot(*v) >= self.min_speed:
                velocities[labels == k] = v
        return velocities


__all__ = [
    "EDGE_BAND", "GUARD_STATES", "MAX_GRID_CELLS", "CollisionGuard", "GuardDecision", "ObstacleTracker", "arc_poses",
    "depth_obstacle_points",
]
