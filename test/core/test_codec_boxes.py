"""Yaw/quaternion helpers and 3D box geometry behind the detection and marker builders."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros_mmfusion.core.codec import (
    BOX_EDGES,
    box_corners,
    box_line_list,
    class_color,
    quaternion_to_yaw,
    yaw_to_quaternion,
)
from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.core.geometry import quaternion_to_matrix

angles = st.floats(-3.14159, 3.14159, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(yaw=angles)
def test_yaw_survives_a_quaternion_round_trip(yaw):
    q = yaw_to_quaternion(yaw)
    assert q.shape == (4,) and np.isclose(np.linalg.norm(q), 1.0)
    assert np.isclose(quaternion_to_yaw(q), yaw, atol=1e-9)
    np.testing.assert_allclose(quaternion_to_matrix(q)[:2, 0], [np.cos(yaw), np.sin(yaw)], atol=1e-12)


def test_yaw_to_quaternion_is_vectorised():
    yaws = np.array([0.0, np.pi / 2, -1.0])
    q = yaw_to_quaternion(yaws)
    assert q.shape == (3, 4)
    np.testing.assert_allclose(quaternion_to_yaw(q), yaws)
    np.testing.assert_allclose(q[1], [0, 0, np.sqrt(0.5), np.sqrt(0.5)])


def test_quaternion_to_yaw_rejects_wrong_shapes():
    with pytest.raises(MessageFormatError, match=r"\(\.\.\., 4\) as \(x, y, z, w\)"):
        quaternion_to_yaw([0.0, 0.0, 1.0])


def test_axis_aligned_box_corners_span_the_size():
    corners = box_corners([1.0, 2.0, 3.0], [4.0, 2.0, 1.0], [0.0])
    assert corners.shape == (1, 8, 3)
    np.testing.assert_allclose(corners[0].min(axis=0), [-1.0, 1.0, 2.5])
    np.testing.assert_allclose(corners[0].max(axis=0), [3.0, 3.0, 3.5])


def test_yaw_turns_the_length_axis():
    corners = box_corners(np.zeros(3), [4.0, 2.0, 1.0], [np.pi / 2])[0]
    np.testing.assert_allclose(corners.max(axis=0), [1.0, 2.0, 0.5], atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(yaw=angles, size=st.tuples(*[st.floats(0.1, 10.0)] * 3))
def test_line_list_edges_have_the_box_dimensions(yaw, size):
    segments = box_line_list(np.zeros((1, 3)), [size], [yaw])[0]
    assert segments.shape == (24, 3)
    lengths = np.linalg.norm(segments[1::2] - segments[0::2], axis=1)
    expected = [size[0], size[1]] * 4 + [size[2]] * 4  # bottom ring, top ring (alternating), verticals
    np.testing.assert_allclose(lengths, expected, rtol=1e-9)
    assert BOX_EDGES.shape == (12, 2)


def test_box_arrays_must_agree_in_number():
    with pytest.raises(MessageFormatError, match=r"2 centres, 1 sizes, 2 yaws"):
        box_corners(np.zeros((2, 3)), np.ones((1, 3)), [0.0, 0.0])


def test_class_colours_are_stable_and_distinct_for_small_ids():
    assert class_color("car") == class_color("car")
    assert len({class_color(i) for i in range(16)}) == 16
    assert class_color("3") == class_color(3)
    assert all(0.0 <= c <= 1.0 for c in class_color("pedestrian"))
