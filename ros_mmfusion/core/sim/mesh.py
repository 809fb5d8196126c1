"""Triangle-mesh building blocks of the synthetic world: materials, labelled mesh parts and primitive shapes.

A :class:`Part` is a triangle mesh (vertices in metres, outward-facing triangles) with one semantic class and one
:class:`Material`; objects are lists of parts. Primitives are built with numpy so animated objects can be rebuilt
every frame cheaply; :func:`to_open3d` turns parts into an ``open3d.geometry.TriangleMesh`` for inspection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from ros_mmfusion.core.geometry import Transform


@dataclass(frozen=True)
class Material:
    """How a surface looks to each sensor.

    ``albedo``: linear RGB diffuse reflectance (0..1). ``reflectivity``: LiDAR (near-IR) reflectivity (0..1).
    Temperature: ``temperature_c`` (deg C) when the surface holds its own temperature (skin, engines), otherwise
    air temperature plus ``temperature_offset_c``; sunlit surfaces warm further by their absorptivity.
    ``emission``: linear RGB radiance the surface emits while its ``light_group`` is switched on (lamps, lit windows,
    headlights); group 0 never emits.
    """

    albedo: tuple[float, float, float]
    reflectivity: float = 0.3
    temperature_offset_c: float = 0.0
    temperature_c: float | None = None
    emission: tuple[float, float, float] = (0.0, 0.0, 0.0)
    light_group: int = 0


@dataclass(frozen=True, eq=False)
class Part:
    """A triangle mesh of one class and material: ``vertices`` (V, 3) metres, ``triangles`` (T, 3) vertex indices."""

    vertices: np.ndarray
    triangles: np.ndarray
    class_id: int
    material: Material

    def transformed(self, transform: Transform) -> Part:
        return Part(transform.apply(self.vertices), self.triangles, self.class_id, self.material)


def _outward(vertices: np.ndarray, triangles: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Triangles of a convex solid re-wound so their normals point away from ``centre``."""
    a, b, c = vertices[triangles[:, 0]], vertices[triangles[:, 1]], vertices[triangles[:, 2]]
    normal = np.cross(b - a, c - a)
    inward = np.einsum("ij,ij->i", normal, (a + b + c) / 3.0 - centre) < 0
    out = triangles.copy()
    out[inward] = out[inward][:, [0, 2, 1]]
    return out


_BOX_CORNERS = np.array([[(i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=np.float64)
_BOX_QUADS = ((0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5))  # -z +z -y +y -x +x


_BOX_TRIS = _outward(_BOX_CORNERS, np.array([t for q in _BOX_QUADS for t in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))],
                                            dtype=np.int64), np.full(3, 0.5))


def box(lo, hi, bottom: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box between corners ``lo`` and ``hi`` (metres); ``bottom=False`` leaves the -z face out."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return lo + _BOX_CORNERS * (hi - lo), (_BOX_TRIS if bottom else _BOX_TRIS[2:]).copy()


def cylinder(radius: float, length: float, segments: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Capped cylinder along +z from z=0 to z=``length``, centred on the z axis."""
    angle = np.arange(segments) * (2.0 * math.pi / segments)
    ring = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    verts = np.vstack([np.column_stack([ring, np.zeros(segments)]), np.column_stack([ring, np.full(segments, length)]),
                       [[0.0, 0.0, 0.0], [0.0, 0.0, length]]])
    i = np.arange(segments)
    j = (i + 1) % segments
    bottom, top = 2 * segments, 2 * segments + 1
    tris = np.concatenate([
        np.stack([i, j, segments + j], 1),
        np.stack([i, segments + j, segments + i], 1),
        np.stack([np.full(segments, bottom), j, i], 1),
        np.stack([np.full(segments, top), segments + i, segments + j], 1),
    ])
    return verts, _outward(verts, tris, np.array([0.0, 0.0, 0.5 * length]))


def sphere(radius: float, rings: int = 6, segments: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """UV sphere centred on the origin."""
    verts, tris = _unit_sphere(rings, segments)
    return radius * verts, tris.copy()


@cache
def _unit_sphere(rings: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    polar = np.linspace(0.0, math.pi, rings + 1)[1:-1]
    azimuth = np.arange(segments) * (2.0 * math.pi / segments)
    p, a = np.meshgrid(polar, azimuth, indexing="ij")
    body = np.column_stack([np.sin(p).ravel() * np.cos(a).ravel(), np.sin(p).ravel() * np.sin(a).ravel(),
                            np.cos(p).ravel()])
    verts = np.vstack([[0.0, 0.0, 1.0], body, [0.0, 0.0, -1.0]])
    south = len(verts) - 1
    tris = []
    j = np.arange(segments)
    k = (j + 1) % segments
    tris.append(np.stack([np.zeros(segments, np.int64), 1 + j, 1 + k], 1))
    for r in range(rings - 2):
        a0, a1 = 1 + r * segments, 1 + (r + 1) * segments
        tris.append(np.stack([a0 + j, a1 + j, a1 + k], 1))
        tris.append(np.stack([a0 + j, a1 + k, a0 + k], 1))
    last = 1 + (rings - 2) * segments
    tris.append(np.stack([last + j, np.full(segments, south), last + k], 1))
    tris = np.concatenate(tris)
    return verts, _outward(verts, tris, np.zeros(3))


def place(mesh: tuple[np.ndarray, np.ndarray], transform: Transform) -> tuple[np.ndarray, np.ndarray]:
    """A primitive moved by ``transform`` (child -> parent)."""
    return transform.apply(mesh[0]), mesh[1]


def part(mesh: tuple[np.ndarray, np.ndarray], class_id: int, material: Material) -> Part:
    return Part(np.asarray(mesh[0], dtype=np.float64), np.asarray(mesh[1], dtype=np.int64), class_id, material)


def rotation_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def merge(parts: list[Part]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, Material, int]]]:
    """Concatenate parts: (vertices, triangles, [(class_id, material, triangle count) per part])."""
    verts, tris, meta, offset = [], [], [], 0
    for p in parts:
        verts.append(p.vertices)
        tris.append(p.triangles + offset)
        meta.append((p.class_id, p.material, len(p.triangles)))
        offset += len(p.vertices)
    if not parts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), []
    return np.concatenate(verts), np.concatenate(tris), meta


def to_open3d(parts: list[Part], colors: np.ndarray | None = None):
    """An ``open3d.geometry.TriangleMesh`` of ``parts``; vertex colours from ``colors[class_id]`` (0..255) if given."""
    import open3d as o3d

    verts, tris, meta = merge(parts)
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(verts),
                                     o3d.utility.Vector3iVector(tris.astype(np.int32)))
    if colors is not None:
        vcol = np.zeros((len(verts), 3))
        start = 0
        for p in parts:
            vcol[start : start + len(p.vertices)] = np.asarray(colors[p.class_id]) / 255.0
            start += len(p.vertices)
        mesh.vertex_colors = o3d.utility.Vector3dVector(vcol)
    mesh.compute_triangle_normals()
    return mesh
