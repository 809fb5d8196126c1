"""A robot with common drivers: an Intel RealSense (realsense2_camera 4.x, camera namespace and name ``camera``), a
16-bit radiometric thermal camera, and a Velodyne (``realsense``) or Ouster (``realsense_ouster``) LiDAR.

* RealSense: colour rgb8 on ``/camera/camera/color/image_raw`` (``camera_color_optical_frame``), depth aligned to
  colour (``align_depth.enable:=true``) 16UC1 millimetres on ``/camera/camera/aligned_depth_to_color/image_raw``, in
  the colour optical frame (aligned depth is registered to the colour camera), each with its ``camera_info``.
* Thermal: mono16 on ``/thermal/image_raw`` in ``thermal_optical_frame``, 0.01 K per count (a radiometric camera in
  a linear-temperature mode such as FLIR's TLinear): the suite's centikelvin as it is.
* Velodyne (velodyne_pointcloud): ``/velodyne_points`` in frame ``velodyne``, the XYZIRT layout
  (:data:`._clouds.VELODYNE`: x y z intensity float32, ring uint16, time float32, packed, point_step 22).
* Ouster (ouster-ros): ``/ouster/points`` in frame ``os_lidar``, its default point layout (:data:`._clouds.OUSTER`:
  padding after z, uint32 ``t`` in ns, reflectivity, ring counted from the top beam, ambient, range in mm;
  point_step 48).
* Odometry from the base driver on ``/odom``, ``odom`` -> ``base_link`` (REP-105), as the suite's.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ros_mmfusion.core.sim.conventions import Convention, register
from ros_mmfusion.core.sim.conventions._clouds import OUSTER, VELODYNE, relayout

_CAMERA = "/camera/camera"


def _tables(lidar_topic: str, lidar_frame: str) -> dict[str, Any]:
    return {
        "topics": {
            "/camera/color/image_raw": f"{_CAMERA}/color/image_raw",
            "/camera/color/camera_info": f"{_CAMERA}/color/camera_info",
            "/camera/depth/image_rect_raw": f"{_CAMERA}/aligned_depth_to_color/image_raw",
            "/camera/depth/camera_info": f"{_CAMERA}/aligned_depth_to_color/camera_info",
            "/lidar/points": lidar_topic,
        },
        # aligned depth is in the colour camera's frame: the suite's depth frame (same pose) becomes it
        "frames": {"camera_depth_optical_frame": "camera_color_optical_frame", "lidar_link": lidar_frame},
        "encodings": {"/camera/color/image_raw": "rgb8", "/camera/depth/image_rect_raw": "16UC1",
                      "/thermal/image_raw": "mono16"},
    }


def _converter(name: str, layout: np.dtype, ring_top_first: bool):
    def convert(topic: str, message: Any, messages: Any) -> list[tuple[str, Any]]:
        convention = CONVENTIONS_HERE[name]
        if topic == "/lidar/points":
            sim = messages.sim
            message = relayout(message, messages, layout, scan_period_s=1.0 / sim.rate, beams=sim.beams,
                               ring_top_first=ring_top_first)
        elif topic == "/tf_static":  # the depth frame merged into the colour frame: publish that transform once
            seen: set[str] = set()
            kept = []
            for transform in message.transforms:
                if transform.child_frame_id not in seen:
                    seen.add(transform.child_frame_id)
                    kept.append(transform)
            message.transforms = kept
        return [(convention.topic(topic), message)]

    return convert


_DESCRIPTIONS = {
    "/camera/color/image_raw": "RealSense colour, rgb8",
    "/camera/depth/image_rect_raw": "RealSense depth aligned to colour, 16UC1 millimetres (0 invalid), colour frame",
    "/thermal/image_raw": "16-bit radiometric thermal camera, mono16, 0.01 K per count",
}

CONVENTIONS_HERE: dict[str, Convention] = {}
CONVENTIONS_HERE["realsense"] = register(Convention(
    name="realsense",
    description="robot drivers: RealSense colour rgb8 + aligned_depth_to_color 16UC1 (realsense2_camera 4.x), a "
                "16-bit thermal camera, a Velodyne cloud (/velodyne_points, XYZIRT layout, frame velodyne)",
    preset="realsense",
    **_tables("/velodyne_points", "velodyne"),
    descriptions={**_DESCRIPTIONS, "/lidar/points": "velodyne_pointcloud XYZIRT: x y z intensity float32, ring "
                                                    "uint16, time float32 (s), packed, point_step 22"},
    convert=_converter("realsense", VELODYNE, ring_top_first=False),
))
CONVENTIONS_HERE["realsense_ouster"] = register(Convention(
    name="realsense_ouster",
    description="robot drivers as 'realsense' with an Ouster cloud instead (/ouster/points, ouster-ros point layout "
                "with padding and uint32 t, frame os_lidar)",
    preset="realsense_ouster",
    **_tables("/ouster/points", "os_lidar"),
    descriptions={**_DESCRIPTIONS, "/lidar/points": "ouster-ros point: x y z float32 (+pad), intensity float32, "
                                                    "t uint32 (ns), reflectivity, ring, ambient uint16, range uint32 "
                                                    "(mm), point_step 48"},
    convert=_converter("realsense_ouster", OUSTER, ring_top_first=True),
))
