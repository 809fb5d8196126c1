"""Console entry point shared by every node: init, build, spin, clean exit (one line, never a traceback, for a node
that cannot start).

Exit codes: 0 after a normal stop (SIGINT/SIGTERM while running), 2 when the node cannot start (bad parameter,
missing or unreadable file), 1 for another start-up failure of ROS, 130 when interrupted during start-up, 3 when its
launcher died and the stop did not end within :data:`ORPHAN_STOP_GRACE_S`.

Started by ``mmfusion run --processes`` (the launcher sets :data:`CONTROL_FD_ENV` and :data:`PARENT_PID_ENV`), the
node also reports to the launcher on a pipe, one JSON object per line: ``{"ready": {...}}`` once constructed (its
inputs and outputs, see :func:`ros_mmfusion.ros.runtime.node_io`), ``{"error": "..."}`` instead when it cannot start
(then it prints nothing itself: the launcher prints the one line), and ``{"final": {...}}`` (its last health report)
when it stops. No node outlives its launcher, even one killed by SIGKILL (:func:`die_with_parent`): Linux sends the
node SIGTERM when the launcher dies, and a watchdog thread that sees the launcher gone sends it too and, should the
stop hang, ends the process :data:`ORPHAN_STOP_GRACE_S` later (exit code :data:`EXIT_ORPHANED`, one line on stderr).
A stop begun under the launcher is bounded by the kernel at :data:`STOP_TIMEOUT_S` + 1 s, even if the launcher dies.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ros_mmfusion.core.errors import ConfigError, one_line
from ros_mmfusion.core.inference.params import EnginesBuilt

CONTROL_FD_ENV = "MMFUSION_CONTROL_FD"
"""File descriptor of the launcher's control pipe (write end), in a node process started by the launcher."""
PARENT_PID_ENV = "MMFUSION_PARENT_PID"
"""Process id of the launcher; the node stops when its parent is no longer that process."""
EXIT_CONFIG = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_ORPHANED = 3
STOP_TIMEOUT_S = 10.0
"""Seconds a node started by the launcher gets to stop once told to (SIGTERM): the launcher kills it then, and the
node ends itself a second later should the launcher be gone by then (:meth:`LauncherWatch.stopping`)."""
ORPHAN_CHECK_PERIOD_S = 0.5
"""How often (s) a node started by the launcher checks that its parent is still the launcher."""
ORPHAN_STOP_GRACE_S = 5.0
"""Seconds a node whose launcher died gets to stop cleanly before it exits hard (:data:`EXIT_ORPHANED`)."""
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)


class LauncherChannel:
    """The node's end of the launcher's control pipe; every method is a no-op when the node runs on its own."""

    def __init__(self, fd: int | None) -> None:
        self._file = None
        if fd is not None:
            try:
                os.set_inheritable(fd, False)  # not passed on to tools the node may start
                self._file = os.fdopen(fd, "w", buffering=1)
            except OSError:
                self._file = None

    @classmethod
    def from_environment(cls) -> LauncherChannel:
        value = os.environ.pop(CONTROL_FD_ENV, "")
        return cls(int(value) if value.isdigit() else None)

    @property
    def connected(self) -> bool:
        return self._file is not None

    def send(self, **event: Any) -> None:
        """Write one event (a JSON line); a launcher that went away is ignored."""
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(event) + "\n")
            self._file.flush()
        except (OSError, ValueError):
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None


def check_path_parameters(node: Any, files: Iterable[str] = (), directories: Iterable[str] = (),
                          base: Path | None = None) -> None:
    """Start-up check of a node's path parameters: ConfigError naming the node, the parameter and the path when a
    non-empty one does not name an existing file (``files``) or directory (``directories``).

    Relative paths are taken relative to ``base`` when given (e.g. the package share directory), else to the working
    directory. Call it in the constructor before loading anything, so a wrong path is one line, not a traceback.
    """
    for names, kind, exists in ((files, "file", Path.is_file), (directories, "directory", Path.is_dir)):
        for name in names:
            value = node.params[name]
            if not value:
                continue
            path = Path(value) if base is None or Path(value).is_absolute() else base / value
            if not exists(path):
                what = f"not a {kind}" if path.exists() else f"{kind} not found"
                raise ConfigError(f"{node.get_name()}: parameter {name!r}: {what}: {path}")


