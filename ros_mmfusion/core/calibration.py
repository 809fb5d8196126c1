"""The sensor calibration of a rig: what each sensor is and where it sits, as data and as a YAML file (ROS-free).

Calibration here means sensor intrinsics and extrinsics (INT8 quantization is ``quantize``, elsewhere).
Format ``ros_mmfusion/calibration/v1`` (written by :func:`ros_mmfusion.core.sim.calibration.write_calibration` beside
each ``mmfusion sim`` bag): per camera the image size, ``K`` (row-major 3x3, pixels), ``D`` and ``distortion_model``
exactly as in its CameraInfo, and per sensor ``T_base_sensor`` = base_link <- sensor frame (the transform tf2 looks up
as ``lookup_transform("base_link", frame_id)``: a point in the sensor frame maps to base_link by
``p_base = R p_sensor + t``) as translation (metres), quaternion (x, y, z, w) and the 4x4 matrix. The LiDAR adds its
beam elevations (degrees in the file, radians in :class:`LidarCalibration`; ring 0 first), azimuth columns and range
limits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import PinholeCamera, Transform
from ros_mmfusion.core.versioned_yaml import read_versioned_yaml

FORMAT = "ros_mmfusion/calibration/v1"
BASE_FRAME = "base_link"


@dataclass(frozen=True, eq=False)
class CameraCalibration:
    """A camera: ``name`` ("color", "depth", "thermal"), ``frame_id`` (its optical frame), intrinsics, and
    ``T_base_sensor`` (base_link <- optical frame)."""

    name: str
    frame_id: str
    camera: PinholeCamera
    T_base_sensor: Transform


@dataclass(frozen=True, eq=False)
class LidarCalibration:
    """A spinning LiDAR: beam ``elevations_rad`` (radians, ascending: ring 0 is the lowest beam), ``columns`` azimuth
    steps a revolution, ranges in metres, ``T_base_sensor`` (base_link <- lidar frame, x forward, z up)."""

    frame_id: str
    T_base_sensor: Transform
    elevations_rad: np.ndarray
    columns: int
    min_range: float
    max_range: float

    @cached_property
    def directions(self) -> tuple[np.ndarray, np.ndarray]:
        """(columns * beams, 3) unit directions in the LiDAR frame, column after column (azimuth from +x, counter-
        clockwise), every beam of a column in ring order; and the (columns * beams,) uint16 ring of each."""
        az = np.arange(self.columns) * (2.0 * math.pi / self.columns)
        el = np.asarray(self.elevations_rad)
        a, e = np.meshgrid(az, el, indexing="ij")
        dirs = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1).reshape(-1, 3)
        rings = np.broadcast_to(np.arange(len(el), dtype=np.uint16), a.shape).reshape(-1)
        return dirs.astype(np.float32), rings.copy()


@dataclass(frozen=True, eq=False)
class Calibration:
    """A calibration file read back: cameras by name ("color", "depth", "thermal") and the LiDAR."""

    platform: str
    cameras: dict[str, CameraCalibration]
    lidar: LidarCalibration
    source: str = ""
    """The file it was read from, for messages."""

    def camera_from_lidar(self, camera: str) -> Transform:
        """camera ``camera``'s optical frame <- LiDAR frame; ConfigError naming the cameras when there is none."""
        if camera not in self.cameras:
            raise ConfigError(f"calibration {self.source} has no camera {camera!r}; it has {sorted(self.cameras)}")
        return self.cameras[camera].T_base_sensor.inverse() @ self.lidar.T_base_sensor


def _transform(entry: dict, where: str) -> Transform:
    try:
        t = entry["T_base_sensor"]
        return Transform.from_xyz_quat(t["translation"], t["rotation_xyzw"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"calibration {where}: bad or missing T_base_sensor ({exc})") from None


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration YAML (as :func:`ros_mmfusion.core.sim.calibration.write_calibration` writes it);
    ConfigError naming the bad key otherwise."""
    path = Path(path)
    data = read_versioned_yaml(path, FORMAT, "calibration")
    cameras = {}
    for name, entry in (data.get("cameras") or {}).items():
        try:
            cam = PinholeCamera(k=np.asarray(entry["K"], dtype=np.float64).reshape(3, 3), width=int(entry["width"]),
                                height=int(entry["height"]), d=np.asarray(entry.get("D", []), dtype=np.float64),
                                distortion_model=entry.get("distortion_model", "plumb_bob"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"calibration {path}: camera {name!r}: {exc}") from None
        cameras[name] = CameraCalibration(name, entry["frame_id"], cam, _transform(entry, f"camera {name!r}"))
    lid = data.get("lidar")
    if not isinstance(lid, dict):
        raise ConfigError(f"calibration {path}: missing 'lidar'")
    try:
        lidar = LidarCalibration(lid["frame_id"], _transform(lid, "lidar"), np.radians(lid["elevations_deg"]),
                                 int(lid["columns"]), float(lid["min_range"]), float(lid["max_range"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"calibration {path}: lidar: {exc}") from None
    return Calibration(str(data.get("platform", "")), cameras, lidar, str(path))
