"""Metrics against ground truth (ROS-free): segmentation now; detection, navigation and latency with the eval issue."""
