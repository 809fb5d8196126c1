"""detection3d_node runs ``centerpoint_pillar_nuscenes`` (OpenPCDet's nuScenes CenterPoint-PointPillar, dynamic
pillars, 5 features per point) on the real nuScenes sample over real DDS, two sweeps merged with their time lag.

The sample (``../shared/real/nuscenes_sample``, one LIDAR_TOP sweep) is imported to a bag by the importer, its cloud
and ``/tf_static`` read back with rclpy; the sweep is published twice, 50 ms apart, the ego 0.6 m further along its x
the second time, so that the second detection sees two sweeps (lags 0 and 0.05 s) merged through ``map``. Weights:
the golden fixture's (random and calibrated, not trained: the boxes mean nothing, only their form and their
agreement with the core pipeline are tested). Kept small for two cores: a 25.6 m square (128 x 128 pillars) instead
of 102.4 m.
"""
from __future__ import annotations

import importlib
import time

import numpy as np
import torch
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray

from ros_mmfusion.core.bagio import open_bag
from ros_mmfusion.core.datasets import nuscenes as nus
from ros_mmfusion.core.detection3d.preprocess import point_features
from ros_mmfusion.core.detection3d.sweeps import SweepAccumulator
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.models.centerpoint import NUSCENES_CLASSES
from ros_mmfusion.nodes.detection3d import Detection3DNode, output_class_name
from ros_mmfusion.ros.node_base import stamp_to_ns
from ros_mmfusion.ros.qos import LATCHED_QOS, OUTPUT_QOS
from ros_mmfusion.ros.tf import TF_QOS
from test.core.test_centerpoint_nuscenes import FIXTURE, require
from test.fixtures import require_real
from test.ros.test_detection3d_sweeps import header, stamped

RANGE = [-12.8, -12.8, -5.0, 12.8, 12.8, 3.0]
SWEEP_GAP_NS = 50_000_000
EGO_STEP = Transform.from_xyz_rpy((0.6, 0.0, 0.0), (0.0, 0.0, 0.0))


def bag_message(bag, topic: str):
    """The one message on ``topic`` of the imported bag, deserialized by rclpy."""
    with open_bag(bag) as source:
        (raw,) = [(source.topics[m.topic], bytes(m.data)) for m in source.messages() if m.topic == topic]
    pkg, _, name = raw[0].split("/")
    return deserialize_message(raw[1], getattr(importlib.import_module(f"{pkg}.msg"), name))


def test_centerpoint_nuscenes_detects_on_the_real_sample_over_dds_with_two_sweeps(graph, tmp_path):
    folder = require_real("nuscenes_sample")
    weights = require(FIXTURE / "state_centerpoint_pillar_nuscenes_fp16.npz", "centerpoint fixture")
    torch.set_num_threads(1)  # the ONNX export's trace on a loaded two-core machine: 4x faster than two threads
    (sample,) = nus.read_samples(folder)
    nus.write_bag([sample], tmp_path / "bag")
    cloud_msg, static = bag_message(tmp_path / "bag", nus.LIDAR_TOPIC), bag_message(tmp_path / "bag", "/tf_static")

    params = {"model": "centerpoint_pillar_nuscenes", "weights": str(weights), "onnx_dir": str(tmp_path / "onnx"),
              "point_cloud_range": RANGE, "threads": 1, "sweeps": 2, "sweeps_frame": "map", "sweeps_max_age": 0.5}
    node = graph.add(Detection3DNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))
    assert node.intensity_scale() == 1.0  # nuScenes intensities raw 0..255, as the model was trained
    out = graph.record(Detection3DArray, "detections")
    cloud_pub = graph.publisher(PointCloud2, "points", OUTPUT_QOS)
    static_pub = graph.publisher(TFMessage, "/tf_static", LATCHED_QOS)
    tf_pub = graph.publisher(TFMessage, "/tf", TF_QOS)
    for pub in (cloud_pub, tf_pub):
        graph.wait_matched(pub)
    graph.spin_until(lambda: node.detections_pub.get_subscription_count() > 0)

    t0 = time.time_ns()
    t1 = t0 + SWEEP_GAP_NS
    poses = {t0: sample.T_global_ego, t1: sample.T_global_ego @ EGO_STEP}  # map <- base_link
    static_pub.publish(static)
    tf_pub.publish(TFMessage(transforms=[stamped(nus.MAP_FRAME, nus.BASE_FRAME, T, t) for t, T in poses.items()]))
    assert graph.spin_until(lambda: node.tf.can_transform(nus.MAP_FRAME, nus.LIDAR, t1))
    for k, t in enumerate((t0, t1)):
        msg = deserialize_message(serialize_message(cloud_msg), PointCloud2)
        msg.header = header(t, cloud_msg.header.frame_id)
        cloud_pub.publish(msg)
        assert graph.spin_until(lambda k=k: len(out) > k, 60.0), (node.frames_skipped, node._extra_findings)

    names = {output_class_name(n) for n in NUSCENES_CLASSES}
    for msg, t in zip(out, (t0, t1), strict=True):
        assert stamp_to_ns(msg.header.stamp) == t and msg.header.frame_id == nus.LIDAR
        assert len(msg.detections) > 0
        for d in msg.detections:
            assert d.results[0].hypothesis.class_id in names and 0.1 < d.results[0].hypothesis.score <= 1.0
            size = (d.bbox.size.x, d.bbox.size.y, d.bbox.size.z)
            centre = (d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z)
            assert all(np.isfinite(size)) and min(size) > 0 and all(np.isfinite(centre))

    # the second detection is the core pipeline's on the two sweeps merged with their lags (0 and 0.05 s)
    accumulator = SweepAccumulator(max_sweeps=2, max_age=0.5)
    single = point_features(sample.points())
    for t, T in poses.items():
        merged = accumulator.push(t * 1e-9, (T @ sample.T_ego_lidar).matrix(), single)
    assert merged.shape[1] == 5
    np.testing.assert_allclose(np.unique(merged[:, 4]), [0.0, 0.05], atol=1e-6)
    expected = node.detector(merged).detections
    assert expected.boxes.shape[1] == 9  # with velocity (vx, vy), which Detection3D has no field for
    got = np.array([[d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z,
                     d.bbox.size.x, d.bbox.size.y, d.bbox.size.z] for d in out[1].detections])
    assert len(got) == len(expected.boxes)
    np.testing.assert_allclose(got, expected.boxes[:, :6], atol=1e-4)
    np.testing.assert_allclose([d.results[0].hypothesis.score for d in out[1].detections], expected.scores,
                               atol=1e-5)
    assert len(out[0].detections) != len(got) or not np.allclose(
        [d.bbox.center.position.x for d in out[0].detections], got[:, 0]), "the second sweep changed the boxes"
