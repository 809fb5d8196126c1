"""The rig's calibration as a YAML file beside each recorded bag, and reading it back.

Format ``ros_mmfusion/calibration/v1``: per camera the image size, ``K`` (row-major 3x3, pixels), ``D`` and
``distortion_model`` exactly as in its CameraInfo, and per sensor ``T_base_sensor`` = base_link <- sensor frame (the
transform tf2 looks up as ``lookup_transform("base_link", frame_id)``: a point in the sensor frame maps to base_link
by ``p_base = R p_sensor + t``) as translation (metres), quaternion (x, y, z, w) and the 4x4 matrix. The LiDAR adds
its beam elevations (degrees, ring 0 first), azimuth columns and range limits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import PinholeCamera, Transform
from ros_mmfusion.core.sim.sensors import Rig

FORMAT = "ros_mmfusion/calibration/v1"
BASE_FRAME = "base_link"


def _transform_dict(T: Transform) -> dict:
    return {
        "translation": [round(float(v), 9) for v in T.translation],
        "rotation_xyzw": [round(float(v), 12) for v in T.quaternion()],
        "matrix": [[round(float(v), 12) for v in row] for row in T.matrix()],
    }


def calibration_dict(rig: Rig, topics: dict[str, str] | None = None) -> dict:
    """The calibration of ``rig`` as plain data; ``topics`` maps sensor names (color, depth, thermal, lidar, plus
    ``<name>_info`` for camera infos) to topic names for the record."""
    topics = topics or {}
    cameras = {}
    for sensor in rig.cameras:
        cam = sensor.camera
        entry = {
            "frame_id": sensor.frame_id,
            "width": cam.width,
            "height": cam.height,
            "distortion_model": cam.distortion_model,
            "K": [float(v) for v in cam.k.ravel()],
            "D": [float(v) for v in (cam.d if cam.d.size else np.zeros(5))],
            "T_base_sensor": _transform_dict(sensor.T_base_sensor),
        }
        if sensor.name in topics:
            entry["topic"] = topics[sensor.name]
        if f"{sensor.name}_info" in topics:
            entry["camera_info_topic"] = topics[f"{sensor.name}_info"]
        cameras[sensor.name] = entry
    lidar = rig.lidar
    lidar_entry = {
        "frame_id": lidar.frame_id,
        "beams": int(len(lidar.elevations)),
        "elevations_deg": [round(float(v), 6) for v in np.degrees(lidar.elevations)],
        "columns": lidar.columns,
        "min_range": lidar.min_range,
        "max_range": lidar.max_range,
        "T_base_sensor": _transform_dict(lidar.T_base_sensor),
    }
    if "lidar" in topics:
        lidar_entry["topic"] = topics["lidar"]
    return {"format": FORMAT, "base_frame": BASE_FRAME, "platform": rig.platform, "cameras": cameras,
            "lidar": lidar_entry}


def write_calibration(path: str | Path, rig: Rig, topics: dict[str, str] | None = None) -> Path:
    """Write ``rig``'s calibration YAML to ``path``."""
    import yaml

    path = Path(path)
    text = "# Sensor calibration written by `mmfusion sim` (ros_mmfusion); see docs/world.md.\n"
    text += yaml.safe_dump(calibration_dict(rig, topics), sort_keys=False, default_flow_style=None, width=120)
    path.write_text(text)
    return path


@dataclass(frozen=True, eq=False)
class CameraCalibration:
    name: str
    frame_id: str
    camera: PinholeCamera
    T_base_sensor: Transform


@dataclass(frozen=True, eq=False)
class LidarCalibration:
    frame_id: str
    T_base_sensor: Transform
    elevations_rad: np.ndarray
    columns: int
    min_range: float
    max_range: float


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
    """Read a calibration YAML written by :func:`write_calibration`; ConfigError naming the bad key otherwise."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"calibration {path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"calibration {path}: expected format {FORMAT!r}")
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
