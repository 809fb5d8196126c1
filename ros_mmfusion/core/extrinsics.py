"""The LiDAR-to-camera extrinsic of the nodes that project LiDAR points into a camera: from TF, or from parameters.

The transform camera optical frame <- LiDAR frame comes from TF (``/tf_static`` and ``/tf``: the node looks up the
camera's frame, the CameraInfo's or image's ``header.frame_id``, <- the cloud's ``header.frame_id`` at the cloud's
stamp) unless the parameters override it. ``extrinsics_source`` decides:

* ``parameters``: a ros_mmfusion calibration YAML (``calibration_file``, as written beside ``mmfusion sim`` bags) and
  the name of the camera in it when set, else ``camera_from_lidar`` (x y z in metres, quaternion qx qy qz qw).
* ``tf``: always TF; a missing or stale transform skips the frame (throttled log, WARN in ``/diagnostics``).
* ``auto`` (default): the parameters when they are given explicitly, that is ``calibration_file`` is set or
  ``camera_from_lidar`` differs from its default; TF otherwise.
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
    ParamSpec("extrinsics_source", "auto", "Where the camera <- LiDAR transform comes from: 'tf' (the camera frame "
              "<- the cloud's frame at the cloud's stamp), 'parameters' (calibration_file, else camera_from_lidar), "
              "'auto': the parameters when calibration_file is set or camera_from_lidar differs from its default, "
              "else TF.", choices=("auto", "tf", "parameters"), read_only=True),
    ParamSpec("camera", "color", "Camera name in calibration_file.", read_only=True),
)
"""``camera_from_lidar``, ``calibration_file``, ``camera`` and ``extrinsics_source``: add them to a node's ``PARAMS``
(with ``core.tf_buffer.TF_PARAMS``)."""
DEFAULT_CAMERA_FROM_LIDAR = EXTRINSIC_PARAMS[0].default


def extrinsics_from_parameters(params: Mapping[str, Any]) -> bool:
    """Whether the validated ``EXTRINSIC_PARAMS`` values take the extrinsic from the parameters (else from TF)."""
    source = params["extrinsics_source"]
    if source != "auto":
        return source == "parameters"
    return bool(params["calibration_file"]) or list(params["camera_from_lidar"]) != list(DEFAULT_CAMERA_FROM_LIDAR)


def camera_from_lidar(params: Mapping[str, Any]) -> Transform | None:
    """camera optical <- LiDAR from validated ``EXTRINSIC_PARAMS`` values: the calibration file's when one is given,
    else ``camera_from_lidar``'s; None where TF gives it (:func:`extrinsics_from_parameters`)."""
    if not extrinsics_from_parameters(params):
        return None
    if params["calibration_file"]:
        return load_calibration(params["calibration_file"]).camera_from_lidar(params["camera"])
    v = params["camera_from_lidar"]
    return Transform.from_xyz_quat(v[:3], v[3:])


def changed_camera_from_lidar(params: Mapping[str, Any], changed: Set[str], in_use: bool = True) -> bool:
    """Whether a run-time change of the parameters ``changed`` (validated values in ``params``) changes the camera
    optical <- LiDAR extrinsic: then :func:`camera_from_lidar` gives the new one (None: from TF again, ``auto`` with
    ``camera_from_lidar`` back at its default).

    ConfigError (the node refuses the change) where a new ``camera_from_lidar`` would have no effect: a
    ``calibration_file`` is set (its extrinsic takes precedence), ``extrinsics_source`` is ``tf``, or the node does
    not project LiDAR points in this configuration (``in_use``).
    """
    if "camera_from_lidar" not in changed:
        return False
    if params["calibration_file"]:
        raise ConfigError(f"camera_from_lidar has no effect while calibration_file is set "
                          f"({params['calibration_file']}): its extrinsic is used")
    if params["extrinsics_source"] == "tf":
        raise ConfigError("camera_from_lidar has no effect while extrinsics_source is 'tf': the extrinsic comes from "
                          "TF")
    if not in_use:
        raise ConfigError("camera_from_lidar has no effect: this node projects no LiDAR points in its configuration")
    return True