def _end_process_in(seconds: float) -> None:
    """Have the kernel end this process by SIGALRM (its default action) in ``seconds``, unless a sooner such deadline
    is set: it holds whatever the interpreter does meanwhile, even a call that never returns holding the GIL."""
    remaining = signal.getitimer(signal.ITIMER_REAL)[0]
    if remaining == 0.0 or seconds < remaining:
        signal.setitimer(signal.ITIMER_REAL, seconds)


class LauncherWatch:
    """Makes sure a node started by the launcher (parent pid ``launcher``) does not outlive it; started by
    :func:`die_with_parent`, see there."""

    def __init__(self, launcher: int, grace: float = ORPHAN_STOP_GRACE_S) -> None:
        self.launcher = launcher
        self.grace = grace
        self._thread = threading.Thread(target=self._watch, name="mmfusion_launcher_watch", daemon=True)
        self._thread.start()

    @property
    def orphaned(self) -> bool:
        """True once the launcher is gone (this process was handed to another parent)."""
        return os.getppid() != self.launcher

    def stopping(self) -> None:
        """The node's stop begins: it must end within :data:`STOP_TIMEOUT_S` (+ 1 s), as the launcher demands, also
        if the launcher dies meanwhile. Call it before anything that could hang.

        Not only when :attr:`orphaned`: a launcher killed with several threads alive sends the parent-death signal
        once per dying thread, the first while this process still has the launcher as parent."""
        _end_process_in(STOP_TIMEOUT_S + 1.0)

    def _watch(self) -> None:
        while not self.orphaned:
            time.sleep(ORPHAN_CHECK_PERIOD_S)
        _end_process_in(self.grace + 1.0)  # in case this thread cannot run again (the GIL held for good)
        os.kill(os.getpid(), signal.SIGTERM)  # the ordinary stop, in case the parent-death signal was lost
        time.sleep(self.grace)
        line = (f"{_program_name()}: its launcher (pid {self.launcher}) is gone and the node did not stop within "
                f"{self.grace:g} s: exiting now\n")
        try:
            os.write(2, line.encode())
        except OSError:
            pass
        os._exit(EXIT_ORPHANED)


def die_with_parent(grace: float = ORPHAN_STOP_GRACE_S) -> LauncherWatch | None:
    """When started by the launcher (:data:`PARENT_PID_ENV`), make sure this process does not outlive it, even when
    the launcher is killed by SIGKILL; returns the :class:`LauncherWatch` (None when not started by the launcher).
    Call it from the main thread, first thing.

    * Linux sends SIGTERM, the ordinary stop, the moment the launcher exits (``prctl(PR_SET_PDEATHSIG)``). SIGINT,
      SIGTERM and SIGALRM are unblocked first: a signal mask inherited from whatever started the launcher would hold
      them back for good.
    * That signal alone is not relied on: it is tied to the launcher's thread that started us (a launcher killed
      with several threads sends it once per dying thread, the first while it is still our parent), it is lost
      where a signal is blocked or ignored, and a stop can hang (a driver or middleware call that never returns).
      So a watchdog thread checks every
      :data:`ORPHAN_CHECK_PERIOD_S` that the parent is still the launcher; once it is not (also when the launcher
      died during our start-up) it sends SIGTERM itself, and if the process is still there ``grace`` seconds later
      it writes one line on stderr and exits at once (:data:`EXIT_ORPHANED`).
    * A kernel timer (SIGALRM) ends the process should the interpreter itself be stuck so that the watchdog cannot
      run (a call that never returns holding the GIL): a second after that exit, or :data:`STOP_TIMEOUT_S` + 1 s
      after the stop began (:meth:`LauncherWatch.stopping`), whichever comes first.
    """
    expected = os.environ.get(PARENT_PID_ENV, "")
    if not expected.isdigit():
        return None
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the last resort must end the process
    except (ValueError, OSError, AttributeError):  # not the main thread, or no such call on this system
        pass
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    return LauncherWatch(int(expected), grace)


