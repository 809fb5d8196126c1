"""ROS-free core of ros_mmfusion. Nothing under this package may import rclpy or ROS message packages."""
