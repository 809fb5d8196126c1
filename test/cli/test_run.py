"""``mmfusion run`` as a user runs it: real node processes over real DDS, real bags (``core.sim``, rosbags).

A light test preset (bag player + LiDAR depth) lives in a share directory beside the real one (``MMFUSION_SHARE_DIR``:
the real config, models and interfaces linked in), so every run starts in seconds.
"""
from __future__ import annotations

import io
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from ros_mmfusion.paths import share_dir

MMFUSION = [sys.executable, "-m", "ros_mmfusion.cli"]
PRESET = "test_depth"
PRESET_YAML = """\
description: Test preset - a bag through LiDAR depth.
nodes:
  - node: bag_player
    parameters:
      bag: $(arg bag)
      start_delay: 2.0  # discovery between processes before the first message
  - node: lidar_depth
    parameters:
      calibration_file: $(arg bag)/calibration.yaml
    remappings:
      camera/camera_info: /camera/color/camera_info
"""
PLAYER_MODULE = "ros_mmfusion.nodes.bag_player"


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    from ros_mmfusion.core.sim import record

    path = tmp_path_factory.mktemp("run") / "day"
    record("urban_day", path, 6, size=(64, 48), beams=16)
    return path


@pytest.fixture(scope="module")
def share(tmp_path_factory) -> Path:
    """The real share directory with :data:`PRESET` added to its presets."""
    real = share_dir()
    root = tmp_path_factory.mktemp("share")
    for entry in real.iterdir():
        if entry.name != "config":
            (root / entry.name).symlink_to(entry)
    (root / "config").mkdir()
    for entry in (real / "config").iterdir():
        if entry.name != "presets":
            (root / "config" / entry.name).symlink_to(entry)
    (root / "config" / "presets").mkdir()
    for entry in (real / "config" / "presets").iterdir():
        (root / "config" / "presets" / entry.name).symlink_to(entry)
    (root / "config" / "presets" / f"{PRESET}.yaml").write_text(PRESET_YAML)
    (root / "config" / "presets" / "test_typo.yaml").write_text(
        "description: a misspelt parameter\nnodes:\n  - node: lidar_depth\n    parameters:\n      max_rang: 50.0\n")
    return root


@pytest.fixture
def env(ros_child_env, share):
    return ros_child_env(MMFUSION_SHARE_DIR=str(share))


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(MMFUSION + args, env=env, capture_output=True, text=True, timeout=timeout)


