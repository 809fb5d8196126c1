"""Rounded rectangles: the one shape behind the synthetic world's roads, sidewalks, corridors and every route on them.

A :class:`RoundedRect` is centred on the world origin, axis-aligned, with half extents ``half_x``, ``half_y`` and
corner radius ``radius`` (metres). Its offset curve at distance ``d`` is again a rounded rectangle (half extents and
radius grown by ``d``), so concentric rings (kerbs, lanes, walls) triangulate by stitching equally sampled
boundaries, and a vehicle that keeps a constant offset to the kerb follows :meth:`RoundedRect.offset` exactly.

Arc length ``s`` (metres) runs counter-clockwise (seen from above, +z up) from the bottom end of the right-hand
straight; :meth:`RoundedRect.pose_at` gives the position and heading (yaw, radians, 0 along +x) at ``s``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ros_mmfusion.core.errors import ConfigError

# Corner centres' signs and their quarter-circle start angles, in counter-clockwise order from the top-right corner.
_CORNERS = ((1.0, 1.0, 0.0), (-1.0, 1.0, 0.5 * math.pi), (-1.0, -1.0, math.pi), (1.0, -1.0, 1.5 * math.pi))


@dataclass(frozen=True)
class RoundedRect:
    """Axis-aligned rounded rectangle centred on the origin (metres)."""

    half_x: float
    half_y: float
    radius: float

    def __post_init__(self) -> None:
        if not 0.0 < self.radius <= min(self.half_x, self.half_y):
            raise ConfigError(
                f"rounded rectangle radius {self.radius} must be in (0, min(half_x, half_y)] "
                f"for half extents {self.half_x} x {self.half_y}"
            )

    def offset(self, d: float) -> RoundedRect:
        """The curve at distance ``d`` outside (negative: inside) this one."""
        return RoundedRect(self.half_x + d, self.half_y + d, self.radius + d)

    @cached_property
    def _straights(self) -> tuple[float, float]:
        return 2.0 * (self.half_x - self.radius), 2.0 * (self.half_y - self.radius)

    @property
    def length(self) -> float:
        """Perimeter in metres."""
        sx, sy = self._straights
        return 2.0 * (sx + sy) + 2.0 * math.pi * self.radius

    @cached_property
    def _segments(self) -> list[tuple]:
        """Counter-clockwise pieces: ("line", length, x0, y0, yaw) and ("arc", length, cx, cy, angle0)."""
        hx, hy, r = self.half_x, self.half_y, self.radius
        sx, sy = self._straights
        ax, ay = hx - r, hy - r
        return [
            ("line", sy, hx, -ay, 0.5 * math.pi),
            ("arc", 0.5 * math.pi * r, ax, ay, 0.0),
            ("line", sx, ax, hy, math.pi),
            ("arc", 0.5 * math.pi * r, -ax, ay, 0.5 * math.pi),
            ("line", sy, -hx, ay, 1.5 * math.pi),
            ("arc", 0.5 * math.pi * r, -ax, -ay, math.pi),
            ("line", sx, -ax, -hy, 0.0),
            ("arc", 0.5 * math.pi * r, ax, -ay, 1.5 * math.pi),
        ]

    def pose_at(self, s: float, clockwise: bool = False) -> tuple[float, float, float]:
        """(x, y, yaw) at arc length ``s`` (wrapped to the perimeter); ``clockwise`` runs the loop the other way."""
        length = self.length
        s = float(s) % length
        if clockwise:
            s = (length - s) % length
        segments = self._segments
        for index, segment in enumerate(segments):
            if s <= segment[1] or index == len(segments) - 1:
                break
            s -= segment[1]
        kind, _, a, b, angle = segment
        if kind == "line":
            x, y, yaw = a + s * math.cos(angle), b + s * math.sin(angle), angle
        else:
            theta = angle + s / self.radius
            x, y, yaw = a + self.radius * math.cos(theta), b + self.radius * math.sin(theta), theta + 0.5 * math.pi
        if clockwise:
            yaw += math.pi
        return x, y, math.atan2(math.sin(yaw), math.cos(yaw))

    def straights(self) -> list[tuple[float, float]]:
        """(start arc length, length) of the four straights, counter-clockwise from the right-hand one."""
        out, s = [], 0.0
        for kind, seg_len, *_ in self._segments:
            if kind == "line":
                out.append((s, seg_len))
            s += seg_len
        return out

    def boundary(self, arc_samples: int = 8) -> np.ndarray:
        """(4 * (arc_samples + 1), 2) counter-clockwise boundary points, corners sampled at equal angles.

        Offsets of one rectangle sampled with the same ``arc_samples`` correspond point by point, which is what
        :func:`ring_triangles` stitches.
        """
        ax, ay = self.half_x - self.radius, self.half_y - self.radius
        t = np.linspace(0.0, 0.5 * math.pi, arc_samples + 1)
        pieces = []
        for sx, sy, a0 in _CORNERS:
            pieces.append(np.stack([sx * ax + self.radius * np.cos(a0 + t), sy * ay + self.radius * np.sin(a0 + t)], 1))
        return np.concatenate(pieces)

    def signed_distance(self, xy: np.ndarray) -> np.ndarray:
        """(N,) signed distance (metres) of (N, 2) points to the curve: negative inside, positive outside."""
        q = np.abs(np.asarray(xy, dtype=np.float64)) - np.array([self.half_x - self.radius, self.half_y - self.radius])
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(np.max(q, axis=1), 0.0)
        return outside + inside - self.radius

    def along_straight(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(coordinate along the nearest straight, metres; True where the point is beside a straight, not a corner)."""
        xy = np.asarray(xy, dtype=np.float64)
        q = np.abs(xy) - np.array([self.half_x - self.radius, self.half_y - self.radius])
        beside_x = (q[:, 0] <= 0.0) & (q[:, 1] > 0.0)  # top/bottom straights run along x
        beside_y = (q[:, 1] <= 0.0) & (q[:, 0] > 0.0)
        along = np.where(beside_x, xy[:, 0], xy[:, 1])
        return along, beside_x | beside_y


