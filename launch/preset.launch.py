"""Launch the nodes of a ros_mmfusion preset (config/presets/<preset>.yaml) with ros2 launch.

    ros2 launch ros_mmfusion preset.launch.py preset:=demo bag:=/path/to/bag

The preset file is the single description of which nodes run with which parameters; `mmfusion run` reads the same
file when there is no `ros2 launch` (pip-only installs).
"""
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from ros_mmfusion import presets
from ros_mmfusion.launcher import typed_parameters


def _nodes(context, *args, **kwargs):
    preset_name = LaunchConfiguration("preset").perform(context)
    arguments = {k: v for k, v in context.launch_configurations.items() if k != "preset"}
    preset = presets.load(preset_name, arguments)
    return [
        Node(
            package="ros_mmfusion",
            executable=f"{launch.key}_node",
            name=launch.name,
            parameters=[typed_parameters(launch)],
            remappings=list(launch.remappings.items()),
            output="screen",
        )
        for launch in preset.nodes
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("preset", default_value="demo", description="preset name in config/presets/"),
        DeclareLaunchArgument("bag", default_value="", description="bag directory for presets that replay one"),
        OpaqueFunction(function=_nodes),
    ])
