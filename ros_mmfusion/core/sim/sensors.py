"""The sensor rig and its rendering: RGB, depth and thermal cameras and a spinning LiDAR, all ray cast against the
same triangles (``open3d.t.geometry.RaycastingScene``), so they agree exactly.

The three cameras are registered to each other: one pose and one set of intrinsics (an RGB-D-T rig whose depth and
thermal images are delivered aligned to the colour camera, as the public RGB-T datasets are), each in its own frame
name. One ray per pixel serves all three images and the ground truth; the LiDAR casts one ray per beam and column.
Camera ray directions have unit optical-axis length, so the hit distance *is* the depth (optical z, metres).

Noise (camera shot/read noise, depth noise and holes, thermal NETD and fixed-pattern noise, LiDAR range noise,
dropouts and fog clutter) is drawn from generators seeded by (world seed, frame index, stream): the same seed and frame
always give the same bytes, whatever order frames are rendered in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import ros_mmfusion.core.sim.appearance as A
from ros_mmfusion.core import labels as L
from ros_mmfusion.core.calibration import CameraCalibration, LidarCalibration
from ros_mmfusion.core.geometry import R_OPTICAL_FROM_BODY, PinholeCamera, Transform
from ros_mmfusion.core.sim.scenarios import Conditions
from ros_mmfusion.core.sim.world import Snapshot, World, open3d_module

_CAMERA_NOISE, _DEPTH_NOISE, _THERMAL_NOISE, _LIDAR_NOISE, _THERMAL_PATTERN = 10, 11, 12, 13, 14
LIDAR_RANGE_NOISE = 0.005  #: LiDAR range noise sigma, metres; clipped at 2 sigma
DEPTH_NOISE = 0.002  #: depth camera noise sigma as a fraction of depth
THERMAL_NETD = 0.05  #: thermal temporal noise, kelvin
DEPTH_MIN_RANGE = 0.2  #: metres


@dataclass(frozen=True, eq=False)
class Rig:
    """The platform's sensors (poses relative to ``base_link``)."""

    platform: str
    color: CameraCalibration
    depth: CameraCalibration
    thermal: CameraCalibration
    lidar: LidarCalibration

    @property
    def cameras(self) -> tuple[CameraCalibration, CameraCalibration, CameraCalibration]:
        return self.color, self.depth, self.thermal


#: Mounting per platform: camera optical centre xyz and body-frame (roll, pitch, yaw); LiDAR xyz; beam elevations
#: (degrees, lowest to highest); ranges (metres).
PLATFORMS = {
    "car": {"camera_xyz": (1.60, 0.0, 1.45), "camera_rpy": (0.0, 0.05, 0.0), "lidar_xyz": (1.00, 0.0, 1.90),
            "elevation_deg": (-25.0, 15.0), "range": (0.5, 100.0), "hfov_deg": 80.0},
    "robot": {"camera_xyz": (0.20, 0.0, 0.45), "camera_rpy": (0.0, 0.0, 0.0), "lidar_xyz": (0.00, 0.0, 0.60),
              "elevation_deg": (-15.0, 15.0), "range": (0.2, 40.0), "hfov_deg": 80.0},
}
LIDAR_COLUMNS = 1024


def make_rig(platform: str, width: int, height: int, beams: int = 32) -> Rig:
    """The ``platform`` ("car" or "robot") rig with ``width`` x ``height`` cameras and a ``beams``-beam LiDAR."""
    spec = PLATFORMS[platform]
    camera = PinholeCamera.from_fov(width, height, math.radians(spec["hfov_deg"]))
    T_base_cambody = Transform.from_xyz_rpy(spec["camera_xyz"], spec["camera_rpy"])
    T_base_optical = T_base_cambody @ Transform(R_OPTICAL_FROM_BODY.T, np.zeros(3))
    cams = [
        CameraCalibration(name, frame, camera, T_base_optical)
        for name, frame in (("color", "camera_color_optical_frame"), ("depth", "camera_depth_optical_frame"),
                            ("thermal", "thermal_optical_frame"))
    ]
    lo, hi = spec["elevation_deg"]
    lidar = LidarCalibration("lidar_link", Transform.from_xyz_rpy(spec["lidar_xyz"], (0.0, 0.0, 0.0)),
                        np.radians(np.linspace(lo, hi, beams)), LIDAR_COLUMNS, *spec["range"])
    return Rig(platform, *cams, lidar)


@dataclass(frozen=True, eq=False)
class CameraImages:
    """One frame of the registered cameras (all ``(H, W)`` in the colour camera's pixels).

    ``rgb`` uint8; ``depth`` float32 metres (optical z), NaN where invalid; ``thermal`` uint16 centikelvin
    (kelvin x 100); ``semantic`` uint8 class ids; ``instance`` uint16 instance ids (0 for stuff);
    ``depth_true`` float32 noiseless optical z of the surface hit (inf where the ray hit nothing), for tests.
    """

    rgb: np.ndarray
    depth: np.ndarray
    thermal: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    depth_true: np.ndarray


