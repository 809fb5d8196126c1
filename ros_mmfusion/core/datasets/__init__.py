"""Readers of public datasets' folders and their conversion to rosbag2 (``mmfusion import``): one module per dataset
(KITTI, nuScenes, RGB-D/image sequences). ROS-free: bags are written with the ``rosbags`` library."""
