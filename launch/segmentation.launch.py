"""The "segmentation" preset (config/presets/segmentation.yaml): Replay a bag and segment its colour + thermal images
with the RGB-X fusion model.

    ros2 launch ros_mmfusion segmentation.launch.py bag:=DIR

Arguments (use_sim_time, backend, model_package, set, live, calibration, <sensor>_topic): ros_mmfusion/launcher/ros2.py.
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description("segmentation")
