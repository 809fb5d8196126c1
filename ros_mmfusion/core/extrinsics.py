"""The LiDAR-to-camera extrinsic as node parameters, shared by every node that projects LiDAR points into a camera.

There is no tf2_ros on the pip-only path, so the transform camera optical frame <- LiDAR frame comes from parameters:
``camera_from_lidar`` (x y z in metres, quaternion qx qy qz qw), or a ros_mmfusion calibration YAML (as written beside
``mmfusion sim`` bags) and the name of the camera in it, which takes precedence when set.
"""
from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

import numpy as np

from ros_mmfusion.core.calibration import load_calibration
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.params import ParamSpec


def check_extrinsic(values: list[float]) -> str | None:
    """Why ``values`` is not an ``x y z qx qy qz qw`` transform, or None."""
    if len(values) != 7:
        return "needs 7 numbers: x y z qx qy qz qw (camera optical frame <- LiDAR frame)"
    if abs(np.linalg.norm(values[3:]) - 1.0) > 1e-3:
        return "the quaternion must be unit length"
    return None


EXTRINSIC_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("camera_from_lidar", [0.0, 0.0, 0.0, 0.5, -0.5, 0.5, 0.5],
              "Transform camera optical frame <- LiDAR frame: x y z (m) qx qy qz qw. The default is a camera "
              "at the LiDAR origin looking along LiDAR +x.", check=check_extrinsic),
    ParamSpec("calibration_file", "", "A ros_mmfusion calibration YAML (as written beside `mmfusion sim` bags); "
              "when set, camera_from_lidar is computed from it for the camera named by `camera`.", read_only=True),
    ParamSpec("camera", "color", "Camera name in calibration_file.", read_only=True),
)
"""``camera_from_lidar``, ``calibration_file`` and ``camera``: add them to a node's ``PARAMS``."""


def camera_from_lidar(params: Mapping[str, Any]) -> Transform:
    """camera optical <- LiDAR from validated ``EXTRINSIC_PARAMS`` values: the calibration file's when one is given."""
    if params["calibration_file"]:
        return load_calibration(params["calibration_file"]).camera_from_lidar(params["camera"])
    v = params["camera_from_lidar"]
    return Transform.from_xyz_quat(v[:3], v[3:])


def changed_camera_from_lidar(params: Mapping[str, Any], changed: Set[str], in_use: bool = True) -> Transform | None:
    """The new camera optical <- LiDAR transform after a run-time change of the parameters ``changed`` (validated
    values in ``params``), or None when ``camera_from_lidar`` is not among them.

    ConfigError (the node refuses the change) where the new value would have no effect: a ``calibration_file`` is set
    (its extrinsic takes precedence), or the node does not project LiDAR points in this configuration (``in_use``).
    """
    if "camera_from_lidar" not in changed:
        return None
    if params["calibration_file"]:
        raise ConfigError(f"camera_from_lidar has no effect while calibration_file is set "
                          f"({params['calibration_file']}): its extrinsic is used")
    if not in_use:
        raise ConfigError("camera_from_lidar has no effect: this node projects no LiDAR points in its configuration")
    return camera_from_lidar(params)
