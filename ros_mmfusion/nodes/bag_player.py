"""``bag_player_node``: replays a rosbag2 onto DDS with the original timing, for tests, demos and evaluation.

Messages are published serialized, exactly as recorded (no deserialization of images or clouds). With ``restamp``
every message whose first field is a Header gets ``stamp = start + (stamp_in_bag - bag_start) / rate`` on the wall
clock, so messages of one frame keep sharing a stamp and downstream nodes' pipeline latency is meaningful.
"""
from __future__ import annotations

import threading
import time

from ros_mmfusion.core.bagio import BagSource, read_header_stamp, restamp, starts_with_header
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.health import Level
from ros_mmfusion.core.params import ParamSpec
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
        ParamSpec("restamp", True, "Shift header stamps onto the wall clock at publication time.", read_only=True),
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
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="bag_player", daemon=True)
        # Playback starts once the executor spins (not at construction), so nodes built after this one in the same
        # process, which may take seconds to load a model, do not miss the first messages.
        self._starter = self.work_timer(0.01, self._start_playback)
        self.get_logger().info(f"replaying {self.params['bag']} ({len(self.publishers_by_topic)} topics, "
                               f"{self.source.duration_ns / 1e9:.1f} s at x{self.params['rate']})")

    def _start_playback(self) -> None:
        self._starter.cancel()
        if not self._thread.is_alive() and not self.finished.is_set():
            self._thread.start()

    def _play(self) -> None:
        rate = self.params["rate"]
        if self._stop.wait(self.params["start_delay"]):
            return
        try:
            while not self._stop.is_set():
                bag_start = self.source.start_ns
                wall_start = time.time_ns()
                mono_start = time.monotonic()
                for message in self.source.messages(list(self.publishers_by_topic)):
                    due = mono_start + (message.log_time_ns - bag_start) / 1e9 / rate
                    if self._stop.wait(max(0.0, due - time.monotonic())):
                        return
                    if not self.active:  # deactivated: the bag's clock runs on, nothing is published
                        continue
                    data = message.data
                    if self.params["restamp"] and message.topic not in LATCHED_TOPICS \
                            and starts_with_header(message.msgtype):
                        offset = (read_header_stamp(data) - bag_start) / rate
                        data = restamp(data, wall_start + int(offset))
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
