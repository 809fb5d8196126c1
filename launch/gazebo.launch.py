"""The gazebo preset on a Gazebo (Harmonic) simulation: inputs from ros_gz_bridge, simulated time (/clock bridged too).
Bring the simulation and the bridge up first, with the robot sensors of config/gazebo/robot_sensors.sdf (model
"robot") and the bridge of config/gazebo/bridge.yaml:

    ros2 run ros_gz_bridge parameter_bridge --ros-args -p config_file:=<share>/config/gazebo/bridge.yaml
    ros2 launch ros_mmfusion gazebo.launch.py [topomap:=MAP]

ViNT navigation (path in ``robot/odom``) starts only with a topological map: ``topomap:=MAP`` (``mmfusion topomap
build``). Other sensor names: color_topic:=, color_info_topic:=, thermal_topic:=, lidar_topic:= ...; replay a bag of
`mmfusion sim --convention gazebo` instead: live:=false bag:=DIR (on the bag's /clock).
"""
from ros_mmfusion.launcher.ros2 import preset_launch_description


def generate_launch_description():
    return preset_launch_description("gazebo", {"live": "true", "use_sim_time": "true"})
