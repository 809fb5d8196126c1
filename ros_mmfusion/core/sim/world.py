"""Scene geometry of the synthetic world: a city block with a ring road, and a looped indoor corridor.

Every surface is a triangle with a semantic class (:mod:`.labels`) and a :class:`~.mesh.Material`; countable objects
(cars, pedestrians, cyclists) are :class:`Actor` s with an instance id, a route and, for walkers, a gait. A
:class:`World` is pure data built deterministically from a seed; :meth:`World.snapshot` poses every actor at a time
and returns the merged triangle soup (with per-triangle class, instance and material) ready for ray casting, plus
each actor's ground-truth box.

World frame: x east, y north, z up (metres), origin at the block centre; the road surface is z = 0, sidewalks and
terrain are raised by :data:`KERB`. Things float :data:`HOVER` above their support surface and their boxes are the
tight local bounding box grown by :data:`BOX_MARGIN` on every side, so a box never takes in ground returns and always
holds its own object's (noisy) LiDAR returns.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ros_mmfusion.core import labels as L
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.sim.loop import RoundedRect, fan_triangles, ring_triangles, wall_triangles
from ros_mmfusion.core.sim.mesh import (
    Material,
    Part,
    box,
    cylinder,
    part,
    place,
    rotation_x,
    rotation_y,
    rotation_z,
    sphere,
)

KERB = 0.12  #: sidewalk and terrain height above the road, metres
HOVER = 0.02  #: gap between a thing and its support surface, metres
BOX_MARGIN = 0.01  #: ground-truth boxes are the tight box grown by this on every side, metres
ARC_SAMPLES = 10  #: points per quarter circle of ring meshes

# Random streams of one seed: each part of the world draws from its own, so adding people never moves a building.
_LAYOUT, _VEHICLES, _PEOPLE, _ROUTE = 1, 2, 3, 4


def open3d_module():
    """``open3d``, or ImportError saying how to fix the usual cause (its wheel needs the system's libusb)."""
    try:
        import open3d
    except ImportError as exc:
        hint = " (install it: apt-get install libusb-1.0-0)" if "libusb" in str(exc) else ""
        raise ImportError(f"open3d cannot be imported: {exc}{hint}") from exc
    return open3d


# --- routes and actors ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Motion along a loop at constant speed (m/s; 0 stands still) from arc length ``s0``.

    ``z`` is the support height, ``yaw_offset`` turns the object relative to the direction of travel, ``sway`` (m)
    drifts that far left and back every ``sway_wavelength`` metres of travel, starting on the loop: a second pass
    starts where the first did but never retraces it exactly.
    """

    loop: RoundedRect
    s0: float
    speed: float = 0.0
    clockwise: bool = False
    z: float = 0.0
    yaw_offset: float = 0.0
    sway: float = 0.0
    sway_wavelength: float = 20.0

    def pose(self, t: float) -> tuple[float, float, float, float]:
        """(x, y, z, yaw) in the world frame at time ``t`` seconds."""
        s = self.s0 + self.speed * t
        x, y, yaw = self.loop.pose_at(s, self.clockwise)
        if self.sway:  # drift 0..sway to the left and back, starting (t=0) on the loop with its heading
            k = 2.0 * math.pi / self.sway_wavelength
            phase = k * self.speed * t
            lateral = 0.5 * self.sway * (1.0 - math.cos(phase))
            x, y = x - lateral * math.sin(yaw), y + lateral * math.cos(yaw)
            yaw += math.atan(0.5 * self.sway * k * math.sin(phase))
        return x, y, self.z, yaw + self.yaw_offset

    def centre_line(self, length: float | None = None, spacing: float = 0.25) -> np.ndarray:
        """(N, 3) poses x, y (metres, world frame) and yaw (radians) every ``spacing`` metres of travel along the
        loop from the start, over ``length`` metres (default: one lap of the loop), the sway included."""
        if not (self.speed > 0.0 and spacing > 0.0):
            raise ConfigError(f"centre line needs a moving route and spacing > 0, got speed {self.speed}, "
                              f"spacing {spacing}")
        length = self.loop.length if length is None else float(length)
        travel = np.arange(0.0, length + 0.5 * spacing, spacing)
        return np.array([self.pose(d / self.speed) for d in travel])[:, [0, 1, 3]]

    def transform(self, t: float) -> Transform:
        """``T_world_object`` at time ``t``."""
        x, y, z, yaw = self.pose(t)
        return Transform(rotation_z(yaw), np.array([x, y, z]))


@dataclass(eq=False)
class Actor:
    """A thing with an instance id: ``build(gait_phase)`` gives its parts in its own frame (x forward, y left, z up,
    origin on the support surface); walkers (``stride`` > 0, metres a gait cycle) are rebuilt every frame."""

    instance_id: int
    class_id: int
    route: Route
    build: Callable[[float], list[Part]]
    stride: float = 0.0
    _rigid: list[Part] | None = field(default=None, repr=False)
    _merged: tuple | None = field(default=None, repr=False)

    def local_parts(self, t: float) -> list[Part]:
        if self.stride > 0.0 and self.route.speed > 0.0:
            return self.build(2.0 * math.pi * self.route.speed * t / self.stride)
        if self._rigid is None:
            self._rigid = self.build(0.0)
        return self._rigid


@dataclass(frozen=True)
class PointLight:
    """An isotropic lamp: ``intensity`` is the irradiance it gives a facing surface 1 m away; on with its group."""

    position: tuple[float, float, float]
    color: tuple[float, float, float]
    intensity: float
    light_group: int


@dataclass(frozen=True, eq=False)
class ActorBox:
    """An actor's ground-truth box: ``T_world_box`` (centre, orientation), ``size`` (length x, width y, height z)."""

    instance_id: int
    class_id: int
    T_world_box: Transform
    size: np.ndarray


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The world's triangles at one instant, with per-triangle ``tri_class``, ``tri_instance``, ``tri_material``."""

    vertices: np.ndarray
    triangles: np.ndarray
    tri_class: np.ndarray
    tri_instance: np.ndarray
    tri_material: np.ndarray
    boxes: list[ActorBox]

    def raycasting_scene(self):
        """An ``open3d.t.geometry.RaycastingScene`` holding every triangle as geometry 0."""
        o3d = open3d_module()
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(self.vertices), o3d.core.Tensor(self.triangles))
        return scene


