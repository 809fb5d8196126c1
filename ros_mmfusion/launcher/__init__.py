"""Start the nodes of a preset without ``ros2 launch``: in this process (one executor) or one process per node.

Both ways the bag player starts last, once every other node is constructed (in-process) or has reported ready
(processes), and only after the preset's nodes were checked against the bag: a required input that neither the bag
nor another node of the preset provides is an error naming the topics. A node that cannot start is one
ConfigError line naming the node and the reason; the nodes already started are stopped.

With one process per node, each node process reports to the launcher on a pipe (see :mod:`ros_mmfusion.ros.entry`):
ready, or why it cannot start, and its final health when it stops. SIGINT and SIGTERM to the launcher stop every
node (SIGTERM, a wait of :data:`STOP_TIMEOUT_S`, then SIGKILL); node processes also stop when the launcher dies
(Linux parent-death signal), and run in their own session so a terminal's Ctrl-C reaches only the launcher.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ros_mmfusion.core.errors import ConfigError, one_line
from ros_mmfusion.core.evaluation.topics import EvaluationTopics
from ros_mmfusion.core.params import validate
from ros_mmfusion.presets import NodeLaunch, Preset
from ros_mmfusion.ros.entry import STOP_TIMEOUT_S  # seconds a node process gets to stop after SIGTERM

PLAYER_KEY = "bag_player"
EXIT_INTERRUPTED = 130


def node_class(launch: NodeLaunch) -> type:
    return getattr(importlib.import_module(launch.module), launch.class_name)


def evaluated_nodes(preset: Preset, nodes: list[NodeLaunch] | None = None) -> list[tuple[NodeLaunch, EvaluationTopics]]:
    """The launches of ``nodes`` (default: the preset's) whose node class declares ``EVALUATION``, in preset order,
    each with its declaration. Imports the node modules."""
    found = []
    for launch in preset.nodes if nodes is None else nodes:
        topics = getattr(node_class(launch), "EVALUATION", None)
        if topics is not None:
            found.append((launch, topics))
    return found


def typed_parameters(launch: NodeLaunch) -> dict[str, Any]:
    """The launch's parameter values checked and widened against the node's ParamSpecs (1 -> 1.0 for a double).

    Unknown names are kept as they are (ROS nodes may read undeclared overrides such as ``use_sim_time``).
    """

    cls = node_class(launch)
    specs = {s.name: s for s in cls.declared_params()}
    out = {}
    for key, value in launch.parameters.items():
        out[key] = validate(specs[key], value) if key in specs else value
        if key in specs and specs[key].is_list:
            out[key] = list(out[key])
    return out


def startup_failure(name: str, reason: object) -> str:
    """The one line for node ``name`` that could not start (its own "name: " prefix dropped)."""
    text = one_line(reason)
    if text.startswith(f"{name}: "):
        text = text[len(name) + 2:]
    return f"node {name!r} failed to start: {text}"


def start_order(preset: Preset) -> list[int]:
    """Indices of ``preset.nodes`` in start order: every other node first, bag players last."""
    indices = range(len(preset.nodes))
    return [i for i in indices if preset.nodes[i].key != PLAYER_KEY] + \
        [i for i in indices if preset.nodes[i].key == PLAYER_KEY]


def bag_topics(launch: NodeLaunch) -> set[str]:
    """The topics bag player ``launch`` will replay: the bag's, limited by its ``topics`` parameter.

    Reads the bag's metadata: FileNotFoundError or ConfigError (one line) for a missing or unreadable bag.
    """
    from ros_mmfusion.core.bagio import BagSource

    values = typed_parameters(launch)
    with BagSource(values.get("bag", "")) as source:
        available = set(source.topics)
    wanted = [t for t in values.get("topics", [""]) if t]
    return available & set(wanted) if wanted else available


def check_inputs(preset: Preset, io: dict[str, dict[str, Any]], replayed: dict[str, set[str]]) -> list[str]:
    """Check that the preset's bag players and nodes provide every input of its nodes.

    ``io``: node name -> :func:`ros_mmfusion.ros.runtime.node_io` of every node but the players; ``replayed``:
    player name -> :func:`bag_topics`. Raises ConfigError listing the required inputs nobody provides; returns one
    note per missing optional input (the node runs without it). Presets without a bag player are not checked (their
    inputs come from live sensors).
    """
    if not replayed:
        return []
    provided = set().union(*replayed.values(), *(set(info["outputs"]) for info in io.values()))
    required: dict[str, list[str]] = {}
    optional: dict[str, list[str]] = {}
    for name, info in io.items():
        for topic, is_required in info["inputs"].items():
            if topic not in provided:
                (required if is_required else optional).setdefault(topic, []).append(name)
    bags = ", ".join(str(typed_parameters(launch).get("bag", "")) for launch in preset.nodes
                     if launch.name in replayed)
    if required:
        needs = "; ".join(f"{topic} (needed by {', '.join(names)})" for topic, names in sorted(required.items()))
        raise ConfigError(f"bag {bags} lacks input topic(s) of preset {preset.name!r}: {needs}; the bag player "
                          f"replays: {', '.join(sorted(set().union(*replayed.values()))) or 'nothing'}")
    return [f"bag {bags} has no {topic}: {', '.join(names)} runs without this optional input"
            for topic, names in sorted(optional.items())]


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr, flush=True)


def _replayed(preset: Preset) -> dict[str, set[str]]:
    return {launch.name: bag_topics(launch) for launch in preset.nodes if launch.key == PLAYER_KEY}


def _construct(launch: NodeLaunch, values: dict[str, Any]):
    """Node ``launch`` in this process; ConfigError naming it when it cannot start, KeyboardInterrupt when a signal
    shut the ROS context down while it was being built."""
    import rclpy
    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.parameter import Parameter

    params = [Parameter(k, value=v) for k, v in values.items()]
    remaps = [f"{src}:={dst}" for src, dst in launch.remappings.items()]
    cli = ["--ros-args", "-r", f"__node:={launch.name}"] + [a for r in remaps for a in ("-r", r)]
    try:
        return node_class(launch)(parameter_overrides=params, cli_args=cli)
    except (ConfigError, OSError) as exc:
        raise ConfigError(startup_failure(launch.name, exc)) from None
    except RCLError as exc:
        if not rclpy.ok():
            raise KeyboardInterrupt from None
        raise ConfigError(startup_failure(launch.name, f"ROS: {exc}")) from None


def _destroy(nodes: list) -> None:
    for node in nodes:
        getattr(node, "close", lambda: None)()
        node.destroy_node()


def create_nodes(preset: Preset) -> list:
    """Construct every node of ``preset`` in this process (rclpy must be initialised), bag players last and only
    once the other nodes' inputs were checked against the bag (:func:`check_inputs`). Returned in preset order.

    On failure the nodes built so far are destroyed and ConfigError (or KeyboardInterrupt) propagates.
    """
    from ros_mmfusion.ros.runtime import node_io

    typed = [typed_parameters(launch) for launch in preset.nodes]  # every value checked before any node starts
    replayed = _replayed(preset)  # the bag is readable
    built: dict[int, Any] = {}
    checked = False
    try:
        for i in start_order(preset):
            launch = preset.nodes[i]
            if launch.key == PLAYER_KEY and not checked:  # every other node is built: check before the first player
                _print_notes(check_inputs(preset, {preset.nodes[j].name: node_io(n) for j, n in built.items()},
                                          replayed))
                checked = True
            built[i] = _construct(launch, typed[i])
    except BaseException:
        _destroy(list(built.values()))
        raise
    return [built[i] for i in range(len(preset.nodes))]


def run_in_process(preset: Preset, until: Callable[[list], bool] | None = None, duration: float = 0.0,
                   extra_nodes: list | None = None, before_destroy: Callable[[list], None] | None = None) -> list:
    """Spin the preset's nodes (plus ``extra_nodes``) until SIGINT/SIGTERM, ``duration`` seconds, or ``until(nodes)``.

    ``before_destroy(nodes)`` runs once spinning stopped, while the nodes still exist (a final summary). Returns the
    nodes (preset order) for the caller to summarise; they are destroyed on return.
    """
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    nodes = create_nodes(preset)
    everything = nodes + list(extra_nodes or [])
    executor = SingleThreadedExecutor()
    for node in everything:
        executor.add_node(node)
    try:
        _spin(executor, nodes, duration, until)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if before_destroy is not None:
            before_destroy(nodes)
        for node in everything:
            executor.remove_node(node)
        _destroy(everything)
        executor.shutdown()
    return nodes


def _spin(executor, nodes: list, duration: float, until: Callable[[list], bool] | None,
          stop: dict[str, int] | None = None) -> None:
    """Spin ``executor`` until the ROS context shuts down, ``duration`` seconds pass (0: no limit), ``until(nodes)``
    is true, or ``stop`` (of :func:`_stop_signals`) records a signal."""
    import rclpy

    deadline = time.monotonic() + duration if duration > 0 else None
    while rclpy.ok() and not stop:
        executor.spin_once(timeout_sec=0.1)
        if deadline is not None and time.monotonic() > deadline:
            break
        if until is not None and until(nodes):
            break


def run_managed_in_process(preset: Preset, until: Callable[[list], bool] | None = None, duration: float = 0.0,
                           extra_nodes: list | None = None,
                           before_destroy: Callable[[list], None] | None = None) -> list:
    """:func:`run_in_process` with the nodes as managed (lifecycle) nodes, brought up and down by a lifecycle manager
    (``ros/lifecycle.py``) through their lifecycle services, as nav2_lifecycle_manager does.

    Every node is constructed unconfigured (parameters only). Bring-up in start order (:func:`start_order`):
    configure every node but the bag players, check their inputs against the bag (:func:`check_inputs`), configure
    the players, then activate every node (the players last: playback starts on activation). Then spin as
    :func:`run_in_process`; SIGINT and SIGTERM end the run (the ROS context must have been initialised without
    rclpy's signal handlers, so that it outlives the signal). Bring-down in reverse order: deactivate, cleanup,
    shutdown. A node that fails to configure or activate is ConfigError naming it and its reason, raised once every
    node was brought down; so is a node that could not be shut down. Returns the nodes (preset order).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ros_mmfusion.ros.lifecycle import LifecycleManager
    from ros_mmfusion.ros.runtime import node_io

    typed = [typed_parameters(launch) for launch in preset.nodes]  # every value checked before any node starts
    replayed = _replayed(preset)  # the bag is readable
    nodes: list = []
    try:
        for launch, values in zip(preset.nodes, typed, strict=True):
            nodes.append(_construct(launch, {**values, "managed": True}))
    except BaseException:
        _destroy(nodes)
        raise
    by_name = {launch.name: node for launch, node in zip(preset.nodes, nodes, strict=True)}
    names = [preset.nodes[i].name for i in start_order(preset)]
    players = [preset.nodes[i].name for i in start_order(preset) if preset.nodes[i].key == PLAYER_KEY]
    others = [name for name in names if name not in players]
    manager_node = rclpy.create_node("mmfusion_lifecycle_manager")
    everything = nodes + list(extra_nodes or []) + [manager_node]
    executor = SingleThreadedExecutor()
    for node in everything:
        executor.add_node(node)
    manager = LifecycleManager(manager_node, lambda seconds: executor.spin_once(timeout_sec=seconds))

    def reason(name: str) -> str:
        text = by_name[name].configure_error or ""
        return text[len(name) + 2:] if text.startswith(f"{name}: ") else text

    problems: list[str] = []
    with _stop_signals() as stop:
        try:
            for group in (others, players):
                if group is players:
                    _print_notes(check_inputs(preset, {name: node_io(by_name[name]) for name in others}, replayed))
                for name in group:
                    if not stop:
                        manager.transition(name, "configure", reason)
            for name in names:
                if not stop:
                    manager.transition(name, "activate")
            _spin(executor, nodes, duration, until, stop)
        finally:
            if before_destroy is not None:
                before_destroy(nodes)
            problems = manager.bring_down(names)
            for node in everything:
                executor.remove_node(node)
            _destroy(everything)
            executor.shutdown()
    if problems:
        raise ConfigError("; ".join(problems))
    return nodes


def replay_in_process(preset: Preset, extra_nodes: list | None = None, grace: float = 2.0,
                      last_activity: Callable[[], float] | None = None,
                      progress: Callable[[dict[str, int], float], None] | None = None,
                      progress_period: float = 5.0, complete: Callable[[], bool] | None = None
                      ) -> tuple[list, float]:
    """Run ``preset`` (which must contain a ``bag_player``) in this process until the bag is played out.

    Stops ``grace`` seconds after the player finished, or, with ``last_activity()`` (a ``time.monotonic()`` value, say
    of the last output a tap received), once nothing happened for ``grace`` seconds after the player finished; or,
    with ``complete()``, as soon as it is True after the player finished (everything awaited has arrived).
    ``progress(published counts, elapsed s)`` is called every ``progress_period`` seconds and once at the end. Returns
    the nodes (see :func:`run_in_process`) and the elapsed seconds.
    """
    keys = [launch.key for launch in preset.nodes]
    if PLAYER_KEY not in keys:
        raise ConfigError(f"preset {preset.name!r} has no bag_player node to replay a bag with")
    player_index = keys.index(PLAYER_KEY)
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
        if complete is not None and complete():
            return True
        quiet_since = max(state["finished_at"], last_activity() if last_activity is not None else 0.0)
        return now - quiet_since > grace

    nodes = run_in_process(preset, until=done, extra_nodes=extra_nodes)
    elapsed = time.monotonic() - started
    if progress is not None:  # the final count, however short the replay
        progress(dict(nodes[player_index].published), elapsed)
    return nodes, elapsed


# -- one process per node -----------------------------------------------------------------------------------------
class _StartupFailed(Exception):
    pass


class _Interrupted(Exception):
    pass


@dataclass
class _NodeProcess:
    """A node process and the launcher's end of its control pipe (events: ready, error, final)."""

    launch: NodeLaunch
    proc: subprocess.Popen
    fd: int | None
    buffer: bytes = b""
    ready: dict[str, Any] | None = None
    error: str | None = None
    final: dict[str, Any] | None = None
    stopped_by_us: bool = False
    killed: bool = False

    def read(self) -> None:
        """Take what the node wrote (call when its pipe is readable): events, or end of file."""
        if self.fd is None:
            return
        chunk = os.read(self.fd, 65536)
        if not chunk:
            os.close(self.fd)
            self.fd = None
            return
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.ready = event.get("ready", self.ready)
                self.error = event.get("error", self.error)
                self.final = event.get("final", self.final)

    def startup_problem(self) -> str | None:
        """Why this node failed to start, or None while it is starting or ready."""
        if self.error is not None:
            return startup_failure(self.launch.name, self.error)
        if self.ready is None and self.fd is None:
            code = self.proc.wait()
            return startup_failure(self.launch.name, f"exited with code {code} before it was ready (see its log "
                                   "above)")
        return None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _pump(children: list[_NodeProcess], timeout: float) -> None:
    """Wait up to ``timeout`` seconds for any node to write, and read what they wrote."""
    readable = {c.fd: c for c in children if c.fd is not None}
    if not readable:
        time.sleep(timeout)
        return
    ready, _, _ = select.select(list(readable), [], [], timeout)
    for fd in ready:
        readable[fd].read()


@contextlib.contextmanager
def _stop_signals() -> Iterator[dict[str, int]]:
    """While active, SIGINT and SIGTERM only record themselves (``box["signal"]``) for the launcher's loops to stop
    the nodes in order; outside the main thread (where Python cannot set handlers) KeyboardInterrupt is relied on."""
    box: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield box
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def record(signum, frame) -> None:  # noqa: ARG001
        box.setdefault("signal", signum)

    for sig in previous:
        signal.signal(sig, record)
    try:
        yield box
    finally:
        for sig, handler in previous.items():
            if handler is None:  # installed outside Python (rclpy's): Python's defaults are the closest
                handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, handler)


def _start_process(launch: NodeLaunch, values: dict[str, Any], workdir: Path, env: dict[str, str]) -> _NodeProcess:
    from ros_mmfusion.ros.entry import CONTROL_FD_ENV, PARENT_PID_ENV

    params_file = workdir / f"{launch.name}.yaml"
    params_file.write_text(yaml.safe_dump({launch.name: {"ros__parameters": values}}))
    cmd = [sys.executable, "-m", launch.module, "--ros-args", "-r", f"__node:={launch.name}",
           "--params-file", str(params_file)]
    for src, dst in launch.remappings.items():
        cmd += ["-r", f"{src}:={dst}"]
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(cmd, env={**env, CONTROL_FD_ENV: str(write_fd), PARENT_PID_ENV: str(os.getpid())},
                                pass_fds=(write_fd,), start_new_session=True)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return _NodeProcess(launch, proc, read_fd)


def _await_ready(group: list[_NodeProcess], everyone: list[_NodeProcess], stop: dict[str, int]) -> None:
    while True:
        _pump(everyone, 0.2)
        for child in group:
            problem = child.startup_problem()
            if problem is not None:
                raise _StartupFailed(problem)
        if all(child.ready is not None for child in group):
            return
        if stop:
            raise _Interrupted


def _stop_processes(children: list[_NodeProcess], timeout: float) -> None:
    """SIGTERM every running node, wait up to ``timeout`` s (reading their final reports), SIGKILL the rest."""
    for child in children:
        if child.proc.poll() is None:
            child.stopped_by_us = True
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(c.proc.poll() is None for c in children):
        _pump(children, 0.1)
    for child in children:
        if child.proc.poll() is None:
            child.killed = True
            child.proc.kill()
        child.proc.wait()
    deadline = time.monotonic() + 1.0  # the last reports of processes that exited
    while time.monotonic() < deadline and any(c.fd is not None for c in children):
        _pump(children, 0.1)
    for child in children:
        child.close()


def run_processes(preset: Preset, duration: float = 0.0, until: Callable[[], bool] | None = None, *,
                  on_final: Callable[[str, dict[str, Any]], None] | None = None) -> int:
    """One OS process per node, each its console entry with a generated params file. Bag players start last, once
    every other node reported ready and the inputs were checked (:func:`check_inputs`).

    Runs until SIGINT/SIGTERM, ``duration`` seconds, a node exits, or ``until()`` is true, then stops every node.
    ``on_final(node name, health)`` receives each node's last health report (see
    :func:`ros_mmfusion.ros.runtime.health_snapshot`). Returns 0, or 130 when interrupted during start-up; raises
    ConfigError when a node cannot start (the others are stopped and the bag never plays) or fails while running.
    """
    from ros_mmfusion.ros.runtime import child_environment

    env = child_environment()
    typed = [typed_parameters(launch) for launch in preset.nodes]  # every value checked before any node starts
    replayed = _replayed(preset)  # the bag is readable
    children: list[_NodeProcess] = []
    failure: str | None = None
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="mmfusion_run_") as tmp, _stop_signals() as stop:
        try:
            order = start_order(preset)
            others = [i for i in order if preset.nodes[i].key != PLAYER_KEY]
            players = [i for i in order if preset.nodes[i].key == PLAYER_KEY]
            for group in (others, players):
                if group is players:
                    _print_notes(check_inputs(preset, {c.launch.name: c.ready for c in children}, replayed))
                started = [_start_process(preset.nodes[i], typed[i], Path(tmp), env) for i in group]
                children += started
                _await_ready(started, children, stop)
            deadline = time.monotonic() + duration if duration > 0 else None
            while not stop and all(c.proc.poll() is None for c in children):
                if deadline is not None and time.monotonic() > deadline:
                    break
                if until is not None and until():
                    break
                _pump(children, 0.2)
        except _StartupFailed as exc:
            failure = str(exc)
        except (_Interrupted, KeyboardInterrupt):
            interrupted = True
        finally:
            _stop_processes(children, STOP_TIMEOUT_S)
    if on_final is not None:
        for child in children:
            if child.final is not None:
                on_final(child.launch.name, child.final)
    if failure is not None:
        raise ConfigError(failure)
    if interrupted:
        return EXIT_INTERRUPTED
    failed = [f"node {c.launch.name!r} exited with code {c.proc.returncode}" for c in children
              if not c.stopped_by_us and c.proc.returncode != 0]
    failed += [f"node {c.launch.name!r} did not stop within {STOP_TIMEOUT_S:g} s and was killed"
               for c in children if c.killed]
    if failed:
        raise ConfigError("; ".join(failed))
    return 0