def _program_name() -> str:
    """The node's name for a message written without ROS: its ``__node:=`` remapping, else its module's name."""
    for arg in sys.argv:
        if arg.startswith("__node:="):
            return arg.split(":=", 1)[1]
    return Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "node"


def _discard_partial_node() -> None:
    """Finalise now what a failed constructor left behind, without the RuntimeWarnings rclpy prints when a half-built
    node is collected after its context was shut down (at exit, as two lines of noise under the one error line)."""
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gc.collect()


def run_node(factory: Callable[[], object], args: list[str] | None = None) -> int:
    """``rclpy.init``, construct the node with ``factory``, spin until SIGINT/SIGTERM; see the module doc."""
    channel = LauncherChannel.from_environment()
    watch = die_with_parent()

    def fail(code: int, reason: str) -> int:
        reason = one_line(reason)
        if channel.connected:
            channel.send(error=reason)
        else:
            print(f"error: {reason}", file=sys.stderr)
        channel.close()
        return code

    try:
        import rclpy
        from rclpy._rclpy_pybind11 import RCLError
        from rclpy.exceptions import NotInitializedException
        from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

        from ros_mmfusion.ros.runtime import health_snapshot, node_io, spin_nodes
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    initialised = False
    node = None
    outcome: tuple[int, str | None] | None = None  # (exit code, reason to report) when the node did not start
    handler = signal.getsignal(signal.SIGINT)
    if getattr(handler, "__module__", None) == "ros_mmfusion.nodes" and \
            threading.current_thread() is threading.main_thread():
        # the node program's imports are done (ros_mmfusion/nodes/__init__.py exits at once on Ctrl-C during
        # them): Ctrl-C is a KeyboardInterrupt again, then rclpy's shutdown, both handled below
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rclpy.init(args=sys.argv if args is None else args)
        initialised = True
        executor = SingleThreadedExecutor()  # now: a signal's shutdown from here on is a start-up interruption
        node = factory()
    except (KeyboardInterrupt, ExternalShutdownException):
        outcome = (EXIT_INTERRUPTED, None)
    except (ConfigError, OSError) as exc:  # a bad parameter; a file a parameter names: missing, unreadable
        outcome = (EXIT_CONFIG, str(exc))
    except EnginesBuilt as done:  # build_only: the engines are in the cache; nothing to run
        print(one_line(done), flush=True)
        outcome = (0, None)
    except (RCLError, NotInitializedException) as exc:  # the latter: a node created after the signal's shutdown
        if initialised and not rclpy.ok():  # SIGINT/SIGTERM shut the context down while the node was being built
            outcome = (EXIT_INTERRUPTED, None)
        else:
            outcome = (EXIT_FAILED if initialised else EXIT_CONFIG, f"ROS: {exc}")
    if outcome is not None:
        _discard_partial_node()
        rclpy.try_shutdown()
        code, reason = outcome
        if reason is None:
            channel.close()
            return code
        return fail(code, reason)
    channel.send(ready=node_io(node))

    def report_final(nodes: list) -> None:
        if watch is not None:  # the stop begins: bounded in time, even if the launcher is gone
            watch.stopping()
        try:
            channel.send(final=health_snapshot(nodes[0]))
        except Exception:  # noqa: BLE001 - best effort: a failed report must not stop the node's shutdown
            pass
        channel.close()

    try:
        return spin_nodes([node], before_destroy=report_final, executor=executor)
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return EXIT_INTERRUPTED