@dataclass(eq=False)
class World:
    """A built world: static parts (world frame), actors, lamps and the ego route."""

    name: str
    seed: int
    outdoor: bool
    static_parts: list[Part]
    actors: list[Actor]
    lights: list[PointLight]
    ego_route: Route
    reference: RoundedRect  #: the curve lane markings and corridor textures are measured from
    materials: list[Material] = field(default_factory=list)
    _material_index: dict[Material, int] = field(default_factory=dict, repr=False)
    _static: tuple | None = field(default=None, repr=False)
    _table: tuple | None = field(default=None, repr=False)

    def material_id(self, material: Material) -> int:
        index = self._material_index.get(material)
        if index is None:
            index = self._material_index[material] = len(self.materials)
            self.materials.append(material)
        return index

    def _merge(self, parts: list[Part], instance_ids: list[int]) -> tuple[np.ndarray, ...]:
        verts, tris, cls, inst, mat, offset = [], [], [], [], [], 0
        for p, instance in zip(parts, instance_ids, strict=True):
            n = len(p.triangles)
            verts.append(p.vertices)
            tris.append(p.triangles + offset)
            cls.append(np.full(n, p.class_id, np.uint8))
            inst.append(np.full(n, instance, np.uint16))
            mat.append(np.full(n, self.material_id(p.material), np.int32))
            offset += len(p.vertices)
        if not parts:
            return (np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.uint8), np.zeros(0, np.uint16),
                    np.zeros(0, np.int32))
        return (np.concatenate(verts), np.concatenate(tris), np.concatenate(cls), np.concatenate(inst),
                np.concatenate(mat))

    def snapshot(self, t: float) -> Snapshot:
        """Every triangle with the actors posed at ``t`` seconds, and the actors' boxes (world frame)."""
        if self._static is None:
            self._static = self._merge(self.static_parts, [0] * len(self.static_parts))
        meshes, boxes = [], []
        for actor in self.actors:
            rigid = actor.stride <= 0.0 or actor.route.speed <= 0.0
            local = actor._merged if rigid else None
            if local is None:  # one actor's parts as one mesh in its own frame
                parts = actor.local_parts(t)
                local = self._merge(parts, [actor.instance_id] * len(parts))
                if rigid:
                    actor._merged = local
            T_world_actor = actor.route.transform(t)
            lo, hi = local[0].min(axis=0) - BOX_MARGIN, local[0].max(axis=0) + BOX_MARGIN
            boxes.append(ActorBox(actor.instance_id, actor.class_id,
                                  T_world_actor @ Transform(np.eye(3), 0.5 * (lo + hi)), hi - lo))
            meshes.append((T_world_actor.apply(local[0]), *local[1:]))
        sv, st, sc, si, sm = self._static
        offsets = np.cumsum([len(sv)] + [len(m[0]) for m in meshes])
        dv = [m[0] for m in meshes]
        dt = [m[1] + offset for m, offset in zip(meshes, offsets[:-1], strict=True)]
        dc, di, dm = ([m[k] for m in meshes] for k in (2, 3, 4))
        return Snapshot(
            vertices=np.concatenate([sv, *dv]).astype(np.float32),
            triangles=np.concatenate([st, *dt]).astype(np.uint32),
            tri_class=np.concatenate([sc, *dc]),
            tri_instance=np.concatenate([si, *di]),
            tri_material=np.concatenate([sm, *dm]),
            boxes=boxes,
        )

    def material_table(self) -> dict[str, np.ndarray]:
        """Per-material arrays indexed like ``Snapshot.tri_material`` (call after a snapshot registered them)."""
        if self._table is not None and self._table[0] == len(self.materials):
            return self._table[1]
        mats = self.materials
        table = {
            "albedo": np.array([m.albedo for m in mats], np.float32).reshape(-1, 3),
            "reflectivity": np.array([m.reflectivity for m in mats], np.float32),
            "temperature_offset": np.array([m.temperature_offset_c for m in mats], np.float32),
            "temperature": np.array([np.nan if m.temperature_c is None else m.temperature_c for m in mats], np.float32),
            "emission": np.array([m.emission for m in mats], np.float32).reshape(-1, 3),
            "light_group": np.array([m.light_group for m in mats], np.int32),
        }
        self._table = (len(mats), table)
        return table


