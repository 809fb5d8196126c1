"""A node asked for ONNX Runtime INT8 says at start-up what this CPU runs, and runs it: the decision of
``int8.choose_backend`` (declined INT8 becomes fp32 ONNX Runtime). ``MMFUSION_INT8=off`` makes the decline happen on
every CPU class, so the test means the same everywhere; the per-class decisions are tested in
test/core/test_cpu_features.py."""
from __future__ import annotations

import pytest
from rcl_interfaces.msg import Log
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ros_mmfusion.core.inference.int8 import OVERRIDE_ENV, choose_backend
from ros_mmfusion.nodes.fusion_segmentation import FusionSegmentationNode

ROSOUT_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def package(tiny_thermal_package):
    return tiny_thermal_package


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
