"""The ``carla`` preset on a live CARLA simulator through carla-ros-bridge: the bag player is dropped (``live``) and
every node runs on simulated time (the bridge publishes ``/clock``). The preset's topics are the bridge's for an ego
vehicle "ego_vehicle" with the sensors rgb_front, depth_front and lidar (carla-ros-bridge's example objects.json role
names; docs/simulators.md); the extrinsics come from the bridge's /tf. Other role names: edit the remappings of
config/presets/carla.yaml (the topic arguments rename the synthetic bag's topics, which this preset does not use).
ViNT navigation (path in ``map``) starts only with a topological map: ``topomap:=MAP`` (``mmfusion topomap build``).

    ros2 launch ros_mmfusion carla.launch.py [topomap:=MAP]
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description("carla", {
        "live": "true",
        "use_sim_time": "true",
    })