def ring_triangles(inner: np.ndarray, outer: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, triangles) of a flat ring at height ``z`` between two corresponding closed boundaries; normals +z."""
    n = len(inner)
    verts = np.concatenate([np.column_stack([inner, np.full(n, z)]), np.column_stack([outer, np.full(n, z)])])
    i = np.arange(n)
    j = (i + 1) % n
    tris = np.concatenate([np.stack([i, n + i, n + j], 1), np.stack([i, n + j, j], 1)])
    return verts, tris


def wall_triangles(boundary: np.ndarray, z0: float, z1: float, facing_out: bool) -> tuple[np.ndarray, np.ndarray]:
    """Vertical band from ``z0`` to ``z1`` along a closed counter-clockwise boundary; normals outward or inward."""
    n = len(boundary)
    verts = np.concatenate([np.column_stack([boundary, np.full(n, z0)]), np.column_stack([boundary, np.full(n, z1)])])
    i = np.arange(n)
    j = (i + 1) % n
    if facing_out:
        tris = np.concatenate([np.stack([i, j, n + j], 1), np.stack([i, n + j, n + i], 1)])
    else:
        tris = np.concatenate([np.stack([i, n + j, j], 1), np.stack([i, n + i, n + j], 1)])
    return verts, tris


def fan_triangles(boundary: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat convex polygon at height ``z`` (fan from its centroid); normals +z."""
    n = len(boundary)
    centre = boundary.mean(axis=0)
    verts = np.column_stack([np.vstack([centre, boundary]), np.full(n + 1, z)])
    i = np.arange(n) + 1
    j = i % n + 1
    return verts, np.stack([np.zeros(n, np.int64), i, j], 1)
