"""The imported nuScenes sample (``../shared/real/nuscenes_sample``) with ROS: rclpy reads every message of the bag,
and detection3d_node paints the real LIDAR_TOP sweep from six cameras' labels over real DDS, with the real
calibration from /tf_static and /tf (cameras and LiDAR at their own stamps, chained through ``map``).

Kept small for two cores: label images at a quarter of the cameras' size (the node rescales the calibration), the
detector's painted model package (trained painted channels: painting changes its output) over 0..20.48 m x +-10.24 m
(the range of test_detection3d_node), the sample replayed three times."""
from __future__ import annotations

import importlib
import time

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray

from ros_mmfusion.core.bagio import open_bag, typestore
from ros_mmfusion.core.datasets import nuscenes as nus
from ros_mmfusion.core.detection3d.painting import MultiCameraScores, SegmentationScores, paint_class_ids
from ros_mmfusion.core.labels import CAR, CYCLIST, PEDESTRIAN, ROAD
from ros_mmfusion.core.tf_buffer import TfBuffer
from ros_mmfusion.nodes.detection3d import Detection3DNode
from ros_mmfusion.paths import share_dir
from ros_mmfusion.ros.image import numpy_to_image
from ros_mmfusion.ros.node_base import stamp_to_ns
from ros_mmfusion.ros.qos import LATCHED_QOS, OUTPUT_QOS
from ros_mmfusion.ros.tf import TF_QOS
from test.core.test_sim_bag import _assert_same
from test.fixtures import require_real

NEAR = [0.0, -10.24, -3.0, 20.48, 10.24, 1.0]
#: one constant class per camera: the painted one-hot of a point names the camera it was painted from
CAMERA_CLASS = {"CAM_FRONT": ROAD, "CAM_FRONT_RIGHT": CAR, "CAM_FRONT_LEFT": PEDESTRIAN, "CAM_BACK": CYCLIST,
                "CAM_BACK_LEFT": CAR, "CAM_BACK_RIGHT": PEDESTRIAN}
LABEL_SIZE = (225, 400)


@pytest.fixture(scope="module")
def bag_messages(tmp_path_factory):
    """[(topic, msgtype, raw)] of the fixture imported by ``mmfusion import nuscenes``."""
    from ros_mmfusion.cli.main import main

    out = tmp_path_factory.mktemp("nuscenes") / "bag"
    assert main(["import", "nuscenes", str(require_real("nuscenes_sample")), "--out", str(out)]) == 0
    with open_bag(out) as source:
        return [(m.topic, source.topics[m.topic], bytes(m.data)) for m in source.messages()]


def test_rclpy_deserializes_every_message_of_the_imported_bag_with_the_fields_rosbags_reads(bag_messages):
    store = typestore()
    for topic, msgtype, raw in bag_messages:
        pkg, _, name = msgtype.split("/")
        cls = getattr(importlib.import_module(f"{pkg}.msg"), name)
        _assert_same(deserialize_message(raw, cls), store.deserialize_cdr(raw, msgtype), topic)
    assert {t for t, _, _ in bag_messages} == set(nus.TOPICS)


def shifted(msg, shift_ns: int):
    """``msg`` (an rclpy message with a header, or a TFMessage) with every stamp moved by ``shift_ns``."""
    for h in [t.header for t in msg.transforms] if isinstance(msg, TFMessage) else [msg.header]:
        h.stamp.sec, h.stamp.nanosec = divmod(stamp_to_ns(h.stamp) + shift_ns, 1_000_000_000)
    return msg


