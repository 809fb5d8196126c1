"""Feeds a node's :class:`~ros_mmfusion.core.tf_buffer.TfBuffer` from ``/tf`` and ``/tf_static`` (no tf2_ros needed).

``/tf`` is subscribed reliable and volatile with a deep queue (tf2's dynamic listener QoS), ``/tf_static`` reliable and
transient local (``LATCHED_QOS``), so a node that starts late still gets every static broadcaster's latched message.
A malformed transform is left out with a throttled log line; the rest of its message is used. Created by
:meth:`MmfusionNode.enable_tf`, only by nodes that look transforms up.
"""
from __future__ import annotations

from collections.abc import Callable

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.core.tf_buffer import TF_STATIC_TOPIC, TF_TOPIC, TfBuffer
from ros_mmfusion.ros.qos import LATCHED_QOS

#: /tf: reliable, volatile, keep last 100 (tf2_ros' DynamicListenerQoS).
TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)


class TfListener:
    """Subscriptions of ``node`` to ``/tf`` and ``/tf_static`` (absolute names: remapping applies) that fill
    ``buffer``; ``received`` counts the transforms added, ``refused`` the messages with malformed ones, each told to
    ``warn(key, text)`` (the node's throttled log)."""

    def __init__(self, node: Node, buffer: TfBuffer, warn: Callable[[str, str], None]) -> None:
        self.buffer, self.warn = buffer, warn
        self.received = 0
        self.refused = 0
        self.subscriptions = [
            node.create_subscription(TFMessage, TF_TOPIC, lambda m: self._on_message(m, False), TF_QOS),
            node.create_subscription(TFMessage, TF_STATIC_TOPIC, lambda m: self._on_message(m, True), LATCHED_QOS),
        ]

    def _on_message(self, msg: TFMessage, static: bool) -> None:
        topic = TF_STATIC_TOPIC if static else TF_TOPIC
        try:
            self.received += self.buffer.add_message(msg.transforms, static=static)
        except MessageFormatError as exc:
            self.refused += 1
            self.warn(f"tf_malformed:{topic}", f"{topic}: transform left out: {exc}")
