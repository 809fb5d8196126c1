"""Recorded bags: every topic present, rclpy reads every message field for field, stamps shared, calibration agrees."""
from __future__ import annotations

import array
import importlib
import math
from collections import defaultdict

import numpy as np
import pytest
import yaml

from ros_mmfusion.core.bagio import typestore
from ros_mmfusion.core.calibration import load_calibration
from ros_mmfusion.core.codec.image import decode_image
from ros_mmfusion.core.sim.recorder import STATIC_TOPICS, TOPICS, record
from ros_mmfusion.core.sim.simulator import Simulation

FRAMES, SIZE, SEED = 3, (96, 72), 2


def _read(path):
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        conns = {c.topic: c for c in reader.connections}
        messages = [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]
    return conns, messages


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "urban"
    summary = record("urban_day", out, FRAMES, seed=SEED, size=SIZE, storage="mcap")
    return out, summary, *_read(out)


def test_bag_holds_every_topic_once_per_frame_with_type_hashes(bag):
    out, summary, conns, messages = bag
    assert set(conns) == set(TOPICS)
    counts = defaultdict(int)
    for topic, *_ in messages:
        counts[topic] += 1
    for topic, (msgtype, _) in TOPICS.items():
        assert conns[topic].msgtype == msgtype
        assert conns[topic].digest.startswith("RIHS01_")
        assert counts[topic] == (1 if topic in STATIC_TOPICS else FRAMES), topic
    assert summary.messages == dict(counts) and summary.frames == FRAMES
    assert {p.name for p in out.iterdir()} == {"metadata.yaml", "urban.mcap", "calibration.yaml", "scenario.yaml"}
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    qos = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
           for t in meta["topics_with_message_count"]}
    assert "transient_local" in str(qos["/tf_static"]) and "volatile" in str(qos["/lidar/points"])


def _assert_same(ours, theirs, where: str) -> None:
    """Field-by-field equality of an rclpy message and a rosbags message."""
    if hasattr(ours, "get_fields_and_field_types"):
        for name in ours.get_fields_and_field_types():
            _assert_same(getattr(ours, name), getattr(theirs, name), f"{where}.{name}")
    elif isinstance(ours, (list, tuple)) and ours and hasattr(ours[0], "get_fields_and_field_types"):
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _assert_same(a, b, f"{where}[{i}]")
    elif isinstance(ours, (array.array, np.ndarray, bytes, list, tuple)):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=where)
    elif isinstance(ours, float):
        assert ours == theirs or (math.isnan(ours) and math.isnan(theirs)), where
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def test_rclpy_deserializes_every_message_with_the_fields_rosbags_reads(bag):
    from rclpy.serialization import deserialize_message

    _, _, _, messages = bag
    store = typestore()
    seen = set()
    for topic, msgtype, _, raw in messages:
        pkg, _, name = msgtype.split("/")
        cls = getattr(importlib.import_module(f"{pkg}.msg"), name)
        _assert_same(deserialize_message(raw, cls), store.deserialize_cdr(raw, msgtype), topic)
        seen.add(msgtype)
    assert seen == {t for t, _ in TOPICS.values()}


def test_messages_of_one_frame_share_one_header_stamp(bag):
    _, _, _, messages = bag
    store = typestore()
    sim = Simulation("urban_day", seed=SEED, size=SIZE)
    stamps = defaultdict(set)
    for topic, msgtype, log_time, raw in messages:
        msg = store.deserialize_cdr(raw, msgtype)
        headers = [t.header for t in msg.transforms] if msgtype == "tf2_msgs/msg/TFMessage" else [msg.header]
        if msgtype == "vision_msgs/msg/Detection3DArray":
            headers += [d.header for d in msg.detections]
        for h in headers:
            stamp = h.stamp.sec * 1_000_000_000 + h.stamp.nanosec
            assert stamp == log_time, topic
            stamps[stamp].add(topic)
    assert sorted(stamps) == [sim.stamp_ns(i) for i in range(FRAMES)]
    assert stamps[sim.stamp_ns(0)] == set(TOPICS)
    assert stamps[sim.stamp_ns(1)] == set(TOPICS) - set(STATIC_TOPICS)


def test_bag_payloads_are_the_simulated_arrays(bag):
    _, _, _, messages = bag
    store = typestore()
    sim = Simulation("urban_day", seed=SEED, size=SIZE)
    frame = sim.frame(1)
    wanted = {
        "/camera/color/image_raw": frame.camera.rgb,
        "/camera/depth/image_rect_raw": frame.camera.depth,
        "/thermal/image_raw": frame.camera.thermal,
        "/ground_truth/semantic": frame.camera.semantic,
        "/ground_truth/instance": frame.camera.instance,
    }
    for topic, msgtype, log_time, raw in messages:
        if log_time != frame.stamp_ns:
            continue
        msg = store.deserialize_cdr(raw, msgtype)
        if topic in wanted:
            img = decode_image(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)
            np.testing.assert_array_equal(img, wanted[topic], err_msg=topic)
        elif topic == "/lidar/points":
            assert [f.name for f in msg.fields] == ["x", "y", "z", "intensity", "ring"]
            cloud = np.frombuffer(msg.data.tobytes(), frame.lidar.points.dtype)
            np.testing.assert_array_equal(cloud, frame.lidar.points)
        elif topic == "/ground_truth/points":
            assert [f.name for f in msg.fields] == ["x", "y", "z", "label", "instance"]
            gt = np.frombuffer(msg.data.tobytes(), np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                                              ("label", "<u2"), ("instance", "<u2")]))
            np.testing.assert_array_equal(gt["label"], frame.lidar.labels)
            np.testing.assert_array_equal(gt["instance"], frame.lidar.instances)
        elif topic == "/ground_truth/boxes":
            assert [d.id for d in msg.detections] == [str(b.instance_id) for b in frame.boxes]
            for det, box in zip(msg.detections, frame.boxes, strict=True):
                assert det.results[0].hypothesis.class_id == box.class_name
                c = det.bbox.center.position
                np.testing.assert_allclose([c.x, c.y, c.z], box.center)
                np.testing.assert_allclose([det.bbox.size.x, det.bbox.size.y, det.bbox.size.z], box.size)
        elif topic == "/odom":
            p = msg.pose.pose.position
            np.testing.assert_allclose([p.x, p.y, p.z], frame.ego.T_odom_base.translation)
            assert msg.header.frame_id == "odom" and msg.child_frame_id == "base_link"
            assert msg.twist.twist.linear.x == pytest.approx(sim.world.ego_route.speed, rel=1e-3)


