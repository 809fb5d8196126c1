"""Node programs at start-up, as ``<key>_node`` runs them: a wrong file parameter is one line naming the parameter
and the path (exit 2), and Ctrl-C while a node starts ends it quietly."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def own_lines(stderr: str) -> list[str]:
    """stderr without ROS log lines (``[INFO] [stamp] [node]: ...``)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    from ros_mmfusion.core.sim import record

    path = tmp_path_factory.mktemp("startup") / "day"
    record("urban_day", path, 2, size=(64, 48), beams=16)
    return path


def bad_inputs(tmp: Path, bag: Path) -> dict[str, Path]:
    corrupt = tmp / "corrupt_bag"
    shutil.copytree(bag, corrupt)
    (corrupt / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed\n  : : :\n")
    not_an_image = tmp / "goal.png"
    not_an_image.write_text("this is no PNG")
    return {"corrupt_bag": corrupt, "not_an_image": not_an_image}


CASES = [
    ("lidar_depth", "calibration_file", "/nonexistent/calib.yaml", "file not found: /nonexistent/calib.yaml"),
    ("detection3d", "weights", "/nonexistent/pillars.pth", "file not found: /nonexistent/pillars.pth"),
    ("fusion_segmentation", "model_package", "/nonexistent/model", "directory not found: /nonexistent/model"),
    ("vint_navigation", "topomap_dir", "/nonexistent/map", "directory not found: /nonexistent/map"),
    ("vint_navigation", "goal_image", "{not_an_image}", "cannot read image {not_an_image}"),
    ("bag_player", "bag", "/nonexistent/bag", "bag not found: /nonexistent/bag"),
    ("bag_player", "bag", "{corrupt_bag}", "cannot read bag {corrupt_bag}: Could not load YAML from "
     "{corrupt_bag}/metadata.yaml"),
]


@pytest.mark.parametrize("node, param, value, reason", CASES,
                         ids=[f"{n}.{p}:{v.strip('{}').rsplit('/', 1)[-1]}" for n, p, v, _ in CASES])
def test_a_wrong_file_parameter_is_one_line_naming_it(node, param, value, reason, bag, tmp_path, ros_child_env):
    paths = bad_inputs(tmp_path, bag)
    value, reason = value.format(**paths), reason.format(**paths)
    proc = subprocess.run([sys.executable, "-m", f"ros_mmfusion.nodes.{node}", "--ros-args", "-p",
                           f"{param}:={value}"], env=ros_child_env(MMFUSION_CACHE_DIR=str(tmp_path / "cache")),
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = own_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: {node}: parameter {param!r}: "), proc.stderr
    assert reason in lines[0], proc.stderr


def test_ctrl_c_while_a_node_starts_ends_it_quietly(tmp_path, ros_child_env):
    """SIGINT at several moments of the segmentation node's start-up (imports, ROS set-up, model loading): never a
    traceback, whichever step it interrupts."""
    env = ros_child_env(MMFUSION_CACHE_DIR=str(tmp_path / "cache"))
    for delay in (0.6, 1.2, 1.8, 2.6):
        proc = subprocess.Popen([sys.executable, "-m", "ros_mmfusion.nodes.fusion_segmentation"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 130, -signal.SIGINT), (delay, proc.returncode, err[-3000:])
        assert "Traceback" not in err and not own_lines(err), (delay, err[-3000:])


def test_a_node_program_ends_at_once_on_ctrl_c_during_its_imports_and_other_programs_keep_keyboard_interrupt():
    """While a node program imports (``python -m ros_mmfusion.nodes.x``: sys.argv[0] is "-m" then) SIGINT ends it at
    once with 130 and nothing on stderr, so no KeyboardInterrupt is raised inside an extension module's import (one
    in pybind11 code aborted the process); a program that merely imports the nodes (the launcher) keeps Python's
    KeyboardInterrupt."""
    code = ("import os, signal, sys, time\nsys.argv[0] = {argv0!r}\nimport ros_mmfusion.nodes\n"
            "print(signal.getsignal(signal.SIGINT).__name__, flush=True)\nos.kill(os.getpid(), signal.SIGINT)\n"
            "time.sleep(5)\nprint('still running')\n")
    node = subprocess.run([sys.executable, "-c", code.format(argv0="-m")], capture_output=True, text=True, timeout=60)
    from ros_mmfusion.ros.entry import EXIT_INTERRUPTED  # the status run_node gives an interrupted start-up

    assert node.returncode == EXIT_INTERRUPTED and node.stdout == "_exit_interrupted\n" and node.stderr == "", node
    other = subprocess.run([sys.executable, "-c", code.format(argv0="mmfusion")], capture_output=True, text=True,
                           timeout=60)
    assert other.returncode == -signal.SIGINT and other.stdout == "default_int_handler\n", other
