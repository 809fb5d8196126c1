"""A preset on a Gazebo simulation: inputs from ros_gz_bridge, simulated time (/clock bridged too). Bridge the
simulated sensors onto the suite's topic names, or name yours with color_topic:=, lidar_topic:=, ... arguments.

    ros2 launch ros_mmfusion gazebo.launch.py preset:=navigation topomap:=MAP
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description(None, {"preset": "navigation", "live": "true", "use_sim_time": "true"})
