"""Static clearance of a ground robot: how far each point of the ground is from the world's static obstacles.

A robot's body is taken as a vertical cylinder: a disc of radius ``r`` (metres) in the ground plane, from ``step``
above its support surface (lower things, like a kerb's edge or a door sill, are driven over or off) up to ``height``.
Every static triangle that is not ground (road, sidewalk, terrain, floor, ceiling) is clipped to that height band and
its footprint drawn into a grid (``resolution`` metres a cell) around the route; whatever the robot cannot reach from
its route's start without crossing a footprint (a building's or a trunk's inside, the rooms behind a corridor wall)
is an obstacle too. A distance transform then gives each cell's clearance, so :meth:`ClearanceMap.hits` (a disc of
radius ``r`` at world ``(x, y)``) is one array look-up. Actors (people, cars) are not in it: they move;
:class:`WorldCollision` adds them at a given time.

World frame as in :mod:`.world` (x east, y north, metres). Outside the grid (``margin`` metres around the route's
loop) every point counts as a hit. Footprints are exact to within about ``resolution`` (the clearance is rounded
down to be safe).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core import labels as L
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.sim.world import World

GROUND_CLASSES = frozenset({L.ROAD, L.SIDEWALK, L.TERRAIN, L.FLOOR, L.CEILING})
"""Classes of static surfaces that are driven on (or over), never obstacles."""
ROBOT_RADIUS = 0.3  #: metres: the disc holding the robot platform's footprint (a 0.5 x 0.5 m base)
ROBOT_STEP = 0.05  #: metres above the support surface below which nothing is an obstacle
ROBOT_HEIGHT = 1.0  #: metres above the support surface above which nothing is an obstacle (tree crowns, lamp arms)


@dataclass(frozen=True, eq=False)
class ClearanceMap:
    """Clearance (metres) from the static obstacles on a grid of the ground plane.

    ``clearance_grid[i, j]`` is the clearance at world ``(x0 + j * resolution, y0 + i * resolution)`` (``origin`` =
    (x0, y0), cell centres); 0 inside obstacles and in places the robot cannot reach from its start.
    """

    origin: np.ndarray
    resolution: float
    clearance_grid: np.ndarray

    def clearance(self, xy: np.ndarray) -> np.ndarray:
        """(N,) clearance (metres) of (N, 2) world points; 0 outside the grid."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        ij = np.rint((xy - self.origin) / self.resolution).astype(np.int64)
        rows, cols = self.clearance_grid.shape
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < cols) & (ij[:, 1] >= 0) & (ij[:, 1] < rows)
        out = np.zeros(len(xy), np.float64)
        out[inside] = self.clearance_grid[ij[inside, 1], ij[inside, 0]]
        return out

    def hits(self, x: float, y: float, radius: float = ROBOT_RADIUS) -> bool:
        """True when a disc of ``radius`` metres centred at world ``(x, y)`` touches static geometry."""
        return bool(self.clearance(np.array([[x, y]]))[0] < radius)


class WorldCollision:
    """``collides(x, y, radius, t)``: True when a disc of ``radius`` metres at world ``(x, y)`` touches the static
    geometry (a :class:`ClearanceMap`) or an actor at ``t`` seconds (the footprint of its standing pose, a rectangle in
    its own frame, moved along its route). The signature of a closed-loop robot's collision callback."""

    def __init__(self, world: World, static: ClearanceMap | None = None) -> None:
        self.world = world
        self.static = static_clearance(world) if static is None else static
        self._footprints = []
        for actor in world.actors:
            verts = np.concatenate([p.vertices for p in actor.build(0.0)])
            self._footprints.append((actor, verts[:, :2].min(axis=0), verts[:, :2].max(axis=0)))

    def actor_hit(self, x: float, y: float, radius: float, t: float) -> int:
        """The instance id of an actor the disc touches at ``t`` (the first found), 0 for none."""
        for actor, lo, hi in self._footprints:
            ax, ay, _, yaw = actor.route.pose(t)
            c, s = math.cos(yaw), math.sin(yaw)
            dx, dy = x - ax, y - ay
            local = np.array([c * dx + s * dy, -s * dx + c * dy])  # the disc centre in the actor's frame
            if np.hypot(*(local - np.clip(local, lo, hi))) < radius:
                return actor.instance_id
        return 0

    def __call__(self, x: float, y: float, radius: float, t: float) -> bool:
        return self.static.hits(x, y, radius) or self.actor_hit(x, y, radius, t) != 0


