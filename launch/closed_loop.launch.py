"""The "closed_loop" preset (config/presets/closed_loop.yaml): Closed loop - ViNT navigation and the waypoint
controller drive the simulated robot (simulated time).

    ros2 launch ros_mmfusion closed_loop.launch.py topomap:=MAP

Arguments (use_sim_time, backend, model_package, set, live, calibration, <sensor>_topic): ros_mmfusion/launcher/ros2.py.
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description("closed_loop")
