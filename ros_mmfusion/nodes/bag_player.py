"""``bag_player_node``: replays a rosbag2 onto DDS with the original timing, for tests, demos and evaluation.

Messages are published serialized, exactly as recorded (no deserialization of images or clouds). Two time bases:

* wall time (``restamp``, the default): every message whose first field is a Header, and every transform of a
  ``/tf`` TFMessage, gets ``stamp = start + (stamp_in_bag - bag_start) / rate`` on the wall clock, so messages of one
  frame keep sharing a stamp, TF lookups at those stamps work, and downstream nodes' pipeline latency (their wall
  clock minus the stamp) is meaningful. ``/tf_static`` keeps its stamps (static transforms hold at any time).
* sim time (``publish_clock``, with ``restamp: false``): stamps stay the bag's and the player publishes
  ``rosgraph_msgs/Clock`` on ``/clock`` from the bag's log times, as ``ros2 bag play --clock`` does: the log time of
  each message just before the message, and in between the playback position (``bag_start + elapsed * rate``) every
  ``1 / clock_rate`` wall seconds; during ``start_delay`` the bag's start time. Nodes run with ``use_sim_time: true``
  then (``mmfusion run --use-sim-time`` sets both), and their latency is measured in bag time. When the bag ends the
  clock stops (simulated time stands still); with ``loop`` it jumps back to the bag's start, a time jump the nodes
  handle.

``publish_clock`` with ``restamp`` is refused (stamps on the wall clock would disagree with ``/clock``), and so is
``use_sim_time`` on the player itself with ``publish_clock`` (it makes the clock).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ros_mmfusion.core.bagio import (
    TF_MESSAGE,
    BagSource,
    read_header_stamp,
    restamp,
    restamp_tf,
    starts_with_header,
)
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.health import Level
from ros_mmfusion.core.params import ParamSpec
from ros_mmfusion.core.stamps import NS_PER_S
from ros_mmfusion.ros.entry import run_node
from ros_mmfusion.ros.messages import message_class
from ros_mmfusion.ros.node_base import MmfusionNode
from ros_mmfusion.ros.qos import LATCHED_QOS, OUTPUT_QOS

LATCHED_TOPICS = ("/tf_static",)


class BagPlayerNode(MmfusionNode):
    PARAMS = (
        ParamSpec("bag", "", "Path of the rosbag2 directory to replay.", read_only=True,
                  check=lambda v: None if v else "a bag path is required"),
        ParamSpec("rate", 1.0, "Playback speed factor (1.0 = recorded timing).", minimum=0.01, maximum=100.0,
                  read_only=True),
        ParamSpec("loop", False, "Start again at the end of the bag.", read_only=True),
        ParamSpec("restamp", True, "Shift header stamps onto the wall clock at publication time (false with "
                  "publish_clock: stamps stay the bag's).", read_only=True),
        ParamSpec("publish_clock", False, "Publish /clock (rosgraph_msgs/Clock) from the bag's log times for nodes "
                  "with use_sim_time; needs restamp false.", read_only=True),
        ParamSpec("clock_rate", 100.0, "With publish_clock: /clock messages per wall-clock second between the "
                  "bag's messages.", minimum=1.0, maximum=1000.0, read_only=True),
        ParamSpec("topics", [""], "Topics to replay; [''] replays all.", read_only=True),
        ParamSpec("start_delay", 1.0, "Seconds to wait before the first message (lets subscribers discover us).",
                  minimum=0.0, maximum=60.0, read_only=True),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("bag_player", **kwargs)

    def configure(self) -> None:
        topics = [t for t in self.params["topics"] if t] or None
        try:
            self.source = BagSource(self.params["bag"])
        except (ConfigError, FileNotFoundError) as exc:  # a missing bag, a corrupt metadata.yaml: one line
            raise ConfigError(f"{self.get_name()}: parameter 'bag': {exc}") from None
        self._topics = topics
        self.clock_pub = self._clock_publisher()
        selected = {t: m for t, m in self.source.topics.items() if topics is None or t in topics}
        if topics is not None and set(topics) - set(selected):
            self.source.close()
            raise ConfigError(f"{self.get_name()}: parameter 'topics': bag {self.params['bag']} has no topic(s) "
                              f"{sorted(set(topics) - set(selected))}")
        self.publishers_by_topic = {}
        for topic, msgtype in selected.items():
            try:
                cls = message_class(msgtype)
            except ConfigError as exc:
                self.get_logger().warn(f"not replaying {topic}: {exc}")
                continue
            qos = LATCHED_QOS if topic in LATCHED_TOPICS else OUTPUT_QOS
            self.publishers_by_topic[topic] = self.output_publisher(cls, topic, qos)
        self.published = {t: 0 for t in self.publishers_by_topic}
        self.clock_ns: int | None = None  # the last time published on /clock (ns, bag time)
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="bag_player", daemon=True)
        # Playback starts once the executor spins (not at construction), so nodes built after this one in the same
        # process, which may take seconds to load a model, do not miss the first messages.
        self._starter = self.work_timer(0.01, self._start_playback)
        clock = ", its time on /clock" if self.clock_pub is not None else ""
        self.get_logger().info(f"replaying {self.params['bag']} ({len(self.publishers_by_topic)} topics, "
                               f"{self.source.duration_ns / 1e9:.1f} s at x{self.params['rate']}{clock})")

    def _clock_publisher(self):
        """The /clock publisher with ``publish_clock`` (None without); ConfigError for a contradictory combination."""
        if not self.params["publish_clock"]:
            return None
        if self.params["restamp"]:
            self.source.close()
            raise ConfigError(f"{self.get_name()}: parameters 'publish_clock' and 'restamp' are both true: restamped "
                              "stamps are wall time and would disagree with the bag time on /clock; set restamp "
                              "to false with publish_clock")
        if self.get_parameter("use_sim_time").value:
            self.source.close()
            raise ConfigError(f"{self.get_name()}: use_sim_time must be false with publish_clock: this node makes "
                              "the simulated time")
        from rosgraph_msgs.msg import Clock

        self._clock_msg = Clock
        return self.create_publisher(Clock, "/clock", OUTPUT_QOS)

    def _publish_clock(self, bag_ns: int) -> None:
        if self.clock_pub is not None and bag_ns != self.clock_ns:
            msg = self._clock_msg()
            msg.clock.sec, msg.clock.nanosec = divmod(int(bag_ns), NS_PER_S)
            self.clock_pub.publish(msg)
            self.clock_ns = bag_ns

    def _wait_until(self, due: float, bag_ns_at: Callable[[float], int]) -> bool:
        """Wait until monotonic time ``due``, publishing /clock (``bag_ns_at(monotonic now)``) every
        ``1 / clock_rate`` s meanwhile with ``publish_clock``; True when stopped."""
        if self.clock_pub is None:
            return self._stop.wait(max(0.0, due - time.monotonic()))
        period = 1.0 / self.params["clock_rate"]
        while True:
            now = time.monotonic()
            self._publish_clock(bag_ns_at(now))
            if now >= due:
                return self._stop.is_set()
            if self._stop.wait(min(period, due - now)):
                return True

    def _start_playback(self) -> None:
        self._starter.cancel()
        if not self._thread.is_alive() and not self.finished.is_set():
            self._thread.start()

    def _play(self) -> None:
        rate = self.params["rate"]
        bag_start = self.source.start_ns
        if self._wait_until(time.monotonic() + self.params["start_delay"], lambda _now: bag_start):
            return
        try:
            while not self._stop.is_set():
                wall_start = time.time_ns()
                mono_start = time.monotonic()
                for message in self.source.messages(list(self.publishers_by_topic)):
                    due = mono_start + (message.log_time_ns - bag_start) / 1e9 / rate
                    if self._wait_until(due, lambda now, m=message.log_time_ns, t0=mono_start: min(
                            m, bag_start + int((now - t0) * rate * NS_PER_S))):  # the playback position
                        return
                    self._publish_clock(message.log_time_ns)  # the clock reaches the message's time before it
                    if not self.active:  # deactivated: the bag's clock runs on, nothing is published
                        continue
                    data = message.data
                    if self.params["restamp"] and message.topic not in LATCHED_TOPICS:
                        def shift(stamp: int, t0: int = wall_start) -> int:
                            return t0 + int((stamp - bag_start) / rate)

                        if starts_with_header(message.msgtype):
                            data = restamp(data, shift(read_header_stamp(data)))
                        elif message.msgtype == TF_MESSAGE:  # /tf: every transform's stamp, so TF stays usable
                            data = restamp_tf(data, shift)
                    self.publishers_by_topic[message.topic].publish(data)
                    self.published[message.topic] += 1
                    self.frames_processed += 1  # messages replayed: the player's output count in /diagnostics
                if not self.params["loop"]:
                    break
        except Exception as exc:  # noqa: BLE001 - report, do not kill the process from a thread
            self.set_finding("playback", Level.ERROR, f"playback failed: {exc}")
            self.get_logger().error(f"playback failed: {exc}")
        finally:
            self.finished.set()
            if self.context.ok():  # not when stopped by a shutdown: rosout is gone then
                self.get_logger().info("playback finished: " + ", ".join(f"{t}={n}" for t, n in
                                                                         self.published.items()))

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.source.close()


def main(args: list[str] | None = None) -> int:
    return run_node(BagPlayerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
