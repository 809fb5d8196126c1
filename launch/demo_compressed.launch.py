"""The "demo_compressed" preset (config/presets/demo_compressed.yaml): the demo preset on a bag whose camera topics
are all CompressedImage (`mmfusion sim --compressed`).

    ros2 launch ros_mmfusion demo_compressed.launch.py bag:=BAG

Arguments (use_sim_time, backend, model_package, set, live, calibration, <sensor>_topic): ros_mmfusion/launcher/ros2.py.
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description("demo_compressed")
