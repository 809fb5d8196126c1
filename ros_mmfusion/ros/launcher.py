"""Start the nodes of a preset without ``ros2 launch``: in this process (one executor) or one process per node."""
from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.params import validate
from ros_mmfusion.presets import NodeLaunch, Preset


def node_class(launch: NodeLaunch) -> type:
    return getattr(importlib.import_module(launch.module), launch.class_name)


def typed_parameters(launch: NodeLaunch) -> dict[str, Any]:
    """The launch's parameter values checked and widened against the node's ParamSpecs (1 -> 1.0 for a double).

    Unknown names are kept as they are (ROS nodes may read undeclared overrides such as ``use_sim_time``).
    """
    from ros_mmfusion.ros.node_base import COMMON_PARAMS

    cls = node_class(launch)
    specs = {s.name: s for s in (*COMMON_PARAMS, *cls.PARAMS)}
    out = {}
    for key, value in launch.parameters.items():
        out[key] = validate(specs[key], value) if key in specs else value
        if key in specs and specs[key].is_list:
            out[key] = list(out[key])
    return out


def create_nodes(preset: Preset) -> list:
    """Construct every node of ``preset`` in this process (rclpy must be initialised)."""
    from rclpy.parameter import Parameter

    typed = [typed_parameters(launch) for launch in preset.nodes]  # every value checked before any node starts
    nodes = []
    for launch, values in zip(preset.nodes, typed, strict=True):
        params = [Parameter(k, value=v) for k, v in values.items()]
        remaps = [f"{src}:={dst}" for src, dst in launch.remappings.items()]
        cli = ["--ros-args", "-r", f"__node:={launch.name}"] + [a for r in remaps for a in ("-r", r)]
        nodes.append(node_class(launch)(parameter_overrides=params, cli_args=cli))
    return nodes


def run_in_process(preset: Preset, until: Callable[[list], bool] | None = None, duration: float = 0.0,
                   extra_nodes: list | None = None) -> list:
    """Spin the preset's nodes (plus ``extra_nodes``) until SIGINT/SIGTERM, ``duration`` seconds, or ``until(nodes)``.

    Returns the nodes' final state for the caller to summarise; they are destroyed on return.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    nodes = create_nodes(preset)
    everything = nodes + list(extra_nodes or [])
    executor = SingleThreadedExecutor()
    for node in everything:
        executor.add_node(node)
    deadline = time.monotonic() + duration if duration > 0 else None
    try:
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
            if deadline is not None and time.monotonic() > deadline:
                break
            if until is not None and until(nodes):
                break
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in everything:
            executor.remove_node(node)
            getattr(node, "close", lambda: None)()
            node.destroy_node()
        executor.shutdown()
    return nodes


def replay_in_process(preset: Preset, extra_nodes: list | None = None, grace: float = 2.0,
                      last_activity: Callable[[], float] | None = None,
                      progress: Callable[[dict[str, int], float], None] | None = None,
                      progress_period: float = 5.0) -> tuple[list, float]:
    """Run ``preset`` (which must contain a ``bag_player``) in this process until the bag is played out.

    Stops ``grace`` seconds after the player finished, or, with ``last_activity()`` (a ``time.monotonic()`` value, say
    of the last output a tap received), once nothing happened for ``grace`` seconds after the player finished.
    ``progress(published counts, elapsed s)`` is called every ``progress_period`` seconds. Returns the nodes (see
    :func:`run_in_process`) and the elapsed seconds.
    """
    keys = [launch.key for launch in preset.nodes]
    if "bag_player" not in keys:
        raise ConfigError(f"preset {preset.name!r} has no bag_player node to replay a bag with")
    player_index = keys.index("bag_player")
    started = time.monotonic()
    state = {"finished_at": None, "next_progress": started + progress_period}

    def done(nodes: list) -> bool:
        now = time.monotonic()
        player = nodes[player_index]
        if progress is not None and now >= state["next_progress"]:
            state["next_progress"] = now + progress_period
            progress(dict(player.published), now - started)
        if state["finished_at"] is None:
            if not player.finished.is_set():
                return False
            state["finished_at"] = now
        quiet_since = max(state["finished_at"], last_activity() if last_activity is not None else 0.0)
        return now - quiet_since > grace

    nodes = run_in_process(preset, until=done, extra_nodes=extra_nodes)
    return nodes, time.monotonic() - started


def run_processes(preset: Preset, duration: float = 0.0, until: Callable[[], bool] | None = None) -> int:
    """One OS process per node, each its console entry with a generated params file; stops them all together
    on SIGINT, after ``duration`` seconds, when a node exits, or when ``until()`` is true."""
    from ros_mmfusion.ros.runtime import child_environment

    env = child_environment()
    procs: list[subprocess.Popen] = []
    typed = [typed_parameters(launch) for launch in preset.nodes]  # every value checked before any node starts
    with tempfile.TemporaryDirectory(prefix="mmfusion_run_") as tmp:
        for launch, values in zip(preset.nodes, typed, strict=True):
            params_file = Path(tmp) / f"{launch.name}.yaml"
            params_file.write_text(yaml.safe_dump({launch.name: {"ros__parameters": values}}))
            cmd = [sys.executable, "-m", launch.module, "--ros-args", "-r", f"__node:={launch.name}",
                   "--params-file", str(params_file)]
            for src, dst in launch.remappings.items():
                cmd += ["-r", f"{src}:={dst}"]
            procs.append(subprocess.Popen(cmd, env=env))
        deadline = time.monotonic() + duration if duration > 0 else None
        try:
            while all(p.poll() is None for p in procs):
                if deadline is not None and time.monotonic() > deadline:
                    break
                if until is not None and until():
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(2)
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    codes = [p.returncode for p in procs]
    failed = [f"{launch.name} exited {code}"
              for launch, code in zip(preset.nodes, codes, strict=True) if code not in (0, -2, 130)]
    if failed:
        raise ConfigError("; ".join(failed))
    return 0
