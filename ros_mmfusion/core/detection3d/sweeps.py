"""Multi-sweep LiDAR accumulation with a time-lag channel, as nuScenes detectors are trained on (ROS-free, numpy).

nuScenes models (OpenPCDet ``NuScenesDataset.get_lidar_with_sweeps``, ``MAX_SWEEPS: 10``) see the current sweep and
up to 9 earlier ones, each transformed into the current LiDAR frame through the poses at the two stamps, with a fifth
channel holding the sweep's time lag ``t_current - t_sweep`` in seconds (0 for the current sweep). Earlier sweeps lose
the points within ``ego_radius`` metres of their sensor in x and in y (upstream's ``remove_ego_points``, radius 1 m):
the car's own roof returns.

``SweepAccumulator`` keeps the last ``max_sweeps`` sweeps (the current one included) whose lag is at most ``max_age``
seconds. Each sweep is ``(stamp, T_world_lidar, points)``: the stamp in seconds, the 4x4 pose of the LiDAR in a fixed
frame (``odom``, ``map``: any frame fixed in the world) at that stamp, and the ``(N, 4+)`` points ``x, y, z,
intensity`` in the LiDAR frame. A point ``p`` of an earlier sweep ``k`` lands at ``inv(T_world_lidar_now) @
T_world_lidar_k @ p``. A stamp older than the newest one held means time went backwards (a bag restarted, a simulator
reset): the held sweeps are dropped and the new one starts afresh; a repeated stamp replaces the sweep held for it.
Memory is bounded by ``max_sweeps`` clouds.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError

NUSCENES_MAX_SWEEPS = 10
"""Sweeps per sample in OpenPCDet's nuScenes configs (``MAX_SWEEPS``), the current one included."""
NUSCENES_EGO_RADIUS = 1.0
"""Half-width (metres, in x and in y) of the square around an earlier sweep's sensor whose points upstream drops."""


@dataclass(frozen=True)
class Sweep:
    """One LiDAR sweep: ``stamp`` (s), ``T_world_lidar`` ``(4, 4)`` float64, ``points`` ``(N, 4)`` float32."""

    stamp: float
    T_world_lidar: np.ndarray
    points: np.ndarray


def _check_sweep(stamp: float, T_world_lidar: np.ndarray, points: np.ndarray) -> Sweep:
    if not np.isfinite(stamp):
        raise MessageFormatError(f"sweep stamp {stamp!r} is not finite")
    pose = np.asarray(T_world_lidar, dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all() or not np.allclose(pose[3], (0, 0, 0, 1)):
        raise MessageFormatError(f"sweep pose must be a finite 4x4 homogeneous transform, got shape {pose.shape}")
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 4 or not np.issubdtype(pts.dtype, np.number):
        raise MessageFormatError(f"sweep points must be a numeric (N, 4+) array x, y, z, intensity, got shape "
                                 f"{pts.shape} {pts.dtype}")
    return Sweep(float(stamp), pose, np.array(pts[:, :4], dtype=np.float32))


class SweepAccumulator:
    """The last ``max_sweeps`` sweeps within ``max_age`` seconds, merged into the newest sweep's LiDAR frame.

    ``push(stamp, T_world_lidar, points)`` adds a sweep and returns the ``(M, 5)`` float32 merged cloud ``x, y, z,
    intensity, time lag`` (the newest sweep's points first, then earlier sweeps from newest to oldest). With
    ``max_sweeps == 1`` the result is the sweep itself with a zero lag column.
    """

    def __init__(self, max_sweeps: int = NUSCENES_MAX_SWEEPS, max_age: float = 0.5,
                 ego_radius: float = NUSCENES_EGO_RADIUS) -> None:
        if max_sweeps < 1:
            raise ConfigError(f"max_sweeps must be >= 1, got {max_sweeps}")
        if not max_age >= 0:
            raise ConfigError(f"max_age must be >= 0 s, got {max_age}")
        if not ego_radius >= 0:
            raise ConfigError(f"ego_radius must be >= 0 m, got {ego_radius}")
        self.max_sweeps = int(max_sweeps)
        self.max_age = float(max_age)
        self.ego_radius = float(ego_radius)
        self._sweeps: deque[Sweep] = deque(maxlen=self.max_sweeps)

    def __len__(self) -> int:
        return len(self._sweeps)

    @property
    def stamps(self) -> tuple[float, ...]:
        """Stamps of the sweeps held, oldest first."""
        return tuple(s.stamp for s in self._sweeps)

    def clear(self) -> None:
        self._sweeps.clear()

    def push(self, stamp: float, T_world_lidar: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Add a sweep (see the module docstring) and return the merged ``(M, 5)`` cloud in its LiDAR frame.

        MessageFormatError (nothing changes) for a non-finite stamp, a pose that is not a finite 4x4 homogeneous
        transform, or points that are not a numeric ``(N, 4+)`` array.
        """
        sweep = _check_sweep(stamp, T_world_lidar, points)
        if self._sweeps and sweep.stamp <= self._sweeps[-1].stamp:
            if sweep.stamp == self._sweeps[-1].stamp:
                self._sweeps.pop()
            else:  # time went backwards
                self._sweeps.clear()
        self._sweeps.append(sweep)
        while sweep.stamp - self._sweeps[0].stamp > self.max_age:
            self._sweeps.popleft()
        return self.merged()

    def merged(self) -> np.ndarray:
        """The ``(M, 5)`` float32 merged cloud of the sweeps held (empty ``(0, 5)`` when none)."""
        if not self._sweeps:
            return np.zeros((0, 5), np.float32)
        current = self._sweeps[-1]
        T_lidar_world = np.linalg.inv(current.T_world_lidar)
        parts = []
        for sweep in reversed(self._sweeps):
            pts = sweep.points
            lag = np.float32(current.stamp - sweep.stamp)
            if sweep is not current:
                if self.ego_radius > 0:
                    near = (np.abs(pts[:, 0]) < self.ego_radius) & (np.abs(pts[:, 1]) < self.ego_radius)
                    pts = pts[~near]
                T = T_lidar_world @ sweep.T_world_lidar
                xyz = pts[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
                pts = np.concatenate([xyz.astype(np.float32), pts[:, 3:4]], axis=1)
            out = np.empty((pts.shape[0], 5), np.float32)
            out[:, :4] = pts
            out[:, 4] = lag
            parts.append(out)
        return np.concatenate(parts)
