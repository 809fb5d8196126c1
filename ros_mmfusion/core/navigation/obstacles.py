"""The waypoint controller's collision guard: a depth camera's obstacles checked against the command's arc.

A learned waypoint policy (ViNT) keeps to the mapped route; it does not see that a person stands half a metre
beside it. The guard is the deployment's last safety layer, in the spirit of Nav2's collision monitor but steering
rather than only braking:

1. :func:`depth_obstacle_points`: every ``stride``-th pixel of a depth image (optical z, metres; NaN, inf or 0 =
   no return) back-projected through the camera's intrinsics, moved into the robot's frame, and kept when its height
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

GUARD_STATES = ("clear", "steer", "slow", "stop")
"""What the guard did to a command: nothing, changed its turn rate, slowed it, stopped it."""


def depth_obstacle_points(depth: np.ndarray, camera: PinholeCamera, T_base_camera: Transform, *,
                          min_height: float = 0.1, max_height: float = 1.8, max_range: float = 4.0,
                          stride: int = 2, cell: float = 0.05) -> np.ndarray:
    """Obstacle points ``(N, 2)`` (x, y metres in the base frame) seen in ``depth`` ``(H, W)`` (optical z, metres).

    ``T_base_camera`` moves optical-frame points into the base frame, whose z is the height above the ground the
    robot drives on. Pixels without a return (NaN, inf, <= 0) are skipped; the image is taken as rectified
    (``image_rect_raw``: the intrinsics ``camera.k`` alone, no distortion)."""
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2 or d.shape != (camera.height, camera.width):
        raise ValueError(f"depth image {d.shape} does not match the camera's {camera.height}x{camera.width}")
    if stride < 1 or not cell > 0:
        raise ValueError(f"stride >= 1 and cell > 0 expected, got {stride}, {cell}")
    rows, cols = np.mgrid[0:camera.height:stride, 0:camera.width:stride]
    z = d[rows, cols]
    valid = np.isfinite(z) & (z > 0)
    z, u, v = z[valid], cols[valid].astype(np.float64), rows[valid].astype(np.float64)
    k = camera.k
    optical = np.column_stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z])
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

    def clearance(self, linear: float, angular: float, points: np.ndarray) -> tuple[float, float]:
        """(smallest distance from the arc's poses to ``points``, seconds to the first pose closer than
        ``radius + margin``; inf when none is)."""
        if not len(points):
            return math.inf, math.inf
        poses = arc_poses(linear, angular, self.horizon, self.step)
        dist = np.sqrt(((poses[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
        # closer than the clearance kept, and closer than the robot is now (already that close: not closer)
        now = float(np.hypot(points[:, 0], points[:, 1]).min())
        close = np.flatnonzero(dist < min(self.radius + self.margin, max(now - 0.01, self.radius)))
        return float(dist.min()), (float((close[0] + 1) * self.step) if close.size else math.inf)

    def check(self, linear: float, angular: float, points: np.ndarray, max_angular: float) -> GuardDecision:
        """The command to send instead of ``(linear, angular)`` given obstacle ``points`` ``(N, 2)``."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        clearance, conflict = self.clearance(linear, angular, pts)
        if not math.isfinite(conflict) or linear <= 0:
            return GuardDecision(linear, angular, "clear", clearance)
        turns = np.linspace(-max_angular, max_angular, self.turn_candidates)
        scored = [(abs(w - angular), w, *self.clearance(linear, float(w), pts)) for w in turns]
        clear = [s for s in scored if not math.isfinite(s[3])]
        if clear:
            _, w, c, _ = min(clear)
            return GuardDecision(linear, float(w), "steer", c)
        _, w, c, t_conflict = max(scored, key=lambda s: (s[3], s[2]))  # the latest conflict, then the clearest
        travel = max(t_conflict - self.step, 0.0) * linear  # metres to the pose before the conflict
        slow = min(linear, travel / self.horizon)
        return GuardDecision(slow, float(w), "slow" if slow > 0 else "stop", c)


__all__ = ["GUARD_STATES", "CollisionGuard", "GuardDecision", "arc_poses", "depth_obstacle_points"]
