"""Builders of headers/stamps, vision_msgs detections and label maps, box MarkerArrays and nav_msgs Paths."""
from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.time import Time as RclpyTime
from vision_msgs.msg import Detection3DArray, LabelInfo
from visualization_msgs.msg import Marker, MarkerArray

from ros_mmfusion.core.codec import box_line_list, class_color, quaternion_to_yaw
from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.ros.builders import (
    box_markers,
    detection3d_array,
    header,
    label_info,
    ns_to_stamp,
    path_msg,
    stamp_to_ns,
)

CENTERS = np.array([[10.0, 2.0, 0.8], [-5.0, 1.0, 0.9], [3.0, -4.0, 1.0]])
SIZES = np.array([[4.5, 1.9, 1.6], [0.8, 0.7, 1.8], [1.8, 0.6, 1.7]])
YAWS = np.array([0.3, -1.2, 3.0])
CLASSES = ["car", "pedestrian", "cyclist"]
SCORES = np.array([0.91, 0.55, 0.7])


def cdr_round_trip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def quaternion(pose) -> list[float]:
    q = pose.orientation
    return [q.x, q.y, q.z, q.w]


# --- stamps and headers -----------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(ns=st.integers(-(2**31) * 10**9, (2**31 - 1) * 10**9 + 999_999_999))
def test_stamps_round_trip_through_time_messages(ns):
    stamp = ns_to_stamp(ns)
    assert 0 <= stamp.nanosec < 10**9
    assert stamp_to_ns(stamp) == ns
    assert stamp_to_ns(cdr_round_trip(stamp)) == ns


def test_header_accepts_ns_seconds_and_time_objects():
    assert stamp_to_ns(header(1_500_000_000, "map").stamp) == 1_500_000_000
    assert stamp_to_ns(header(2.25, "map").stamp) == 2_250_000_000
    assert stamp_to_ns(header(Time(sec=3, nanosec=4), "map").stamp) == 3_000_000_004
    assert stamp_to_ns(header(RclpyTime(nanoseconds=5_000_000_006), "map").stamp) == 5_000_000_006
    assert header(0, "base_link").frame_id == "base_link"


def test_out_of_range_stamps_are_rejected():
    with pytest.raises(MessageFormatError, match="outside builtin_interfaces/Time's int32 seconds range"):
        ns_to_stamp(2**31 * 10**9)
    with pytest.raises(MessageFormatError, match="cannot read a time stamp from str"):
        stamp_to_ns("now")


# --- vision_msgs ------------------------------------------------------------------------------------------------------


def test_detection3d_array_carries_every_box():
    hdr = header(10**9, "base_link")
    msg = cdr_round_trip(detection3d_array(hdr, CENTERS, SIZES, YAWS, CLASSES, SCORES, ids=["7", "8", "9"]))
    assert isinstance(msg, Detection3DArray) and msg.header.frame_id == "base_link" and len(msg.detections) == 3
    for i, det in enumerate(msg.detections):
        assert det.header.frame_id == "base_link" and det.id == str(7 + i)
        (result,) = det.results
        assert result.hypothesis.class_id == CLASSES[i] and result.hypothesis.score == pytest.approx(SCORES[i])
        centre = det.bbox.center.position
        np.testing.assert_allclose([centre.x, centre.y, centre.z], CENTERS[i])
        np.testing.assert_allclose([det.bbox.size.x, det.bbox.size.y, det.bbox.size.z], SIZES[i])
        assert quaternion_to_yaw(quaternion(det.bbox.center)) == pytest.approx(YAWS[i])
        assert result.pose.pose == det.bbox.center


def test_detection3d_array_accepts_integer_classes_and_no_boxes():
    msg = detection3d_array(header(0, "lidar"), CENTERS[:1], SIZES[:1], YAWS[:1], [2], [0.5])
    assert msg.detections[0].results[0].hypothesis.class_id == "2" and msg.detections[0].id == ""
    assert detection3d_array(header(0, "lidar"), np.zeros((0, 3)), np.zeros((0, 3)), [], [], []).detections == []


def test_detection_arrays_must_agree_in_length():
    with pytest.raises(MessageFormatError, match=r"box arrays disagree in length: .*'scores': 2"):
        detection3d_array(header(0, "lidar"), CENTERS, SIZES, YAWS, CLASSES, SCORES[:2])
    with pytest.raises(MessageFormatError, match=r"2 ids for 3 boxes"):
        detection3d_array(header(0, "lidar"), CENTERS, SIZES, YAWS, CLASSES, SCORES, ids=["a", "b"])


