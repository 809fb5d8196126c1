"""The "nuscenes" preset (config/presets/nuscenes.yaml): a bag of `mmfusion import nuscenes` through per-camera
LiDAR depth and RGB-depth segmentation in six namespaces (/CAM_FRONT/..., ...) and 3D detection painted from all six.

    ros2 launch ros_mmfusion nuscenes.launch.py bag:=BAG

Arguments (use_sim_time, backend, model_package, set, live, calibration, <sensor>_topic): ros_mmfusion/launcher/ros2.py.
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description("nuscenes")