# --- materials --------------------------------------------------------------------------------------------------------

ASPHALT = Material((0.085, 0.085, 0.09), reflectivity=0.12, temperature_offset_c=2.0)
PAVING = Material((0.36, 0.35, 0.33), reflectivity=0.30, temperature_offset_c=1.0)
GRASS = Material((0.10, 0.20, 0.05), reflectivity=0.45, temperature_offset_c=-1.0)
FOLIAGE = Material((0.06, 0.15, 0.04), reflectivity=0.50, temperature_offset_c=-1.5)
BARK = Material((0.17, 0.11, 0.07), reflectivity=0.30, temperature_offset_c=-0.5)
CONCRETE = Material((0.48, 0.47, 0.45), reflectivity=0.40, temperature_offset_c=0.5)
METAL = Material((0.28, 0.29, 0.30), reflectivity=0.55, temperature_offset_c=-1.0)
GLASS = Material((0.03, 0.035, 0.045), reflectivity=0.06, temperature_offset_c=-3.0)
TYRE = Material((0.03, 0.03, 0.03), reflectivity=0.10, temperature_offset_c=1.0)
LAMP = Material((0.9, 0.9, 0.85), reflectivity=0.6, temperature_c=45.0, emission=(8.0, 6.8, 4.8), light_group=1)
FACADES = ((0.50, 0.44, 0.38), (0.58, 0.55, 0.50), (0.38, 0.24, 0.18), (0.62, 0.62, 0.64), (0.45, 0.47, 0.50),
           (0.66, 0.58, 0.42))
CAR_PAINTS = ((0.55, 0.56, 0.58), (0.04, 0.04, 0.05), (0.78, 0.78, 0.78), (0.45, 0.04, 0.03), (0.04, 0.10, 0.35),
              (0.20, 0.22, 0.25), (0.42, 0.34, 0.16), (0.10, 0.25, 0.12))
CLOTHES = ((0.05, 0.05, 0.06), (0.15, 0.18, 0.35), (0.45, 0.08, 0.06), (0.55, 0.55, 0.50), (0.12, 0.25, 0.12),
           (0.60, 0.45, 0.10), (0.25, 0.25, 0.28), (0.70, 0.70, 0.72))
SKIN = ((0.62, 0.45, 0.35), (0.45, 0.30, 0.20), (0.28, 0.18, 0.12), (0.70, 0.55, 0.45))
WALL_PAINT = Material((0.72, 0.71, 0.67), reflectivity=0.60, temperature_offset_c=0.0)
FLOOR_VINYL = Material((0.30, 0.27, 0.23), reflectivity=0.30, temperature_offset_c=-0.5)
CEILING_TILE = Material((0.80, 0.80, 0.78), reflectivity=0.65, temperature_offset_c=1.0)


def _jitter(rng: np.random.Generator, color, amount: float = 0.08) -> tuple[float, float, float]:
    c = np.clip(np.asarray(color) * (1.0 + amount * rng.uniform(-1.0, 1.0, 3)), 0.0, 1.0)
    return (float(c[0]), float(c[1]), float(c[2]))


# --- things -----------------------------------------------------------------------------------------------------------


def car_parts(gait: float, *, length: float, width: float, height: float, paint: Material, engine: Material,
              tyre: Material, headlight: Material, taillight: Material) -> list[Part]:
    """A passenger car (origin on the ground below its centre, x forward): body, engine bay, cabin, wheels, lights."""
    del gait
    h = HOVER
    wheel_r, wheel_w = 0.32, 0.22
    body_lo, body_hi = h + 0.20, h + 0.95
    hx, hy = 0.5 * length, 0.5 * width
    hood = hx - 1.1
    parts = [
        part(box((-hx, -hy, body_lo), (hood, hy, body_hi)), L.CAR, paint),
        part(box((hood, -hy, body_lo), (hx, hy, body_hi)), L.CAR, engine),
        part(box((-hx + 0.45, -hy + 0.08, body_hi), (hood - 0.25, hy - 0.08, h + height - 0.05)), L.CAR, GLASS),
        part(box((-hx + 0.45, -hy + 0.08, h + height - 0.05), (hood - 0.25, hy - 0.08, h + height)), L.CAR, paint),
        part(box((hx, hy - 0.40, h + 0.62), (hx + 0.02, hy - 0.12, h + 0.74)), L.CAR, headlight),
        part(box((hx, -hy + 0.12, h + 0.62), (hx + 0.02, -hy + 0.40, h + 0.74)), L.CAR, headlight),
        part(box((-hx - 0.02, hy - 0.35, h + 0.70), (-hx, hy - 0.10, h + 0.80)), L.CAR, taillight),
        part(box((-hx - 0.02, -hy + 0.10, h + 0.70), (-hx, -hy + 0.35, h + 0.80)), L.CAR, taillight),
    ]
    wheel = cylinder(wheel_r, wheel_w, 14)
    for x in (hx - 0.8, -hx + 0.8):
        for y in (hy - wheel_w, -hy):
            T = Transform(rotation_x(-0.5 * math.pi), np.array([x, y, h + wheel_r]))
            parts.append(part(place(wheel, T), L.CAR, tyre))
    return parts


