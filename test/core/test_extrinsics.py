"""The LiDAR-to-camera extrinsic from node parameters, at start-up and after a run-time change (ROS-free)."""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.extrinsics import EXTRINSIC_PARAMS, camera_from_lidar, changed_camera_from_lidar
from ros_mmfusion.core.sim.calibration import write_calibration
from ros_mmfusion.core.sim.sensors import make_rig

DEFAULTS = {spec.name: spec.default for spec in EXTRINSIC_PARAMS}
MOVED = [1.0, 0.0, 0.0, 0.5, -0.5, 0.5, 0.5]


def test_a_change_of_camera_from_lidar_gives_the_new_transform():
    params = {**DEFAULTS, "camera_from_lidar": MOVED}
    new = changed_camera_from_lidar(params, {"camera_from_lidar"})
    np.testing.assert_allclose(new.translation, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(new.matrix(), camera_from_lidar(params).matrix())


def test_other_changes_leave_the_extrinsic_alone():
    assert changed_camera_from_lidar({**DEFAULTS, "camera_from_lidar": MOVED}, {"max_range"}) is None


def test_a_change_without_effect_is_refused(tmp_path):
    path = write_calibration(tmp_path / "calibration.yaml", make_rig("robot", 64, 48))
    with pytest.raises(ConfigError, match="while calibration_file is set"):
        changed_camera_from_lidar({**DEFAULTS, "calibration_file": str(path), "camera_from_lidar": MOVED},
                                  {"camera_from_lidar"})
    with pytest.raises(ConfigError, match="projects no LiDAR points"):
        changed_camera_from_lidar({**DEFAULTS, "camera_from_lidar": MOVED}, {"camera_from_lidar"}, in_use=False)


def test_the_calibration_file_gives_the_extrinsic_of_the_named_camera(tmp_path):
    rig = make_rig("car", 64, 48)
    path = write_calibration(tmp_path / "calibration.yaml", rig)
    expected = rig.color.T_base_sensor.inverse() @ rig.lidar.T_base_sensor
    got = camera_from_lidar({**DEFAULTS, "calibration_file": str(path), "camera": "color"})
    np.testing.assert_allclose(got.matrix(), expected.matrix(), atol=1e-9)
