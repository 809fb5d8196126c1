"""A preset on the CARLA simulator through carla-ros-bridge: its sensor topics are
/carla/<vehicle role name>/<sensor role name>[/image|/camera_info]; the defaults assume an ego vehicle "ego_vehicle"
with an RGB camera "rgb_front" and a LiDAR "lidar" (set them to your objects definition). Simulated time (/clock).

    ros2 launch ros_mmfusion carla.launch.py preset:=detection calibration:=/path/to/carla_rig/calibration.yaml
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description(None, {
        "preset": "detection",
        "live": "true",
        "use_sim_time": "true",
        "color_topic": "/carla/ego_vehicle/rgb_front/image",
        "color_info_topic": "/carla/ego_vehicle/rgb_front/camera_info",
        "lidar_topic": "/carla/ego_vehicle/lidar",
        "odom_topic": "/carla/ego_vehicle/odometry",
    })