def _limb(lo, hi, pivot, angle: float):
    verts, tris = box(lo, hi)
    pivot = np.asarray(pivot)
    return (verts - pivot) @ rotation_y(angle).T + pivot, tris


def pedestrian_parts(gait: float, *, height: float, shirt: Material, trousers: Material, skin: Material,
                     class_id: int = L.PEDESTRIAN) -> list[Part]:
    """A person (origin on the ground between the feet, facing +x); legs and arms swing with the gait phase."""
    h = HOVER
    hip = h + 0.47 * height
    shoulder = h + 0.79 * height
    head_r = 0.09 * height
    swing = 0.40 * math.sin(gait)
    parts = [
        part(_limb((-0.07, 0.02, h), (0.07, 0.16, hip), (0.0, 0.0, hip), swing), class_id, trousers),
        part(_limb((-0.07, -0.16, h), (0.07, -0.02, hip), (0.0, 0.0, hip), -swing), class_id, trousers),
        part(box((-0.12, -0.19, hip), (0.12, 0.19, shoulder)), class_id, shirt),
        part(_limb((-0.05, 0.19, hip - 0.02), (0.05, 0.28, shoulder), (0.0, 0.0, shoulder), -0.8 * swing), class_id,
             shirt),
        part(_limb((-0.05, -0.28, hip - 0.02), (0.05, -0.19, shoulder), (0.0, 0.0, shoulder), 0.8 * swing), class_id,
             shirt),
        part(place(sphere(head_r, 5, 8), Transform(np.eye(3), np.array([0.0, 0.0, h + height - head_r]))), class_id,
             skin),
    ]
    return parts


def cyclist_parts(gait: float, *, height: float, frame_paint: Material, shirt: Material, trousers: Material,
                  skin: Material, tyre: Material) -> list[Part]:
    """A bicycle and its rider (origin on the ground below the bottom bracket, facing +x), all class cyclist."""
    del gait
    h = HOVER
    r, wb = 0.34, 0.52
    wheel = cylinder(r, 0.05, 14)
    parts = []
    for x in (wb, -wb):
        T = Transform(rotation_x(-0.5 * math.pi), np.array([x, -0.025, h + r]))
        parts.append(part(place(wheel, T), L.CYCLIST, tyre))
    parts += [
        part(box((-wb, -0.02, h + r + 0.05), (wb, 0.02, h + r + 0.12)), L.CYCLIST, frame_paint),
        part(box((wb - 0.08, -0.03, h + r), (wb - 0.02, 0.03, h + 1.0)), L.CYCLIST, frame_paint),
        part(box((wb - 0.12, -0.30, h + 1.0), (wb - 0.04, 0.30, h + 1.04)), L.CYCLIST, frame_paint),
        part(box((-0.20, -0.03, h + r), (-0.14, 0.03, h + 0.90)), L.CYCLIST, frame_paint),
    ]
    seat = h + 0.92
    torso_len = 0.33 * height
    lean = 0.6  # radians forward
    torso = box((-0.11, -0.18, 0.0), (0.11, 0.18, torso_len))
    T_torso = Transform(rotation_y(lean), np.array([-0.17, 0.0, seat]))
    parts += [
        part(place(torso, T_torso), L.CYCLIST, shirt),
        part(box((-0.22, 0.06, h + r - 0.05), (-0.08, 0.18, seat)), L.CYCLIST, trousers),
        part(box((-0.22, -0.18, h + r - 0.05), (-0.08, -0.06, seat)), L.CYCLIST, trousers),
    ]
    neck = T_torso.apply(np.array([[0.0, 0.0, torso_len]]))[0]
    for y0, y1 in ((0.16, 0.24), (-0.24, -0.16)):  # arms from the shoulders down to the handlebar
        lo, hi = np.array([neck[0] - 0.04, y0, h + 1.0]), np.array([wb - 0.06, y1, neck[2] - 0.02])
        parts.append(part(box(lo, hi), L.CYCLIST, shirt))
    head_r = 0.09 * height
    parts.append(part(place(sphere(head_r, 5, 8), Transform(np.eye(3), neck + np.array([0.05, 0.0, head_r + 0.02]))),
                      L.CYCLIST, skin))
    return parts


def _person_materials(rng: np.random.Generator) -> dict[str, Material]:
    shirt = _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))])
    trousers = _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))])
    skin = _jitter(rng, SKIN[rng.integers(len(SKIN))], 0.05)
    return {
        "shirt": Material(shirt, reflectivity=float(rng.uniform(0.25, 0.5)), temperature_c=float(rng.uniform(26, 29))),
        "trousers": Material(trousers, reflectivity=float(rng.uniform(0.2, 0.45)),
                             temperature_c=float(rng.uniform(24, 27))),
        "skin": Material(skin, reflectivity=0.35, temperature_c=float(rng.uniform(33, 35))),
    }


