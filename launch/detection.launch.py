"""The "detection" preset (config/presets/detection.yaml): Replay a bag and detect cars, pedestrians and cyclists in
its LiDAR clouds (PointPillars).

    ros2 launch ros_mmfusion detection.launch.py bag:=DIR

Arguments (use_sim_time, backend, model_package, set, live, calibration, <sensor>_topic): ros_mmfusion/launcher/ros2.py.
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description("detection")
