"""Where the package's share files (config/, launch/, rviz/, models/, interfaces/) live.

Works for the three ways the package is installed: a source checkout or editable pip install (files next to the
package directory), a colcon/ament install (``share/ros_mmfusion`` found through the ament index), and a plain
``pip install .`` (``<prefix>/share/ros_mmfusion`` from setup.py's data_files).
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "ros_mmfusion"


@lru_cache(maxsize=1)
def share_dir() -> Path:
    """The directory holding ``config/`` and friends; ``MMFUSION_SHARE_DIR`` overrides."""
    override = os.environ.get("MMFUSION_SHARE_DIR")
    if override:
        return Path(override)
    source = Path(__file__).resolve().parent.parent
    if (source / "config").is_dir() and (source / "package.xml").is_file():
        return source
    try:  # ROS install: ament index (no rclpy needed)
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - ament_index missing or package not registered
        pass
    candidate = Path(sys.prefix) / "share" / PACKAGE
    return candidate


def config_dir() -> Path:
    return share_dir() / "config"


def dds_profile() -> Path:
    """The Fast DDS profile that carries large images and clouds between processes."""
    return config_dir() / "dds" / "fastdds_large_messages.xml"
