"""Thin ROS 2 adapters: message conversions, QoS, the node base. Importing this selects the DDS profile."""
from ros_mmfusion.ros.runtime import configure_middleware

configure_middleware()
