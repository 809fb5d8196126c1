"""Detection3DArray -> arrays (ros/detections.py): the inverse of the builder, over a CDR round trip."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesis, ObjectHypothesisWithPose

from ros_mmfusion.ros.builders import detection3d_array, header
from ros_mmfusion.ros.detections import detections_to_arrays

CENTERS = np.array([[10.0, 2.0, 0.8], [-5.0, 1.0, 0.9], [3.0, -4.0, 1.0]])
SIZES = np.array([[4.5, 1.9, 1.6], [0.8, 0.7, 1.8], [1.8, 0.6, 1.7]])
YAWS = np.array([0.3, -1.2, 3.0])
CLASSES = ["car", "pedestrian", "cyclist"]
SCORES = np.array([0.91, 0.55, 0.7])


def test_published_detections_come_back_as_the_boxes_they_were_built_from():
    msg = detection3d_array(header(1_000, "lidar"), CENTERS, SIZES, YAWS, CLASSES, SCORES)
    msg = deserialize_message(serialize_message(msg), Detection3DArray)
    boxes, names, scores = detections_to_arrays(msg)
    assert boxes.shape == (3, 7) and boxes.dtype == np.float64
    np.testing.assert_allclose(boxes, np.column_stack([CENTERS, SIZES, YAWS]), atol=1e-9)
    assert names == CLASSES
    np.testing.assert_allclose(scores, SCORES)


def test_the_best_hypothesis_names_a_detection_and_none_gives_an_unnamed_zero():
    msg = detection3d_array(header(0, "lidar"), CENTERS[:1], SIZES[:1], YAWS[:1], ["car"], [0.4])
    msg.detections[0].results.append(ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id="truck",
                                                                                          score=0.8)))
    msg.detections.append(Detection3D())
    boxes, names, scores = detections_to_arrays(msg)
    assert names == ["truck", ""] and scores.tolist() == pytest.approx([0.8, 0.0])
    assert boxes.shape == (2, 7) and boxes[1].tolist() == [0.0] * 7


def test_an_empty_array_gives_empty_arrays():
    boxes, names, scores = detections_to_arrays(Detection3DArray())
    assert boxes.shape == (0, 7) and names == [] and scores.shape == (0,)
