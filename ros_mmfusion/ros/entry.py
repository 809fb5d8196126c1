"""Console entry point shared by every node: init, build, spin, clean exit (no traceback for bad parameters)."""
from __future__ import annotations

import sys
from collections.abc import Callable

from ros_mmfusion.core.errors import ConfigError


def run_node(factory: Callable[[], object], args: list[str] | None = None) -> int:
    """``rclpy.init``, construct the node with ``factory``, spin until SIGINT/SIGTERM; exit 2 on a bad parameter."""
    import rclpy

    from ros_mmfusion.ros.runtime import spin_nodes

    rclpy.init(args=sys.argv if args is None else args)
    try:
        node = factory()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    return spin_nodes([node])