def test_detection_paints_the_real_sweep_from_six_cameras_over_dds(graph, bag_messages, tmp_path_factory):
    (sample,) = nus.read_samples(require_real("nuscenes_sample"))
    values = {"point_cloud_range": NEAR, "threads": 1, "score_thresholds": [0.01], "painting": True,
              "paint_cameras": list(nus.CAMERAS), "paint_fixed_frame": "map", "extrinsics_source": "tf",
              "painting_timeout": 1.0, "sync_max_interval": 0.1,
              "model_package": str(share_dir() / "models" / "pointpillars_synthetic_lite_painted"),
              "onnx_dir": str(tmp_path_factory.mktemp("onnx") / "pointpillars_synthetic_lite_painted")}
    node = graph.add(Detection3DNode(parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
    out = graph.record(Detection3DArray, "detections")
    cloud_pub = graph.publisher(PointCloud2, "points", OUTPUT_QOS)  # /LIDAR_TOP, as the preset remaps it
    static_pub = graph.publisher(TFMessage, "/tf_static", LATCHED_QOS)
    tf_pub = graph.publisher(TFMessage, "/tf", TF_QOS)
    labels_pubs = {c: graph.publisher(Image, f"/{c}/segmentation/labels", OUTPUT_QOS) for c in nus.CAMERAS}
    info_pubs = {c: graph.publisher(CameraInfo, f"/{c}/camera_info", OUTPUT_QOS) for c in nus.CAMERAS}
    for pub in (cloud_pub, tf_pub, *labels_pubs.values(), *info_pubs.values()):
        graph.wait_matched(pub)
    graph.spin_until(lambda: node.detections_pub.get_subscription_count() > 0)

    decoded = [(t, deserialize_message(raw, getattr(importlib.import_module(f"{m.split('/')[0]}.msg"),
                                                    m.split("/")[2]))) for t, m, raw in bag_messages]
    (static,) = [m for t, m in decoded if t == "/tf_static"]
    static_pub.publish(static)
    shift0 = time.time_ns() - sample.stamp_ns
    tf = TfBuffer()  # what the node's buffer holds, for the expected painting
    tf.add_message(shifted(static, 0).transforms, static=True)
    clouds = []
    for k in range(3):  # the sample three times, 0.3 s apart: the synchronizer emits a set once a newer one exists
        shift = shift0 + k * 300_000_000
        for topic, msg in decoded:
            msg = deserialize_message(serialize(msg), type(msg))  # a fresh copy to restamp
            if topic == "/tf":
                tf_pub.publish(shifted(msg, shift))
                tf.add_message(msg.transforms)
            elif topic.endswith("/camera_info"):
                info_pubs[topic.split("/")[1]].publish(shifted(msg, shift))
            elif topic.endswith("/compressed"):
                camera = topic.split("/")[1]
                mask = np.full(LABEL_SIZE, CAMERA_CLASS[camera], np.uint8)
                labels_pubs[camera].publish(numpy_to_image(mask, "mono8", shifted(msg, shift).header))
            elif topic == nus.LIDAR_TOPIC:
                clouds.append(shifted(msg, shift))
                cloud_pub.publish(clouds[-1])
            graph.spin_for(0.01)
        graph.spin_for(0.2)
    assert graph.spin_until(lambda: len(out) >= 2, 60.0), (len(out), node.painted_frames, node.unpainted_frames)
    assert node.painted_frames >= 2 and node.unpainted_frames == 0 and not node.sync.stalled()

    # the same painting computed here: each camera's constant class through the TF chain camera(t_cam) <- map <-
    # LIDAR_TOP(t_lidar), the labels at a quarter size; its detections are what the node published
    first = out[0]
    cloud_stamp = stamp_to_ns(first.header.stamp)
    assert cloud_stamp in {stamp_to_ns(c.header.stamp) for c in clouds} and first.header.frame_id == nus.LIDAR
    k = round((cloud_stamp - shift0 - sample.stamp_ns) / 300_000_000)
    ids = paint_class_ids(["car", "pedestrian", "cyclist"])
    cameras = []
    for name, cam in sample.cameras.items():
        T = tf.lookup(name, "map", cam.stamp_ns + shift0 + k * 300_000_000) @ tf.lookup("map", nus.LIDAR, cloud_stamp)
        np.testing.assert_allclose(T.matrix(), cam.T_cam_lidar.matrix(), atol=2e-4)  # = nuScenes' lidar2cam
        cameras.append(SegmentationScores(cam.camera, T, labels=np.full(LABEL_SIZE, CAMERA_CLASS[name], np.uint8),
                                          class_ids=ids))
    points = sample.points()
    expected = node.detector(points, MultiCameraScores(tuple(cameras))).detections
    unpainted = node.detector(points, None).detections
    assert len(expected.boxes) > 0
    assert len(unpainted.boxes) != len(expected.boxes) or not np.allclose(unpainted.boxes, expected.boxes), \
        "painting changes this network's output, so the comparison below can tell"
    got = np.array([[d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z,
                     d.bbox.size.x, d.bbox.size.y, d.bbox.size.z] for d in first.detections])
    assert len(got) == len(expected.boxes)
    np.testing.assert_allclose(got, expected.boxes[:, :6], atol=1e-4)
    np.testing.assert_allclose([d.results[0].hypothesis.score for d in first.detections], expected.scores,
                               atol=1e-5)


def serialize(msg) -> bytes:
    from rclpy.serialization import serialize_message

    return serialize_message(msg)
