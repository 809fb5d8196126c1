"""A preset on a robot with live sensors: an Intel RealSense colour camera (realsense2_camera 4.x default names,
namespace and camera name "camera") and a Velodyne LiDAR (velodyne_pointcloud's velodyne_points). No bag player.

    ros2 launch ros_mmfusion robot.launch.py preset:=detection calibration:=/path/to/rig/calibration.yaml

Other drivers or names: color_topic:=, color_info_topic:=, depth_topic:=, thermal_topic:=, lidar_topic:=, odom_topic:=,
cmd_vel_topic:=. The calibration file holds the rig's extrinsics (the format `mmfusion sim` writes beside a bag).
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description(None, {
        "preset": "detection",
        "live": "true",
        "color_topic": "/camera/camera/color/image_raw",
        "color_info_topic": "/camera/camera/color/camera_info",
        "depth_topic": "/camera/camera/aligned_depth_to_color/image_raw",
        "lidar_topic": "/velodyne_points",
    })
