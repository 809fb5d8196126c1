"""``mmfusion eval --bags``: four tiny synthetic bags (one corrupt) on the local engine with a worker killed mid-run
and a rerun that completes the report, then on a local 2-CPU Ray: the same merged metrics, the corrupt bag reported
and the others scored. Real bags, real nodes over DDS, real processes and a real Ray."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from ..conftest import child_env

MMFUSION = [sys.executable, "-m", "ros_mmfusion.cli"]
SCENARIOS = ("fog", "urban_day", "urban_night")
KILLED = "urban_night"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A directory of four bags: three 3-frame 160x120 recordings and a truncated copy of one."""
    from ros_mmfusion.core.sim.recorder import record

    root = tmp_path_factory.mktemp("fleet") / "bags"
    for name in SCENARIOS:
        record(name, root / name, 3, seed=3, size=(160, 120))
    corrupt = root / "zz_corrupt"
    shutil.copytree(root / "urban_day", corrupt)
    mcap = next(corrupt.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    return root


def _eval(fleet, out, env, *extra: str) -> subprocess.Popen:
    # half speed; eval queues every frame of a burst for the network (OFFLINE_WAITING_FRAMES), so a loaded machine
    # does not drop one of the 3 frames in one engine's run and not the other's
    return subprocess.Popen([*MMFUSION, "eval", "--bags", str(fleet), "--out", str(out), "--num-cpus", "2",
                             "--rate", "0.5", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_worker_of(parent: int, bag: str, timeout: float = 240.0) -> None:
    """SIGKILL the bag process (``python -m ros_mmfusion.launcher.fleet ... BAG``) evaluating ``bag`` as soon as it
    exists."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.Process(parent).children(recursive=True):
            try:
                cmd = proc.cmdline()
            except psutil.Error:
                continue
            if "ros_mmfusion.launcher.fleet" in cmd and cmd[-1].endswith(bag):
                proc.kill()
                return
        time.sleep(0.05)
    raise AssertionError(f"no worker process for {bag} appeared")


def _accuracy(report: dict) -> tuple:
    """What must not depend on the engine: the merged segmentation section and each bag's status and accuracy."""
    rows = {row["bag"].rsplit("/", 1)[-1]: (row["status"], row.get("mIoU"), row.get("segmentation_frames"))
            for row in report["bags"]}
    return report["overall"]["segmentation"], rows


@pytest.fixture(scope="module")
def local_report(fleet, tmp_path_factory):
    """The local engine, with the process of one bag killed mid-run, then the rerun that completes the report."""
    out = tmp_path_factory.mktemp("local") / "report"
    proc = _eval(fleet, out, child_env())
    _kill_worker_of(proc.pid, KILLED)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr[-3000:]
    first = json.loads((out / "fleet_metrics.json").read_text())
    failed = {f["bag"].rsplit("/", 1)[-1]: f["error"] for f in first["failed"]}
    assert set(failed) == {KILLED, "zz_corrupt"}, failed
    assert "killed by SIGKILL" in failed[KILLED] and "cannot read bag" in failed["zz_corrupt"]
    assert first["progress"] == {"total": 4, "scored": 2, "scored_this_run": 2, "cached": 0, "failed": 2}
    assert first["overall"]["segmentation"]["frames"] == 6, "the two other bags are scored"

    proc = _eval(fleet, out, child_env())
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr[-3000:]
    assert "4 bags, 2 already scored" in stdout
    report = json.loads((out / "fleet_metrics.json").read_text())
    assert report["progress"] == {"total": 4, "scored": 3, "scored_this_run": 1, "cached": 2, "failed": 1}
    return report, out


def test_a_killed_worker_loses_only_its_bag_and_a_rerun_completes_the_report(local_report):
    report, out = local_report
    seg = report["overall"]["segmentation"]
    assert seg["frames"] == 9 and 0.5 < seg["mIoU"] <= 1.0
    rows = {row["bag"].rsplit("/", 1)[-1]: row for row in report["bags"]}
    assert [rows[n]["status"] for n in (*SCENARIOS, "zz_corrupt")] == ["ok", "ok", "ok", "failed"]
    assert rows["fog"]["cached"] and not rows[KILLED]["cached"]
    # merged, not averaged: the overall confusion matrix is the sum of the bags'
    per_bag = [json.loads(p.read_text()) for p in sorted((out / "bags").glob("*.json"))]
    confusions = [b["statistics"]["segmentation"]["confusion"] for b in per_bag if b["status"] == "ok"]
    assert len(confusions) == 3
    total = [[sum(c[i][j] for c in confusions) for j in range(len(confusions[0]))] for i in range(len(confusions[0]))]
    assert seg["confusion"] == total
    assert report["by_condition"]["weather"]["fog"]["bags"] == 1
    assert report["by_condition"]["time_of_day"]["night"]["mIoU"] == rows[KILLED]["mIoU"]
    assert report["throughput"]["bags_per_hour_per_core"] > 0 and report["run"]["cpu"]
    text = (out / "fleet_report.md").read_text()
    assert "## By weather" in text and "zz_corrupt: cannot read bag" in text


def test_ray_engine_gives_the_same_merged_metrics_as_the_local_engine(fleet, local_report, tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional extra: make setup installs requirements/fleet.txt")
    out = tmp_path / "ray"
    proc = _eval(fleet, out, child_env(), "--engine", "ray")
    stdout, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 1, stderr[-3000:]
    report = json.loads((out / "fleet_metrics.json").read_text())
    assert report["run"]["engine"] == "ray" and report["throughput"]["cores"] == 2
    assert report["progress"]["scored_this_run"] == 3 and [f["bag"].rsplit("/", 1)[-1] for f in report["failed"]] \
        == ["zz_corrupt"]
    assert _accuracy(report) == _accuracy(local_report[0])
    domains = {row["domain"] for row in report["bags"]}
    assert None not in domains and all(1 <= d <= 101 for d in domains)


def test_ray_engine_without_ray_says_how_to_install_it(fleet, tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from ros_mmfusion.cli.main import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "eval", "--bags", str(fleet), "--engine", "ray", "--out",
                           str(tmp_path / "r")], env=child_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "pip install 'ros_mmfusion[fleet]'" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--bag", "x", "--bags", "y"], "give one bag (--bag DIR) or many"),
    ([], "give one bag (--bag DIR) or many"),
    (["--bag", "x", "--engine", "ray"], "--engine only apply to many bags"),
    (["--bags", "{tmp}/nothing"], "--bags {tmp}/nothing: no such directory"),
    (["--bags", "{tmp}", "--num-cpus", "0"], "--num-cpus must be at least 1"),
    (["--bags", "{tmp}", "--address", "h:1"], "--address names a Ray cluster: it needs --engine ray"),
])
def test_fleet_option_errors_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    from ros_mmfusion.cli.main import main

    code = main(["eval", *(a.format(tmp=tmp_path) for a in args), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1, err
