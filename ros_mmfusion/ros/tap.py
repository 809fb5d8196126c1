"""A recording subscriber for tools (demo, evaluation): counts, arrival times and the last message of each topic."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rclpy.node import Node

from ros_mmfusion.core.stamps import stamp_to_ns
from ros_mmfusion.ros.qos import OUTPUT_QOS


@dataclass
class TopicRecord:
    count: int = 0
    first_arrival: float | None = None
    last_arrival: float | None = None
    last: Any = None
    values: list[float] = field(default_factory=list)
    history: dict[int, Any] = field(default_factory=dict)
    stamps_ns: list[int] = field(default_factory=list)  # header stamps of messages with a header (``timing``)
    arrivals_ns: list[int] = field(default_factory=list)  # their wall-clock arrival times (``timing``)

    def rate_hz(self) -> float:
        if self.count < 2 or self.first_arrival is None or self.last_arrival == self.first_arrival:
            return 0.0
        return (self.count - 1) / (self.last_arrival - self.first_arrival)


class TopicTap(Node):
    """Subscribes to ``topics`` ({topic: msg type}) and records what arrives; ``std_msgs/Float64`` values are kept."""

    def __init__(self, topics: dict[str, type], name: str = "mmfusion_tap", keep: int = 0, timing: bool = False,
                 on_message: Callable[[str, Any, int], None] | None = None) -> None:
        """``keep`` > 0 also keeps the last ``keep`` messages with a header per topic, by header stamp (ns);
        ``timing`` records every header stamp with its wall-clock arrival (ns); ``on_message(topic, msg, arrival_ns)``
        is called for every message."""
        super().__init__(name)
        self.keep = keep
        self.timing = timing
        self.on_message = on_message
        self.records: dict[str, TopicRecord] = {t: TopicRecord() for t in topics}
        for topic, msg_type in topics.items():
            self.create_subscription(msg_type, topic, lambda msg, t=topic: self._on(t, msg), OUTPUT_QOS)

    def _on(self, topic: str, msg: Any) -> None:
        arrival_ns = time.time_ns()
        rec = self.records[topic]
        now = time.monotonic()
        rec.count += 1
        rec.first_arrival = rec.first_arrival or now
        rec.last_arrival = now
        rec.last = msg
        if hasattr(msg, "data") and isinstance(msg.data, float):
            rec.values.append(msg.data)
        if hasattr(msg, "header"):
            stamp = stamp_to_ns(msg.header.stamp)
            if self.timing:
                rec.stamps_ns.append(stamp)
                rec.arrivals_ns.append(arrival_ns)
            if self.keep:
                rec.history[stamp] = msg
                while len(rec.history) > self.keep:
                    rec.history.pop(next(iter(rec.history)))
        if self.on_message is not None:
            self.on_message(topic, msg, arrival_ns)
