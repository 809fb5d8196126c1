"""The /tf_static frame tree (core/static_tf.py) on real tf2_msgs/TFMessage objects of the bag typestore."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ros_mmfusion.core.bagio import typestore
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.static_tf import StaticTransforms


def stamped(parent: str, child: str, T: Transform):
    t = typestore().types
    q, x = T.quaternion(), T.translation
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id=parent)
    transform = t["geometry_msgs/msg/Transform"](
        translation=t["geometry_msgs/msg/Vector3"](x=float(x[0]), y=float(x[1]), z=float(x[2])),
        rotation=t["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
    return t["geometry_msgs/msg/TransformStamped"](header=header, child_frame_id=child, transform=transform)


def tree() -> tuple[StaticTransforms, dict[str, Transform]]:
    """base_link -> lidar; base_link -> camera_link -> camera_optical (T_parent_child each)."""
    T = {"lidar": Transform.from_xyz_rpy((1.2, 0.0, 1.8), (0.0, 0.0, 0.1)),
         "camera_link": Transform.from_xyz_rpy((1.5, 0.1, 1.4), (0.0, 0.05, 0.0)),
         "camera_optical": Transform.from_xyz_rpy((0.0, 0.0, 0.0), (-math.pi / 2, 0.0, -math.pi / 2))}
    tf = StaticTransforms()
    tf.add([stamped("base_link", "lidar", T["lidar"]), stamped("base_link", "camera_link", T["camera_link"])])
    tf.add([stamped("camera_link", "camera_optical", T["camera_optical"])])  # a second latched message
    return tf, T


def test_lookup_chains_through_the_common_ancestor():
    tf, T = tree()
    expected = (T["camera_link"] @ T["camera_optical"]).inverse() @ T["lidar"]
    got = tf.lookup("camera_optical", "/lidar")  # a leading slash names the same frame
    np.testing.assert_allclose(got.matrix(), expected.matrix(), atol=1e-12)
    point = np.array([[10.0, -2.0, 0.5]])
    np.testing.assert_allclose(tf.lookup("lidar", "camera_optical").apply(got.apply(point)), point, atol=1e-12)
    np.testing.assert_allclose(tf.lookup("base_link", "lidar").matrix(), T["lidar"].matrix(), atol=1e-12)
    np.testing.assert_allclose(tf.lookup("lidar", "lidar").matrix(), np.eye(4))


def test_unjoined_frames_and_bad_entries_are_refused():
    tf, T = tree()
    tf.add([stamped("map", "gps", Transform())])
    with pytest.raises(ConfigError, match=r"no static transform joins 'gps' to 'lidar' \(static frames: base_link"):
        tf.lookup("lidar", "gps")
    with pytest.raises(ConfigError, match="two different frame names"):
        tf.add([stamped("", "lidar", Transform())])
    bad = stamped("base_link", "x", Transform())
    bad.transform.rotation.w = 2.0
    with pytest.raises(ConfigError, match="unit quaternion"):
        tf.add([bad])
    tf.add([stamped("lidar", "base_link", Transform())])  # makes a loop
    with pytest.raises(ConfigError, match="loop"):
        tf.lookup("camera_optical", "lidar")
