"""LiDAR point layouts of simulators and drivers, and the re-layout of the suite's cloud into one of them.

The suite records ``x y z intensity`` float32 and ``ring`` uint16, packed (18 bytes a point). Drivers pad and add
fields; each layout here is a numpy structured dtype whose offsets and itemsize are the driver's PointField offsets
and ``point_step`` (:func:`ros_mmfusion.core.codec.pointcloud.encode_cloud` keeps both, padding included):

* Gazebo ``gpu_lidar`` (gz-sensors, through ros_gz_bridge): x y z float32 at 0, 4, 8, intensity float32 at 16, ring
  uint16 at 24, point_step 32 (gz-msgs ``InitPointCloudPacked`` with memory alignment: every field group rounded up
  to 8 bytes).
* Velodyne (velodyne_pointcloud's ROS 2 ``PointcloudXYZIRT``, ``setPointCloud2Fields``, packed): x y z intensity
  float32 at 0..12, ring uint16 at 16, time float32 at 18 (seconds after the first point of the scan), point_step 22.
* Ouster (ouster-ros's default point, PCL ``PCL_ADD_POINT4D`` alignment): x y z float32 at 0, 4, 8 (+4 padding),
  intensity float32 at 16, t uint32 at 20 (ns after the scan's start), reflectivity uint16 at 24, ring uint16 at 26,
  ambient uint16 at 28, range uint32 at 32 (mm), point_step 48.

The recorded clouds are unorganized (height 1, valid returns only) where the drivers publish organized scans.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ros_mmfusion.core.codec.pointcloud import decode_cloud


def layout(fields: list[tuple[str, str, int]], point_step: int) -> np.dtype:
    """A structured dtype of ``(name, numpy type, byte offset)`` fields, ``point_step`` bytes a point."""
    return np.dtype({"names": [f[0] for f in fields], "formats": [f[1] for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": point_step})


GAZEBO_GPU_LIDAR = layout([("x", "<f4", 0), ("y", "<f4", 4), ("z", "<f4", 8), ("intensity", "<f4", 16),
                           ("ring", "<u2", 24)], 32)
VELODYNE = layout([("x", "<f4", 0), ("y", "<f4", 4), ("z", "<f4", 8), ("intensity", "<f4", 12),
                   ("ring", "<u2", 16), ("time", "<f4", 18)], 22)
OUSTER = layout([("x", "<f4", 0), ("y", "<f4", 4), ("z", "<f4", 8), ("intensity", "<f4", 16), ("t", "<u4", 20),
                 ("reflectivity", "<u2", 24), ("ring", "<u2", 26), ("ambient", "<u2", 28), ("range", "<u4", 32)], 48)


def scan_fraction(points: np.ndarray) -> np.ndarray:
    """Where in a counter-clockwise sweep starting behind the sensor each point was taken, 0..1 (its azimuth)."""
    azimuth = np.arctan2(points["y"], points["x"])  # -pi (behind) .. pi
    return np.clip((azimuth + np.pi) / (2.0 * np.pi), 0.0, np.nextafter(1.0, 0.0))


def relayout(message: Any, messages: Any, dtype: np.dtype, *, scan_period_s: float, beams: int,
             ring_top_first: bool = False) -> Any:
    """The suite's PointCloud2 ``message`` (a rosbags object) rewritten in the point layout ``dtype``: x y z,
    intensity and ring copied (``ring_top_first``: ring 0 is the highest beam, as Ouster counts), per-point time
    (``time`` s, ``t`` ns) from the azimuth over ``scan_period_s``, ``range`` in mm, ``reflectivity`` from the
    intensity, anything else zero. Header (stamp, frame) kept."""
    points = decode_cloud(message.height, message.width, message.fields, message.is_bigendian, message.point_step,
                          message.row_step, message.data).reshape(-1)
    out = np.zeros(len(points), dtype)
    names = set(dtype.names)
    for name in ("x", "y", "z", "intensity"):
        out[name] = points[name]
    out["ring"] = (beams - 1 - points["ring"].astype(np.int64)) if ring_top_first else points["ring"]
    fraction = scan_fraction(points)
    if "time" in names:
        out["time"] = fraction * scan_period_s
    if "t" in names:
        out["t"] = np.rint(fraction * scan_period_s * 1e9).astype(np.uint32)
    if "range" in names:
        distance = np.sqrt(points["x"].astype(np.float64) ** 2 + points["y"] ** 2 + points["z"] ** 2)
        out["range"] = np.rint(distance * 1000.0).astype(np.uint32)
    if "reflectivity" in names:
        out["reflectivity"] = np.clip(np.rint(points["intensity"]), 0, 65535).astype(np.uint16)
    stamp = message.header.stamp
    return messages.cloud(stamp.sec * 1_000_000_000 + stamp.nanosec, message.header.frame_id, out)
