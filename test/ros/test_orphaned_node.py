"""A node started by ``mmfusion run --processes`` never outlives its launcher (ros/entry.py ``die_with_parent``).

The launcher here is the real one's spawn and readiness code (``launcher._start_process``, ``_await_ready``) run in a
small program that SIGKILLs itself once its node reported ready; the node is a real rclpy node under the real
``run_node``, with one fault each: a stop that never returns (a stuck driver or middleware call), one that never
returns while holding the GIL, a SIGTERM blocked in the signal mask the launcher passed on. Before the watchdog, each
of these left the node running for good after its launcher was killed. All cases run at once (one wait, not four).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

PROBE = '''\
"""A real rclpy node under run_node, with one fault chosen by MMFUSION_PROBE_FAULT."""
import ctypes
import os
import signal
import sys
import threading
import time

import rclpy
from rclpy.node import Node

from ros_mmfusion.ros.entry import run_node

FAULT = os.environ["MMFUSION_PROBE_FAULT"]


class Probe(Node):
    def __init__(self) -> None:
        if FAULT == "signal_before_the_node":  # the stop signal lands between rclpy.init and the node's creation
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 30.0
            while rclpy.ok() and time.monotonic() < deadline:  # rclpy shuts the context down on its own thread
                time.sleep(0.01)
        super().__init__("orphan_probe")

    def close(self) -> None:  # the runner calls it when the node stops
        if FAULT == "stop_hangs":
            threading.Event().wait()
        elif FAULT == "stop_hangs_holding_the_gil":
            while True:
                ctypes.PyDLL(None).pause()


sys.exit(run_node(Probe))
'''

LAUNCHER = '''\
"""The launcher's spawn and readiness wait for one node, then SIGKILL (the node's pid goes to argv[2])."""
import os
import signal
import sys
import tempfile
from pathlib import Path

from ros_mmfusion.launcher import _await_ready, _start_process
from ros_mmfusion.presets import NodeLaunch
from ros_mmfusion.ros.runtime import child_environment


class ProbeLaunch(NodeLaunch):
    @property
    def module(self) -> str:
        return "orphan_probe"


if os.environ["MMFUSION_PROBE_FAULT"] == "sigterm_blocked":  # whatever started the launcher blocked SIGTERM
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
child = _start_process(ProbeLaunch("orphan_probe", "probe"), {}, Path(tempfile.mkdtemp()), child_environment())
Path(sys.argv[1]).write_text(str(child.proc.pid))
_await_ready([child], [child], {})
print("ready", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
'''

LAUNCHED_FAULTS = ("stop_hangs", "stop_hangs_holding_the_gil", "sigterm_blocked")


def _own_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]


def test_a_node_never_outlives_its_killed_launcher_and_a_signal_at_start_up_is_no_traceback(tmp_path, ros_child_env):
    (tmp_path / "orphan_probe.py").write_text(PROBE)
    (tmp_path / "launch_probe.py").write_text(LAUNCHER)
    base = ros_child_env()
    pythonpath = os.pathsep.join([str(tmp_path), base["PYTHONPATH"]])
    procs: dict[str, subprocess.Popen] = {}
    for fault in LAUNCHED_FAULTS:
        procs[fault] = subprocess.Popen(
            [sys.executable, str(tmp_path / "launch_probe.py"), str(tmp_path / f"{fault}.pid")],
            env={**base, "PYTHONPATH": pythonpath, "MMFUSION_PROBE_FAULT": fault},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    alone = subprocess.Popen([sys.executable, "-m", "orphan_probe"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**base, "PYTHONPATH": pythonpath, "MMFUSION_PROBE_FAULT": "signal_before_the_node"},
                             text=True)
    results: dict[str, tuple[str, str] | None] = {}  # (stdout, stderr) once the launcher and its node ended
    try:
        # The pipes reach end of file once the launcher AND its node (which inherited them) have exited.
        deadline = time.monotonic() + 90.0
        for fault, proc in procs.items():
            try:
                results[fault] = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                results[fault] = None
        _, err = alone.communicate(timeout=60)
    finally:
        for fault in LAUNCHED_FAULTS:  # a node left running (the failure) is killed, not left behind
            pid_file = tmp_path / f"{fault}.pid"
            if pid_file.exists() and psutil.pid_exists(int(pid_file.read_text())):
                psutil.Process(int(pid_file.read_text())).kill()
        for proc in (*procs.values(), alone):
            proc.kill()
    outlived = [fault for fault, result in results.items() if result is None]
    assert not outlived, f"nodes outlived their killed launcher: {outlived}"
    for fault, (out, stderr) in results.items():
        assert out.strip() == "ready", (fault, stderr[-3000:])  # the node was up when its launcher died
        assert "Traceback" not in stderr, (fault, stderr[-3000:])
    # The stop that hangs: one line naming the node and why it ended (the node with the GIL held ends by SIGALRM).
    assert _own_lines(results["stop_hangs"][1]) == [
        f"probe: its launcher (pid {procs['stop_hangs'].pid}) is gone and the node did not stop within 5 s: "
        "exiting now"], results["stop_hangs"][1][-3000:]
    assert not _own_lines(results["sigterm_blocked"][1]), results["sigterm_blocked"][1][-3000:]  # a clean stop
    # SIGTERM between rclpy.init and the node's creation is an interrupted start-up: exit 130, no traceback.
    assert alone.returncode == 130 and "Traceback" not in err, (alone.returncode, err[-3000:])
