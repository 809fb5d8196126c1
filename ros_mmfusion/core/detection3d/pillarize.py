"""Range cropping, pillar grouping and the decorated pillar point features of PointPillars (Lang et al., CVPR 2019).

Semantics are those of OpenPCDet's data processor with the spconv CPU voxelizer, so that pillars built here feed an
OpenPCDet checkpoint exactly as during its evaluation:

* ``crop_to_range`` keeps points with x and y inside the range, both ends inclusive; z is not checked.
* ``pillarize`` visits the points in input order. A point's cell is ``floor((p - range_min) / voxel_size)`` evaluated
  in float32 per axis; points whose cell falls outside the grid (z included) are dropped. Pillars are numbered in order
  of first appearance; once ``max_pillars`` exist, points of new cells are dropped. A pillar keeps its first
  ``max_points_per_pillar`` points, later ones are dropped. Padded point slots are zero.
* ``decorate_pillars`` builds the per-point input of the pillar feature net: the raw features, the offset from the
  mean of the pillar's points (``f_cluster``) and the offset from the pillar's column centre (``f_center``), all
  zeroed in padded slots. It is computed outside the network, as Autoware's CenterPoint does, so that the exported
  pillar encoder is a plain dense graph.

Everything is vectorised numpy and deterministic. Units are metres in the LiDAR frame (x forward, y left, z up).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core.errors import ConfigError


@dataclass(frozen=True)
class PillarGrid:
    """The pillar grid: range ``(x_min, y_min, z_min, x_max, y_max, z_max)`` and cell size ``(sx, sy, sz)`` in metres.

    A pillar grid has a single z cell (``sz`` spans the range's height); the arithmetic allows more.
    """

    point_cloud_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float]
    max_points_per_pillar: int = 32
    max_pillars: int = 40000

    def __post_init__(self) -> None:
        if len(self.point_cloud_range) != 6 or len(self.voxel_size) != 3:
            raise ConfigError(f"point_cloud_range needs 6 values and voxel_size 3, got "
                              f"{self.point_cloud_range!r} and {self.voxel_size!r}")
        lo, hi = self.range_min, self.range_max
        if np.any(hi <= lo) or np.any(np.asarray(self.voxel_size) <= 0):
            raise ConfigError(f"point_cloud_range {self.point_cloud_range!r} must have max > min and voxel_size "
                              f"{self.voxel_size!r} must be positive")
        if self.max_points_per_pillar < 1 or self.max_pillars < 1:
            raise ConfigError("max_points_per_pillar and max_pillars must be >= 1")

    @property
    def range_min(self) -> np.ndarray:
        """``(3,)`` float32 lower corner, as the reference stores the range (float32)."""
        return np.asarray(self.point_cloud_range[:3], dtype=np.float32)

    @property
    def range_max(self) -> np.ndarray:
        """``(3,)`` float32 upper corner."""
        return np.asarray(self.point_cloud_range[3:], dtype=np.float32)

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """Cells along ``(x, y, z)``: ``round((max - min) / voxel_size)``."""
        size = (self.range_max - self.range_min) / np.asarray(self.voxel_size, dtype=np.float32)
        nx, ny, nz = np.round(size).astype(np.int64)
        return int(nx), int(ny), int(nz)

    @property
    def bev_shape(self) -> tuple[int, int]:
        """``(ny, nx)``: rows and columns of the bird's-eye-view canvas."""
        nx, ny, _ = self.grid_size
        return ny, nx


@dataclass(frozen=True)
class Pillars:
    """Points grouped into pillars.

    ``voxels`` ``(P, max_points, C)`` float32 point features in input order, zero-padded; ``coords`` ``(P, 3)`` int32
    cell indices ``(z, y, x)``; ``num_points`` ``(P,)`` int32 valid points per pillar (``1..max_points``).
    """

    voxels: np.ndarray
    coords: np.ndarray
    num_points: np.ndarray

    def __len__(self) -> int:
        return int(self.voxels.shape[0])


def crop_to_range(points: np.ndarray, point_cloud_range) -> np.ndarray:
    """The points with ``x`` in ``[x_min, x_max]`` and ``y`` in ``[y_min, y_max]`` (inclusive; z is not checked).

    The range is compared in float32, as the reference stores it. Input order is kept.
    """
    pts = np.asarray(points)
    rng = np.asarray(point_cloud_range, dtype=np.float32)
    x, y = pts[:, 0], pts[:, 1]
    keep = (x >= rng[0]) & (x <= rng[3]) & (y >= rng[1]) & (y <= rng[4])
    return pts[keep]


def pillarize(points: np.ndarray, grid: PillarGrid) -> Pillars:
    """Group ``(N, C)`` points (``x, y, z`` first, metres) into pillars with the reference voxelizer's semantics.

    Points outside the grid (including non-finite ones) are dropped; see the module docstring for the rest.
    """
    return pillarize_and_count(points, grid)[0]


def pillarize_and_count(points: np.ndarray, grid: PillarGrid) -> tuple[Pillars, int]:
    """``pillarize``'s pillars and the number of cells the points occupy (more than the pillars when
    ``grid.max_pillars`` truncated them).

    One stable sort of the points by cell gives everything: each cell's points in input order (their slots), its
    first point (the order pillars are numbered in) and its point count.
    """
    pts = np.ascontiguousarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points must be (N, C>=3), got {pts.shape}")
    nx, ny, nz = grid.grid_size
    max_points, max_pillars = grid.max_points_per_pillar, grid.max_pillars
    channels = pts.shape[1]

    cell_f = np.floor((pts[:, :3] - grid.range_min) / np.asarray(grid.voxel_size, dtype=np.float32))
    inside = np.all((cell_f >= 0) & (cell_f < np.array([nx, ny, nz], dtype=np.float32)), axis=1)
    pts = pts[inside]
    cell = cell_f[inside].astype(np.int64)
    linear = (cell[:, 2] * ny + cell[:, 1]) * nx + cell[:, 0]
    if linear.size == 0:
        return Pillars(np.zeros((0, max_points, channels), np.float32), np.zeros((0, 3), np.int32),
                       np.zeros((0,), np.int32)), 0

    by_cell = np.argsort(linear, kind="stable")  # points grouped by cell, input order within a cell
    sorted_cells = linear[by_cell]
    starts = np.flatnonzero(np.concatenate(([True], sorted_cells[1:] != sorted_cells[:-1])))
    counts = np.diff(np.append(starts, linear.size))  # per cell, in cell order
    by_appearance = np.argsort(by_cell[starts], kind="stable")  # cells by their first point
    rank = np.empty_like(by_appearance)
    rank[by_appearance] = np.arange(by_appearance.size)
    occupied = int(starts.size)
    num_pillars = min(occupied, max_pillars)

    pillar = np.repeat(rank, counts)  # pillar number of each point, in by_cell order
    slot = np.arange(linear.size) - np.repeat(starts, counts)  # its position among its pillar's points
    keep = (pillar < num_pillars) & (slot < max_points)
    voxels = np.zeros((num_pillars, max_points, channels), dtype=np.float32)
    voxels[pillar[keep], slot[keep]] = pts[by_cell[keep]]

    kept_cells = sorted_cells[starts[by_appearance[:num_pillars]]]
    coords = np.stack([kept_cells // (nx * ny), (kept_cells // nx) % ny, kept_cells % nx], axis=1).astype(np.int32)
    num_points = np.minimum(counts[by_appearance[:num_pillars]], max_points).astype(np.int32)
    return Pillars(voxels=voxels, coords=coords, num_points=num_points), occupied


def pillar_centres(coords: np.ndarray, grid: PillarGrid) -> np.ndarray:
    """``(P, 3)`` float32 ``(x, y, z)`` centres of the cells ``coords`` ``(P, 3)`` ``(z, y, x)`` (metres).

    Formed as the reference does, in float32: ``coord * voxel_size + (voxel_size / 2 + range_min)``.
    """
    xyz = np.asarray(coords)[:, ::-1][:, :3].astype(np.float32)
    size64 = np.asarray(grid.voxel_size, dtype=np.float64)
    offset = (size64 / 2 + grid.range_min.astype(np.float64)).astype(np.float32)
    return xyz * size64.astype(np.float32) + offset


def _sum_over_slots(values: np.ndarray) -> np.ndarray:
    """Sum ``(P, M, K)`` over the slot axis in four interleaved float32 partial sums combined left to right.

    This is the summation order of PyTorch's CPU reduction over that axis, so the cluster offsets are bit-identical
    to the reference's; a different order changes them by about one float32 ulp (~8e-6 at 60 m).
    """
    p, m, k = values.shape
    if m % 4:
        padded = np.zeros((p, -(-m // 4) * 4, k), dtype=values.dtype)
        padded[:, :m] = values
        values = padded
    lanes = values.reshape(p, -1, 4, k).sum(axis=1)  # sequential within each lane
    return ((lanes[:, 0] + lanes[:, 1]) + lanes[:, 2]) + lanes[:, 3]


def num_decorated_features(num_point_features: int, use_absolute_xyz: bool = True,
                           with_distance: bool = False) -> int:
    """Channels of ``decorate_pillars``' output: ``C + 6`` (``C + 3`` without absolute xyz), +1 with distance."""
    return num_point_features + (6 if use_absolute_xyz else 3) + int(with_distance)


def decorate_pillars(pillars: Pillars, grid: PillarGrid, use_absolute_xyz: bool = True,
                     with_distance: bool = False) -> np.ndarray:
    """``(P, max_points, C')`` float32 pillar feature net input, padded slots zero.

    Channels: the point features (``x, y, z, intensity, ...``; without ``x, y, z`` when ``use_absolute_xyz`` is off),
    ``x - x_mean, y - y_mean, z - z_mean`` over the pillar's valid points, ``x - x_c, y - y_c, z - z_c`` from the
    cell centre, then ``|xyz|`` when ``with_distance``.
    """
    voxels, num = pillars.voxels, pillars.num_points
    p, m, c = voxels.shape
    xyz = voxels[:, :, :3]
    mean = _sum_over_slots(xyz)[:, None, :] / num.astype(np.float32).reshape(-1, 1, 1)
    first = c if use_absolute_xyz else c - 3
    features = np.empty((p, m, first + 6 + int(with_distance)), dtype=np.float32)
    features[:, :, :first] = voxels if use_absolute_xyz else voxels[:, :, 3:]  # padded slots are zero already
    np.subtract(xyz, mean, out=features[:, :, first:first + 3])
    np.subtract(xyz, pillar_centres(pillars.coords, grid)[:, None, :], out=features[:, :, first + 3:first + 6])
    if with_distance:
        features[:, :, -1] = np.linalg.norm(xyz, axis=2)
    features[:, :, first:] *= (np.arange(m)[None, :] < num[:, None]).astype(np.float32)[:, :, None]
    return features
