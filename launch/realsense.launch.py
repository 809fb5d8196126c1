"""The "realsense" preset (config/presets/realsense.yaml): RGB-thermal fusion segmentation and
3D detection on a robot's drivers (RealSense colour, a 16-bit thermal camera, a Velodyne LiDAR), boxes in base_link,
extrinsics from TF.

    ros2 launch ros_mmfusion realsense.launch.py bag:=DIR    # a bag of: mmfusion sim --convention realsense
    ros2 launch ros_mmfusion realsense.launch.py live:=true  # on the robot's drivers
    ros2 launch ros_mmfusion realsense.launch.py bag:=DIR topomap:=MAP  # + ViNT paths in odom

Arguments (use_sim_time, backend, model_package, set, live, calibration, <sensor>_topic): ros_mmfusion/launcher/ros2.py.
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description("realsense")