def make_pedestrian(instance_id: int, route: Route, rng: np.random.Generator) -> Actor:
    height = float(rng.uniform(1.55, 1.92))
    build = partial(pedestrian_parts, height=height, **_person_materials(rng))
    return Actor(instance_id, L.PEDESTRIAN, route, build, stride=1.5 * height * 0.8)


def make_cyclist(instance_id: int, route: Route, rng: np.random.Generator) -> Actor:
    m = _person_materials(rng)
    frame = Material(_jitter(rng, CAR_PAINTS[rng.integers(len(CAR_PAINTS))]), reflectivity=0.5)
    build = partial(cyclist_parts, height=float(rng.uniform(1.6, 1.9)), frame_paint=frame,
                    tyre=Material(TYRE.albedo, 0.1, temperature_offset_c=4.0), **m)
    return Actor(instance_id, L.CYCLIST, route, build)


def make_car(instance_id: int, route: Route, rng: np.random.Generator, running: bool) -> Actor:
    paint_rgb = _jitter(rng, CAR_PAINTS[rng.integers(len(CAR_PAINTS))], 0.05)
    refl = float(rng.uniform(0.4, 0.7))
    warm = float(rng.uniform(0.0, 20.0))
    paint = Material(paint_rgb, refl, temperature_offset_c=1.0 if not running else 3.0)
    engine = (Material(paint_rgb, refl, temperature_c=float(rng.uniform(45, 65))) if running
              else Material(paint_rgb, refl, temperature_offset_c=warm))
    tyre = Material(TYRE.albedo, 0.1, temperature_c=float(rng.uniform(35, 45))) if running else TYRE
    headlight = Material((0.85, 0.85, 0.85), 0.9, temperature_offset_c=5.0,
                         emission=(5.0, 5.0, 4.6) if running else (0.0, 0.0, 0.0), light_group=1 if running else 0)
    taillight = Material((0.5, 0.03, 0.03), 0.9, temperature_offset_c=3.0,
                         emission=(2.0, 0.05, 0.05) if running else (0.0, 0.0, 0.0), light_group=1 if running else 0)
    build = partial(car_parts, length=float(rng.uniform(3.9, 4.8)), width=float(rng.uniform(1.70, 1.90)),
                    height=float(rng.uniform(1.40, 1.65)), paint=paint, engine=engine, tyre=tyre,
                    headlight=headlight, taillight=taillight)
    return Actor(instance_id, L.CAR, route, build)


# --- static objects ---------------------------------------------------------------------------------------------------


def tree_parts(x: float, y: float, z: float, rng: np.random.Generator) -> list[Part]:
    crown_r = float(rng.uniform(1.3, 2.0))
    trunk_h = 2.4 + 0.5 * crown_r
    trunk_r = float(rng.uniform(0.14, 0.2))
    leaves = Material(_jitter(rng, FOLIAGE.albedo, 0.2), FOLIAGE.reflectivity, FOLIAGE.temperature_offset_c)
    return [
        part(place(cylinder(trunk_r, trunk_h + 0.3, 8), Transform(np.eye(3), np.array([x, y, z]))), L.VEGETATION, BARK),
        part(place(sphere(crown_r, 6, 10), Transform(np.eye(3), np.array([x, y, z + trunk_h + 0.6 * crown_r]))),
             L.VEGETATION, leaves),
    ]


def streetlight_parts(x: float, y: float, z: float, toward: np.ndarray) -> tuple[list[Part], PointLight]:
    """A 7 m pole with a 1.5 m arm reaching ``toward`` (unit xy) and an emissive lamp head under its end."""
    height, reach = 7.0, 1.5
    end = np.array([x, y]) + reach * toward
    lo, hi = np.minimum([x, y], end) - 0.06, np.maximum([x, y], end) + 0.06
    lamp_lo = np.array([end[0] - 0.25, end[1] - 0.25, z + height - 0.15])
    parts = [
        part(place(cylinder(0.09, height, 8), Transform(np.eye(3), np.array([x, y, z]))), L.POLE, METAL),
        part(box((lo[0], lo[1], z + height - 0.1), (hi[0], hi[1], z + height)), L.POLE, METAL),
        part(box(lamp_lo, lamp_lo + np.array([0.5, 0.5, 0.05])), L.POLE, LAMP),
    ]
    light = PointLight((float(end[0]), float(end[1]), z + height - 0.3), (1.0, 0.85, 0.6), 18.0, 1)
    return parts, light


def _building(lo, hi, rng: np.random.Generator) -> Part:
    color = _jitter(rng, FACADES[rng.integers(len(FACADES))])
    mat = Material(color, reflectivity=float(rng.uniform(0.3, 0.45)), temperature_offset_c=float(rng.uniform(0.5, 2)))
    return part(box(lo, hi, bottom=False), L.BUILDING, mat)


def _overlaps(lo, hi, boxes: list[tuple[np.ndarray, np.ndarray]], gap: float = 0.5) -> bool:
    return any(np.all(lo[:2] < b_hi[:2] + gap) and np.all(hi[:2] > b_lo[:2] - gap) for b_lo, b_hi in boxes)


def _straight_positions(loop: RoundedRect, spacing: float, margin: float, phase: float = 0.0) -> list[float]:
    """Arc lengths along the loop's straights, ``spacing`` apart, ``margin`` from each straight's ends."""
    out = []
    for start, length in loop.straights():
        u = margin + phase % spacing
        while u <= length - margin:
            out.append(start + u)
            u += spacing
    return out


