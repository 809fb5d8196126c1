"""Honest defaults over real DDS: a node running random or fixture weights says so at start-up (one WARN line on
/rosout) and reports WARN in /diagnostics for as long as it runs; a model package gives an INFO line with the package
and the weights' hash, and an OK status once its inputs flow. Every status names the network (``model.*`` keys, what
``mmfusion eval`` copies into its report). Also the rules between ``model_package`` and the parameters it replaces.

Packages here are written with ``core.model_package.write_package`` from freshly initialised networks, as
``mmfusion train`` writes them (a trained package differs only in its numbers); detection runs over the small range of
test_detection3d_node.py and ViNT as ``vint_reduced`` with one inference thread, to stay fast on two cores.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Log
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.engine_cache import file_sha256
from ros_mmfusion.core.model_package import write_package
from ros_mmfusion.core.sim import Simulation
from ros_mmfusion.nodes.detection3d import Detection3DNode
from ros_mmfusion.nodes.fusion_segmentation import FusionSegmentationNode
from ros_mmfusion.nodes.vint_navigation import VintNavigationNode
from ros_mmfusion.ros.pointcloud import array_to_pointcloud2
from ros_mmfusion.ros.qos import OUTPUT_QOS

ROSOUT_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
NEAR = [0.0, -10.24, -3.0, 20.48, 10.24, 1.0]
DETECTION = {"point_cloud_range": NEAR, "threads": 1, "diagnostics_period": 0.2, "latency_warn_ms": 60000.0,
             "latency_error_ms": 120000.0}
UNTRAINED = "not trained: outputs mean nothing"


@pytest.fixture(autouse=True)
def cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "honest_cache"))


@pytest.fixture(scope="module")
def detection_package(tmp_path_factory) -> Path:
    """An unpainted pointpillars_synthetic package with its own tuning values."""
    import torch

    from ros_mmfusion.core.models.pointpillars import VARIANTS, build_model

    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("det_pkg") / "pillars_synthetic"
    write_package(out, "detection3d", "pointpillars_synthetic",
                  {"class_names": list(VARIANTS["pointpillars_synthetic"].class_names), "paint_classes": [],
                   "intensity_scale": 0.5, "score_thresholds": [0.2, 0.3, 0.4], "trained_on": "test: fresh weights"},
                  build_model(VARIANTS["pointpillars_synthetic"]).state_dict(), {"validation": {}})
    return out


@pytest.fixture(scope="module")
def painted_package(tmp_path_factory) -> Path:
    import torch

    from ros_mmfusion.core.detection3d.painting import painted_config
    from ros_mmfusion.core.models.pointpillars import VARIANTS, build_model

    torch.manual_seed(2)
    out = tmp_path_factory.mktemp("det_pkg") / "pillars_painted"
    write_package(out, "detection3d", "pointpillars_synthetic", {"paint_classes": ["car", "pedestrian"]},
                  build_model(painted_config(VARIANTS["pointpillars_synthetic"], 2)).state_dict(), {})
    return out


def rosout(graph) -> list[Log]:
    return graph.record(Log, "/rosout", ROSOUT_QOS)


def statuses(diags: list[DiagnosticArray], node) -> list[DiagnosticStatus]:
    return [s for d in diags for s in d.status if s.name == node.get_fully_qualified_name()]


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def logged(logs: list[Log], node, level: int, *texts: str) -> list[Log]:
    return [m for m in logs if m.name == node.get_logger().name and m.level == level
            and all(t in m.msg for t in texts)]


def start_detector(graph, tmp_path, **params) -> Detection3DNode:
    values_ = {**DETECTION, "onnx_dir": str(tmp_path / "onnx"), **params}
    return graph.add(Detection3DNode(parameter_overrides=[Parameter(k, value=v) for k, v in values_.items()]))


def feed_clouds_until(graph, node, predicate, timeout: float = 60.0) -> bool:
    """Publish a synthetic sweep every 0.2 s (so the input never stalls) until ``predicate()``."""
    sweep = Simulation("urban_day", size=(64, 48), beams=16).frame(0).lidar.points
    pub = graph.publisher(PointCloud2, "points", OUTPUT_QOS)
    graph.record(Detection3DArray, "detections")
    graph.wait_matched(pub)
    assert graph.spin_until(lambda: node.detections_pub.get_subscription_count() > 0)
    last = [0.0]

    def step() -> bool:
        if time.monotonic() - last[0] > 0.2:
            last[0] = time.monotonic()
            h = Header(frame_id="lidar_link")
            h.stamp = node.get_clock().now().to_msg()
            pub.publish(array_to_pointcloud2(sweep, h))
        return predicate()

    return graph.spin_until(step, timeout)


def test_random_detector_warns_once_at_startup_and_in_every_diagnostics_status(graph, tmp_path):
    logs = rosout(graph)
    diags = graph.record(DiagnosticArray, "/diagnostics")
    node = start_detector(graph, tmp_path, seed=3)
    assert feed_clouds_until(graph, node, lambda: len(statuses(diags, node)) >= 5 and graph.received["detections"])
    warnings = logged(logs, node, Log.WARN, UNTRAINED, "set model_package")
    assert len(warnings) == 1, [m.msg for m in logs]
    mine = statuses(diags, node)
    assert all(s.level == DiagnosticStatus.WARN and "random weights, not trained" in s.message for s in mine[-3:]), \
        [(s.level, s.message) for s in mine[-3:]]
    record = values(mine[-1])
    assert record["model.weights"] == "random" and record["model.sha256"] == "" and "seed 3" in \
        record["model.description"]
    assert "ONNX Runtime" in record["model.backend"] or "onnxruntime" in record["model.backend"].lower()
    assert record["model.hardware"].startswith(("x86", "arm64", "unknown"))


def test_a_detection_package_logs_its_hash_reports_ok_and_brings_its_tuning(graph, tmp_path, detection_package):
    logs = rosout(graph)
    diags = graph.record(DiagnosticArray, "/diagnostics")
    node = start_detector(graph, tmp_path, model_package=str(detection_package))
    digest = file_sha256(detection_package / "weights.pt")
    assert node.detector.intensity_scale == 0.5  # the package's, the parameter keeping its default
    assert list(node.detector.score_thresholds) == pytest.approx([0.2, 0.3, 0.4])
    assert feed_clouds_until(graph, node, lambda: any(s.level == DiagnosticStatus.OK
                                                      for s in statuses(diags, node)))
    assert logged(logs, node, Log.INFO, "model package pillars_synthetic", f"sha256 {digest[:12]}")
    assert not logged(logs, node, Log.WARN, UNTRAINED)
    record = values(statuses(diags, node)[-1])
    assert (record["model.weights"], record["model.package"], record["model.sha256"]) == \
        ("trained", "pillars_synthetic", digest)
    # a value set for the parameter overrides the package's, at run time too
    result = graph.set_parameters("detection3d", [Parameter("intensity_scale", value=0.25)])
    assert result[0].successful and node.detector.intensity_scale == 0.25


def test_model_package_beside_weights_or_model_is_one_error_naming_both(graph, tmp_path, detection_package):
    for other, value in (("weights", str(detection_package / "weights.pt")), ("model", "pointpillars_synthetic")):
        with pytest.raises(ConfigError, match=f"'model_package'.*'{other}'.*both set"):
            start_detector(graph, tmp_path, model_package=str(detection_package), **{other: value})


def test_painting_with_an_unpainted_package_is_an_error(graph, tmp_path, detection_package):
    with pytest.raises(ConfigError, match="'painting' is true but model package pillars_synthetic is unpainted"):
        start_detector(graph, tmp_path, model_package=str(detection_package), painting=True)


def test_a_painted_package_without_painting_still_detects_and_warns(graph, tmp_path, painted_package):
    logs = rosout(graph)
    diags = graph.record(DiagnosticArray, "/diagnostics")
    node = start_detector(graph, tmp_path, model_package=str(painted_package), painting=False)
    assert node.spec.paint_channels == 2 and node.detector.paint_channels == 2
    assert feed_clouds_until(graph, node, lambda: graph.received["detections"] and statuses(diags, node))
    assert logged(logs, node, Log.WARN, "'painting' is false", "no-score value")
    assert "'painting' is false" in statuses(diags, node)[-1].message
    assert node.unpainted_frames >= 1 and node.painted_frames == 0


# -- navigation ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def goal_image(tmp_path_factory) -> Path:
    import cv2

    path = tmp_path_factory.mktemp("goal") / "goal.png"
    cv2.imwrite(str(path), np.full((48, 64, 3), 90, np.uint8))
    return path


@pytest.fixture(scope="module")
def navigation_package(tmp_path_factory) -> Path:
    import torch

    from ros_mmfusion.core.models.vint import VINT_VARIANTS, ViNT

    torch.manual_seed(4)
    config = {"mha_num_attention_layers": 1}
    import dataclasses

    model = ViNT(dataclasses.replace(VINT_VARIANTS["vint_reduced"].config, **config))
    out = tmp_path_factory.mktemp("nav_pkg") / "vint_small"
    write_package(out, "navigation", "vint_reduced",
                  {"config": config, "image_size": [64, 48], "frame_rate_hz": 5.0, "waypoint_spacing": 0.3,
                   "trained_on": "test: fresh weights"}, model.state_dict(), {})
    return out


def start_navigation(graph, goal_image, **params) -> VintNavigationNode:
    values_ = {"goal_image": str(goal_image), "threads": 1, "diagnostics_period": 0.2, **params}
    return graph.add(VintNavigationNode(parameter_overrides=[Parameter(k, value=v) for k, v in values_.items()]))


def test_navigation_package_decides_network_input_rate_and_spacing_and_reports_its_hash(graph, goal_image,
                                                                                        navigation_package):
    logs = rosout(graph)
    diags = graph.record(DiagnosticArray, "/diagnostics")
    node = start_navigation(graph, goal_image, model_package=str(navigation_package))
    variant = node.policy.variant
    assert variant.image_size == (64, 48) and variant.config.mha_num_attention_layers == 1
    assert node.policy.frame_rate_hz == 5.0 and node.policy.waypoint_spacing == 0.3
    digest = file_sha256(navigation_package / "weights.pt")
    assert graph.spin_until(lambda: statuses(diags, node))
    assert logged(logs, node, Log.INFO, "model package vint_small", f"sha256 {digest[:12]}")
    record = values(statuses(diags, node)[-1])
    assert (record["model.weights"], record["model.sha256"]) == ("trained", digest)
    assert "not trained" not in statuses(diags, node)[-1].message
    # the network really is the package's: one context through the node's backend gives the package's outputs
    frame = np.full((48, 64, 3), 120, np.uint8)
    for k in range(node.policy.context_size + 1):
        node.policy.add_frame(1_000_000_000 + k * 200_000_000, frame)
    result = node.policy.step()
    assert result.waypoints.shape == (5, 4) and np.isfinite(result.waypoints).all()


def test_navigation_package_beside_variant_is_an_error_and_an_explicit_spacing_wins(graph, goal_image,
                                                                                   navigation_package):
    with pytest.raises(ConfigError, match="'model_package'.*'variant'.*both set"):
        start_navigation(graph, goal_image, model_package=str(navigation_package), variant="vint_reduced")
    node = start_navigation(graph, goal_image, model_package=str(navigation_package), waypoint_spacing=0.1)
    assert node.policy.waypoint_spacing == 0.1


def test_random_vint_warns_at_startup_and_in_diagnostics(graph, goal_image):
    logs = rosout(graph)
    diags = graph.record(DiagnosticArray, "/diagnostics")
    node = start_navigation(graph, goal_image, variant="vint_reduced")
    assert graph.spin_until(lambda: len(statuses(diags, node)) >= 3)
    assert len(logged(logs, node, Log.WARN, UNTRAINED)) == 1, [m.msg for m in logs]
    assert all("random weights, not trained" in s.message and s.level >= DiagnosticStatus.WARN
               for s in statuses(diags, node))
    assert values(statuses(diags, node)[-1])["model.weights"] == "random"


# -- segmentation ----------------------------------------------------------------------------------------------------
def test_segmentation_default_package_is_trained_and_a_random_package_warns(graph, tiny_thermal_package, tmp_path):
    import shutil

    import yaml

    logs = rosout(graph)
    diags = graph.record(DiagnosticArray, "/diagnostics")
    trained = graph.add(FusionSegmentationNode(parameter_overrides=[Parameter("threads", value=1),
                                                                    Parameter("diagnostics_period", value=0.2)]))
    random_dir = tmp_path / "random_pkg"
    shutil.copytree(tiny_thermal_package, random_dir)
    data = yaml.safe_load((random_dir / "model.yaml").read_text())
    (random_dir / "model.yaml").write_text(yaml.safe_dump({**data, "origin": "random"}))
    untrained = graph.add(FusionSegmentationNode(namespace="untrained", parameter_overrides=[
        Parameter("model_package", value=str(random_dir)), Parameter("threads", value=1),
        Parameter("diagnostics_period", value=0.2)]))
    assert graph.spin_until(lambda: statuses(diags, trained) and statuses(diags, untrained))
    assert values(statuses(diags, trained)[-1])["model.weights"] == "trained"
    assert "not trained" not in statuses(diags, trained)[-1].message
    assert graph.spin_until(lambda: logged(logs, trained, Log.INFO, "model package cmx_b0_rgbt_synthetic", "sha256 "))
    assert values(statuses(diags, untrained)[-1])["model.weights"] == "random"
    assert "random weights, not trained" in statuses(diags, untrained)[-1].message
    assert graph.spin_until(lambda: logged(logs, untrained, Log.WARN, UNTRAINED)), [m.msg for m in logs]
