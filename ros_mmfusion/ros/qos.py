"""QoS profiles of the suite (REP-2003): sensor inputs best effort and shallow, outputs reliable, latched maps."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

#: Sensor inputs: best effort, keep last 5. Matches drivers publishing either reliable or best effort.
SENSOR_QOS: QoSProfile = qos_profile_sensor_data

#: Outputs: reliable, keep last 10 (Nav2, RViz and recorders subscribe reliable or best effort alike).
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)

#: Latched topics (/tf_static, label maps): reliable and transient local, so late joiners get the last message.
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