# --- the city block ---------------------------------------------------------------------------------------------------

#: Offsets (metres) from the inner edge of the inner sidewalk, the urban world's reference curve.
URBAN_OFFSETS = {
    "inner_sidewalk": (0.0, 3.0),
    "road": (3.0, 13.7),
    "outer_sidewalk": (13.7, 17.2),
    "lane_oncoming": 4.75,
    "lane_ego": 8.25,
    "lane_bike": 10.75,
    "lane_parking": 12.6,
    "centre_line": 6.5,
    "edge_line": 10.0,
    "bike_line": 11.5,
    "sidewalk_robot": 14.95,
    "sidewalk_walkers": 15.95,
}
URBAN_REFERENCE = RoundedRect(27.0, 17.0, 3.0)
URBAN_EGO_SPEED = 7.0  #: m/s
URBAN_ROBOT_SPEED = 1.0  #: m/s, the sidewalk robot's speed (the corridor robot's)
URBAN_PLATFORMS = ("car", "robot")


def build_urban(seed: int, platform: str = "car", people: bool = True, parked_cars: int = 0) -> World:
    """The city block: ring road with lanes, sidewalks, buildings, trees, street lights, parked and moving traffic,
    cyclists and pedestrians. Same seed, same static world (and, with the defaults, the same actors).

    ``platform`` "car" drives the ego lane at :data:`URBAN_EGO_SPEED`; "robot" drives the outer sidewalk
    counter-clockwise at :data:`URBAN_ROBOT_SPEED`, 0.66 m clear of the street-light poles on its left and 1.45 m of
    the tree trunks on its right; the walkers of that sidewalk then keep to one lane between the robot's path and the
    trees (1 m from its centre line, 0.4 m between robot and walker) and walk against it, all at one speed so they
    never meet each other. ``people`` False leaves every pedestrian out (a mapping pass). ``parked_cars`` picks the
    draw of parked cars (and traffic): 0 is the street of ``urban_day``, another number parks other cars in other
    gaps without moving anything static.
    """
    if platform not in URBAN_PLATFORMS:
        raise ConfigError(f"urban platform must be one of {', '.join(URBAN_PLATFORMS)}, got {platform!r}")
    rng = np.random.default_rng([seed, _LAYOUT])
    ref = URBAN_REFERENCE
    off = URBAN_OFFSETS
    parts: list[Part] = []
    lights: list[PointLight] = []

    def curve(d: float) -> np.ndarray:
        return ref.offset(d).boundary(ARC_SAMPLES)

    # Ground: inner terrain, sidewalks (raised, with kerbs), road, outer terrain out to 150 m.
    parts.append(part(fan_triangles(curve(0.0), KERB), L.TERRAIN, GRASS))
    parts.append(part(ring_triangles(curve(0.0), curve(3.0), KERB), L.SIDEWALK, PAVING))
    parts.append(part(wall_triangles(curve(3.0), 0.0, KERB, facing_out=True), L.SIDEWALK, PAVING))
    parts.append(part(ring_triangles(curve(3.0), curve(13.7), 0.0), L.ROAD, ASPHALT))
    parts.append(part(wall_triangles(curve(13.7), 0.0, KERB, facing_out=False), L.SIDEWALK, PAVING))
    parts.append(part(ring_triangles(curve(13.7), curve(17.2), KERB), L.SIDEWALK, PAVING))
    parts.append(part(ring_triangles(curve(17.2), curve(150.0), KERB), L.TERRAIN, GRASS))

    # Buildings outside the ring, set back from the outer sidewalk, and two rows inside the block.
    footprints: list[tuple[np.ndarray, np.ndarray]] = []
    outer = ref.offset(off["outer_sidewalk"][1])
    for axis, extent in ((0, 64.0), (1, 52.0)):
        for side in (1.0, -1.0):
            u = -extent
            while u < extent:
                width, depth = rng.uniform(8.0, 20.0), rng.uniform(9.0, 16.0)
                setback = rng.uniform(2.5, 6.0)
                near = (outer.half_y if axis == 0 else outer.half_x) + setback
                a, b = (u, u + width), tuple(sorted((side * near, side * (near + depth))))
                lo = np.array([a[0], b[0], KERB]) if axis == 0 else np.array([b[0], a[0], KERB])
                hi = np.array([a[1], b[1], KERB + rng.uniform(7.0, 28.0)]) if axis == 0 else \
                    np.array([b[1], a[1], KERB + rng.uniform(7.0, 28.0)])
                corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]])
                if np.all(outer.signed_distance(corners) > 1.5) and not _overlaps(lo, hi, footprints):
                    footprints.append((lo, hi))
                    parts.append(_building(lo, hi, rng))
                u += width + rng.uniform(1.0, 7.0)
    inner_limit = ref.offset(-1.5)
    for side in (1.0, -1.0):
        u = -20.0
        while u < 18.0:
            width, depth = rng.uniform(7.0, 14.0), rng.uniform(8.0, 10.5)
            y0 = side * (inner_limit.half_y)
            ys = sorted((y0, y0 - side * depth))
            lo = np.array([u, ys[0], KERB])
            hi = np.array([min(u + width, 20.0), ys[1], KERB + rng.uniform(8.0, 24.0)])
            footprints.append((lo, hi))
            parts.append(_building(lo, hi, rng))
            u += width + rng.uniform(1.5, 5.0)

    # Park ends of the block: low walls and trees.
    wall_mat = Material(_jitter(rng, CONCRETE.albedo), CONCRETE.reflectivity, CONCRETE.temperature_offset_c)
    for sx in (1.0, -1.0):
        for y0, y1 in ((-9.0, -1.5), (1.5, 9.0)):
            x0 = sx * 24.5
            parts.append(part(box((min(x0, x0 + sx * 0.25), y0, KERB), (max(x0, x0 + sx * 0.25), y1, KERB + 1.0)),
                              L.WALL, wall_mat))
        for _ in range(4):
            parts += tree_parts(sx * rng.uniform(22.5, 23.5), rng.uniform(-7.0, 7.0), KERB, rng)

    # Street lights by the kerbs, arms over the road; trees along both sidewalks between them.
    for d, toward_sign, phase in ((2.55, 1.0, 0.0), (14.2, -1.0, 12.0)):
        loop = ref.offset(d)
        for s in _straight_positions(loop, 24.0, 3.0, phase):
            x, y, yaw = loop.pose_at(s)
            outward = np.array([math.sin(yaw), -math.cos(yaw)])
            pole_parts, light = streetlight_parts(x, y, KERB, toward_sign * outward)
            parts += pole_parts
            lights.append(light)
    tree_s: dict[float, list[float]] = {}
    for d, phase in ((0.7, 6.0), (16.6, 18.0)):
        loop = ref.offset(d)
        tree_s[d] = _straight_positions(loop, 12.0, 4.0, phase)
        for s in tree_s[d]:
            x, y, _ = loop.pose_at(s)
            parts += tree_parts(x, y, KERB, rng)

    actors: list[Actor] = []
    next_id = iter(range(1, 65536))
    lane = ref.offset(off["lane_ego"])
    ego_s0 = float(np.random.default_rng([seed, _ROUTE]).uniform(0.0, lane.length))
    if platform == "car":
        ego_route = Route(lane, ego_s0, URBAN_EGO_SPEED)
    else:
        sidewalk = ref.offset(off["sidewalk_robot"])
        robot_s0 = float(np.random.default_rng([seed, _ROUTE, 1]).uniform(0.0, sidewalk.length))
        ego_route = Route(sidewalk, robot_s0, URBAN_ROBOT_SPEED, z=KERB)

    vrng = np.random.default_rng([seed, _VEHICLES] if parked_cars == 0 else [seed, _VEHICLES, parked_cars])
    parking = ref.offset(off["lane_parking"])
    for start, length in parking.straights():
        u = 3.0 + vrng.uniform(0.0, 4.0)
        while u < length - 3.0:
            if vrng.random() < 0.75:
                actors.append(make_car(next(next_id), Route(parking, start + u), vrng, running=False))
            u += vrng.uniform(6.0, 10.0)
    actors.append(make_car(next(next_id), Route(lane, ego_s0 + 18.0, URBAN_EGO_SPEED), vrng, running=True))
    oncoming = ref.offset(off["lane_oncoming"])
    for k in range(4):
        s = (k + vrng.uniform(0.0, 0.5)) * oncoming.length / 4
        actors.append(make_car(next(next_id), Route(oncoming, s, 8.0, clockwise=True), vrng, running=True))
    bike = ref.offset(off["lane_bike"])
    for k in range(5):
        s = ego_s0 + 12.0 + (k + vrng.uniform(0.0, 0.4)) * bike.length / 5
        actors.append(make_cyclist(next(next_id), Route(bike, s, 4.0), vrng))

    if not people:
        return World("urban", seed, True, parts, actors, lights, ego_route, ref)
    prng = np.random.default_rng([seed, _PEOPLE])
    walker_lanes = ((1.9, 12, 1.3, True), (15.0, 12, 1.25, False), (15.9, 10, 1.4, True))
    if platform == "robot":  # the robot's sidewalk: one lane beside its path, against its direction
        walker_lanes = ((1.9, 12, 1.3, True), (off["sidewalk_walkers"], 16, 1.3, True))
    for d, count, speed, clockwise in walker_lanes:
        loop = ref.offset(d)
        for k in range(count):
            s = (k + prng.uniform(0.0, 0.6)) * loop.length / count
            actors.append(make_pedestrian(next(next_id), Route(loop, s, speed, clockwise, z=KERB), prng))
    for d in (0.7, 16.6):
        loop = ref.offset(d)
        for s in tree_s[d]:
            if prng.random() < 0.3:
                actors.append(make_pedestrian(next(next_id), Route(loop, s + 6.0, z=KERB,
                                                                   yaw_offset=prng.uniform(-3.0, 3.0)), prng))
    return World("urban", seed, True, parts, actors, lights, ego_route, ref)


