"""Any preset of config/presets/ by name, with ros2 launch:

    ros2 launch ros_mmfusion preset.launch.py preset:=detection bag:=/path/to/bag

The preset file is the single description of which nodes run with which parameters; `mmfusion run` reads the same
file when there is no `ros2 launch` (pip-only installs). Arguments: ros_mmfusion/launcher/ros2.py (and
`ros2 launch ros_mmfusion preset.launch.py --show-args`).
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description()
