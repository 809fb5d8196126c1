"""Image inputs over the ``compressed`` transport, over real DDS: fusion_segmentation fed PNG colour + 16-bit PNG
thermal publishes the labels of its raw twin, bit for bit; JPEG colour is segmented too; a compressed image that does
not fit its input is a malformed, skipped frame; vint_navigation navigates on compressed frames."""
from __future__ import annotations

import time

import cv2
import numpy as np
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ros_mmfusion.nodes.fusion_segmentation import FusionSegmentationNode
from ros_mmfusion.ros.image import image_to_numpy, numpy_to_compressed, numpy_to_image
from ros_mmfusion.ros.node_base import stamp_to_ns
from ros_mmfusion.ros.qos import OUTPUT_QOS

H, W = 48, 64


def header(stamp_ns: int) -> Header:
    h = Header(frame_id="camera_color_optical_frame")
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def frame(k: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured colour image and a mono16 thermal image (centikelvin) with a warm patch, different per ``k``."""
    rng = np.random.default_rng(k)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (5, 5), 0)
    rgb[:, : W // 3, 0] = 230  # a red band: an R/B swap would show
    thermal = np.full((H, W), 29000, np.uint16) + rng.integers(0, 200, (H, W), dtype=np.uint16)
    thermal[10 + k : 30 + k, 20:30] = 31000
    return rgb, thermal


def segmentation_node(graph, package: str, namespace: str, transport: str, remap: list[str] | None = None):
    return graph.add(FusionSegmentationNode(
        namespace=namespace, cli_args=["--ros-args", *(remap or [])], parameter_overrides=[
            Parameter("model_package", value=package), Parameter("threads", value=1),
            Parameter("diagnostics_period", value=0.2), Parameter("rgb_transport", value=transport),
            Parameter("x_transport", value=transport)]))


def test_png_compressed_inputs_give_the_labels_of_the_raw_twin(graph, tiny_thermal_package):
    raw = segmentation_node(graph, tiny_thermal_package, "raw", "raw")
    # image_transport's naming: the base topic is remapped, the transport appends /compressed to the result
    compressed = segmentation_node(graph, tiny_thermal_package, "compressed", "compressed",
                                   ["-r", "rgb/image:=/cam/color", "-r", "x/image:=/cam/thermal"])
    assert raw.input_topics == {"rgb": "/raw/rgb/image", "x": "/raw/x/image"}
    assert compressed.input_topics == {"rgb": "/cam/color/compressed", "x": "/cam/thermal/compressed"}
    labels = {ns: graph.record(Image, f"/{ns}/segmentation/labels") for ns in ("raw", "compressed")}
    pubs = {"raw": (graph.publisher(Image, "/raw/rgb/image", OUTPUT_QOS),
                    graph.publisher(Image, "/raw/x/image", OUTPUT_QOS)),
            "compressed": (graph.publisher(CompressedImage, "/cam/color/compressed", OUTPUT_QOS),
                           graph.publisher(CompressedImage, "/cam/thermal/compressed", OUTPUT_QOS))}
    for pub in (*pubs["raw"], *pubs["compressed"]):
        graph.wait_matched(pub)
    assert graph.spin_until(lambda: raw.labels_pub.get_subscription_count() > 0
                            and compressed.labels_pub.get_subscription_count() > 0)
    stamps = [time.time_ns() + k * 100_000_000 for k in range(3)]
    for k, stamp in enumerate(stamps):
        rgb, thermal = frame(k)
        pubs["raw"][0].publish(numpy_to_image(rgb, "rgb8", header(stamp)))
        pubs["raw"][1].publish(numpy_to_image(thermal, "mono16", header(stamp)))
        pubs["compressed"][0].publish(numpy_to_compressed(rgb, "png", header(stamp)))
        pubs["compressed"][1].publish(numpy_to_compressed(thermal, "png", header(stamp)))
        graph.spin_for(0.1)
    assert graph.spin_until(lambda: len(labels["raw"]) == 3 and len(labels["compressed"]) == 3, 20.0)
    assert [stamp_to_ns(m.header.stamp) for m in labels["compressed"]] == stamps
    for ours, twin in zip(labels["compressed"], labels["raw"], strict=True):
        np.testing.assert_array_equal(image_to_numpy(ours), image_to_numpy(twin))
    assert compressed.frames_skipped == 0 and compressed.inputs["rgb"].malformed == 0

    # JPEG colour (lossy) is segmented as well, with the RGB header
    rgb, thermal = frame(7)
    stamp = time.time_ns()
    pubs["compressed"][0].publish(numpy_to_compressed(rgb, "jpeg", header(stamp)))
    pubs["compressed"][1].publish(numpy_to_compressed(thermal, "png", header(stamp)))
    assert graph.spin_until(lambda: len(labels["compressed"]) == 4, 10.0)
    assert stamp_to_ns(labels["compressed"][-1].header.stamp) == stamp
    assert image_to_numpy(labels["compressed"][-1]).shape == (H, W)

    # what does not fit its input is malformed: a grey JPEG as colour, a colour PNG as thermal; the node goes on
    for k, (colour, x) in enumerate([(numpy_to_compressed(thermal.astype(np.uint8), "jpeg"),
                                      numpy_to_compressed(thermal, "png")),
                                     (numpy_to_compressed(rgb, "png"), numpy_to_compressed(rgb, "png"))]):
        colour.header = x.header = header(stamp + (k + 1) * 100_000_000)
        pubs["compressed"][0].publish(colour)
        pubs["compressed"][1].publish(x)
        graph.spin_for(0.1)
    assert graph.spin_until(lambda: compressed.inputs["rgb"].malformed == 2, 10.0)
    assert "encoding 'rgb8' is not a one-channel" in compressed.inputs["rgb"].last_problem  # X fails in the frame
    assert len(labels["compressed"]) == 4
    stamp += 400_000_000
    pubs["compressed"][0].publish(numpy_to_compressed(rgb, "png", header(stamp)))
    pubs["compressed"][1].publish(numpy_to_compressed(thermal, "png", header(stamp)))
    assert graph.spin_until(lambda: len(labels["compressed"]) == 5, 10.0), "the node stopped after malformed frames"


def test_vint_navigation_navigates_on_compressed_frames(graph, tmp_path):
    from nav_msgs.msg import Path

    from ros_mmfusion.nodes.vint_navigation import VintNavigationNode

    goal = tmp_path / "goal.png"
    cv2.imwrite(str(goal), np.full((48, 64, 3), 90, np.uint8))
    node = graph.add(VintNavigationNode(parameter_overrides=[
        Parameter("goal_image", value=str(goal)), Parameter("variant", value="vint_reduced"),
        Parameter("model_package", value=""), Parameter("threads", value=1),
        Parameter("image_transport", value="compressed"), Parameter("path_frame", value="")]))  # no odometry here
    assert node.input_topics["image"] == "/image/compressed"
    paths = graph.record(Path, "navigation/path")
    pub = graph.publisher(CompressedImage, "image/compressed", OUTPUT_QOS)
    graph.wait_matched(pub)
    assert graph.spin_until(lambda: node.path_pub.get_subscription_count() > 0)
    period_ns = int(1e9 / node.policy.frame_rate_hz)
    start = time.time_ns()
    frames = node.policy.context_size + 3
    for k in range(frames):
        pub.publish(numpy_to_compressed(frame(k)[0], "jpeg", header(start + k * period_ns)))
        graph.spin_for(0.05)
    assert graph.spin_until(lambda: len(paths) >= 3, 20.0), (len(paths), node.frames_skipped)
    assert stamp_to_ns(paths[-1].header.stamp) == start + (frames - 1) * period_ns
    assert node.inputs["image"].malformed == 0


def test_a_compressed_sim_bag_replays_to_the_labels_of_its_raw_twin(graph, tiny_thermal_package, tmp_path):
    """`mmfusion sim --compressed png` and the raw recording of the same world, each replayed by a bag player (bag
    stamps kept) into a segmentation node of its transport: every frame both segmented has the same labels."""
    from ros_mmfusion.core.sim.recorder import record
    from ros_mmfusion.nodes.bag_player import BagPlayerNode

    images = ("/camera/color/image_raw", "/thermal/image_raw")
    labels = {}
    for transport, suffix in (("raw", ""), ("compressed", "/compressed")):
        bag = tmp_path / transport
        record("urban_night", bag, 6, seed=2, size=(64, 48), beams=16, depth_encoding="16UC1",
               compressed="png" if suffix else None)
        segmentation_node(graph, tiny_thermal_package, transport, transport,
                          ["-r", f"rgb/image:={images[0]}", "-r", f"x/image:={images[1]}"])
        labels[transport] = graph.record(Image, f"/{transport}/segmentation/labels")
        graph.add(BagPlayerNode(namespace=transport, parameter_overrides=[
            Parameter("bag", value=str(bag)), Parameter("restamp", value=False), Parameter("rate", value=0.5),
            Parameter("start_delay", value=2.0), Parameter("topics", value=[t + suffix for t in images])]))
    graph.spin_until(lambda: all(len(v) == 6 for v in labels.values()), 60.0)
    raw = {stamp_to_ns(m.header.stamp): image_to_numpy(m) for m in labels["raw"]}
    ours = {stamp_to_ns(m.header.stamp): image_to_numpy(m) for m in labels["compressed"]}
    both = sorted(raw.keys() & ours.keys())  # a frame a busy node dropped (sensor QoS) has nothing to compare
    assert len(both) >= 4, {k: len(v) for k, v in labels.items()}
    for stamp in both:
        np.testing.assert_array_equal(ours[stamp], raw[stamp], err_msg=f"frame at {stamp}")


def test_a_compressed_tf_only_bag_gives_the_demo_outputs_of_its_raw_calibrated_twin(tmp_path, monkeypatch):
    """Issue 15's twin test, the whole demo preset over DDS: a bag of CompressedImage camera topics only (PNG colour,
    16-bit PNG thermal and depth) whose extrinsics come only from /tf_static (no calibration file, no extrinsic
    parameter: ``extrinsics_source: tf``), against the raw recording of the same world and seed with the extrinsics
    from its calibration file. Per frame both produced: the same stamps and frames, the same number of boxes, masks
    agreeing on >= 99% of pixels, LiDAR depth images the same."""
    import rclpy
    from vision_msgs.msg import Detection3DArray

    from ros_mmfusion import presets
    from ros_mmfusion.core.bagio import BagSource
    from ros_mmfusion.core.sim.recorder import record
    from ros_mmfusion.launcher import replay_in_process
    from ros_mmfusion.ros.tap import TopicTap

    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))
    outputs = {"/segmentation/labels": Image, "/detections": Detection3DArray, "/lidar/depth_image": Image}
    seen: dict[str, dict[str, dict[int, object]]] = {}
    for twin, compressed in (("raw", None), ("compressed", "png")):
        bag = tmp_path / twin
        record("urban_night", bag, 5, seed=5, size=(160, 120), beams=16, depth_encoding="16UC1", compressed=compressed)
        overrides = {"bag_player": {"restamp": False, "rate": 0.3, "start_delay": 2.0},
                     "fusion_segmentation": {"threads": 1}, "detection3d": {"threads": 1}}
        if compressed:
            with BagSource(bag) as source:
                images = {t: m for t, m in source.topics.items() if "image" in t and not t.startswith("/ground")}
            assert set(images.values()) == {"sensor_msgs/msg/CompressedImage"}, images
            for node in ("lidar_depth", "detection3d"):  # extrinsics from /tf_static only
                overrides[node] = {**overrides.get(node, {}), "calibration_file": "", "extrinsics_source": "tf"}
        preset = presets.load("demo_compressed" if compressed else "demo", {"bag": str(bag)}, overrides)
        if compressed:
            assert all(not n.parameters.get("calibration_file") for n in preset.nodes if n.key != "bag_player")
        rclpy.init()
        try:
            tap = TopicTap(outputs, name=f"tap_{twin}", keep=100)
            replay_in_process(preset, extra_nodes=[tap], grace=3.0,
                                         last_activity=lambda t=tap: max((r.last_arrival or 0.0)
                                                                         for r in t.records.values()))
            seen[twin] = {topic: dict(rec.history) for topic, rec in tap.records.items()}
        finally:
            rclpy.try_shutdown()
        assert all(len(v) >= 2 for v in seen[twin].values()), (twin, {k: len(v) for k, v in seen[twin].items()})
    raw, ours = seen["raw"], seen["compressed"]
    # not a vacuous comparison: boxes found, several classes segmented, LiDAR points in the depth images
    assert any(len(m.detections) > 0 for m in raw["/detections"].values())
    assert all(np.unique(image_to_numpy(m)).size > 1 for m in raw["/segmentation/labels"].values())
    assert all(np.count_nonzero(image_to_numpy(m)) > 0 for m in raw["/lidar/depth_image"].values())
    for topic in outputs:
        both = sorted(raw[topic].keys() & ours[topic].keys())  # a frame a busy node dropped has nothing to compare
        assert len(both) >= 3, (topic, sorted(raw[topic]), sorted(ours[topic]))
        for stamp in both:
            a, b = raw[topic][stamp], ours[topic][stamp]
            assert a.header.frame_id == b.header.frame_id, (topic, a.header.frame_id, b.header.frame_id)
            if topic == "/detections":
                assert len(a.detections) == len(b.detections), (stamp, len(a.detections), len(b.detections))
            elif topic == "/segmentation/labels":
                assert np.mean(image_to_numpy(a) == image_to_numpy(b)) >= 0.99, stamp
            else:  # depth: the same projection whether the extrinsic came from the calibration file or /tf_static
                da, db = image_to_numpy(a), image_to_numpy(b)
                assert np.mean(np.isclose(da, db, atol=1e-3)) >= 0.99, stamp
