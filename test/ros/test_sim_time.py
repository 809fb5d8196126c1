"""Sim time over real DDS: the bag player publishes /clock from a synthetic bag's log times (``publish_clock``), a
node with ``use_sim_time`` keeps the bag's stamps and measures its latency on that clock, and notices when the clock
stops at the end of the bag. Also the player's refusals of contradictory time settings."""
from __future__ import annotations

import time

import pytest
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Float64

from ros_mmfusion.core.bagio import BagSource, read_header_stamp
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.health import Level
from ros_mmfusion.core.sim.recorder import record
from ros_mmfusion.nodes.bag_player import BagPlayerNode
from ros_mmfusion.nodes.lidar_depth import LidarDepthNode
from ros_mmfusion.ros.node_base import stamp_to_ns

TOPICS = ["/camera/color/camera_info", "/lidar/points", "/tf_static"]
RATE = 2.0


def test_clock_from_the_bag_drives_a_sim_time_node_that_keeps_the_bags_stamps(graph, tmp_path):
    bag = tmp_path / "bag"
    record("urban_day", bag, 6, size=(64, 48), beams=16, rate=5.0)  # 1 s of bag: 0.5 s of replay at x2
    with BagSource(bag) as source:
        log_times = [m.log_time_ns for m in source.messages(TOPICS)]
        cloud_stamps = [read_header_stamp(m.data) for m in source.messages(["/lidar/points"])]
        start_ns = source.start_ns

    clock: list[tuple[int, float]] = []  # (clock ns, wall arrival s)
    graph.probe.create_subscription(Clock, "/clock", lambda m: clock.append((stamp_to_ns(m.clock), time.monotonic())),
                                    100)
    depth = graph.record(Image, "/lidar/depth_image")
    latency = graph.record(Float64, "/lidar_depth/debug/pipeline_latency_ms")
    node = graph.add(LidarDepthNode(cli_args=["--ros-args", "-r", "camera/camera_info:=/camera/color/camera_info"],
                                    parameter_overrides=[Parameter("use_sim_time", value=True),
                                                         Parameter("extrinsics_source", value="tf"),
                                                         Parameter("input_timeout", value=0.5)]))
    assert node.get_clock().ros_time_is_active
    graph.spin_until(lambda: node.depth_pub.get_subscription_count() > 0)
    no_clock = node.health()
    assert any("no /clock message yet" in part for part in no_clock.message.split("; ")), no_clock.message
    player = graph.add(BagPlayerNode(parameter_overrides=[
        Parameter("bag", value=str(bag)), Parameter("publish_clock", value=True), Parameter("restamp", value=False),
        Parameter("rate", value=RATE), Parameter("topics", value=TOPICS), Parameter("start_delay", value=1.5)]))
    # The first cloud may beat the first CameraInfo or the /tf_static (no ordering across topics): then it is skipped.
    assert graph.spin_until(lambda: player.finished.is_set() and len(depth) + node.frames_skipped >= 6, 20.0), \
        (player.published, len(depth), node.frames_skipped)
    graph.spin_for(0.3)

    # /clock: the bag's time, from its start to its last message, never back, ticking between the messages too
    values = [c for c, _ in clock]
    assert values and values == sorted(values)
    assert values[0] == start_ns and values[-1] == log_times[-1]
    assert len(set(values)) > len(set(log_times)), "the clock ticks between the messages, not only at them"
    # the bag's time advances at `rate` times the wall clock: it never runs ahead (the bound is generous, the load
    # of a shared machine can only slow the replay down)
    moving = [(c, t) for c, t in clock if c > start_ns]
    bag_s, wall_s = (moving[-1][0] - moving[0][0]) / 1e9, moving[-1][1] - moving[0][1]
    assert bag_s > 0.5 and bag_s / wall_s < RATE * 1.5, (bag_s, wall_s)

    # outputs carry the bag's stamps (not wall time), and the latency is on the sim clock: small, never negative
    out = [stamp_to_ns(m.header.stamp) for m in depth]
    assert len(out) >= 5 and set(out) <= set(cloud_stamps), (out, cloud_stamps)
    assert len(latency) >= 5 and all(0.0 <= m.data < 1000.0 for m in latency), [m.data for m in latency]
    assert node.now_ns() == log_times[-1], "the node clock is the bag's last /clock"

    # the bag ended: simulated time stands still, no input can stall in it, and the node says the clock stopped
    assert graph.spin_until(lambda: "clock: /clock stopped" in node.health().message, 5.0), node.health().message
    report = node.health()
    assert report.level == Level.WARN and "stalled" not in report.message, report.message


def test_publish_clock_refuses_restamped_stamps_and_its_own_sim_time(graph, tmp_path):
    bag = tmp_path / "bag"
    record("urban_day", bag, 1, size=(64, 48), beams=16)
    with pytest.raises(ConfigError, match="'publish_clock' and 'restamp' are both true"):
        BagPlayerNode(parameter_overrides=[Parameter("bag", value=str(bag)), Parameter("publish_clock", value=True)])
    with pytest.raises(ConfigError, match="use_sim_time must be false with publish_clock"):
        BagPlayerNode(parameter_overrides=[Parameter("bag", value=str(bag)), Parameter("publish_clock", value=True),
                                           Parameter("restamp", value=False), Parameter("use_sim_time", value=True)])
