"""fusion_segmentation_node over real DDS with a real (small, untrained) model package and ONNX Runtime."""
from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import LabelInfo

from ros_mmfusion.core import labels
from ros_mmfusion.nodes.fusion_segmentation import FusionSegmentationNode
from ros_mmfusion.ros.image import image_to_numpy, numpy_to_image
from ros_mmfusion.ros.node_base import stamp_to_ns
from ros_mmfusion.ros.qos import LATCHED_QOS, OUTPUT_QOS

H, W = 48, 64


@pytest.fixture(scope="module")
def package(tiny_thermal_package):
    return tiny_thermal_package


def header(stamp_ns: int) -> Header:
    h = Header(frame_id="camera_color_optical_frame")
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def start(graph, package, policy="neutral"):
    node = graph.add(FusionSegmentationNode(parameter_overrides=[
        Parameter("model_package", value=package), Parameter("missing_x_policy", value=policy),
        Parameter("x_timeout", value=0.25), Parameter("diagnostics_period", value=0.2),
        Parameter("publish_confidence", value=True), Parameter("threads", value=1)]))
    out = {t: graph.record(Image, f"segmentation/{t}") for t in ("labels", "color", "confidence")}
    diags = graph.record(DiagnosticArray, "/diagnostics")
    rgb_pub = graph.publisher(Image, "rgb/image", OUTPUT_QOS)
    x_pub = graph.publisher(Image, "x/image", OUTPUT_QOS)
    graph.wait_matched(rgb_pub)
    graph.wait_matched(x_pub)
    graph.spin_until(lambda: node.labels_pub.get_subscription_count() > 0)
    return node, out, diags, rgb_pub, x_pub


def send(rgb_pub, x_pub, stamp_ns: int, with_x: bool = True) -> None:
    rgb_pub.publish(numpy_to_image(np.full((H, W, 3), 90, np.uint8), "rgb8", header(stamp_ns)))
    if with_x:
        thermal = np.full((H, W), 29000, np.uint16)
        thermal[10:30, 20:30] = 31000  # a warm person-sized patch (centikelvin)
        x_pub.publish(numpy_to_image(thermal, "mono16", header(stamp_ns)))


def test_segments_synchronised_rgb_and_thermal_with_the_rgb_header(graph, package):
    node, out, diags, rgb_pub, x_pub = start(graph, package)
    info = graph.record(LabelInfo, "segmentation/label_info", LATCHED_QOS)
    t0 = time.time_ns()
    stamps = [t0 + i * 100_000_000 for i in range(3)]
    for s in stamps:
        send(rgb_pub, x_pub, s)
        graph.spin_for(0.1)
    assert graph.spin_until(lambda: len(out["labels"]) == 3 and len(out["confidence"]) == 3, 20.0)
    assert [stamp_to_ns(m.header.stamp) for m in out["labels"]] == stamps
    assert all(m.header.frame_id == "camera_color_optical_frame" for m in out["color"])
    lab = image_to_numpy(out["labels"][0])
    assert lab.shape == (H, W) and out["labels"][0].encoding == "mono8" and lab.max() < len(labels.LABELS)
    colour = image_to_numpy(out["color"][0])
    assert np.array_equal(colour, labels.colorize(lab))
    conf = image_to_numpy(out["confidence"][0])
    assert conf.dtype == np.float32 and 0 < conf.min() <= conf.max() <= 1
    assert graph.spin_until(lambda: len(info) == 1)
    assert [c.class_name for c in info[0].class_map] == labels.label_names()
    assert node.sync.emitted == 3 and node.frames_dropped_by_policy == 0
    burst_is_latest_frame_first(graph, node, out, diags, rgb_pub, x_pub)  # the same node: one start-up less


def burst_is_latest_frame_first(graph, node, out, diags, rgb_pub, x_pub) -> None:
    """Inference runs off the executor on a latest-frame worker: a burst faster than the network is not queued
    behind it. Frames that a newer one replaced while waiting are counted in /diagnostics, never lost unseen; the
    newest frame is always segmented, and every output keeps its input's stamp."""
    before, emitted_before = len(out["labels"]), node.sync.emitted
    big_h, big_w = 240, 320  # with the confidence output subscribed: a job far slower than a callback
    rgb = np.full((big_h, big_w, 3), 90, np.uint8)
    thermal = np.full((big_h, big_w), 29000, np.uint16)
    t0 = time.time_ns()
    stamps = [t0 + i * 10_000_000 for i in range(8)]
    for s in stamps:  # one burst, no spinning in between: the node's callbacks see them back to back
        rgb_pub.publish(numpy_to_image(rgb, "rgb8", header(s)))
        x_pub.publish(numpy_to_image(thermal, "mono16", header(s)))
    assert graph.spin_until(lambda: out["confidence"] and stamp_to_ns(out["confidence"][-1].header.stamp) == stamps[-1]
                            and node.worker.wait_idle(0.0), 30.0)
    got = [stamp_to_ns(m.header.stamp) for m in out["labels"][before:]]
    assert got == sorted(got) and set(got) <= set(stamps) and got[-1] == stamps[-1]  # in order, the latest last
    assert image_to_numpy(out["labels"][-1]).shape == (big_h, big_w)
    dropped = node.frames_dropped_by_policy
    assert dropped >= 1, "a burst faster than the network must replace waiting frames"
    assert len(got) + dropped == node.sync.emitted - emitted_before, "every synchronised frame: segmented or counted"

    def reported() -> bool:
        values = [{kv.key: kv.value for kv in s.values} for d in diags for s in d.status]
        return any(v.get("frames_dropped_by_policy") == str(dropped) for v in values)

    assert graph.spin_until(reported, 5.0)