def test_label_info_from_mapping_or_list():
    msg = cdr_round_trip(label_info({0: "car", 5: "pedestrian"}, threshold=0.35, header=header(1, "lidar")))
    assert isinstance(msg, LabelInfo) and msg.threshold == pytest.approx(0.35)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [(0, "car"), (5, "pedestrian")]
    assert [c.class_name for c in label_info(CLASSES).class_map] == CLASSES
    with pytest.raises(MessageFormatError, match="does not fit uint16"):
        label_info({70000: "x"})


# --- visualization_msgs -----------------------------------------------------------------------------------------------


def test_box_markers_clear_then_draw_line_lists_and_labels():
    msg = cdr_round_trip(box_markers(header(5, "base_link"), CENTERS, SIZES, YAWS, CLASSES, SCORES))
    assert isinstance(msg, MarkerArray)
    first, *rest = msg.markers
    assert first.action == Marker.DELETEALL
    boxes = [m for m in rest if m.type == Marker.LINE_LIST]
    texts = [m for m in rest if m.type == Marker.TEXT_VIEW_FACING]
    assert len(boxes) == len(texts) == 3 and len(rest) == 6
    segments = box_line_list(CENTERS, SIZES, YAWS)
    for i, (box, text) in enumerate(zip(boxes, texts, strict=True)):
        assert box.id == i and box.ns == "boxes" and box.header.frame_id == "base_link"
        np.testing.assert_allclose([[p.x, p.y, p.z] for p in box.points], segments[i])
        assert (box.color.r, box.color.g, box.color.b) == pytest.approx(class_color(CLASSES[i]))
        assert text.ns == "boxes/labels" and text.text == f"{CLASSES[i]} {SCORES[i]:.2f}"
        assert text.pose.position.z > CENTERS[i, 2] + SIZES[i, 2] / 2


def test_box_markers_as_cubes_with_custom_colours_and_no_labels():
    msg = box_markers(header(5, "base_link"), CENTERS, SIZES, YAWS, CLASSES, style="cube", labels=False,
                      colors={"car": (0.0, 0.0, 1.0)}, alpha=0.5)
    cubes = msg.markers[1:]
    assert [m.type for m in cubes] == [Marker.CUBE] * 3
    assert (cubes[0].color.r, cubes[0].color.g, cubes[0].color.b, cubes[0].color.a) == (0.0, 0.0, 1.0, 0.5)
    np.testing.assert_allclose([cubes[1].scale.x, cubes[1].scale.y, cubes[1].scale.z], SIZES[1])
    assert quaternion_to_yaw(quaternion(cubes[2].pose)) == pytest.approx(YAWS[2])


def test_empty_frame_still_clears_the_previous_one():
    msg = box_markers(header(5, "base_link"), np.zeros((0, 3)), np.zeros((0, 3)), [], [])
    assert [m.action for m in msg.markers] == [Marker.DELETEALL]


# --- nav_msgs ---------------------------------------------------------------------------------------------------------


def test_path_from_2d_waypoints_faces_along_the_path():
    waypoints = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    msg = cdr_round_trip(path_msg(header(3, "map"), waypoints))
    assert msg.header.frame_id == "map" and len(msg.poses) == 3
    assert all(p.header.frame_id == "map" and p.pose.position.z == 0.0 for p in msg.poses)
    yaws = [quaternion_to_yaw(quaternion(p.pose)) for p in msg.poses]
    np.testing.assert_allclose(yaws, [0.0, np.pi / 2, np.pi / 2])


def test_path_with_explicit_yaws_and_heights():
    waypoints = np.array([[0.0, 0.0, 0.5], [2.0, 0.0, 0.6]])
    msg = path_msg(header(3, "odom"), waypoints, yaws=[1.0, -1.0])
    assert msg.poses[1].pose.position.z == pytest.approx(0.6)
    assert [quaternion_to_yaw(quaternion(p.pose)) for p in msg.poses] == pytest.approx([1.0, -1.0])
    assert quaternion_to_yaw(quaternion(path_msg(header(0, "map"), [[1.0, 2.0]]).poses[0].pose)) == 0.0


def test_bad_waypoints_are_rejected():
    with pytest.raises(MessageFormatError, match=r"waypoints must be \(N, 2\) or \(N, 3\), got \(4,\)"):
        path_msg(header(0, "map"), [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(MessageFormatError, match="1 yaws for 2 waypoints"):
        path_msg(header(0, "map"), [[0.0, 0.0], [1.0, 1.0]], yaws=[0.0])