def test_calibration_file_matches_camera_info_and_tf_static(bag):
    out, _, _, messages = bag
    store = typestore()
    calib = load_calibration(out / "calibration.yaml")
    infos, statics = {}, None
    for topic, msgtype, _, raw in messages:
        if msgtype == "sensor_msgs/msg/CameraInfo":
            infos[topic] = store.deserialize_cdr(raw, msgtype)
        elif topic == "/tf_static":
            statics = store.deserialize_cdr(raw, msgtype)
    by_child = {t.child_frame_id: t for t in statics.transforms}
    topics = {"color": "/camera/color/camera_info", "depth": "/camera/depth/camera_info",
              "thermal": "/thermal/camera_info"}
    for name, cam in calib.cameras.items():
        info = infos[topics[name]]
        assert info.header.frame_id == cam.frame_id and (info.width, info.height) == SIZE
        np.testing.assert_allclose(info.k.reshape(3, 3), cam.camera.k)
        tf = by_child[cam.frame_id].transform
        assert by_child[cam.frame_id].header.frame_id == "base_link"
        np.testing.assert_allclose([tf.translation.x, tf.translation.y, tf.translation.z],
                                   cam.T_base_sensor.translation, atol=1e-9)
        q = cam.T_base_sensor.quaternion()
        np.testing.assert_allclose([tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w], q, atol=1e-9)
    assert calib.lidar.frame_id in by_child and len(calib.lidar.elevations_rad) == 32
    scenario = yaml.safe_load((out / "scenario.yaml").read_text())
    assert scenario["scenario"] == "urban_day" and scenario["seed"] == SEED and scenario["frames"] == FRAMES


SENSOR_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/PointCloud2")


def test_every_sensor_frame_resolves_through_tf_static_as_the_calibration_says(bag):
    """The frame_id of every Image, CameraInfo and PointCloud2 in the bag (ground truth included) reaches base_link
    through the bag's /tf_static (what the nodes look up: camera <- LiDAR), with the calibration file's transforms."""
    from ros_mmfusion.core.tf_buffer import TfBuffer

    out, _, _, messages = bag
    store = typestore()
    tf, frames = TfBuffer(), set()
    for topic, msgtype, _, raw in messages:
        if topic == "/tf_static":
            tf.add_message(store.deserialize_cdr(raw, msgtype).transforms, static=True)
        elif msgtype in SENSOR_TYPES:
            frames.add(store.deserialize_cdr(raw, msgtype).header.frame_id)
    calib = load_calibration(out / "calibration.yaml")
    sensors = {cam.frame_id: cam.T_base_sensor for cam in calib.cameras.values()}
    sensors[calib.lidar.frame_id] = calib.lidar.T_base_sensor
    assert frames and frames <= set(sensors), (frames, set(sensors))
    for frame in frames:
        np.testing.assert_allclose(tf.lookup("base_link", frame).matrix(), sensors[frame].matrix(), atol=1e-9)
    color = calib.cameras["color"]
    np.testing.assert_allclose(tf.lookup(color.frame_id, calib.lidar.frame_id).matrix(),
                               calib.camera_from_lidar("color").matrix(), atol=1e-9)


def test_sqlite3_storage_and_16uc1_millimetre_depth(tmp_path):
    out = tmp_path / "corridor"
    record("indoor_corridor", out, 2, seed=SEED, size=SIZE, storage="sqlite3", depth_encoding="16UC1")
    assert any(p.suffix == ".db3" for p in out.iterdir())
    _, messages = _read(out)
    store = typestore()
    frame = Simulation("indoor_corridor", seed=SEED, size=SIZE).frame(0)
    depth = [store.deserialize_cdr(raw, t) for topic, t, _, raw in messages if topic == "/camera/depth/image_rect_raw"]
    assert len(depth) == 2 and depth[0].encoding == "16UC1"
    mm = decode_image(depth[0].height, depth[0].width, "16UC1", depth[0].is_bigendian, depth[0].step, depth[0].data)
    expected = np.where(np.isfinite(frame.camera.depth), np.rint(frame.camera.depth * 1000.0), 0).astype(np.uint16)
    np.testing.assert_array_equal(mm, expected)
