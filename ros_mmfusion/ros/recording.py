"""Recording rclpy messages into a rosbag2 (MCAP, written with ``rosbags``): ``mmfusion eval``'s outputs bag."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ros_mmfusion.ros.messages import message_type_name


class OutputsBag:
    """Records rclpy messages (serialized as they are) into an MCAP rosbag2 with rosbags; log time = arrival."""

    def __init__(self, path: Path) -> None:
        """``path`` must not exist (it lies in the staging directory of ``core.outputs``)."""
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = path
        self._writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._conns: dict[str, Any] = {}
        self.count = 0

    def write(self, topic: str, msg: Any, log_time_ns: int) -> None:
        """Append ``msg`` on ``topic`` with log time ``log_time_ns`` (ns, wall clock)."""
        from rclpy.serialization import serialize_message

        from ros_mmfusion.core.bagio import typestore

        if topic not in self._conns:
            self._conns[topic] = self._writer.add_connection(topic, message_type_name(msg), typestore=typestore())
        self._writer.write(self._conns[topic], log_time_ns, serialize_message(msg))
        self.count += 1

    def close(self) -> None:
        self._writer.close()