@dataclass(frozen=True, eq=False)
class LidarScan:
    """One revolution, motion-compensated to the frame's instant, in the LiDAR frame.

    ``points`` structured (N,): x, y, z, intensity (0..255) float32, ring uint16; ``labels`` (N,) uint8 class and
    ``instances`` (N,) uint16 instance of the surface each return came from (class 0 for fog clutter).
    """

    points: np.ndarray
    labels: np.ndarray
    instances: np.ndarray


POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<u2")])


def _rng(seed: int, frame: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, frame, stream])


class SensorModel:
    """Renders the rig's sensors against a world snapshot."""

    def __init__(self, world: World, conditions: Conditions, rig: Rig) -> None:
        self.world, self.cond, self.rig = world, conditions, rig
        cam = rig.color.camera
        self._pixel_rays = cam.pixel_rays().reshape(-1, 3).astype(np.float32)
        norm = np.linalg.norm(self._pixel_rays, axis=1)
        self._ray_norm = norm.astype(np.float32)
        self._vignette = (1.0 / norm) ** 2.5
        pattern = _rng(world.seed, 0, _THERMAL_PATTERN)
        self._thermal_columns = (0.04 * pattern.standard_normal(cam.width)).astype(np.float32)

    @staticmethod
    def _cast(scene, origin: np.ndarray, dirs: np.ndarray) -> dict[str, np.ndarray]:
        o3d = open3d_module()
        rays = np.empty((len(dirs), 6), np.float32)
        rays[:, :3] = origin
        rays[:, 3:] = dirs
        res = scene.cast_rays(o3d.core.Tensor(rays))
        return {"t": res["t_hit"].numpy(), "prim": res["primitive_ids"].numpy(), "n": res["primitive_normals"].numpy()}

    def _sunlit(self, scene, points: np.ndarray, normals: np.ndarray) -> np.ndarray | None:
        if self.cond.sun_direction is None:
            return None
        o3d = open3d_module()
        sun = np.asarray(self.cond.sun_direction, np.float32)
        rays = np.empty((len(points), 6), np.float32)
        rays[:, :3] = points + 0.02 * normals
        rays[:, 3:] = sun
        occluded = scene.test_occlusions(o3d.core.Tensor(rays)).numpy()
        return (~occluded).astype(np.float32)

    def render_cameras(self, snap: Snapshot, scene, T_world_base: Transform, frame: int) -> CameraImages:
        cond, world = self.cond, self.world
        cam = self.rig.color.camera
        H, W = cam.height, cam.width
        T_world_cam = T_world_base @ self.rig.color.T_base_sensor
        dirs = self._pixel_rays @ T_world_cam.rotation.T.astype(np.float32)
        origin = T_world_cam.translation.astype(np.float32)
        hit_res = self._cast(scene, origin, dirs)
        t = hit_res["t"]
        hit = np.isfinite(t)
        idx = np.flatnonzero(hit)
        prim = hit_res["prim"][idx]
        normals = hit_res["n"][idx]
        d_hit = dirs[idx]
        flip = np.einsum("ij,ij->i", normals, d_hit) > 0
        normals[flip] *= -1.0
        points = origin + d_hit * t[idx, None]
        tri_class = snap.tri_class[prim]
        surf = A.surface(world, cond, tri_class, snap.tri_material[prim], points, normals)
        sunlit = self._sunlit(scene, points, normals)

        semantic = np.full(H * W, L.SKY if world.outdoor else L.UNLABELED, np.uint8)
        semantic[idx] = tri_class
        instance = np.zeros(H * W, np.uint16)
        instance[idx] = snap.tri_instance[prim]
        distance = np.full(H * W, np.inf, np.float32)
        distance[idx] = t[idx] * self._ray_norm[idx]

        # RGB: light, fog, exposure, vignetting, noise, gamma.
        lights = A.active_lights(world, cond, origin, 45.0 if world.outdoor else 14.0)
        headlight = None
        if cond.headlights > 0:
            fwd = T_world_base.rotation @ np.array([math.cos(0.06), 0.0, -math.sin(0.06)])
            headlight = (T_world_base.apply(np.array([[2.2, 0.0, 0.7]]))[0].astype(np.float32), fwd.astype(np.float32))
        radiance = np.empty((H * W, 3), np.float32)
        miss = np.flatnonzero(~hit)
        radiance[miss] = A.sky_radiance(cond, dirs[miss] / self._ray_norm[miss, None])
        e = A.irradiance(cond, points, normals, lights, sunlit, headlight)
        radiance[idx] = surf.albedo * e + surf.emission
        radiance = A.apply_fog(radiance, distance, cond)
        signal = radiance * (cond.exposure * self._vignette)[:, None]
        rng = _rng(world.seed, frame, _CAMERA_NOISE)
        noise = rng.standard_normal(signal.shape, dtype=np.float32)
        signal += noise * np.sqrt(cond.shot_noise * np.clip(signal, 0.0, None) + cond.read_noise ** 2)
        rgb = A.to_srgb8(signal).reshape(H, W, 3)

        # Depth: optical z, registered to colour; NaN outside the working range and in holes.
        depth_true = np.where(hit, t, np.inf).astype(np.float32)
        drng = _rng(world.seed, frame, _DEPTH_NOISE)
        depth = depth_true * (1.0 + DEPTH_NOISE * drng.standard_normal(H * W, dtype=np.float32))
        invalid = ~hit | (depth_true < DEPTH_MIN_RANGE) | (depth_true > cond.depth_max_range)
        invalid |= drng.random(H * W, dtype=np.float32) < cond.depth_dropout
        depth = np.where(invalid, np.float32(np.nan), depth).astype(np.float32)

        # Thermal: surface temperature, sky, atmosphere, optics blur, noise.
        temp = np.full(H * W, cond.sky_temp_c if world.outdoor else cond.air_temp_c, np.float32)
        temp[idx] = A.thermal_temperature(surf, cond, surf.albedo, normals, sunlit)
        if cond.fog_density > 0:
            tau = np.exp(-cond.fog_density * cond.thermal_fog_ratio * np.minimum(distance, 1e4)).astype(np.float32)
            temp = temp * tau + cond.air_temp_c * (1 - tau)
        temp_img = temp.reshape(H, W)
        import cv2

        sigma = 0.5 + 0.7 * W / 640.0
        temp_img = cv2.GaussianBlur(temp_img, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        trng = _rng(world.seed, frame, _THERMAL_NOISE)
        temp_img = temp_img + THERMAL_NETD * trng.standard_normal((H, W), dtype=np.float32) + self._thermal_columns
        thermal = np.clip(np.rint((temp_img + A.KELVIN) * 100.0), 0, 65535).astype(np.uint16)

        return CameraImages(rgb=rgb, depth=depth.reshape(H, W), thermal=thermal, semantic=semantic.reshape(H, W),
                            instance=instance.reshape(H, W), depth_true=depth_true.reshape(H, W))

    def render_lidar(self, snap: Snapshot, scene, T_world_base: Transform, frame: int) -> LidarScan:
        cond, world, lidar = self.cond, self.world, self.rig.lidar
        dirs_l, rings = lidar.directions
        T_world_lidar = T_world_base @ lidar.T_base_sensor
        dirs = dirs_l @ T_world_lidar.rotation.T.astype(np.float32)
        origin = T_world_lidar.translation.astype(np.float32)
        res = self._cast(scene, origin, dirs)
        r = res["t"]
        n_rays = len(r)
        rng = _rng(world.seed, frame, _LIDAR_NOISE)
        hit = np.isfinite(r) & (r >= lidar.min_range) & (r <= lidar.max_range)
        idx = np.flatnonzero(hit)
        prim = res["prim"][idx]
        normals = res["n"][idx]
        points = origin + dirs[idx] * r[idx, None]
        tri_class = snap.tri_class[prim]
        surf = A.surface(world, cond, tri_class, snap.tri_material[prim], points, normals, want_color=False)
        cos_inc = np.abs(np.einsum("ij,ij->i", normals, dirs[idx]))
        tau2 = np.exp(-2.0 * cond.fog_density * cond.lidar_fog_ratio * r[idx]).astype(np.float32)
        received = surf.reflectivity * np.maximum(cos_inc, 0.05) * tau2 * np.minimum(1.0, (20.0 / r[idx]) ** 2)
        keep = received > 0.003

        rng_drop = rng.random(n_rays, dtype=np.float32)
        rng_clutter = rng.random(n_rays, dtype=np.float32)
        clutter_range = rng.uniform(1.0, 6.0, n_rays).astype(np.float32)
        range_noise = np.clip(rng.standard_normal(n_rays, dtype=np.float32), -2.0, 2.0) * LIDAR_RANGE_NOISE
        intensity_noise = rng.standard_normal(n_rays, dtype=np.float32) * 0.5

        valid = np.zeros(n_rays, bool)
        valid[idx[keep]] = True
        valid &= rng_drop >= cond.lidar_dropout
        rng_out = np.where(valid, r, np.inf).astype(np.float32)
        label = np.zeros(n_rays, np.uint8)
        inst = np.zeros(n_rays, np.uint16)
        intensity = np.zeros(n_rays, np.float32)
        label[idx] = tri_class
        inst[idx] = snap.tri_instance[prim]
        intensity[idx] = 255.0 * surf.reflectivity * (0.25 + 0.75 * cos_inc) * tau2
        if cond.lidar_clutter > 0:  # first-return backscatter from fog droplets
            clutter = (rng_clutter < cond.lidar_clutter) & (clutter_range < rng_out)
            rng_out[clutter] = clutter_range[clutter]
            label[clutter] = L.UNLABELED
            inst[clutter] = 0
            intensity[clutter] = 4.0 * rng_clutter[clutter] / max(cond.lidar_clutter, 1e-9)
            valid |= clutter
        out = np.flatnonzero(valid)
        rr = rng_out[out] + range_noise[out]
        xyz = dirs_l[out] * rr[:, None]
        cloud = np.zeros(len(out), POINT_DTYPE)
        cloud["x"], cloud["y"], cloud["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        cloud["intensity"] = np.clip(intensity[out] + intensity_noise[out], 0.0, 255.0)
        cloud["ring"] = rings[out]
        return LidarScan(cloud, label[out], inst[out])