def own_lines(stderr: str) -> list[str]:
    """stderr without the nodes' ROS log lines (``[INFO] [stamp] [node]: ...``)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]


def node_processes(parent: psutil.Process) -> list[psutil.Process]:
    """The node processes (``python -m ros_mmfusion.nodes.X``) under ``parent``."""
    found = []
    for child in parent.children(recursive=True):
        try:
            cmd = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if cmd[1:2] == ["-m"] and cmd[2].startswith("ros_mmfusion.nodes."):
            found.append(child)
    return found


def running(process: psutil.Process) -> bool:
    """True while ``process`` runs: neither gone nor exited (a zombie waiting for its parent to collect it)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Running:
    """``mmfusion run --processes`` of the test preset looping its bag, started and watched: returns once the bag
    player (which the launcher starts only after the other nodes reported ready) replays."""

    def __init__(self, bag: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(MMFUSION + ["run", PRESET, "--bag", str(bag), "--processes", "--set",
                                                 "bag_player.loop=true"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.proc.poll() is None:
            if any("[bag_player]: replaying" in line for line in self.stderr):
                break
            time.sleep(0.2)
        assert self.proc.poll() is None and time.monotonic() < deadline, "".join(self.stderr)[-3000:]
        time.sleep(1.0)
        self.children = node_processes(psutil.Process(self.proc.pid))
        assert sorted(c.cmdline()[2] for c in self.children) == [PLAYER_MODULE, "ros_mmfusion.nodes.lidar_depth"]

    def stragglers(self, timeout: float) -> list[int]:
        """Pids of node processes still running after ``timeout`` s (killed now, so no test leaves any behind).

        A node that exited but was not reaped yet (a zombie: after the launcher died, init collects it, here every 2 s
        or so, elsewhere maybe never) has stopped: it is not counted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(running(p) for p in self.children):
            time.sleep(0.1)
        alive = [p for p in self.children if running(p)]
        for process in alive:
            process.kill()
        return [p.pid for p in alive]


def test_sigterm_to_run_processes_stops_every_node_process(bag, env):
    running = Running(bag, env)
    running.proc.send_signal(signal.SIGTERM)
    alive = running.stragglers(15)
    out = running.proc.stdout.read()
    assert not alive, f"node processes left running after SIGTERM to mmfusion run: {alive}"
    assert running.proc.wait(timeout=30) == 0, "".join(running.stderr)[-3000:]
    assert "Traceback" not in "".join(running.stderr), "".join(running.stderr)[-3000:]
    assert "bag_player" in out and "lidar_depth" in out, "the summary is printed after a SIGTERM too"


def test_node_processes_stop_when_the_launcher_is_killed(bag, env):
    running = Running(bag, env)
    running.proc.kill()
    running.proc.wait(timeout=30)
    assert not running.stragglers(15), "node processes outlived a SIGKILLed mmfusion run"


@pytest.mark.parametrize("mode", [[], ["--processes"]], ids=["in_process", "processes"])
def test_a_node_that_cannot_start_is_one_line_and_the_bag_never_plays(bag, env, mode):
    proc = run(["run", PRESET, "--bag", str(bag), "--set", "lidar_depth.calibration_file=/nonexistent/calib.yaml",
                *mode], env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    assert own_lines(proc.stderr) == ["mmfusion run: error: node 'lidar_depth' failed to start: parameter "
                                      "'calibration_file': file not found: /nonexistent/calib.yaml"], proc.stderr
    assert "replaying" not in proc.stderr, "the bag player must not start before every other node is ready"


@pytest.mark.parametrize("mode", [[], ["--processes"]], ids=["in_process", "processes"])
def test_run_prints_a_summary_per_node(bag, env, mode):
    # the bag loops: discovery between processes may take seconds on a loaded machine, and lose the first frames
    proc = run(["run", PRESET, "--bag", str(bag), "--duration", "8", "--set", "bag_player.loop=true", *mode], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()
            if line.split()[:1] in (["bag_player"], ["lidar_depth"])}
    assert set(rows) == {"bag_player", "lidar_depth"}, proc.stdout
    assert int(rows["bag_player"][2]) >= 6 * 3, "messages replayed: per frame a cloud, an image and a CameraInfo"
    assert int(rows["lidar_depth"][1]) >= 6, "clouds arrived"
    assert "computed nothing" in proc.stdout, "a node idle for want of subscribers says so"
    assert "\x1b[K" not in proc.stdout, "no live line when stdout is not a terminal"


def test_run_use_sim_time_puts_every_node_on_the_bags_clock(bag, env):
    from ros_mmfusion import presets

    overrides = presets.parse_set(["bag_player.restamp=true"])
    plain = presets.load("demo", {"bag": str(bag)}, overrides)
    presets.add_sim_time(plain.nodes, overrides, True)
    assert overrides["bag_player"] == {"restamp": True, "publish_clock": True}, "an explicit --set wins"
    assert all(overrides[n] == {"use_sim_time": True} for n in ("lidar_depth", "fusion_segmentation", "detection3d"))
    # an explicit restamp=true contradicts the bag's clock: one line naming both parameters
    proc = run(["run", PRESET, "--bag", str(bag), "--use-sim-time", "--set", "bag_player.restamp=true"], env)
    assert proc.returncode == 2 and own_lines(proc.stderr) == [
        "mmfusion run: error: node 'bag_player' failed to start: parameters 'publish_clock' and 'restamp' are both "
        "true: restamped stamps are wall time and would disagree with the bag time on /clock; set restamp to false "
        "with publish_clock"], proc.stderr
    proc = run(["run", PRESET, "--bag", str(bag), "--duration", "8", "--use-sim-time", "--set",
                "bag_player.loop=true"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on /clock" in proc.stderr, "the player says it publishes the bag's time"
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()
            if line.split()[:1] in (["bag_player"], ["lidar_depth"])}
    assert int(rows["lidar_depth"][1]) >= 6, ("clouds arrived", proc.stdout)


def test_run_on_a_terminal_shows_live_progress(bag, env, tmp_path):
    master, slave = pty.openpty()
    with open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen(MMFUSION + ["run", PRESET, "--bag", str(bag), "--duration", "8", "--processes",
                                            "--set", "bag_player.loop=true"], env=env, stdout=slave, stderr=stderr)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: the command exited
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0, (tmp_path / "stderr").read_text()[-3000:]
    text = output.decode(errors="replace")
    live = [part for part in text.split("\r\x1b[K") if " s | bag_player" in part]
    assert len(live) >= 3, f"a live line refreshed about once a second: {text[-2000:]!r}"
    assert any("lidar_depth " in part and ("OK" in part or "WARN" in part or "ERROR" in part) for part in live)
    assert "skipped" in text and "p95 ms" in text, "the summary follows"


def test_a_bag_without_the_topics_the_nodes_need_is_an_error_naming_them(bag, env, tmp_path):
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from ros_mmfusion.core.bagio import typestore

    only_images = tmp_path / "only_images"
    with Reader(bag) as reader:
        writer = Writer(only_images, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=typestore())
                 for c in reader.connections if c.topic == "/camera/color/image_raw"}
        for conn, t, data in reader.messages():
            if conn.id in conns:
                writer.write(conns[conn.id], t, data)
        writer.close()
    shutil.copy(bag / "calibration.yaml", only_images)
    for mode in ([], ["--processes"]):
        proc = run(["run", PRESET, "--bag", str(only_images), "--duration", "20", *mode], env)
        assert proc.returncode == 2, (mode, proc.stderr[-3000:])
        assert own_lines(proc.stderr) == [
            f"mmfusion run: error: bag {only_images} lacks input topic(s) of preset '{PRESET}': "
            "/camera/color/camera_info (needed by lidar_depth); /lidar/points (needed by lidar_depth); the bag player "
            "replays: /camera/color/image_raw"], proc.stderr


def test_bad_bags_and_parameters_are_one_line_before_any_node_starts(bag, env, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(bag, corrupt)
    (corrupt / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed\n  : : :\n")
    binary = tmp_path / "binary"
    shutil.copytree(bag, binary)
    (binary / "metadata.yaml").write_bytes(b"\xff\xfe\x00 not text")
    cases = [
        ([PRESET, "--bag", str(corrupt)],
         f"cannot read bag {corrupt}: Could not load YAML from {corrupt}/metadata.yaml"),
        ([PRESET, "--bag", str(binary)], f"cannot read bag {binary}: {binary}/metadata.yaml is not text"),
        ([PRESET, "--bag", str(tmp_path / "missing")], f"bag not found: {tmp_path / 'missing'}"),
        ([PRESET, "--bag", str(bag), "--set", "lidar_depth.fil_kernel=3"],
         "--set: node 'lidar_depth' (lidar_depth) has no parameter 'fil_kernel' (did you mean 'fill_kernel'?); "
         "its parameters: calibration_file, camera, camera_from_lidar,"),
        ([PRESET, "--bag", str(bag), "--arg", "rate"], "--arg expects NAME=VALUE, got 'rate'"),
        ([PRESET, "--bag", str(bag), "--arg", "=2"], "--arg expects NAME=VALUE, got '=2'"),
        ([PRESET, "--bag", str(bag), "--set", "fill_kernel=3"], "--set expects NODE.PARAM=VALUE, got 'fill_kernel=3'"),
        (["test_typo"], f"{env['MMFUSION_SHARE_DIR']}/config/presets/test_typo.yaml: nodes[0].parameters: node "
         "'lidar_depth' (lidar_depth) has no parameter 'max_rang' (did you mean 'max_range'?)"),
    ]
    for args, message in cases:
        for mode in ([], ["--processes"]):
            proc = run(["run", *args, *mode], env)
            assert proc.returncode == 2, (args, mode, proc.stderr[-3000:])
            assert len(own_lines(proc.stderr)) == 1 and "Traceback" not in proc.stderr, proc.stderr
            assert own_lines(proc.stderr)[0].startswith(f"mmfusion run: error: {message}"), proc.stderr
            assert "[INFO]" not in proc.stderr, "no node started"


def test_inputs_are_checked_against_the_bag_and_the_other_nodes(bag):
    """``check_inputs`` on the `segmentation` preset with the sim bag: a required input the bag lacks is an error,
    an optional one a note, one another node publishes is fine."""
    from ros_mmfusion import presets
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.launcher import bag_topics, check_inputs

    preset = presets.load("segmentation", {"bag": str(bag)})
    replayed = {"bag_player": bag_topics(preset.nodes[0])}
    assert {"/camera/color/image_raw", "/thermal/image_raw", "/lidar/points"} <= replayed["bag_player"]
    io = {"fusion_segmentation": {"inputs": {"/camera/color/image_raw": True, "/thermal/image_raw": False},
                                  "outputs": ["/segmentation/labels"]}}
    assert check_inputs(preset, io, replayed) == []
    io["fusion_segmentation"]["inputs"].update({"/stereo/depth": False, "/segmentation/labels": True})
    assert check_inputs(preset, io, replayed) == [
        f"bag {bag} has no /stereo/depth: fusion_segmentation runs without this optional input"]
    io["fusion_segmentation"]["inputs"]["/radar/points"] = True
    with pytest.raises(ConfigError, match=r"lacks input topic\(s\) of preset 'segmentation': /radar/points \(needed "
                                          r"by fusion_segmentation\); the bag player replays: /camera/color"):
        check_inputs(preset, io, replayed)
    assert check_inputs(preset, io, {}) == [], "without a bag player the inputs come from live sensors"


def test_summary_shows_frames_latency_and_level_per_node():
    from ros_mmfusion.ros.progress import RunBoard, format_progress

    board = RunBoard(["bag_player", "lidar_depth", "fusion_segmentation"], stream=io.StringIO(), live=False)
    board.update("/bag_player", 0, "no output yet", {"frames_processed": "41", "frames_skipped": "0",
                                                   "pipeline_ms.p50": "nan", "pipeline_ms.p95": "nan"})
    board.update("/lidar_depth", 2, "points: stalled", {
        "points.received": "10", "camera_info.received": "9", "frames_processed": "8", "frames_skipped": "2",
        "pipeline_ms.p50": "12.4", "pipeline_ms.p95": "30.6"})
    board.update("/someone_else", 0, "ok", {"frames_processed": "5"})
    board.finish()
    lines = board.stream.getvalue().splitlines()
    assert lines[2].split() == ["bag_player", "-", "41", "0", "-", "-", "OK"]
    assert lines[3].split() == ["lidar_depth", "10", "8", "2", "12", "31", "ERROR:", "points:", "stalled"]
    assert lines[4].split() == ["fusion_segmentation", "-", "-", "-", "-", "-", "no", "report"]
    assert len(lines) == 5, "someone_else is no node of this run"
    assert format_progress(board.names, board.stats, 3.0) == \
        "    3 s | bag_player 41 OK | lidar_depth 10/8 p50 12 ms ERROR | fusion_segmentation waiting"


def test_run_lifecycle_brings_the_demo_preset_up_and_down_through_the_lifecycle_services(bag, env):
    proc = run(["run", "demo", "--bag", str(bag), "--lifecycle", "--duration", "3"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    done = [line.split("]: ", 1)[1] for line in proc.stderr.splitlines()
            if "[mmfusion_lifecycle_manager]: " in line and line.endswith(" done")]
    up = ["lidar_depth", "fusion_segmentation", "detection3d", "bag_player"]  # preset order, the player last
    down = up[::-1]
    assert done == ([f"{n}: configure done" for n in up] + [f"{n}: activate done" for n in up]
                    + [f"{n}: deactivate done" for n in down] + [f"{n}: cleanup done" for n in down]
                    + [f"{n}: shutdown done" for n in down]), proc.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()[:1] in ([n] for n in up)}
    assert int(rows["bag_player"][2]) >= 6 * 3, "the player replayed once active"
    for name in up[:-1]:
        assert int(rows[name][1]) >= 1, f"{name}: the bag's frames reached the active node (inactive: ignored)"


def test_run_lifecycle_a_node_failing_configure_is_one_line_and_every_node_is_brought_down(bag, env):
    proc = run(["run", PRESET, "--bag", str(bag), "--lifecycle", "--set",
                "lidar_depth.calibration_file=/nonexistent/calib.yaml"], env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    assert own_lines(proc.stderr) == ["mmfusion run: error: node 'lidar_depth' failed to configure: parameter "
                                      "'calibration_file': file not found: /nonexistent/calib.yaml"], proc.stderr
    assert "replaying" not in proc.stderr, "the bag player is never configured after a node failed to"
    assert "bag_player: shutdown done" in proc.stderr and "lidar_depth: shutdown done" in proc.stderr