# --- the indoor corridor ----------------------------------------------------------------------------------------------

INDOOR_REFERENCE = RoundedRect(12.0, 6.0, 0.3)  #: the inner wall's face
CORRIDOR_WIDTH = 3.0
CORRIDOR_HEIGHT = 2.7
INDOOR_OFFSETS = {"robot": 1.9, "walkers": 0.9, "standing": 2.6, "plants": 0.3, "lights": 1.5}
INDOOR_ROBOT_SPEED = 1.0  #: m/s


def build_indoor(seed: int, people: bool) -> World:
    """A rectangular corridor loop around a block of rooms: floor, ceiling with light panels (two switchable
    groups), walls with doors, potted plants; ``people`` adds walking and standing people (the second pass)."""
    rng = np.random.default_rng([seed, _LAYOUT])
    ref = INDOOR_REFERENCE
    inner, outer = ref.boundary(ARC_SAMPLES), ref.offset(CORRIDOR_WIDTH).boundary(ARC_SAMPLES)
    parts: list[Part] = []
    lights: list[PointLight] = []
    parts.append(part(ring_triangles(inner, outer, 0.0), L.FLOOR, FLOOR_VINYL))
    v, t = ring_triangles(inner, outer, CORRIDOR_HEIGHT)
    parts.append(part((v, t[:, [0, 2, 1]]), L.CEILING, CEILING_TILE))
    parts.append(part(wall_triangles(inner, 0.0, CORRIDOR_HEIGHT, facing_out=True), L.WALL, WALL_PAINT))
    parts.append(part(wall_triangles(outer, 0.0, CORRIDOR_HEIGHT, facing_out=False), L.WALL, WALL_PAINT))

    door_spots: list[tuple[float, float]] = []
    for d, sign in ((0.0, -1.0), (CORRIDOR_WIDTH, 1.0)):
        loop = ref.offset(d)
        for start, length in loop.straights():
            u = rng.uniform(1.5, 3.0)
            while u < length - 1.5:
                x, y, yaw = loop.pose_at(start + u)
                y0, y1 = sorted((0.0, sign * 0.04))
                color = _jitter(rng, ((0.42, 0.27, 0.13), (0.55, 0.55, 0.52), (0.20, 0.30, 0.45))[rng.integers(3)])
                mat = Material(color, reflectivity=0.35, temperature_offset_c=-0.2)
                T = Transform(rotation_z(yaw), np.array([x, y, 0.0]))
                parts.append(part(place(box((-0.45, y0, 0.0), (0.45, y1, 2.1), bottom=False), T), L.DOOR, mat))
                door_spots.append((d, start + u))
                u += rng.uniform(5.0, 8.0)

    light_loop = ref.offset(INDOOR_OFFSETS["lights"])
    n_lights = int(light_loop.length // 3.0)
    for k in range(n_lights):
        x, y, yaw = light_loop.pose_at(k * light_loop.length / n_lights)
        group = 1 + k % 2
        lamp = Material((0.95, 0.95, 0.95), 0.7, temperature_c=32.0, emission=(6.0, 6.0, 5.8), light_group=group)
        T = Transform(rotation_z(yaw), np.array([x, y, CORRIDOR_HEIGHT]))
        parts.append(part(place(box((-0.5, -0.15, -0.03), (0.5, 0.15, 0.0)), T), L.CEILING, lamp))
        lights.append(PointLight((x, y, CORRIDOR_HEIGHT - 0.2), (1.0, 1.0, 0.97), 2.2, group))

    plant_loop = ref.offset(INDOOR_OFFSETS["plants"])
    for start, length in plant_loop.straights():
        if length < 8.0:
            continue
        for u in (0.3 * length, 0.7 * length):
            x, y, _ = plant_loop.pose_at(start + u)
            pot = Material(_jitter(rng, (0.45, 0.25, 0.15)), 0.35, temperature_offset_c=-0.5)
            leaves = Material(_jitter(rng, FOLIAGE.albedo, 0.2), FOLIAGE.reflectivity, -1.0)
            parts.append(part(place(cylinder(0.18, 0.45, 10), Transform(np.eye(3), np.array([x, y, 0.0]))),
                              L.VEGETATION, pot))
            parts.append(part(place(sphere(0.25, 5, 8), Transform(np.eye(3), np.array([x, y, 0.75]))),
                              L.VEGETATION, leaves))

    ego_route = Route(ref.offset(INDOOR_OFFSETS["robot"]), 0.0, INDOOR_ROBOT_SPEED)
    actors: list[Actor] = []
    if people:
        prng = np.random.default_rng([seed, _PEOPLE])
        walk = ref.offset(INDOOR_OFFSETS["walkers"])
        for k in range(5):
            s = (k + prng.uniform(0.0, 0.5)) * walk.length / 5 + 4.0
            actors.append(make_pedestrian(k + 1, Route(walk, s, 1.2, clockwise=True), prng))
        stand = ref.offset(INDOOR_OFFSETS["standing"])
        for k, (start, length) in enumerate(stand.straights()):
            if prng.random() < 0.75:
                s = start + prng.uniform(0.3, 0.7) * length
                actors.append(make_pedestrian(10 + k, Route(stand, s, yaw_offset=0.5 * math.pi
                                                            + prng.uniform(-0.5, 0.5)), prng))
    return World("indoor", seed, False, parts, actors, lights, ego_route, ref)
