"""The LiDAR-to-camera extrinsic: from TF or the node parameters, at start-up and after a run-time change (ROS-free)."""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.extrinsics import (
    EXTRINSIC_PARAMS,
    camera_from_lidar,
    changed_camera_from_lidar,
    extrinsics_from_parameters,
)
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.sim.calibration import write_calibration
from ros_mmfusion.core.sim.sensors import make_rig

DEFAULTS = {spec.name: spec.default for spec in EXTRINSIC_PARAMS}
MOVED = [1.0, 0.0, 0.0, 0.5, -0.5, 0.5, 0.5]


def test_auto_takes_tf_unless_the_parameters_are_given_explicitly(tmp_path):
    assert not extrinsics_from_parameters(DEFAULTS) and camera_from_lidar(DEFAULTS) is None
    moved = {**DEFAULTS, "camera_from_lidar": MOVED}
    assert extrinsics_from_parameters(moved)
    np.testing.assert_allclose(camera_from_lidar(moved).translation, [1.0, 0.0, 0.0])
    path = write_calibration(tmp_path / "calibration.yaml", make_rig("robot", 64, 48))
    assert extrinsics_from_parameters({**DEFAULTS, "calibration_file": str(path)})
    forced = {**DEFAULTS, "extrinsics_source": "parameters"}
    np.testing.assert_allclose(camera_from_lidar(forced).matrix(),
                               Transform.from_xyz_quat([0, 0, 0], [0.5, -0.5, 0.5, 0.5]).matrix())
    assert camera_from_lidar({**moved, "extrinsics_source": "tf"}) is None


def test_a_change_of_camera_from_lidar_gives_the_new_transform():
    params = {**DEFAULTS, "camera_from_lidar": MOVED}
    assert changed_camera_from_lidar(params, {"camera_from_lidar"})
    np.testing.assert_allclose(camera_from_lidar(params).translation, [1.0, 0.0, 0.0])
    # back at the default, auto takes TF again
    assert changed_camera_from_lidar(DEFAULTS, {"camera_from_lidar"}) and camera_from_lidar(DEFAULTS) is None


def test_other_changes_leave_the_extrinsic_alone():
    assert not changed_camera_from_lidar({**DEFAULTS, "camera_from_lidar": MOVED}, {"max_range"})


def test_a_change_without_effect_is_refused(tmp_path):
    path = write_calibration(tmp_path / "calibration.yaml", make_rig("robot", 64, 48))
    with pytest.raises(ConfigError, match="while calibration_file is set"):
        changed_camera_from_lidar({**DEFAULTS, "calibration_file": str(path), "camera_from_lidar": MOVED},
                                  {"camera_from_lidar"})
    with pytest.raises(ConfigError, match="projects no LiDAR points"):
        changed_camera_from_lidar({**DEFAULTS, "camera_from_lidar": MOVED}, {"camera_from_lidar"}, in_use=False)
    with pytest.raises(ConfigError, match="while extrinsics_source is 'tf'"):
        changed_camera_from_lidar({**DEFAULTS, "extrinsics_source": "tf", "camera_from_lidar": MOVED},
                                  {"camera_from_lidar"})


def test_the_calibration_file_gives_the_extrinsic_of_the_named_camera(tmp_path):
    rig = make_rig("car", 64, 48)
    path = write_calibration(tmp_path / "calibration.yaml", rig)
    expected = rig.color.T_base_sensor.inverse() @ rig.lidar.T_base_sensor
    got = camera_from_lidar({**DEFAULTS, "calibration_file": str(path), "camera": "color"})
    np.testing.assert_allclose(got.matrix(), expected.matrix(), atol=1e-9)