def test_neutral_policy_keeps_segmenting_without_x_and_warns(graph, package):
    node, out, diags, rgb_pub, x_pub = start(graph, package, "neutral")
    t0 = time.time_ns()
    for i in range(10):
        send(rgb_pub, x_pub, t0 + i * 100_000_000, with_x=i < 3)  # X stops after frame 3
        graph.spin_for(0.1)
    assert graph.spin_until(lambda: len(out["labels"]) >= 8, 20.0), len(out["labels"])
    assert node.sync.stalled() == {"x"}
    assert graph.spin_until(lambda: any(s.level == DiagnosticStatus.WARN and "neutral X" in s.message
                                        for d in diags for s in d.status), 5.0)


def test_skip_policy_publishes_nothing_without_x_and_reports_error(graph, package):
    node, out, diags, rgb_pub, x_pub = start(graph, package, "skip")
    t0 = time.time_ns()
    for i in range(8):
        send(rgb_pub, x_pub, t0 + i * 100_000_000, with_x=i < 2)
        graph.spin_for(0.1)
    graph.spin_for(1.0)
    assert len(out["labels"]) == 2, "frames without X must be skipped under the skip policy"
    assert graph.spin_until(lambda: any(s.level == DiagnosticStatus.ERROR and "x: stalled" in s.message
                                        for d in diags for s in d.status), 5.0)


def test_wrong_encoding_and_size_are_skipped_not_fatal(graph, package):
    node, out, _, rgb_pub, x_pub = start(graph, package)
    t0 = time.time_ns()
    rgb_pub.publish(numpy_to_image(np.zeros((H, W), np.uint8), "mono8", header(t0)))  # not colour
    x_pub.publish(numpy_to_image(np.zeros((H, W), np.uint16), "mono16", header(t0)))
    rgb_pub.publish(numpy_to_image(np.zeros((H, W, 3), np.uint8), "rgb8", header(t0 + 10**8)))
    x_pub.publish(numpy_to_image(np.zeros((H // 2, W // 2), np.uint16), "mono16", header(t0 + 10**8)))  # wrong size
    assert graph.spin_until(lambda: node.inputs["rgb"].malformed == 2, 10.0)
    send(rgb_pub, x_pub, t0 + 2 * 10**8)
    assert graph.spin_until(lambda: len(out["labels"]) == 1, 20.0), "the node keeps working after bad frames"


def test_a_synthetic_bag_replayed_through_the_segmentation_preset_gives_masks_with_input_stamps(package, tmp_path):
    """The `segmentation` preset (bag_player + fusion_segmentation), run as `mmfusion run` runs it."""
    import rclpy

    from ros_mmfusion import presets
    from ros_mmfusion.core.sim import record
    from ros_mmfusion.launcher import run_in_process
    from ros_mmfusion.ros.tap import TopicTap

    bag = tmp_path / "night"
    record("urban_night", bag, 6, size=(W, H), beams=16)
    preset = presets.load("segmentation", {"bag": str(bag)}, {
        "fusion_segmentation": {"model_package": package, "threads": 1},
        "bag_player": {"start_delay": 1.5}})
    rclpy.init()
    try:
        tap = TopicTap({"/segmentation/labels": Image, "/camera/color/image_raw": Image}, keep=10)
        finished: list[float] = []

        def done(nodes) -> bool:
            if nodes[0].finished.is_set() and not finished:
                finished.append(time.monotonic())
            return bool(finished) and time.monotonic() - finished[0] > 3.0

        run_in_process(preset, until=done, duration=60.0, extra_nodes=[tap])
    finally:
        rclpy.try_shutdown()
    masks, images = tap.records["/segmentation/labels"], tap.records["/camera/color/image_raw"]
    assert images.count == 6
    assert masks.count >= 5, f"only {masks.count} masks for 6 frames"
    assert set(masks.history) <= set(images.history), "every mask carries the stamp of an input image"
    assert all(m.header.frame_id == images.last.header.frame_id for m in masks.history.values())

