"""A synthetic bag in CARLA's convention (carla-ros-bridge naming, ``mmfusion sim --convention carla``) through the
``carla`` preset over DDS on the bag's sim time: masks stamped and framed like the bridge's colour camera, boxes moved
into ``ego_vehicle`` through the bridge-style ``/tf``, and ViNT paths in the bridge's odometry frame ``map`` against a
topological map that ``mmfusion topomap build`` made of the same bag's bgra8 camera; and ``mmfusion eval --label-map
carla`` scoring the masks against the bag's CARLA semantic camera with the trained RGB-depth model."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import Image, PointCloud2
from vision_msgs.msg import Detection3DArray

from ros_mmfusion.core.sim.conventions import carla

from .convention_paths import NAVIGATION, assert_paths_in_odometry_frame, build_topomap

FRAMES = 7  # ViNT's context takes 6 before the first path


@pytest.fixture(scope="module")
def carla_bag(tmp_path_factory):
    from ros_mmfusion.core.sim.recorder import record

    bag = tmp_path_factory.mktemp("carla") / "urban_day_carla"
    record("urban_day", bag, FRAMES, seed=1, size=(320, 240), beams=16, convention="carla")
    return bag


@pytest.fixture(scope="module")
def carla_topomap(carla_bag, tmp_path_factory):
    return build_topomap(carla_bag, carla.RGB_TOPIC, tmp_path_factory.mktemp("carla_map") / "map")


def test_topomap_build_reads_the_bridges_bgra8_camera_and_odometry(carla_bag, carla_topomap):
    """`mmfusion topomap build` on a CARLA bag: the bgra8 images as R,G,B, poses from the bag's one Odometry topic
    (/carla/ego_vehicle/odometry, found without --odom-topic) in the bridge's frames."""
    from rosbags.rosbag2 import Reader

    from ros_mmfusion.core.bagio import typestore
    from ros_mmfusion.core.codec.image import decode_image

    assert len(carla_topomap) == 4  # 7 frames 0.1 s apart, a node every 0.2 s
    assert (carla_topomap.pose_frame, carla_topomap.child_frame) == ("map", "ego_vehicle")
    assert carla_topomap.has_poses
    store = typestore()
    with Reader(carla_bag) as reader:
        conn = next(c for c in reader.connections if c.topic == carla.RGB_TOPIC)
        first = store.deserialize_cdr(next(raw for _, _, raw in reader.messages(connections=[conn])), conn.msgtype)
    bgra = decode_image(first.height, first.width, first.encoding, first.is_bigendian, first.step,
                        np.asarray(first.data, np.uint8))
    assert first.encoding == "bgra8"
    np.testing.assert_array_equal(carla_topomap.image(0), bgra[..., 2::-1])


def test_the_bag_is_written_as_the_bridge_publishes(carla_bag):
    """Topics, encodings, frames and the cloud layout of carla-ros-bridge (docs/simulators.md)."""
    from rosbags.rosbag2 import Reader

    from ros_mmfusion.core.bagio import typestore

    store = typestore()
    seen: dict[str, object] = {}
    tf_children: list[tuple[int, str, str]] = []
    order: list[str] = []
    with Reader(carla_bag) as reader:
        topics = {c.topic for c in reader.connections}
        for conn, _, data in reader.messages():
            msg = store.deserialize_cdr(data, conn.msgtype)
            order.append(conn.topic)
            seen.setdefault(conn.topic, msg)
            if conn.topic == "/tf":
                tf_children += [(t.header.stamp.sec * 10**9 + t.header.stamp.nanosec, t.header.frame_id,
                                 t.child_frame_id) for t in msg.transforms]
    assert {carla.RGB_TOPIC, carla.RGB_INFO_TOPIC, carla.DEPTH_TOPIC, carla.SEMANTIC_TOPIC, carla.LIDAR_TOPIC,
            carla.ODOMETRY_TOPIC, "/tf", "/clock"} <= topics
    assert not {t for t in topics if "thermal" in t or t in ("/tf_static", "/ground_truth/semantic",
                                                             "/ground_truth/instance")}
    assert (seen[carla.RGB_TOPIC].encoding, seen[carla.RGB_TOPIC].header.frame_id) == ("bgra8", "ego_vehicle/rgb_front")
    assert seen[carla.DEPTH_TOPIC].encoding == "32FC1"
    depth = np.frombuffer(bytes(seen[carla.DEPTH_TOPIC].data), "<f4")
    assert np.isfinite(depth).all() and depth.max() == carla.FAR_PLANE_M  # CARLA's far plane where the suite has NaN
    semantic = seen[carla.SEMANTIC_TOPIC]
    assert (semantic.encoding, semantic.header.frame_id) == ("bgra8", carla.SEMANTIC_FRAME)
    cloud = seen[carla.LIDAR_TOPIC]
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7),
                                                                     ("intensity", 12, 7)]
    assert cloud.point_step == 16 and cloud.header.frame_id == "ego_vehicle/lidar"
    intensity = np.frombuffer(bytes(cloud.data), "<f4").reshape(-1, 4)[:, 3]
    assert 0.0 <= intensity.min() and intensity.max() <= 1.0 and intensity.max() > 0.2
    odom = seen[carla.ODOMETRY_TOPIC]
    assert (odom.header.frame_id, odom.child_frame_id) == ("map", "ego_vehicle")
    # every sensor's mounting is on /tf at the stamp of each frame, written before the frame's measurements
    for child in ("ego_vehicle/rgb_front", "ego_vehicle/depth_front", "ego_vehicle/lidar", carla.SEMANTIC_FRAME):
        assert len([s for s, parent, c in tf_children if c == child and parent == "ego_vehicle"]) == FRAMES
    assert order[order.index(carla.RGB_TOPIC) - 1] == "/tf"
    assert len([1 for _, parent, c in tf_children if (parent, c) == ("map", "ego_vehicle")]) == FRAMES


