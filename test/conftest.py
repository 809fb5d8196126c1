"""Test-session set-up: an isolated ROS 2 graph (random domain, localhost only, temp log dir) for every rclpy test."""
from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Must happen before any rclpy.init(): a random domain keeps parallel runs (and stray nodes) apart.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="mmfusion_roslog_"))
os.environ.setdefault("ROS_PYTHON_CHECK_FIELDS", "1")


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child python process that joins this test's ROS graph.

    Drops the PyPI ROS wheels' bootstrap marker, which would otherwise make the child's rclpy fail to load.
    """
    from ros_mmfusion.ros.runtime import child_environment

    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return child_environment(**{"PYTHONPATH": pythonpath, **extra})


@pytest.fixture
def ros_child_env():
    return child_env


@pytest.fixture
def python_exe() -> str:
    return sys.executable
