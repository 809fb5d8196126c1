"""Process-level ROS 2 set-up shared by every node and tool: DDS profile, init/shutdown, spinning.

``configure_middleware()`` must run before ``rclpy.init()``; ``ros_mmfusion.ros`` calls it on import, so importing
any adapter first is enough. It never overrides what the user set.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from pathlib import Path

from ros_mmfusion.paths import dds_profile

PROFILE_ENV_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def configure_middleware(profile: Path | None = None) -> str | None:
    """Select our Fast DDS profile (large messages over shared memory) unless the user chose one already.

    Returns the profile path in use, or None when the middleware is not Fast DDS. Both variable names are set: Fast
    DDS 2.x (Humble, Jazzy) reads FASTRTPS_*, 3.x (Kilted) reads FASTDDS_*.
    """
    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps"):
        return None
    for var in PROFILE_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    path = Path(profile) if profile else dds_profile()
    if not path.is_file():
        return None
    for var in PROFILE_ENV_VARS:
        os.environ[var] = str(path)
    return str(path)


BOOTSTRAP_MARKER = "_ROS_WHEELS_BOOTSTRAP_COMPLETE"


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment for a child python (a node process, a tool), plus ``extra``.

    Drops the PyPI ROS wheels' bootstrap marker: a child that inherits it skips the wheels' start-up set-up and its
    rclpy fails to load.
    """
    env = {k: v for k, v in os.environ.items() if k != BOOTSTRAP_MARKER}
    env.update(extra)
    return env


def active_profile() -> str | None:
    for var in PROFILE_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return None


def spin_nodes(nodes: Iterable, args: list[str] | None = None) -> int:
    """Spin ``nodes`` in one SingleThreadedExecutor until SIGINT/SIGTERM; destroy them and shut down cleanly.

    SingleThreadedExecutor on purpose: MultiThreadedExecutor livelocks under load in the Jazzy PyPI wheels, and
    EventsExecutor runs no callbacks there (docs/architecture.md).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    nodes = list(nodes)
    for node in nodes:
        executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in nodes:
            executor.remove_node(node)
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        executor.shutdown()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0


def install_sigterm_as_shutdown() -> None:
    """Make SIGTERM end spinning like SIGINT does (rclpy installs SIGINT only in some versions)."""
    import rclpy

    def _handler(signum, frame):  # noqa: ARG001
        rclpy.try_shutdown()

    signal.signal(signal.SIGTERM, _handler)
