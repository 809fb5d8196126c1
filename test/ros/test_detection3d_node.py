"""detection3d_node over real DDS, with untrained weights through ONNX Runtime.

Configuration used here, to stay fast on two cores: the networks of ``pointpillars_synthetic`` (anchor head) and
``centerpoint_pillar`` (centre head) over 0..20.48 m ahead and +-10.24 m to the side (128 x 128 pillars instead of
248 x 248 or 432 x 496), one inference thread, the ONNX files exported once per test module into a temporary
directory. Random weights score every anchor about 0.01, so the anchor-head runs use a threshold of 0.01 to publish
boxes at all.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import Marker, MarkerArray

from ros_mmfusion.core.codec.pointcloud import structured_cloud
from ros_mmfusion.core.detection3d.artifacts import DetectorSpec, build_detector
from ros_mmfusion.core.detection3d.pipeline import with_range
from ros_mmfusion.core.geometry import PinholeCamera
from ros_mmfusion.core.labels import CAR, ROAD
from ros_mmfusion.core.models.pointpillars import VARIANTS
from ros_mmfusion.core.sim import Simulation
from ros_mmfusion.nodes.detection3d import Detection3DNode
from ros_mmfusion.ros.camera_info import CameraIntrinsics, intrinsics_to_camera_info
from ros_mmfusion.ros.image import numpy_to_image
from ros_mmfusion.ros.node_base import stamp_to_ns
from ros_mmfusion.ros.pointcloud import array_to_pointcloud2
from ros_mmfusion.ros.qos import OUTPUT_QOS

NEAR = [0.0, -10.24, -3.0, 20.48, 10.24, 1.0]
FAST = {"point_cloud_range": NEAR, "threads": 1, "diagnostics_period": 0.2}


@pytest.fixture(scope="module")
def onnx_root(tmp_path_factory):
    return tmp_path_factory.mktemp("detection3d_onnx")


@pytest.fixture(scope="module")
def sweep() -> np.ndarray:
    """A 16-beam synthetic urban_day sweep: x y z intensity (0..255) ring."""
    return Simulation("urban_day", size=(64, 48), beams=16).frame(0).lidar.points


def header(stamp_ns: int, frame_id: str = "lidar_link") -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def start(graph, onnx_root, **params):
    directory = params.get("model", "pointpillars_synthetic") + ("_painted" if params.get("painting") else "")
    values = {**FAST, "onnx_dir": str(onnx_root / directory), **params}
    node = graph.add(Detection3DNode(parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
    out = graph.record(Detection3DArray, "detections")
    markers = graph.record(MarkerArray, "detections/markers")
    diags = graph.record(DiagnosticArray, "/diagnostics")
    cloud_pub = graph.publisher(PointCloud2, "points", OUTPUT_QOS)
    graph.wait_matched(cloud_pub)
    graph.spin_until(lambda: node.detections_pub.get_subscription_count() > 0
                     and node.markers_pub.get_subscription_count() > 0)
    return node, out, markers, diags, cloud_pub


def warned(diags, text: str) -> bool:
    """``text`` appeared in a WARN (or worse: a slow first frame may also raise a latency ERROR) diagnostic."""
    return any(s.level[0] >= DiagnosticStatus.WARN[0] and text in s.message for d in diags for s in d.status)


def test_centre_head_detections_match_the_core_pipeline_and_carry_the_cloud_header(graph, onnx_root, sweep):
    node, out, markers, _, cloud_pub = start(graph, onnx_root, model="centerpoint_pillar", score_thresholds=[0.1])
    stamp = time.time_ns()
    cloud_pub.publish(array_to_pointcloud2(sweep, header(stamp)))
    assert graph.spin_until(lambda: out and markers, 20.0)
    msg = out[0]
    assert stamp_to_ns(msg.header.stamp) == stamp and msg.header.frame_id == "lidar_link"
    expected = build_detector(DetectorSpec(with_range(VARIANTS["centerpoint_pillar"], NEAR),
                                           onnx_dir=str(onnx_root / "centerpoint_pillar")),
                              threads=1, intensity_scale=1 / 255)(sweep)
    assert len(msg.detections) == len(expected.detections) > 0
    expected_names = [name.lower() for name in expected.names]
    for det, box, score, name in zip(msg.detections, expected.detections.boxes, expected.detections.scores,
                                     expected.names, strict=True):
        assert det.header == msg.header and det.results[0].hypothesis.class_id == name.lower()
        assert det.results[0].hypothesis.score == pytest.approx(float(score), abs=1e-6)
        c, s = det.bbox.center, det.bbox.size
        np.testing.assert_allclose([c.position.x, c.position.y, c.position.z, s.x, s.y, s.z], box[:6], atol=1e-5)
        assert 2 * np.arctan2(c.orientation.z, c.orientation.w) == pytest.approx(float(box[6]), abs=1e-5)
    drawn = markers[0].markers
    assert drawn[0].action == Marker.DELETEALL and stamp_to_ns(drawn[0].header.stamp) == stamp
    assert len(drawn) == 1 + 2 * len(msg.detections) and all(m.header == msg.header for m in drawn)
    assert {m.type for m in drawn[1:]} == {Marker.LINE_LIST, Marker.TEXT_VIEW_FACING}

    # per-class thresholds change at run time; a count that fits neither 1 nor 3 classes is refused
    assert not node.set_parameters([Parameter("score_thresholds", value=[0.1, 0.2])])[0].successful
    assert node.set_parameters([Parameter("score_thresholds", value=[0.1, 1.0, 0.1])])[0].successful
    cloud_pub.publish(array_to_pointcloud2(sweep, header(stamp + 10**8)))
    assert graph.spin_until(lambda: len(out) == 2, 20.0)
    names = [d.results[0].hypothesis.class_id for d in out[1].detections]
    assert "pedestrian" in expected_names and "pedestrian" not in names
    assert sorted(names) == sorted(n for n in expected_names if n != "pedestrian")


def test_malformed_empty_and_all_nan_clouds_are_skipped_and_counted(graph, onnx_root, sweep):
    node, out, _, diags, cloud_pub = start(graph, onnx_root, score_thresholds=[0.01], max_pillars=50)
    t0 = time.time_ns()
    xyz = np.ones((10, 3), np.float32)
    cloud_pub.publish(array_to_pointcloud2(structured_cloud(xyz), header(t0)))  # no intensity
    short = array_to_pointcloud2(sweep[:100], header(t0 + 1))
    short.data = short.data[:50]  # truncated payload
    cloud_pub.publish(short)
    empty = PointCloud2(header=header(t0 + 2), height=1, width=0, point_step=16, is_dense=True, fields=[
        PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
        for i, n in enumerate(("x", "y", "z", "intensity"))])
    cloud_pub.publish(empty)
    nan = structured_cloud(np.full((20, 3), np.nan, np.float32), intensity=np.ones(20, np.float32))
    cloud_pub.publish(array_to_pointcloud2(nan, header(t0 + 3)))
    assert graph.spin_until(lambda: node.inputs["points"].malformed == 2 and node.empty_clouds == 1
                            and node.nan_clouds == 1, 10.0)
    assert not out and node.frames_skipped == 4
    cloud_pub.publish(array_to_pointcloud2(sweep, header(t0 + 10**8)))
    assert graph.spin_until(lambda: len(out) == 1, 20.0), "the node keeps working after bad clouds"
    assert stamp_to_ns(out[0].header.stamp) == t0 + 10**8 and node.truncated_frames == 1
    assert graph.spin_until(lambda: warned(diags, "too many pillars") and warned(diags, "all-NaN clouds skipped"),
                            5.0)
    for key, level in (("a", "error"), ("b", "warn"), ("c", "error")):  # one call site, two severities: no raise
        node.log_throttled(key, level, "frame problem")


def test_painting_uses_synchronised_labels_and_warns_when_they_stop(graph, onnx_root, sweep):
    node, out, _, diags, cloud_pub = start(graph, onnx_root, painting=True, score_thresholds=[0.01],
                                           painting_timeout=0.25, extrinsics_source="parameters")
    labels_pub = graph.publisher(Image, "segmentation/labels", OUTPUT_QOS)
    info_pub = graph.publisher(CameraInfo, "camera_info", OUTPUT_QOS)
    graph.wait_matched(labels_pub)
    graph.wait_matched(info_pub)
    camera = PinholeCamera.from_fov(64, 48, np.radians(80))
    t0 = time.time_ns()
    info = CameraIntrinsics(48, 64, camera.k, np.zeros(5), "plumb_bob", np.eye(3),
                            np.hstack([camera.k, np.zeros((3, 1))]))
    info_pub.publish(intrinsics_to_camera_info(info, header(t0 - 1, "camera_color_optical_frame")))
    mask = np.full((48, 64), ROAD, np.uint8)
    mask[20:30, 20:40] = CAR
    for i in range(8):
        stamp = t0 + i * 100_000_000
        cloud_pub.publish(array_to_pointcloud2(sweep, header(stamp)))
        if i < 3:  # the segmentation stops after three frames
            labels_pub.publish(numpy_to_image(mask, "mono8", header(stamp, "camera_color_optical_frame")))
        graph.spin_for(0.15)
    assert graph.spin_until(lambda: len(out) >= 6, 30.0), len(out)
    assert node.painted_frames >= 2 and node.unpainted_frames >= 3
    assert node.sync.stalled() == {"labels"}
    assert graph.spin_until(lambda: warned(diags, "segmentation labels missing"), 5.0)
    stamps = [stamp_to_ns(m.header.stamp) for m in out]
    assert stamps == sorted(stamps) and set(stamps) <= {t0 + i * 100_000_000 for i in range(8)}


def test_a_synthetic_bag_replayed_through_the_detection_preset_gives_boxes_stamped_like_the_clouds(onnx_root,
                                                                                                   tmp_path):
    """The `detection` preset (bag_player + detection3d), run as `mmfusion run` runs it."""
    import rclpy

    from ros_mmfusion import presets
    from ros_mmfusion.core.sim import record
    from ros_mmfusion.launcher import run_in_process
    from ros_mmfusion.ros.tap import TopicTap

    bag = tmp_path / "day"
    record("urban_day", bag, 4, size=(64, 48), beams=16)
    preset = presets.load("detection", {"bag": str(bag)}, {
        # the random pointpillars_synthetic graphs the module's other tests exported, not the param file's package
        "detection3d": {**FAST, "model_package": "", "onnx_dir": str(onnx_root / "pointpillars_synthetic"),
                        "score_thresholds": [0.01]},
        "bag_player": {"start_delay": 1.5}})
    rclpy.init()
    try:
        tap = TopicTap({"/detections": Detection3DArray, "/detections/markers": MarkerArray,
                        "/lidar/points": PointCloud2}, keep=10)
        finished: list[float] = []

        def done(nodes) -> bool:
            if nodes[0].finished.is_set() and not finished:
                finished.append(time.monotonic())
            delivered = min(tap.records[t].count for t in ("/detections", "/detections/markers")) >= 4
            return bool(finished) and (delivered or time.monotonic() - finished[0] > 5)

        run_in_process(preset, until=done, duration=60.0, extra_nodes=[tap])
    finally:
        rclpy.try_shutdown()
    boxes, markers, clouds = (tap.records[t] for t in ("/detections", "/detections/markers", "/lidar/points"))
    assert clouds.count == 4
    assert boxes.count >= 3 and markers.count == boxes.count, (boxes.count, markers.count)
    assert set(boxes.history) <= set(clouds.history), "every Detection3DArray carries the stamp of an input cloud"
    assert all(m.header.frame_id == "lidar_link" for m in boxes.history.values())
    assert any(m.detections for m in boxes.history.values())
    assert {d.results[0].hypothesis.class_id for m in boxes.history.values() for d in m.detections} \
        <= {"car", "pedestrian", "cyclist"}
    assert all(m.markers[0].action == Marker.DELETEALL for m in [markers.last])
