"""The ROS side of evaluation (ros/evaluation.py): nodes declare their evaluated topics, and the feed turns real
rclpy messages (CDR round trip) into the arrays and stamps of the ROS-free session."""
from __future__ import annotations

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Int32

from ros_mmfusion import presets
from ros_mmfusion.core.codec.boxes import yaw_to_quaternion
from ros_mmfusion.core.detection3d.metrics import DetectionAccumulator, DetectionEvaluator
from ros_mmfusion.core.evaluation.session import GT_BOXES, GT_SEMANTIC, EvaluationSession
from ros_mmfusion.core.evaluation.topics import EvaluationTopics
from ros_mmfusion.core.navigation.metrics import NavigationRecord
from ros_mmfusion.core.segmentation.metrics import SegmentationAccumulator, confusion_matrix
from ros_mmfusion.launcher import evaluated_nodes, node_class
from ros_mmfusion.nodes.registry import NODES
from ros_mmfusion.ros.builders import detection3d_array, header, path_msg
from ros_mmfusion.ros.evaluation import EvaluationFeed
from ros_mmfusion.ros.image import numpy_to_image


def _wire(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def test_every_evaluated_node_declares_an_output_of_its_own_and_the_player_none():
    declared = {key: node_class(presets.NodeLaunch(key, key)).EVALUATION for key in NODES}
    assert declared["bag_player"] is None and declared["waypoint_controller"] is None
    for key in ("fusion_segmentation", "lidar_depth", "detection3d", "vint_navigation"):
        ev = declared[key]
        assert isinstance(ev, EvaluationTopics), key
        assert ev.main_input in ev.required_inputs and set(ev.required_inputs) <= set(ev.inputs)
        assert all(t in ev.outputs for t in (ev.labels, ev.detections, ev.path) if t is not None)
    assert declared["fusion_segmentation"].labels == "segmentation/labels"
    assert declared["detection3d"].detections == "detections"
    assert declared["vint_navigation"].odom == "odom"


def test_a_presets_evaluated_nodes_come_from_its_node_classes_in_order():
    preset = presets.load("segmentation", {"bag": "unused"})
    found = evaluated_nodes(preset)
    assert [launch.key for launch, _ in found] == [n.key for n in preset.nodes
                                                   if n.key in ("lidar_depth", "fusion_segmentation")]
    assert all(ev is node_class(launch).EVALUATION for launch, ev in found)
    assert evaluated_nodes(preset, [n for n in preset.nodes if n.key == "bag_player"]) == []


def test_the_feed_converts_messages_and_pairs_them_by_header_stamp():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 3, (4, 6), dtype=np.uint8)
    pred = rng.integers(0, 3, (4, 6), dtype=np.uint8)
    session = EvaluationSession(
        segmentation=SegmentationAccumulator(3, ignore_index=None),
        detection=DetectionAccumulator(DetectionEvaluator(classes=("car",))),
        navigation=NavigationRecord(np.array([[0.0, 0.0], [2.0, 0.0]]), 0.25))
    feed = EvaluationFeed(session, labels_topics={"/segmentation/labels"}, detection_topics={"/detections"},
                          rgb_topic="/rgb", path_topic="/navigation/path", closest_topic="/navigation/closest_node",
                          odom_topic="/odom")
    stamp = 1_700_000_000_123_456_789
    feed("/segmentation/labels", _wire(numpy_to_image(pred, "mono8", header(stamp, "camera"))))
    feed("/rgb", _wire(numpy_to_image(np.full((4, 6, 3), 7, np.uint8), "rgb8", header(stamp, "camera"))))
    feed(GT_SEMANTIC, _wire(numpy_to_image(gt, "mono8", header(stamp, "camera"))))
    assert session.segmentation.matched == 1
    np.testing.assert_array_equal(session.segmentation.confusion, confusion_matrix(gt, pred, 3, None))
    assert (session.segmentation.sample_frame()[2] == 7).all()

    box = dict(centers=[[10.0, 1.0, -1.0]], sizes=[[4.0, 2.0, 1.5]], yaws=[0.5], class_ids=["car"])
    feed("/detections", _wire(detection3d_array(header(stamp, "lidar"), **box, scores=[0.9])))
    feed("/other/detections", _wire(detection3d_array(header(stamp + 1, "lidar"), **box, scores=[0.9])))
    feed(GT_BOXES, _wire(detection3d_array(header(stamp, "lidar"), **box, scores=[1.0])))
    assert session.detection.matched == 1
    np.testing.assert_allclose(session.detection.sample["gt_boxes"], [[10.0, 1.0, -1.0, 4.0, 2.0, 1.5, 0.5]])

    odom = Odometry(header=header(stamp, "odom"))
    odom.pose.pose.position.x, odom.pose.pose.position.y = 1.5, -0.5
    q = yaw_to_quaternion(np.array([0.75]))[0]
    o = odom.pose.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in q)
    feed("/odom", _wire(odom))
    feed("/navigation/path", _wire(path_msg(header(stamp, "base_link"), [[1.0, 0.0], [2.0, 0.5]])))
    feed("/navigation/closest_node", Int32(data=1))
    record = session.navigation
    assert record.closest == [1] and record.paths == [(stamp, [(1.0, 0.0), (2.0, 0.5)])]
    assert record.odom[0][:3] == (stamp, 1.5, -0.5) and abs(record.odom[0][3] - 0.75) < 1e-9
