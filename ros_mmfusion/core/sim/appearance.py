"""What a ray hit looks like to each sensor: procedural textures, lighting, fog, temperatures.

All functions work on flat arrays of N ray hits (world-frame points and normals, the hit triangle's class and
material) and are vectorised; one frame's camera needs a single pass. Textures depend only on world position and the
world's seed, so a surface looks the same from every viewpoint, in every frame and to every sensor: a lane marking is
bright to the camera and highly reflective to the LiDAR at the same place.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core import labels as L
from ros_mmfusion.core.sim.scenarios import Conditions
from ros_mmfusion.core.sim.world import URBAN_OFFSETS, PointLight, World

KELVIN = 273.15
MARKING_ALBEDO = np.array([0.75, 0.75, 0.72], np.float32)
MARKING_REFLECTIVITY = 0.85
GLASS_ALBEDO = np.array([0.04, 0.05, 0.07], np.float32)
WINDOW_GLOW = np.array([1.0, 0.72, 0.38], np.float32)


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic float32 in [0, 1) per integer lattice point (integer mixing, no global state)."""
    h = (ix.astype(np.int64).astype(np.uint32) * np.uint32(374761393)
         + iy.astype(np.int64).astype(np.uint32) * np.uint32(668265263)
         + np.uint32((seed * 2654435761) & 0xFFFFFFFF))
    h = (h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
    h = h ^ (h >> np.uint32(16))
    return (h & np.uint32(0xFFFFFF)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def value_noise(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 2D value noise in [0, 1), lattice spacing 1."""
    fu, fv = np.floor(u), np.floor(v)
    tu, tv = (u - fu).astype(np.float32), (v - fv).astype(np.float32)
    tu, tv = tu * tu * (3 - 2 * tu), tv * tv * (3 - 2 * tv)
    iu, iv = fu.astype(np.int64), fv.astype(np.int64)
    a, b = _hash(iu, iv, seed), _hash(iu + 1, iv, seed)
    c, d = _hash(iu, iv + 1, seed), _hash(iu + 1, iv + 1, seed)
    return (a + (b - a) * tu) + ((c + (d - c) * tu) - (a + (b - a) * tu)) * tv


def surface_uv(points: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texture coordinates (metres): x, y on floors and roofs; along-wall and height on walls."""
    horizontal = np.abs(normals[:, 2]) > 0.5
    nxy = np.hypot(normals[:, 0], normals[:, 1]) + 1e-9
    along = (-normals[:, 1] * points[:, 0] + normals[:, 0] * points[:, 1]) / nxy
    return np.where(horizontal, points[:, 0], along), np.where(horizontal, points[:, 1], points[:, 2])


@dataclass(frozen=True, eq=False)
class Surface:
    """Per-hit properties: ``albedo`` (N, 3), LiDAR ``reflectivity`` (N,), ``emission`` (N, 3), ``temperature`` (N,)."""

    albedo: np.ndarray
    reflectivity: np.ndarray
    emission: np.ndarray
    temperature: np.ndarray


def surface(world: World, cond: Conditions, tri_class: np.ndarray, tri_material: np.ndarray, points: np.ndarray,
            normals: np.ndarray, want_color: bool = True) -> Surface:
    """Material lookup plus procedural textures for N hits (``tri_*`` already indexed per hit)."""
    table = world.material_table()
    albedo = table["albedo"][tri_material].copy()
    refl = table["reflectivity"][tri_material].copy()
    fixed = table["temperature"][tri_material]
    temp = np.where(np.isfinite(fixed), fixed, cond.air_temp_c + table["temperature_offset"][tri_material])
    on = np.isin(table["light_group"], list(cond.lights_on)) & (table["light_group"] > 0)
    emission = (table["emission"] * on[:, None] * np.asarray(cond.light_tint, np.float32) * cond.light_gain)
    emission = emission[tri_material]
    seed = world.seed
    u, v = surface_uv(points, normals)

    def where(cls: int) -> np.ndarray:
        return np.flatnonzero(tri_class == cls)

    idx = where(L.ROAD)
    if len(idx):
        if want_color:
            grain = 0.75 + 0.35 * value_noise(u[idx] * 1.7, v[idx] * 1.7, seed) + 0.2 * _hash(
                np.floor(u[idx] * 40), np.floor(v[idx] * 40), seed + 1)
            albedo[idx] *= grain[:, None]
        if world.name == "urban":
            xy = points[idx, :2]
            d = world.reference.signed_distance(xy)
            along, straight = world.reference.along_straight(xy)
            centre = (np.abs(d - URBAN_OFFSETS["centre_line"]) < 0.075) & ((~straight) | (np.mod(along, 6.0) < 3.0))
            edges = (np.abs(d - URBAN_OFFSETS["edge_line"]) < 0.075) | (np.abs(d - URBAN_OFFSETS["bike_line"]) < 0.05)
            paint = centre | edges
            albedo[idx[paint]] = MARKING_ALBEDO
            refl[idx[paint]] = MARKING_REFLECTIVITY
    if want_color:
        idx = where(L.SIDEWALK)
        if len(idx):
            tile_u, tile_v = np.floor(u[idx] / 0.6), np.floor(v[idx] / 0.6)
            joint = (np.mod(u[idx], 0.6) < 0.02) | (np.mod(v[idx], 0.6) < 0.02)
            albedo[idx] *= (0.85 + 0.25 * _hash(tile_u, tile_v, seed + 2) - 0.35 * joint)[:, None]
        for cls, scale, amount in ((L.TERRAIN, 0.4, 0.9), (L.VEGETATION, 2.5, 0.8)):
            idx = where(cls)
            if len(idx):
                n = value_noise(u[idx] * scale, v[idx] * scale, seed + 3) + 0.5 * value_noise(
                    u[idx] * scale * 4, v[idx] * scale * 4, seed + 4)
                albedo[idx] *= (1.0 - 0.5 * amount + amount * n / 1.5)[:, None]
        for cls, tile in ((L.FLOOR, 0.5), (L.CEILING, 0.6)):
            idx = where(cls)
            if len(idx):
                joint = (np.mod(u[idx], tile) < 0.012) | (np.mod(v[idx], tile) < 0.012)
                albedo[idx] *= (0.92 + 0.1 * _hash(np.floor(u[idx] / tile), np.floor(v[idx] / tile), seed + 5)
                                - 0.25 * joint)[:, None]
        idx = where(L.WALL)
        if len(idx):
            skirting = points[idx, 2] < (0.10 if not world.outdoor else -1.0)
            albedo[idx] *= (0.9 + 0.15 * value_noise(u[idx] * 3, v[idx] * 3, seed + 6) - 0.55 * skirting)[:, None]
    idx = where(L.BUILDING)
    if len(idx):
        vertical = np.abs(normals[idx, 2]) < 0.3
        cu, cv = np.floor(u[idx] / 2.6), np.floor((v[idx] - 0.3) / 3.2)
        fu, fv = np.mod(u[idx], 2.6), np.mod(v[idx] - 0.3, 3.2)
        window = vertical & (cv >= 1) & (fu > 0.6) & (fu < 2.0) & (fv > 0.9) & (fv < 2.5)
        wi = idx[window]
        albedo[wi] = GLASS_ALBEDO
        refl[wi] = 0.05
        if cond.window_lights > 0:
            lit = _hash(cu[window] * 7 + np.floor(points[wi, 0] * 0.01), cv[window], seed + 7) < 0.4
            emission[wi[lit]] = WINDOW_GLOW * cond.window_lights
            temp[wi[lit]] += 2.0
        if want_color:
            albedo[idx[~window]] *= (0.9 + 0.15 * value_noise(u[idx[~window]] * 2, v[idx[~window]] * 2, seed + 8)
                                     )[:, None]
    return Surface(albedo, refl, emission, temp.astype(np.float32))


def active_lights(world: World, cond: Conditions, near: np.ndarray, radius: float) -> list[PointLight]:
    """Lamps switched on within ``radius`` metres of ``near`` (world xyz)."""
    return [
        light for light in world.lights
        if light.light_group in cond.lights_on and np.linalg.norm(np.asarray(light.position) - near) < radius
    ]


def irradiance(cond: Conditions, points: np.ndarray, normals: np.ndarray, lights: list[PointLight],
               sunlit: np.ndarray | None, headlight: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """(N, 3) light falling on each hit: sky ambient, sun (where ``sunlit``), lamps, the ego's headlights."""
    n = len(points)
    amb = np.asarray(cond.ambient_rgb, np.float32)
    e = (0.7 + 0.3 * normals[:, 2:3]).astype(np.float32) * amb
    if cond.sun_direction is not None and sunlit is not None:
        sun = np.asarray(cond.sun_direction, np.float32)
        lam = np.clip(normals @ sun, 0.0, None) * sunlit
        e = e + lam[:, None] * np.asarray(cond.sun_rgb, np.float32)
    tint = np.asarray(cond.light_tint, np.float32) * cond.light_gain
    px, py, pz = (np.ascontiguousarray(points[:, k]) for k in range(3))
    nx, ny, nz = (np.ascontiguousarray(normals[:, k]) for k in range(3))
    by_color: dict[tuple[float, float, float], np.ndarray] = {}
    for light in lights:  # one scalar irradiance per lamp colour: 1D passes only
        vx, vy, vz = light.position[0] - px, light.position[1] - py, light.position[2] - pz
        d2 = vx * vx + vy * vy + vz * vz
        ndotl = nx * vx + ny * vy + nz * vz
        np.maximum(ndotl, 0.0, out=ndotl)
        ndotl *= light.intensity
        ndotl /= np.sqrt(d2 + 1e-6) * (d2 + 0.5)
        acc = by_color.get(light.color)
        by_color[light.color] = ndotl if acc is None else acc + ndotl
    for color, scalar in by_color.items():
        e = e + scalar[:, None] * (np.asarray(color, np.float32) * tint)
    if headlight is not None and cond.headlights > 0:
        origin, forward = headlight
        vec = points - origin
        d2 = np.einsum("ij,ij->i", vec, vec) + 1e-6
        d = np.sqrt(d2)
        cos_axis = (vec @ forward) / d
        cone = np.clip((cos_axis - 0.88) / 0.08, 0.0, 1.0)
        ndotl = np.clip(-np.einsum("ij,ij->i", normals, vec), 0.0, None) / d
        e = e + (cond.headlights * cone * ndotl / (d2 + 1.0))[:, None] * np.array([1.0, 0.97, 0.9], np.float32)
    return e.astype(np.float32).reshape(n, 3)


def sky_radiance(cond: Conditions, directions: np.ndarray) -> np.ndarray:
    """(N, 3) radiance of the sky seen along unit world directions."""
    up = np.clip(directions[:, 2], 0.0, 1.0)[:, None] ** 0.5
    sky = np.asarray(cond.sky_horizon, np.float32) * (1 - up) + np.asarray(cond.sky_zenith, np.float32) * up
    if cond.sun_direction is not None:
        glow = np.clip(directions @ np.asarray(cond.sun_direction, np.float32), 0.0, 1.0) ** 64
        sky = sky + glow[:, None] * np.asarray(cond.sun_rgb, np.float32) * 0.5
    return sky.astype(np.float32)


def apply_fog(radiance: np.ndarray, distance: np.ndarray, cond: Conditions) -> np.ndarray:
    """Beer-Lambert extinction plus airlight along ``distance`` metres (inf for the sky)."""
    if cond.fog_density <= 0:
        return radiance
    tau = np.exp(-cond.fog_density * np.minimum(distance, 1e4)).astype(np.float32)[:, None]
    return radiance * tau + np.asarray(cond.fog_rgb, np.float32) * (1 - tau)


def thermal_temperature(surf: Surface, cond: Conditions, albedo: np.ndarray, normals: np.ndarray,
                        sunlit: np.ndarray | None) -> np.ndarray:
    """(N,) apparent surface temperature (deg C) before the atmosphere: own temperature plus solar heating."""
    temp = surf.temperature.copy()
    if cond.sun_direction is not None and sunlit is not None and cond.solar_heating_c > 0:
        lam = np.clip(normals @ np.asarray(cond.sun_direction, np.float32), 0.0, None) * sunlit
        temp += cond.solar_heating_c * (1.0 - albedo.mean(axis=1)) * lam
    return temp


_GAMMA_STEPS = 65535
_GAMMA_LUT = (np.linspace(0.0, 1.0, _GAMMA_STEPS + 1) ** (1.0 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] signal to 8-bit sRGB (gamma 2.2 approximation, through a 16-bit lookup table)."""
    index = np.clip(linear * np.float32(_GAMMA_STEPS) + np.float32(0.5), 0, _GAMMA_STEPS).astype(np.uint16)
    return _GAMMA_LUT[index]