def test_the_carla_preset_gives_masks_boxes_in_the_requested_frame_and_paths_on_sim_time(carla_bag, carla_topomap):
    import rclpy

    from ros_mmfusion import presets
    from ros_mmfusion.launcher import run_in_process
    from ros_mmfusion.ros.tap import TopicTap

    preset = presets.load("carla", {"bag": str(carla_bag), "topomap": str(carla_topomap.directory)}, {
        "bag_player": {"start_delay": 2.0, "rate": 0.25},
        "detection3d": {"threads": 1, "score_thresholds": [0.05]},
        "fusion_segmentation": {"threads": 1},
        "vint_navigation": NAVIGATION})
    player = preset.nodes[0].parameters
    assert (player["publish_clock"], player["restamp"]) == (True, False)  # the preset replays on the bag's time
    assert all(n.parameters["use_sim_time"] is True for n in preset.nodes[1:])
    rclpy.init()
    try:
        tap = TopicTap({"/segmentation/labels": Image, "/detections": Detection3DArray, carla.LIDAR_TOPIC: PointCloud2,
                        carla.RGB_TOPIC: Image, "/navigation/path": Path, carla.ODOMETRY_TOPIC: Odometry}, keep=10)
        finished: list[float] = []
        # the tap's own copies of the bag's inputs too: one executor may run a path's callback before the odometry
        # message of the same stamp (the paths are checked against the tap's odometry)
        wanted = {"/segmentation/labels": FRAMES, "/detections": FRAMES, "/navigation/path": FRAMES - 5,
                  carla.RGB_TOPIC: FRAMES, carla.LIDAR_TOPIC: FRAMES, carla.ODOMETRY_TOPIC: FRAMES}
        outputs = tuple(wanted)

        def done(nodes) -> bool:
            if nodes[0].finished.is_set() and not finished:
                finished.append(time.monotonic())
            delivered = all(tap.records[t].count >= wanted[t] for t in outputs)
            return bool(finished) and (delivered or time.monotonic() - finished[0] > 8)

        run_in_process(preset, until=done, duration=120.0, extra_nodes=[tap])
    finally:
        rclpy.try_shutdown()
    masks, boxes = tap.records["/segmentation/labels"], tap.records["/detections"]
    images, clouds = tap.records[carla.RGB_TOPIC], tap.records[carla.LIDAR_TOPIC]
    assert images.count == clouds.count == FRAMES
    assert set(images.history) == set(_stamps(carla_bag, carla.RGB_TOPIC)), "the bag's stamps (sim time)"
    assert masks.count >= FRAMES - 1 and boxes.count >= FRAMES - 1, (masks.count, boxes.count)
    assert set(masks.history) <= set(images.history) and set(boxes.history) <= set(clouds.history)
    assert all(m.header.frame_id == "ego_vehicle/rgb_front" and (m.height, m.width) == (240, 320)
               for m in masks.history.values())
    assert all(m.header.frame_id == "ego_vehicle" for m in boxes.history.values())
    centres = np.array([[d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z]
                        for m in boxes.history.values() for d in m.detections])
    assert len(centres), "no box detected in any frame"
    # in ego_vehicle (ground level) box centres stand above the ground; in the LiDAR frame (1.9 m up) they would
    # be about 1 m below its origin: the boxes were moved through /tf
    assert (centres[:, 2] > 0.0).all(), centres
    # paths in the bridge's odometry frame (path_frame: map), moved with /carla/ego_vehicle/odometry
    odometry = tap.records[carla.ODOMETRY_TOPIC].history
    assert_paths_in_odometry_frame(tap.records["/navigation/path"].history, images.history, odometry, "map", FRAMES,
                                   spacing=1.75)


def _stamps(bag, topic) -> list[int]:
    from rosbags.rosbag2 import Reader

    from ros_mmfusion.core.bagio import typestore

    store = typestore()
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec)
                for m in (store.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns))]


def test_mmfusion_eval_scores_the_carla_bag_against_its_semantic_camera(carla_bag, tmp_path, ros_child_env):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "ros_mmfusion.cli", "eval", "--bag", str(carla_bag), "--preset",
                           "carla", "--label-map", "carla", "--out", str(out), "--no-record", "--rate", "0.5",
                           "--set", "detection3d.threads=1", "--set", "fusion_segmentation.threads=1"],
                          env=ros_child_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    seg = metrics["segmentation"]
    assert seg["frames"] >= FRAMES - 1 and seg["mIoU"] > 0.1, seg
    truth = metrics["run"]["semantic_ground_truth"]
    assert (truth["topic"], truth["label_map"], truth["unknown_colour_pixels"]) == (carla.SEMANTIC_TOPIC, "carla", 0)
    assert any("read through the carla label map" in note and "Fence" in note for note in metrics["notes"])
    assert "segmentation: mIoU" in proc.stdout and "detection" in metrics


def test_eval_refuses_an_unknown_label_map_in_one_line(carla_bag, tmp_path, ros_child_env):
    proc = subprocess.run([sys.executable, "-m", "ros_mmfusion.cli", "eval", "--bag", str(carla_bag), "--preset",
                           "carla", "--label-map", "gazebo", "--out", str(tmp_path / "r")],
                          env=ros_child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown label map 'gazebo'; expected one of: carla" in proc.stderr.strip().splitlines()[-1]
