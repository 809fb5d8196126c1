"""A bag recorded in each simulator/driver convention (`mmfusion sim --convention NAME`) runs through that
convention's preset over real DDS, as `mmfusion run NAME --bag DIR` runs it: masks stamped like the colour images in
the convention's colour frame, and boxes in the preset's ``output_frame`` (through the bag's /tf_static in the
convention's frame names) that are the LiDAR-frame boxes of a reference detector moved by that transform, and ViNT
paths in the convention's odometry frame against a topological map that ``mmfusion topomap build`` made of the same
bag (`mmfusion run NAME --bag DIR --arg topomap=MAP`). The gazebo preset replays on the bag's sim time (/clock from
the player), the realsense preset on the wall clock with the bag's stamps kept.

Small on purpose (8 64x48 frames: ViNT's context takes 6 before the first path; 16 beams, the tiny random-weight
segmentation package, PointPillars over a small range): each case takes well under a minute on two loaded cores.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from nav_msgs.msg import Odometry, Path
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, PointCloud2
from vision_msgs.msg import Detection3DArray

from .convention_paths import NAVIGATION, assert_paths_in_odometry_frame, build_topomap

FRAMES = 8
NEAR = [0.0, -10.24, -3.0, 20.48, 10.24, 1.0]
DETECTION = {"point_cloud_range": NEAR, "threads": 1, "diagnostics_period": 0.2, "model_package": "",
             "score_thresholds": [0.01]}
CASES = [("gazebo", "indoor_corridor"), ("realsense", "urban_night")]


@pytest.fixture(scope="module")
def onnx_root(tmp_path_factory):
    return tmp_path_factory.mktemp("conventions_onnx")


def _transform(tf_static, parent: str, child: str) -> np.ndarray:
    """The 4x4 parent <- child transform of a recorded /tf_static message."""
    from ros_mmfusion.core.geometry import Transform

    t = next(t.transform for t in tf_static.transforms
             if t.header.frame_id == parent and t.child_frame_id == child)
    q = t.rotation
    return Transform.from_xyz_quat([t.translation.x, t.translation.y, t.translation.z],
                                   [q.x, q.y, q.z, q.w]).matrix()


@pytest.mark.parametrize("name,scenario", CASES)
def test_a_convention_bag_runs_through_its_preset_with_the_conventions_stamps_frames_and_paths(
        name, scenario, tiny_thermal_package, onnx_root, tmp_path):
    import rclpy

    from ros_mmfusion import presets
    from ros_mmfusion.core.sim.conventions import get_convention
    from ros_mmfusion.core.sim.recorder import record
    from ros_mmfusion.launcher import run_in_process
    from ros_mmfusion.nodes.detection3d import Detection3DNode
    from ros_mmfusion.ros.tap import TopicTap

    convention = get_convention(name)
    bag = tmp_path / name
    record(scenario, bag, FRAMES, seed=1, size=(64, 48), beams=16, convention=name)
    colour, cloud = convention.topic("/camera/color/image_raw"), convention.topic("/lidar/points")
    base, lidar = convention.frame("base_link"), convention.frame("lidar_link")
    odom_topic, odom_frame = convention.topic("/odom"), convention.frame("odom")
    bag_stamps = set(_stamps(bag, cloud))
    assert len(bag_stamps) == FRAMES
    topomap = build_topomap(bag, colour, tmp_path / "map")  # the same route as the map's first pass
    assert topomap.pose_frame == odom_frame and topomap.has_poses, "poses from the bag's one Odometry topic"

    preset = presets.load(convention.preset, {"bag": str(bag), "topomap": str(topomap.directory)}, {
        "fusion_segmentation": {"model_package": tiny_thermal_package, "threads": 1},
        "detection3d": {**DETECTION, "onnx_dir": str(onnx_root / "pointpillars_synthetic")},
        "vint_navigation": NAVIGATION,
        # slow enough that one executor on two loaded cores keeps up with five nodes (sensor queues hold 5 frames)
        "bag_player": {"start_delay": 2.0, "restamp": False, "rate": 0.2}})
    detection = next(n for n in preset.nodes if n.key == "detection3d")
    assert detection.parameters["output_frame"] == base
    navigation = next(n for n in preset.nodes if n.key == "vint_navigation")
    assert (navigation.parameters["path_frame"], navigation.remappings["odom"]) == (odom_frame, odom_topic)
    sim_time = name == "gazebo"  # a simulator with /clock; a robot's bag replays on the wall clock
    assert preset.nodes[0].parameters["publish_clock"] is sim_time
    assert all(n.parameters.get("use_sim_time", False) is sim_time for n in preset.nodes[1:])
    rclpy.init()
    try:
        tap = TopicTap({"/segmentation/labels": Image, colour: Image, "/detections": Detection3DArray,
                        "/reference/detections": Detection3DArray, cloud: PointCloud2, "/navigation/path": Path,
                        odom_topic: Odometry}, keep=10)
        # the same detector without output_frame: its boxes stay in the cloud's frame
        reference = Detection3DNode(namespace="reference", cli_args=["--ros-args", "-r", f"points:={cloud}"],
                                    parameter_overrides=[Parameter(k, value=v) for k, v in {
                                        **DETECTION, "onnx_dir": str(onnx_root / "pointpillars_synthetic")}.items()])
        finished: list[float] = []

        def done(nodes) -> bool:
            if nodes[0].finished.is_set() and not finished:
                finished.append(time.monotonic())
            # the tap's own copies of the bag's inputs too: one executor may run a path's callback before the
            # odometry message of the same stamp (the paths are checked against the tap's odometry)
            outputs = [tap.records[t].count for t in ("/segmentation/labels", "/detections", "/reference/detections",
                                                      colour, odom_topic)]
            paths = tap.records["/navigation/path"].count
            return bool(finished) and ((min(outputs) >= FRAMES and paths >= FRAMES - 5)
                                       or time.monotonic() - finished[0] > 10.0)

        run_in_process(preset, until=done, duration=90.0, extra_nodes=[tap, reference])
    finally:
        rclpy.try_shutdown()
    images, masks = tap.records[colour], tap.records["/segmentation/labels"]
    boxes, reference_boxes = tap.records["/detections"], tap.records["/reference/detections"]
    assert images.count == FRAMES and set(images.history) == bag_stamps, "the bag's stamps, not wall time"
    assert images.last.header.frame_id == convention.frame("camera_color_optical_frame")
    assert masks.count >= FRAMES - 1, f"only {masks.count} masks for {FRAMES} frames"
    assert set(masks.history) <= bag_stamps
    assert {m.header.frame_id for m in masks.history.values()} == {images.last.header.frame_id}
    assert boxes.count >= FRAMES - 1 and set(boxes.history) <= bag_stamps
    assert {m.header.frame_id for m in boxes.history.values()} == {base}
    assert {m.header.frame_id for m in reference_boxes.history.values()} == {lidar}

    T_base_lidar = _transform(_tf_static(bag), base, lidar)
    compared = 0
    for stamp in set(boxes.history) & set(reference_boxes.history):
        ours, ref = boxes.history[stamp].detections, reference_boxes.history[stamp].detections
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref, strict=True):
            assert a.header.frame_id == base
            centre = T_base_lidar @ [b.bbox.center.position.x, b.bbox.center.position.y, b.bbox.center.position.z, 1]
            p = a.bbox.center.position
            np.testing.assert_allclose([p.x, p.y, p.z], centre[:3], atol=1e-4)
            compared += 1
    assert compared > 0, "no frame with boxes from both detectors"
    # paths in the convention's odometry frame (robot/odom, odom), moved with its odometry topic
    assert_paths_in_odometry_frame(tap.records["/navigation/path"].history, images.history,
                                   tap.records[odom_topic].history, odom_frame, FRAMES, spacing=0.25)


def _messages(bag, topic):
    from rosbags.rosbag2 import Reader

    from ros_mmfusion.core.bagio import typestore

    store = typestore()
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [store.deserialize_cdr(bytes(raw), c.msgtype) for c, _, raw in reader.messages(connections=conns)]


def _stamps(bag, topic) -> list[int]:
    return [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in _messages(bag, topic)]


def _tf_static(bag):
    return _messages(bag, "/tf_static")[0]
