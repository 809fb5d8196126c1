"""The "navigation" preset (config/presets/navigation.yaml): Replay a bag through ViNT topological navigation (topomap
from --arg topomap) and the waypoint controller.

    ros2 launch ros_mmfusion navigation.launch.py bag:=PASS2 topomap:=MAP

Arguments (use_sim_time, backend, model_package, set, live, calibration, <sensor>_topic): ros_mmfusion/launcher/ros2.py.
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description("navigation")
