"""Gazebo (Harmonic) through ros_gz_bridge: the robot model ``robot`` with the sensors of
``config/gazebo/robot_sensors.sdf``, bridged by ``config/gazebo/bridge.yaml``.

Topics are what those sensors publish and the bridge maps one to one: a ``camera`` or ``thermal_camera`` sensor
publishes its image on its ``<topic>`` and its CameraInfo on the sibling ``camera_info``; a ``depth_camera`` its
32FC1 image (metres) on ``<topic>``; a ``gpu_lidar`` its cloud on ``<topic>/points`` (the gpu_lidar point layout,
:data:`._clouds.GAZEBO_GPU_LIDAR`). The colour image is rgb8 (``R8G8B8``); the thermal camera is ``L16`` with 0.01 K
per count, which is the suite's centikelvin mono16 as it is. The diff-drive system publishes
``/model/robot/odometry`` and ``/model/robot/tf`` (bridged to ``/tf``) in ``robot/odom`` -> ``robot/base_link`` and
takes ``/model/robot/cmd_vel``; ``/clock`` is the simulation time.

Frames are Gazebo's scoped names with ``::`` bridged to ``/``: ``<model>/<link>/<sensor>``. The camera frames carry
the optical orientation (z forward) in the recording's ``/tf_static``, as the suite's nodes expect; Gazebo's own sensor
frame is x forward, so a real setup publishes the optical transform for them (docs/world.md).
"""
from __future__ import annotations

from typing import Any

from ros_mmfusion.core.sim.conventions import Convention, register
from ros_mmfusion.core.sim.conventions._clouds import GAZEBO_GPU_LIDAR, relayout

MODEL = "robot"
LINK = "base_link"
SENSORS = {"color": "camera", "depth": "depth_camera", "thermal": "thermal_camera", "lidar": "gpu_lidar"}
"""Suite sensor -> the SDF sensor name (config/gazebo/robot_sensors.sdf)."""


def sensor_frame(sensor: str) -> str:
    """The frame id Gazebo gives SDF sensor ``sensor`` on link ``LINK`` of model ``MODEL``, as bridged."""
    return f"{MODEL}/{LINK}/{sensor}"


def _convert(topic: str, message: Any, messages: Any) -> list[tuple[str, Any]]:
    target = GAZEBO.topic(topic)
    if topic == "/lidar/points":
        sim = messages.sim
        message = relayout(message, messages, GAZEBO_GPU_LIDAR, scan_period_s=1.0 / sim.rate, beams=sim.beams)
    return [(target, message)]


GAZEBO = register(Convention(
    name="gazebo",
    description="Gazebo Harmonic through ros_gz_bridge (config/gazebo/bridge.yaml, robot_sensors.sdf): rgb8 camera, "
                "32FC1 depth camera, L16 thermal camera (0.01 K/count), gpu_lidar cloud layout, diff-drive odometry; "
                "frames <model>/<link>/<sensor>",
    preset="gazebo",
    topics={
        "/camera/color/image_raw": "/camera/image",
        "/camera/color/camera_info": "/camera/camera_info",
        "/camera/depth/image_rect_raw": "/depth_camera/depth_image",
        "/camera/depth/camera_info": "/depth_camera/camera_info",
        "/thermal/image_raw": "/thermal_camera/image",
        "/thermal/camera_info": "/thermal_camera/camera_info",
        "/lidar/points": "/lidar/points",
        "/odom": f"/model/{MODEL}/odometry",
    },
    frames={
        "odom": f"{MODEL}/odom",
        "base_link": f"{MODEL}/{LINK}",
        "camera_color_optical_frame": sensor_frame(SENSORS["color"]),
        "camera_depth_optical_frame": sensor_frame(SENSORS["depth"]),
        "thermal_optical_frame": sensor_frame(SENSORS["thermal"]),
        "lidar_link": sensor_frame(SENSORS["lidar"]),
    },
    encodings={"/camera/color/image_raw": "rgb8", "/camera/depth/image_rect_raw": "32FC1",
               "/thermal/image_raw": "mono16"},
    descriptions={
        "/camera/color/image_raw": "camera sensor 'camera', R8G8B8 as rgb8",
        "/camera/depth/image_rect_raw": "depth_camera sensor 'depth_camera', 32FC1 metres (NaN invalid)",
        "/thermal/image_raw": "thermal_camera sensor 'thermal_camera', L16 as mono16, 0.01 K per count",
        "/lidar/points": "gpu_lidar sensor 'gpu_lidar': x y z intensity float32 at 0 4 8 16, ring uint16 at 24, "
                         "point_step 32 (unorganized: valid returns only)",
        "/odom": f"diff-drive odometry {MODEL}/odom -> {MODEL}/{LINK}",
        "/tf": f"{MODEL}/odom -> {MODEL}/{LINK} (bridged from /model/{MODEL}/tf)",
        "/tf_static": f"{MODEL}/{LINK} -> the sensor frames (optical for the cameras), as robot_state_publisher "
                      "would publish them",
    },
    convert=_convert,
))
