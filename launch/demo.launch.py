"""The demo preset: replay a synthetic-world bag through LiDAR depth, fusion segmentation and 3D detection (`bag:=DIR`).

`mmfusion demo` runs this preset on an urban bag and the navigation preset on a corridor, and scores both."""
import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    preset = os.path.join(get_package_share_directory("ros_mmfusion"), "launch", "preset.launch.py")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="bag directory written by `mmfusion sim`"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(preset),
                                 launch_arguments={"preset": "demo", "bag": LaunchConfiguration("bag")}.items()),
    ])
