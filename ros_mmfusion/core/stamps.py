"""Time stamps as integer nanoseconds, the one representation the core uses (ROS-free).

A stamp is nanoseconds since the epoch of the clock that made it (ROS time, sim time or the bag's recording clock);
``builtin_interfaces/Time`` splits it into ``sec`` (int32) and ``nanosec`` (uint32, [0, 1e9)).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ros_mmfusion.core.errors import MessageFormatError

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time`` (rclpy or rosbags: anything with ``sec`` and ``nanosec``), an
    ``rclpy.time.Time`` (``nanoseconds``) or an int of ns; MessageFormatError for anything else."""
    if isinstance(stamp, (int, np.integer)) and not isinstance(stamp, bool):
        return int(stamp)
    if hasattr(stamp, "nanoseconds"):
        return int(stamp.nanoseconds)
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)
    raise MessageFormatError(f"cannot read a time stamp from {type(stamp).__name__}: expected Time or int ns")


def nearest_stamp(stamps: np.ndarray, stamp: int, tolerance_ns: int) -> int | None:
    """Index of the stamp in sorted ``stamps`` (ns) nearest ``stamp`` when within ``tolerance_ns``, else None."""
    if not len(stamps):
        return None
    i = int(np.searchsorted(stamps, stamp))
    best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(int(stamps[j]) - stamp))
    return best if abs(int(stamps[best]) - stamp) <= tolerance_ns else None
