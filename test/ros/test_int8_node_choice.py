"""A node asked for ONNX Runtime INT8 says at start-up what this CPU runs, and runs it: the decision of
``int8.choose_backend`` (declined INT8 becomes fp32 ONNX Runtime). ``MMFUSION_INT8=off`` makes the decline happen on
every CPU class, so the test means the same everywhere; the per-class decisions are tested in
test/core/test_cpu_features.py."""
from __future__ import annotations

import pytest
import torch
import yaml
from rcl_interfaces.msg import Log
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ros_mmfusion.core import labels
from ros_mmfusion.core.inference.int8 import OVERRIDE_ENV, choose_backend
from ros_mmfusion.core.segmentation.artifacts import build_module
from ros_mmfusion.core.segmentation.pipeline import SegmentationModelSpec
from ros_mmfusion.nodes.fusion_segmentation import FusionSegmentationNode

ROSOUT_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pkg")
    spec = SegmentationModelSpec(num_classes=len(labels.LABELS), decoder_embed_dim=16, input_size=(32, 48))
    torch.save(build_module(spec, deploy=False).state_dict(), root / "weights.pt")
    (root / "model.yaml").write_text(yaml.safe_dump({
        "format": "ros_mmfusion/model/v1", "task": "segmentation", "variant": "cmx_mit_b0",
        "num_classes": len(labels.LABELS), "decoder_embed_dim": 16, "input_size": [32, 48], "rgb_order": "rgb",
        "weights": "weights.pt", "class_names": labels.label_names(),
        "x_modality": {"name": "thermal", "params": {"window_k": [263.0, 318.0], "kelvin_per_count": 0.01}}}))
    return str(root)


def test_segmentation_node_asked_for_int8_logs_the_decline_and_runs_fp32(graph, package, monkeypatch, tmp_path):
    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(OVERRIDE_ENV, "off")
    expected = choose_backend("onnxruntime-int8", "segmentation", "int8").log_line()
    assert expected.startswith("INT8 declined for segmentation on this CPU") and "using fp32 ONNX Runtime" in expected
    logs = graph.record(Log, "/rosout", ROSOUT_QOS)
    node = graph.add(FusionSegmentationNode(parameter_overrides=[
        Parameter("model_package", value=package), Parameter("backend", value="onnxruntime-int8"),
        Parameter("precision", value="int8"), Parameter("threads", value=1)]))
    assert (node.segmenter.backend.info.kind, node.segmenter.backend.info.precision) == ("onnxruntime", "fp32")
    assert not list(tmp_path.rglob("*int8*")), "a declined INT8 must not quantize anything"
    assert graph.spin_until(lambda: any(m.name == node.get_logger().name and m.msg == expected for m in logs)), \
        [m.msg for m in logs]
    assert next(m for m in logs if m.msg == expected).level == Log.WARN
