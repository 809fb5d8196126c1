"""The node base over real DDS: parameter validation, guarded inputs, timing topics, diagnostics."""
from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Float64, Header

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.params import ParamSpec
from ros_mmfusion.ros.image import image_to_numpy, numpy_to_image
from ros_mmfusion.ros.node_base import MmfusionNode, stamp_to_ns
from ros_mmfusion.ros.qos import OUTPUT_QOS


class InvertNode(MmfusionNode):
    """A minimal real node: inverts mono8 images."""

    PARAMS = (ParamSpec("gain", 1.0, "Multiplier.", minimum=0.0, maximum=10.0),
              ParamSpec("mode", "invert", "What to do.", choices=("invert", "copy"), read_only=True))

    def __init__(self, **kwargs):
        super().__init__("invert", **kwargs)
        self.pub = self.output_publisher(Image, "out")
        self.calls = 0
        self.sensor_subscription(Image, "in", self.on_image, name="image")

    def on_image(self, msg: Image) -> None:
        started = time.perf_counter()
        if not self.has_subscribers([self.pub]):
            return
        self.calls += 1
        pixels = image_to_numpy(msg)  # raises MessageFormatError on malformed input
        self.pub.publish(numpy_to_image(255 - pixels, "mono8", msg.header))
        self.report_timing(stamp_to_ns(msg.header.stamp), started)


def image(stamp_ns: int, value: int = 10) -> Image:
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return numpy_to_image(np.full((4, 6), value, np.uint8), "mono8", header)


def last_status(diags: list[DiagnosticArray], node: str) -> DiagnosticStatus:
    statuses = [s for d in diags for s in d.status if s.name.endswith(node)]
    assert statuses, "no diagnostics from the node"
    return statuses[-1]


def test_bad_parameter_at_start_up_is_a_clear_error(graph):
    with pytest.raises(ConfigError, match=r"invalid parameter 'gain': .*out of range.*allowed: range \[0.0, 10.0\]"):
        InvertNode(parameter_overrides=[Parameter("gain", value=20.0)])
    with pytest.raises(ConfigError, match=r"'mode' = 'rotate' is not one of"):
        InvertNode(parameter_overrides=[Parameter("mode", value="rotate")])
    with pytest.raises(ConfigError, match=r"invalid parameter 'gain': must be float"):
        InvertNode(parameter_overrides=[Parameter("gain", value="high")])


def test_parameter_change_is_validated_and_descriptor_is_published(graph):
    node = graph.add(InvertNode())
    result = node.set_parameters([Parameter("gain", value=-1.0)])[0]
    assert not result.successful and "out of range" in result.reason
    result = node.set_parameters([Parameter("log_throttle", value=float("nan"))])[0]
    assert not result.successful and "log_throttle" in result.reason
    assert node.set_parameters([Parameter("gain", value=2.5)])[0].successful
    assert node.params["gain"] == 2.5
    assert node.set_parameters([Parameter("input_timeout", value=4.0)])[0].successful
    assert node.inputs["image"].stall_timeout == 4.0, "input monitors follow input_timeout"
    desc = node.describe_parameter("gain")
    assert desc.floating_point_range[0].to_value == 10.0 and desc.description == "Multiplier."
    assert node.describe_parameter("mode").read_only
    assert not node.set_parameters([Parameter("mode", value="copy")])[0].successful


def test_images_flow_with_stamp_frame_timing_and_ok_diagnostics(graph):
    node = graph.add(InvertNode(parameter_overrides=[Parameter("diagnostics_period", value=0.2)]))
    out = graph.record(Image, "out")
    timing = graph.record(Float64, "/invert/debug/processing_time_ms")
    latency = graph.record(Float64, "/invert/debug/pipeline_latency_ms")
    diags = graph.record(DiagnosticArray, "/diagnostics")
    pub = graph.publisher(Image, "in", OUTPUT_QOS)
    graph.wait_matched(pub)
    graph.spin_until(lambda: node.pub.get_subscription_count() > 0)
    stamps = [time.time_ns() + i * 50_000_000 for i in range(5)]
    for s in stamps:
        pub.publish(image(s))
        graph.spin_for(0.05)
    assert graph.spin_until(lambda: len(out) == 5 and len(timing) == 5 and len(latency) == 5)
    assert [stamp_to_ns(m.header.stamp) for m in out] == stamps
    assert all(m.header.frame_id == "cam" for m in out)
    assert np.all(image_to_numpy(out[0]) == 245)
    assert all(0 <= t.data < 1000 for t in timing)
    def reported_all() -> bool:
        statuses = [s for d in diags for s in d.status if s.name.endswith("invert")]
        return bool(statuses) and {kv.key: kv.value for kv in statuses[-1].values}["frames_processed"] == "5"

    assert graph.spin_until(reported_all, 3.0)
    status = last_status(diags, "invert")
    assert status.level == DiagnosticStatus.OK, status.message
    values = {kv.key: kv.value for kv in status.values}
    assert values["image.received"] == "5" and values["frames_processed"] == "5"


def test_malformed_and_out_of_order_inputs_are_skipped_and_reported(graph):
    node = graph.add(InvertNode(parameter_overrides=[Parameter("diagnostics_period", value=0.2),
                                                    Parameter("input_timeout", value=30.0)]))
    out = graph.record(Image, "out")
    diags = graph.record(DiagnosticArray, "/diagnostics")
    pub = graph.publisher(Image, "in", OUTPUT_QOS)
    graph.wait_matched(pub)
    graph.spin_until(lambda: node.pub.get_subscription_count() > 0)
    now = time.time_ns()
    bad = image(now)
    bad.step = 3  # smaller than the row of 6 mono8 pixels
    pub.publish(bad)
    pub.publish(image(now + 100_000_000))
    pub.publish(image(now + 50_000_000))  # older than the previous one: out of order
    pub.publish(image(now + 200_000_000))
    assert graph.spin_until(lambda: len(out) == 2)
    graph.spin_for(0.5)
    assert len(out) == 2, "malformed or out-of-order images must not produce output"
    assert node.inputs["image"].malformed == 1 and node.inputs["image"].dropped == 1
    assert node.frames_skipped == 2
    graph.spin_until(lambda: any(s.level == DiagnosticStatus.WARN for d in diags for s in d.status), 3.0)
    warn = [s for d in diags for s in d.status if s.level == DiagnosticStatus.WARN]
    assert warn and "malformed" in warn[0].message


def test_stalled_input_reports_error_and_no_work_without_subscribers(graph):
    node = graph.add(InvertNode(parameter_overrides=[Parameter("diagnostics_period", value=0.2),
                                                    Parameter("input_timeout", value=0.3)]))
    diags = graph.record(DiagnosticArray, "/diagnostics")
    pub = graph.publisher(Image, "in", OUTPUT_QOS)
    graph.wait_matched(pub)
    pub.publish(image(time.time_ns()))
    assert graph.spin_until(lambda: node.inputs["image"].received == 1)
    assert node.calls == 0, "nobody subscribes to the output: no work must be done"
    graph.spin_for(0.6)
    assert graph.spin_until(lambda: last_status(diags, "invert").level == DiagnosticStatus.ERROR, 3.0)
    assert "stalled" in last_status(diags, "invert").message
