"""The "demo" preset (config/presets/demo.yaml): Replay a synthetic-world bag through LiDAR-to-camera depth, RGB-
thermal fusion segmentation and 3D detection.

    ros2 launch ros_mmfusion demo.launch.py bag:=DIR

Arguments (use_sim_time, backend, model_package, set, live, calibration, <sensor>_topic): ros_mmfusion/launcher/ros2.py.
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description("demo")
