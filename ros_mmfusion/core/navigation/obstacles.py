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
   conflict no sooner than after ``horizon`` seconds (zero when the conflict is at the robot already).

Pure numpy, no ROS: ``waypoint_controller`` feeds it (``obstacle_guard``), tests and the closed-loop probe call it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import PinholeCamera, Transform
from ros_mmfusion.core.modalities.depth import camera_rays

GUARD_STATES = ("clear", "steer", "slow", "stop")
"""What the guard did to a command: nothing, changed its turn rate, slowed it, stopped it."""


def depth_obstacle_points(depth: np.ndarray, camera: PinholeCamera, T_base_camera: Transform, *,
                          min_height: float = 0.1, max_height: float = 1.8, max_range: float = 4.0,
                          stride: int = 2, cell: float = 0.05) -> np.ndarray:
    """Obstacle points ``(N, 2)`` (x, y metres in the base frame) seen in ``depth`` ``(H, W)`` (optical z, metres).

    ``T_base_camera`` moves optical-frame points into the base frame, whose z is the height above the ground the
    robot drives on. Pixels without a return (NaN, inf, <= 0) are skipped; the rays are the depth modality's
    (:func:`~ros_mmfusion.core.modalities.depth.camera_rays`: cached per calibration, any distortion undone)."""
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2 or d.shape != (camera.height, camera.width):
        raise ValueError(f"depth image {d.shape} does not match the camera's {camera.height}x{camera.width}")
    if stride < 1 or not cell > 0:
        raise ValueError(f"stride >= 1 and cell > 0 expected, got {stride}, {cell}")
    ray_x, ray_y = (r[::stride, ::stride] for r in camera_rays(camera))
    z = d[::stride, ::stride]
    valid = np.isfinite(z) & (z > 0)
    z = z[valid]
    optical = np.column_stack([ray_x[valid] * z, ray_y[valid] * z, z])
    base = T_base_camera.apply(optical) if len(optical) else np.zeros((0, 3))
    keep = (base[:, 2] >= min_height) & (base[:, 2] <= max_height) & (np.hypot(base[:, 0], base[:, 1]) <= max_range)
    xy = base[keep, :2]
    if not len(xy):
        return np.zeros((0, 2))
    _, first = np.unique(np.floor(xy / cell).astype(np.int64), axis=0, return_index=True)
    return xy[np.sort(first)]


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

    def _arc_distances(self, linear: float, angular: float, points: np.ndarray) -> np.ndarray:
        """``(K,)`` distance from each pose of the arc to its nearest point of ``points`` (non-empty)."""
        poses = arc_poses(linear, angular, self.horizon, self.step)
        return np.sqrt(((poses[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)).min(axis=1)

    def _first_conflict(self, distances: np.ndarray, limit: float) -> float:
        close = np.flatnonzero(distances < limit)
        return float((close[0] + 1) * self.step) if close.size else math.inf

    def clearance(self, linear: float, angular: float, points: np.ndarray) -> tuple[float, float]:
        """(smallest distance from the arc's poses to ``points``, seconds to the first pose closer than
        ``radius + margin`` and than the robot is now; inf when none is)."""
        if not len(points):
            return math.inf, math.inf
        distances = self._arc_distances(linear, angular, points)
        return float(distances.min()), self._first_conflict(distances, self._limit(points))

    def check(self, linear: float, angular: float, points: np.ndarray, max_angular: float) -> GuardDecision:
        """The command to send instead of ``(linear, angular)`` given obstacle ``points`` ``(N, 2)``."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        clearance, conflict = self.clearance(linear, angular, pts)
        if not math.isfinite(conflict) or linear <= 0:
            return GuardDecision(linear, angular, "clear", clearance)
        limit = self._limit(pts)
        # every pose lies within linear * horizon of the robot: a point further than that plus the limit cannot
        # conflict with any candidate arc (the 21 candidates then see tens of points, not thousands)
        near = pts[np.hypot(pts[:, 0], pts[:, 1]) < linear * self.horizon + limit]
        turns = [float(w) for w in np.linspace(-max_angular, max_angular, self.turn_candidates)]
        conflicts = [self._first_conflict(self._arc_distances(linear, w, near), limit) for w in turns]
        clear = [(abs(w - angular), w) for w, t in zip(turns, conflicts, strict=True) if not math.isfinite(t)]
        if clear:
            _, w = min(clear)  # the turn nearest the command (the rightmost of two as near)
            return GuardDecision(linear, w, "steer", self.clearance(linear, w, pts)[0])
        latest = max(conflicts)  # no clear turn: the latest conflict, then the clearest arc (over all points)
        tied = [(self.clearance(linear, w, pts)[0], w) for w, t in zip(turns, conflicts, strict=True) if t == latest]
        c, w = max(tied, key=lambda cw: cw[0])  # the first (rightmost) of equally clear arcs
        travel = max(latest - self.step, 0.0) * linear  # metres to the pose before the conflict
        slow = min(linear, travel / self.horizon)
        return GuardDecision(slow, w, "slow" if slow > 0 else "stop", c)


__all__ = ["GUARD_STATES", "CollisionGuard", "GuardDecision", "arc_poses", "depth_obstacle_points"]