def _band_footprints(vertices: np.ndarray, triangles: np.ndarray, z0: float, z1: float) -> list[np.ndarray]:
    """Each triangle's part between heights ``z0`` and ``z1``, projected to the ground: (K, 2) points whose convex
    hull is that footprint (a segment for a vertical triangle), for the triangles that reach into the band."""
    tri = vertices[triangles]  # (T, 3, 3)
    z = tri[:, :, 2]
    keep = (z.max(axis=1) >= z0) & (z.min(axis=1) <= z1)
    tri, z = tri[keep], z[keep]
    points = [tri[:, :, :2]]
    valid = [(z >= z0) & (z <= z1)]
    for a, b in ((0, 1), (1, 2), (2, 0)):  # where each edge crosses each of the band's two planes
        za, zb = z[:, a], z[:, b]
        for plane in (z0, z1):
            crosses = (np.minimum(za, zb) < plane) & (np.maximum(za, zb) > plane)
            u = np.where(crosses, (plane - za) / np.where(crosses, zb - za, 1.0), 0.0)
            points.append((tri[:, a, :2] + u[:, None] * (tri[:, b, :2] - tri[:, a, :2]))[:, None])
            valid.append(crosses[:, None])
    pts, ok = np.concatenate(points, axis=1), np.concatenate(valid, axis=1)
    return [p[m] for p, m in zip(pts, ok, strict=True) if m.any()]


def static_clearance(world: World, resolution: float = 0.05, margin: float = 5.0, step: float = ROBOT_STEP,
                     height: float = ROBOT_HEIGHT) -> ClearanceMap:
    """The :class:`ClearanceMap` of ``world``'s static parts for a body from ``step`` to ``height`` metres above the
    ego route's support height, over the route's loop grown by ``margin`` metres (module docstring). Free space is
    what is reachable from the route's start; a start inside an obstacle leaves none (every query hits).

    Costs about a second for the city block at 0.05 m (grid of 2-3 million cells); build it once per world."""
    import cv2

    if not (0.005 <= resolution <= 1.0 and margin >= 0.0 and 0.0 <= step < height):
        raise ConfigError(f"clearance map needs resolution 0.005..1 m, margin >= 0 and 0 <= step < height, got "
                          f"{resolution}, {margin}, {step}, {height}")
    route = world.ego_route
    loop = route.loop
    reach = np.array([loop.half_x, loop.half_y]) + margin + abs(route.sway)
    origin = -reach
    cols, rows = (np.ceil(2.0 * reach / resolution).astype(int) + 1).tolist()
    shift = 4  # OpenCV sub-pixel bits
    scale = float(1 << shift) / resolution
    blocked = np.zeros((rows, cols), np.uint8)
    z0, z1 = route.z + step, route.z + height
    for p in world.static_parts:
        if p.class_id in GROUND_CLASSES:
            continue
        for footprint in _band_footprints(p.vertices, p.triangles, z0, z1):
            pixels = np.rint((footprint - origin) * scale).astype(np.int32)
            hull = cv2.convexHull(pixels.reshape(-1, 1, 2))
            cv2.fillConvexPoly(blocked, hull, 1, cv2.LINE_8, shift)
            cv2.polylines(blocked, [hull], True, 1, 1, cv2.LINE_8, shift)
    start = np.rint((np.array(route.pose(0.0)[:2]) - origin) / resolution).astype(int)
    free = np.zeros((rows, cols), np.uint8)
    if blocked[start[1], start[0]] == 0:  # what the robot reaches from its start, 4-connected
        mask = np.zeros((rows + 2, cols + 2), np.uint8)
        mask[1:-1, 1:-1] = blocked
        cv2.floodFill(free, mask, (int(start[0]), int(start[1])), 1, flags=4)
    distance = cv2.distanceTransform(free, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # cells to the nearest obstacle cell
    clearance = np.maximum(distance - 1.0, 0.0) * resolution  # a footprint may reach a cell beyond the cells drawn
    return ClearanceMap(origin.astype(np.float64), float(resolution), clearance.astype(np.float32))
