"""ros_mmfusion: multi-modal fusion perception and visual navigation for ROS 2.

``ros_mmfusion.core`` is ROS-free (models, preprocessing, geometry, synchronisation, simulation, evaluation);
``ros_mmfusion.ros`` holds the thin ROS adapters (message conversions, the node base) and ``ros_mmfusion.nodes`` the
nodes. Importing this package or its core never imports rclpy.
"""

__version__ = "0.1.0"
