from __future__ import annotations

import pytest
import rclpy

import ros_mmfusion.ros  # noqa: F401  (DDS profile before init)

from .harness import Graph


@pytest.fixture
def graph():
    rclpy.init()
    g = Graph()
    try:
        yield g
    finally:
        g.close()
        rclpy.try_shutdown()
