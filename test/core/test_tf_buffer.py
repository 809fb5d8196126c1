"""The ROS-free transform buffer (core/tf_buffer.py): chaining, interpolation, history bounds, extrapolation limits,
on real tf2_msgs/TFMessage objects of the bag typestore where messages are involved."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros_mmfusion.core.bagio import typestore
from ros_mmfusion.core.errors import MessageFormatError, TransformLookupError
from ros_mmfusion.core.geometry import Transform, quaternion_to_yaw, yaw_to_quaternion
from ros_mmfusion.core.tf_buffer import TfBuffer, slerp, transform_boxes

S = 1_000_000_000  # ns per second


def stamped(parent: str, child: str, T: Transform, stamp_ns: int = S):
    t = typestore().types
    q, x = T.quaternion(), T.translation
    sec, nanosec = divmod(stamp_ns, S)
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                      frame_id=parent)
    transform = t["geometry_msgs/msg/Transform"](
        translation=t["geometry_msgs/msg/Vector3"](x=float(x[0]), y=float(x[1]), z=float(x[2])),
        rotation=t["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
    return t["geometry_msgs/msg/TransformStamped"](header=header, child_frame_id=child, transform=transform)


def static_tree() -> tuple[TfBuffer, dict[str, Transform]]:
    """base_link -> lidar; base_link -> camera_link -> camera_optical (T_parent_child each), two latched messages."""
    T = {"lidar": Transform.from_xyz_rpy((1.2, 0.0, 1.8), (0.0, 0.0, 0.1)),
         "camera_link": Transform.from_xyz_rpy((1.5, 0.1, 1.4), (0.0, 0.05, 0.0)),
         "camera_optical": Transform.from_xyz_rpy((0.0, 0.0, 0.0), (-math.pi / 2, 0.0, -math.pi / 2))}
    tf = TfBuffer()
    tf.add_message([stamped("base_link", "lidar", T["lidar"]), stamped("base_link", "camera_link", T["camera_link"])],
                   static=True)
    tf.add_message([stamped("camera_link", "camera_optical", T["camera_optical"])], static=True)
    return tf, T


def assert_same(a: Transform, b: Transform, atol: float = 1e-9) -> None:
    np.testing.assert_allclose(a.matrix(), b.matrix(), atol=atol)


def test_static_lookup_chains_through_the_common_ancestor_both_ways():
    tf, T = static_tree()
    expected = (T["camera_link"] @ T["camera_optical"]).inverse() @ T["lidar"]
    got = tf.lookup("camera_optical", "/lidar")  # a leading slash names the same frame
    assert_same(got, expected)
    assert_same(tf.lookup("lidar", "camera_optical"), expected.inverse())
    assert_same(tf.lookup("base_link", "lidar", 123 * S), T["lidar"])  # static: any stamp
    assert_same(tf.lookup("camera_optical", "base_link"), (T["camera_link"] @ T["camera_optical"]).inverse())
    assert_same(tf.lookup("lidar", "lidar"), Transform())


def yaw_pose(x: float, y: float, yaw: float) -> Transform:
    return Transform.from_xyz_rpy((x, y, 0.0), (0.0, 0.0, yaw))


def test_dynamic_edge_interpolates_translation_linearly_and_rotation_by_slerp():
    tf = TfBuffer()
    tf.set_transform("odom", "base_link", yaw_pose(0.0, 0.0, 0.0), 10 * S)
    tf.set_transform("odom", "base_link", yaw_pose(2.0, -4.0, 1.0), 12 * S)
    got = tf.lookup("odom", "base_link", 10 * S + S // 2)  # a quarter of the way
    assert_same(got, yaw_pose(0.5, -1.0, 0.25))
    assert_same(tf.lookup("odom", "base_link", 12 * S), yaw_pose(2.0, -4.0, 1.0))
    # the shorter way round: from +170 deg to -170 deg passes 180 deg, not 0
    q = slerp(yaw_to_quaternion(math.radians(170)), yaw_to_quaternion(math.radians(-170)), 0.5)
    assert abs(abs(quaternion_to_yaw(q)) - math.pi) < 1e-9


def test_static_and_dynamic_edges_mix_in_one_chain():
    tf, T = static_tree()
    tf.set_transform("map", "odom", yaw_pose(10.0, 0.0, math.pi / 2), 0, static=True)
    tf.set_transform("odom", "base_link", yaw_pose(0.0, 0.0, 0.0), 1 * S)
    tf.set_transform("odom", "base_link", yaw_pose(4.0, 0.0, 0.0), 3 * S)
    got = tf.lookup("map", "lidar", 2 * S)
    expected = yaw_pose(10.0, 0.0, math.pi / 2) @ yaw_pose(2.0, 0.0, 0.0) @ T["lidar"]
    assert_same(got, expected)
    assert_same(tf.lookup("lidar", "map", 2 * S), expected.inverse())
    assert_same(tf.lookup("map", "lidar"), yaw_pose(10.0, 0.0, math.pi / 2) @ yaw_pose(4.0, 0.0, 0.0) @ T["lidar"])


def test_latest_is_the_newest_time_every_dynamic_edge_of_the_chain_has():
    tf = TfBuffer()
    for k in range(5):
        tf.set_transform("map", "odom", yaw_pose(float(k), 0.0, 0.0), k * S)
    for k in range(3):
        tf.set_transform("odom", "base_link", yaw_pose(0.0, float(k), 0.0), k * S)
    assert_same(tf.lookup("map", "base_link", 0), yaw_pose(2.0, 2.0, 0.0))  # at 2 s, base_link's newest


def test_history_is_bounded_by_cache_time_and_sample_count():
    tf = TfBuffer(cache_time=2.0, tolerance=0.0)
    for k in range(11):  # 0 .. 5 s every 0.5 s
        tf.set_transform("odom", "base_link", yaw_pose(float(k), 0.0, 0.0), k * S // 2)
    with pytest.raises(TransformLookupError, match=r"extrapolation into the past: 2\.000 s is 1\.000 s before the "
                                                   r"oldest sample \(3\.000 s\)"):
        tf.lookup("odom", "base_link", 2 * S)
    assert_same(tf.lookup("odom", "base_link", 3 * S), yaw_pose(6.0, 0.0, 0.0))
    small = TfBuffer(max_samples=4)
    for k in range(100):
        small.set_transform("odom", "base_link", yaw_pose(float(k), 0.0, 0.0), k * S // 100)
    assert len(small._dynamic["base_link"].stamps) == 4
    # a sample older than the cache window is not kept
    tf.set_transform("odom", "base_link", yaw_pose(0.0, 0.0, 0.0), 0)
    assert tf._dynamic["base_link"].stamps[0] == 3 * S


def test_stale_and_early_stamps_are_refused_beyond_the_tolerance_with_the_frames_named():
    tf = TfBuffer(tolerance=0.1)
    tf.set_transform("odom", "base_link", yaw_pose(0.0, 0.0, 0.0), 10 * S)
    tf.set_transform("odom", "base_link", yaw_pose(1.0, 0.0, 0.0), 11 * S)
    assert_same(tf.lookup("odom", "base_link", 11 * S + S // 20), yaw_pose(1.0, 0.0, 0.0))  # within: the newest
    with pytest.raises(TransformLookupError) as info:
        tf.lookup("base_link", "odom", 11 * S + S // 4)
    assert str(info.value) == ("no transform 'base_link' <- 'odom': odom -> base_link: extrapolation into the future: "
                               "11.250 s is 0.250 s after the newest sample (11.000 s)")
    assert (info.value.target, info.value.source) == ("base_link", "odom")
    with pytest.raises(TransformLookupError, match=r"extrapolation into the past: 9\.500 s is 0\.500 s before"):
        tf.lookup("odom", "base_link", 9 * S + S // 2)


def test_unknown_frames_separate_trees_and_loops_are_explained():
    tf, _ = static_tree()
    tf.set_transform("map", "gps", Transform(), static=True)
    with pytest.raises(TransformLookupError, match=r"unknown frame 'radar' \(known frames: base_link, camera_link"):
        tf.lookup("radar", "lidar")
    with pytest.raises(TransformLookupError, match=r"no path: 'gps' is in the tree of 'map', 'lidar' in the tree of "
                                                   r"'base_link'"):
        tf.lookup("lidar", "gps")
    with pytest.raises(TransformLookupError, match="frame name is empty"):
        tf.lookup("lidar", "")
    tf.set_transform("lidar", "base_link", Transform(), static=True)  # makes a loop
    with pytest.raises(TransformLookupError, match="loop"):
        tf.lookup("camera_optical", "lidar")


def test_malformed_transforms_are_left_out_and_the_others_kept():
    tf = TfBuffer()
    bad = stamped("base_link", "x", Transform())
    bad.transform.rotation.w = 2.0
    with pytest.raises(MessageFormatError, match=r"base_link -> x is not finite with a unit quaternion.*\(2 "
                                                 "transforms refused\\)"):
        tf.add_message([bad, stamped("base_link", "lidar", Transform()), stamped("", "y", Transform())], static=True)
    assert tf.frames == {"base_link", "lidar"}


def test_a_new_parent_replaces_the_edge_and_static_replaces_dynamic():
    tf = TfBuffer()
    tf.set_transform("odom", "base_link", yaw_pose(1.0, 0.0, 0.0), S)
    tf.set_transform("map", "base_link", yaw_pose(2.0, 0.0, 0.0), S)
    assert tf.frames == {"map", "base_link"}
    tf.set_transform("map", "base_link", yaw_pose(3.0, 0.0, 0.0), static=True)
    assert_same(tf.lookup("map", "base_link", 99 * S), yaw_pose(3.0, 0.0, 0.0))
    tf.clear()
    assert tf.can_transform("map", "base_link")  # clear() keeps the static tree
    tf.clear(static=True)
    assert not tf.can_transform("map", "base_link")


def test_boxes_move_into_the_target_frame_upright():
    T = Transform.from_xyz_rpy((1.0, 2.0, 0.5), (0.0, 0.0, math.pi / 2))
    centers, yaws = transform_boxes(T, np.array([[1.0, 0.0, 0.0]]), np.array([0.3]))
    np.testing.assert_allclose(centers, [[1.0, 3.0, 0.5]], atol=1e-12)
    np.testing.assert_allclose(yaws, [0.3 + math.pi / 2])


names = st.sampled_from(["a", "b", "c", "d", "e", "f"])
poses = st.tuples(*[st.floats(-50, 50)] * 3, *[st.floats(-math.pi, math.pi)] * 3)


@settings(max_examples=60, deadline=None)
@given(edges=st.lists(st.tuples(names, poses, st.booleans(), poses), min_size=1, max_size=8),
       a=names, b=names, t=st.floats(0.0, 1.0))
def test_lookup_there_and_back_is_the_identity(edges, a, b, t):
    """Random trees (each frame's parent drawn among the earlier frames), static and dynamic edges mixed, looked up at
    a random time between the two dynamic samples: T_a_b @ T_b_a is the identity."""
    order = ["a", "b", "c", "d", "e", "f"]
    tf = TfBuffer()
    for child, pose, static, pose2 in edges:
        i = order.index(child)
        if i == 0:
            continue
        parent = order[(hash(pose) % i)]
        tf.set_transform(parent, child, Transform.from_xyz_rpy(pose[:3], pose[3:]), S, static=static)
        if not static:
            tf.set_transform(parent, child, Transform.from_xyz_rpy(pose2[:3], pose2[3:]), 2 * S)
    if not (tf.can_transform(a, b, S) or a == b):
        with pytest.raises(TransformLookupError):
            tf.lookup(a, b, S + int(t * S))
        return
    stamp = S + int(t * S)
    there, back = tf.lookup(a, b, stamp), tf.lookup(b, a, stamp)
    np.testing.assert_allclose((there @ back).matrix(), np.eye(4), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(there.rotation), 1.0, atol=1e-9)
