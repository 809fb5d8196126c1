"""The simulated rig's calibration written as a YAML file beside each recorded bag.

The format and its reader are shared by every node and tool: :mod:`ros_mmfusion.core.calibration`.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ros_mmfusion.core.calibration import BASE_FRAME, FORMAT
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.sim.sensors import Rig


def _transform_dict(T: Transform) -> dict:
    return {
        "translation": [round(float(v), 9) for v in T.translation],
        "rotation_xyzw": [round(float(v), 12) for v in T.quaternion()],
        "matrix": [[round(float(v), 12) for v in row] for row in T.matrix()],
    }


def calibration_dict(rig: Rig, topics: dict[str, str] | None = None,
                     frames: Callable[[str], str] | None = None) -> dict:
    """The calibration of ``rig`` as plain data; ``topics`` maps sensor names (color, depth, thermal, lidar, plus
    ``<name>_info`` for camera infos) to topic names for the record; ``frames`` renames every frame id (the base
    frame too), as a recording in a simulator's or driver's convention names them."""
    topics = topics or {}
    rename = frames or (lambda frame: frame)
    cameras = {}
    for sensor in rig.cameras:
        cam = sensor.camera
        entry = {
            "frame_id": rename(sensor.frame_id),
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
        "frame_id": rename(lidar.frame_id),
        "beams": int(len(lidar.elevations_rad)),
        "elevations_deg": [round(float(v), 6) for v in np.degrees(lidar.elevations_rad)],
        "columns": lidar.columns,
        "min_range": lidar.min_range,
        "max_range": lidar.max_range,
        "T_base_sensor": _transform_dict(lidar.T_base_sensor),
    }
    if "lidar" in topics:
        lidar_entry["topic"] = topics["lidar"]
    return {"format": FORMAT, "base_frame": rename(BASE_FRAME), "platform": rig.platform, "cameras": cameras,
            "lidar": lidar_entry}


def write_calibration(path: str | Path, rig: Rig, topics: dict[str, str] | None = None,
                      frames: Callable[[str], str] | None = None) -> Path:
    """Write ``rig``'s calibration YAML to ``path`` (``topics`` and ``frames`` as :func:`calibration_dict`)."""
    import yaml

    path = Path(path)
    text = "# Sensor calibration written by `mmfusion sim` (ros_mmfusion); see docs/world.md.\n"
    text += yaml.safe_dump(calibration_dict(rig, topics, frames), sort_keys=False, default_flow_style=None, width=120)
    path.write_text(text)
    return path
