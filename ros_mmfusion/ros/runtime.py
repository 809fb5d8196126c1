"""Process-level ROS 2 set-up shared by every node and tool: DDS profile, init/shutdown, spinning.

``configure_middleware()`` must run before ``rclpy.init()``; ``ros_mmfusion.ros`` calls it on import, so importing
any adapter first is enough. It never overrides what the user set.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

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


def node_io(node: Any) -> dict[str, Any]:
    """What ``node`` reads and writes, after remapping: ``{"inputs": {topic: required}, "outputs": [topic, ...]}``.

    Inputs are the node base's sensor inputs (``required``: the node reports ERROR without it, rather than WARN);
    outputs are every topic the node publishes (diagnostics and debug topics included).
    """
    inputs: dict[str, bool] = {}
    monitors = getattr(node, "inputs", {})
    for name, topic in getattr(node, "input_topics", {}).items():
        inputs[topic] = inputs.get(topic, False) or bool(getattr(monitors.get(name), "required", True))
    return {"inputs": inputs, "outputs": sorted({p.topic_name for p in node.publishers})}


def health_snapshot(node: Any) -> dict[str, Any]:
    """The node's health now, as its ``/diagnostics`` status carries it: ``{"level", "message", "values"}``."""
    report = node.health()
    return {"level": int(report.level), "message": report.message, "values": node.diagnostic_values(report)}


def spin_nodes(nodes: Iterable, args: list[str] | None = None,
               before_destroy: Callable[[list], None] | None = None, executor: Any = None) -> int:
    """Spin ``nodes`` in one SingleThreadedExecutor until SIGINT/SIGTERM; destroy them and shut down cleanly.

    ``before_destroy(nodes)`` runs once spinning stopped, while the nodes still exist (a final report). ``executor``:
    one made beforehand (at start-up, where a signal's shutdown is handled), else a new SingleThreadedExecutor.
    SingleThreadedExecutor on purpose: MultiThreadedExecutor livelocks under load in the Jazzy PyPI wheels, and
    EventsExecutor runs no callbacks there (docs/architecture.md).
    """
    import rclpy
    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    executor = executor if executor is not None else SingleThreadedExecutor()
    nodes = list(nodes)
    try:
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if rclpy.ok():
            raise
        # a signal shut the context down before the executor's first wait: a normal stop
    finally:
        if before_destroy is not None:
            before_destroy(nodes)
        for node in nodes:
            if node in executor.get_nodes():
                executor.remove_node(node)
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        executor.shutdown()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0


@contextlib.contextmanager
def spinning_in_background(node, name: str) -> Iterator[None]:
    """Spin ``node`` in a daemon thread of this process (its own SingleThreadedExecutor) while the block runs, e.g. a
    tap or listener beside node processes started elsewhere; on exit stop the thread and destroy the node."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)

    spinner = threading.Thread(target=spin, name=name, daemon=True)
    spinner.start()
    try:
        yield
    finally:
        stop.set()
        spinner.join(timeout=5.0)
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown()
