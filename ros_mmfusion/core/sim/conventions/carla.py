"""CARLA through carla-ros-bridge (ROS 2): the synthetic world recorded as the bridge publishes an ego vehicle
``ego_vehicle`` with an RGB camera ``rgb_front``, a depth camera ``depth_front``, a semantic segmentation camera
``semantic_segmentation_front``, a ray-cast LiDAR ``lidar`` and an odometry pseudo sensor ``odometry`` (the role
names of the bridge's example objects file, carla_spawn_objects/config/objects.json).

What the bridge does, and what this convention writes (docs/simulators.md lists the sources):

* Topics ``/carla/<role>/<sensor>/image`` and ``/camera_info`` per camera, ``/carla/<role>/<lidar>`` (PointCloud2),
  ``/carla/<role>/odometry`` (nav_msgs/Odometry, ``map`` -> ``<role>``), ``/tf``, ``/clock``.
* Frames: ``map``; the vehicle ``ego_vehicle``; each sensor ``ego_vehicle/<sensor>`` (the topic prefix). Cameras'
  transforms are rotated into the optical convention (z forward, x right, y down), so the suite's optical frames map
  one to one; the LiDAR frame is x forward, y left, z up (the bridge negates CARLA's left-handed y).
* Sensor transforms are on ``/tf``, not ``/tf_static``: in synchronous mode each sensor publishes
  ``<role>`` -> ``<role>/<sensor>`` (its mounting) with every measurement; all sensors measure at each tick, so here
  one ``/tf`` with every sensor's mounting, stamped with the frame, opens each frame (before the colour image); the
  vehicle's ``map`` -> ``ego_vehicle`` comes with the odometry.
* Colour is ``bgra8``; depth ``32FC1`` metres (CARLA's depth reaches 1000 m, the far plane, where the suite's depth
  is invalid: NaN becomes 1000); the semantic camera is a ``bgra8`` image in CARLA's CityScapes palette
  (:data:`ros_mmfusion.core.label_maps.CARLA`, written from the suite's ground truth); the LiDAR cloud is
  ``x y z intensity`` float32 (16-byte points), intensity 0..1 (the suite's 0..255 divided by 255).
* No thermal camera (CARLA has none) and no instance image: not recorded. The suite's ``/ground_truth/boxes``,
  ``/ground_truth/points`` and ``/ground_truth/label_info`` stay as extras (frames renamed), which the bridge does not
  publish.

The ``carla`` preset (config/presets/carla.yaml) runs such a bag; ``mmfusion eval --label-map carla`` scores its
segmentation against the semantic camera.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ros_mmfusion.core.codec.image import decode_image
from ros_mmfusion.core.label_maps import CARLA as CARLA_LABELS
from ros_mmfusion.core.sim.conventions import Convention, register

ROLE = "ego_vehicle"
"""The ego vehicle's role name (the bridge's default ``ego_vehicle`` parameter)."""
RGB, DEPTH, SEMANTIC, LIDAR, ODOMETRY = "rgb_front", "depth_front", "semantic_segmentation_front", "lidar", "odometry"
"""Sensor role names (carla-ros-bridge's example objects.json; launch/carla.launch.py assumes them too)."""
PREFIX = f"/carla/{ROLE}"
RGB_TOPIC = f"{PREFIX}/{RGB}/image"
RGB_INFO_TOPIC = f"{PREFIX}/{RGB}/camera_info"
DEPTH_TOPIC = f"{PREFIX}/{DEPTH}/image"
DEPTH_INFO_TOPIC = f"{PREFIX}/{DEPTH}/camera_info"
SEMANTIC_TOPIC = f"{PREFIX}/{SEMANTIC}/image"
SEMANTIC_INFO_TOPIC = f"{PREFIX}/{SEMANTIC}/camera_info"
LIDAR_TOPIC = f"{PREFIX}/{LIDAR}"
ODOMETRY_TOPIC = f"{PREFIX}/{ODOMETRY}"
MAP_FRAME = "map"
FAR_PLANE_M = 1000.0
"""CARLA's depth camera range: the bridge's decoding of the 24-bit depth gives at most 1000 m (sky)."""

#: suite frame -> CARLA frame (the rig's sensor frames as recorded by core.sim; see sensors.Rig).
FRAMES = {
    "odom": MAP_FRAME,
    "base_link": ROLE,
    "camera_color_optical_frame": f"{ROLE}/{RGB}",
    "camera_depth_optical_frame": f"{ROLE}/{DEPTH}",
    "lidar_link": f"{ROLE}/{LIDAR}",
}
SEMANTIC_FRAME = f"{ROLE}/{SEMANTIC}"
"""The semantic camera's frame: co-located with ``rgb_front`` (the suite's ground truth is registered to colour)."""

TOPICS: dict[str, str | None] = {
    "/camera/color/image_raw": RGB_TOPIC,
    "/camera/color/camera_info": RGB_INFO_TOPIC,
    "/camera/depth/image_rect_raw": DEPTH_TOPIC,
    "/camera/depth/camera_info": DEPTH_INFO_TOPIC,
    "/thermal/image_raw": None,
    "/thermal/camera_info": None,
    "/lidar/points": LIDAR_TOPIC,
    "/odom": ODOMETRY_TOPIC,
    "/tf": "/tf",
    "/ground_truth/semantic": SEMANTIC_TOPIC,
    "/ground_truth/instance": None,
}

SENSOR_FRAMES = (  # (rig sensor attribute, CARLA frame) of every sensor whose mounting is on /tf
    ("color", f"{ROLE}/{RGB}"), ("depth", f"{ROLE}/{DEPTH}"), ("lidar", f"{ROLE}/{LIDAR}"), ("color", SEMANTIC_FRAME))
FIRST_OF_FRAME = "/camera/color/image_raw"
"""The suite topic the recorder writes first in every frame: the sensors' /tf goes just before it."""


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _sensor_tf(messages: Any, stamp_ns: int) -> Any:
    """``/tf`` of every sensor's mounting at ``stamp_ns``: ``ego_vehicle`` -> ``ego_vehicle/<sensor>`` (what the
    bridge publishes with each measurement in synchronous mode)."""
    rig = messages.sim.rig
    return messages.new("tf2_msgs/msg/TFMessage", transforms=[
        messages.transform_stamped(stamp_ns, ROLE, child, getattr(rig, sensor).T_base_sensor)
        for sensor, child in SENSOR_FRAMES])


def _pixels(message: Any) -> np.ndarray:
    return decode_image(message.height, message.width, message.encoding, message.is_bigendian, message.step,
                        np.asarray(message.data, np.uint8))


def _semantic(message: Any, messages: Any) -> list[tuple[str, Any]]:
    """The suite's mono8 class ids as CARLA's semantic camera: bgra8 CityScapes-palette colours, and its
    camera_info (the colour camera's intrinsics: the ground truth is registered to colour)."""
    stamp = _stamp_ns(message.header)
    rgb = CARLA_LABELS.encode_colours(_pixels(message))
    bgra = np.concatenate([rgb[..., ::-1], np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    info = messages.camera_info(stamp, messages.sim.rig.color)
    info.header.frame_id = SEMANTIC_FRAME
    return [(SEMANTIC_TOPIC, messages.image(stamp, SEMANTIC_FRAME, np.ascontiguousarray(bgra), "bgra8")),
            (SEMANTIC_INFO_TOPIC, info)]


def _depth(message: Any) -> Any:
    """Invalid (NaN) suite depth as CARLA's far plane (1000 m); 32FC1 metres otherwise unchanged."""
    depth = _pixels(message).astype(np.float32, copy=True)
    depth[~np.isfinite(depth)] = FAR_PLANE_M
    message.data = np.ascontiguousarray(depth.astype("<f4" if not message.is_bigendian else ">f4")).reshape(-1).view(
        np.uint8)
    return message


def _lidar(message: Any, messages: Any) -> Any:
    """The suite cloud (x y z intensity 0..255 float32, ring uint16) in the bridge's layout: x y z intensity float32,
    16-byte points, intensity 0..1."""
    from ros_mmfusion.core.codec.pointcloud import decode_cloud

    cloud = decode_cloud(message.height, message.width, message.fields, message.is_bigendian, message.point_step,
                         message.row_step, np.asarray(message.data, np.uint8))
    out = np.zeros(cloud.shape[-1] if cloud.ndim == 1 else cloud.size,
                   np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")]))
    for name in ("x", "y", "z"):
        out[name] = np.asarray(cloud[name], np.float32).reshape(-1)
    out["intensity"] = np.asarray(cloud["intensity"], np.float32).reshape(-1) / 255.0
    return messages.cloud(_stamp_ns(message.header), message.header.frame_id, out)


def convert(topic: str, message: Any, messages: Any) -> list[tuple[str, Any]]:
    """What the tables cannot say (module docstring): sensor transforms on ``/tf`` with each measurement, the
    semantic camera, the far plane, the LiDAR layout, ``/clock`` with each frame's ``/tf``."""
    target = TOPICS.get(topic, topic)
    if topic == "/tf_static":  # the bridge has no static transforms: each sensor's goes with its data instead
        return []
    if topic == "/tf":  # map -> ego_vehicle, and the simulation time the bridge publishes on /clock
        clock = messages.new("rosgraph_msgs/msg/Clock", clock=message.transforms[0].header.stamp)
        return [("/clock", clock), ("/tf", message)]
    pairs: list[tuple[str, Any]] = []
    if topic == FIRST_OF_FRAME:
        pairs.append(("/tf", _sensor_tf(messages, _stamp_ns(message.header))))
    if topic == "/ground_truth/semantic":
        return pairs + _semantic(message, messages)
    if topic == "/camera/depth/image_rect_raw":
        message = _depth(message)
    elif topic == "/lidar/points":
        message = _lidar(message, messages)
    return pairs + [(target, message)]


CONVENTION = register(Convention(
    name="carla",
    description="CARLA through carla-ros-bridge: /carla/ego_vehicle/<sensor>/image, bgra8 colour, 32FC1 depth, "
                "CityScapes-palette semantic camera, x y z intensity LiDAR, map/ego_vehicle/ego_vehicle/<sensor> "
                "frames on /tf, /clock",
    preset="carla",
    topics=TOPICS,
    frames=FRAMES,
    encodings={"/camera/color/image_raw": "bgra8", "/camera/depth/image_rect_raw": "32FC1"},
    convert=convert,
))
