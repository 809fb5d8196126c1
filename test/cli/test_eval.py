"""``mmfusion eval`` end to end: a tiny synthetic bag through the segmentation preset, and its error messages."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest

MMFUSION = [sys.executable, "-m", "ros_mmfusion.cli"]


def run(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(MMFUSION + args, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory):
    from ros_mmfusion.core.sim.recorder import record

    bag = tmp_path_factory.mktemp("eval") / "urban_night_bag"
    record("urban_night", bag, 5, seed=3, size=(160, 120))
    return bag


def assert_names_the_model(metrics: dict, report, node: str, kind: str, weights: str | None) -> None:
    """metrics.json names the network ``node`` ran (weights kind, full sha256 of ``weights`` (repo-relative), backend,
    CPU ISA class) and the report shows the hash's first 12 hex digits."""
    from ros_mmfusion.core.inference.cpu_features import cpu_isa
    from ros_mmfusion.core.inference.engine_cache import file_sha256
    from ros_mmfusion.paths import share_dir

    record = metrics["models"][node]
    digest = file_sha256(share_dir() / weights) if weights else ""
    assert (record["weights"], record["sha256"]) == (kind, digest), record
    assert "onnxruntime" in record["backend"] and cpu_isa().name in record["hardware"], record
    text = report.read_text()
    assert "## Models" in text and f"| {node} | {kind} |" in text and (digest[:12] in text if digest else True)
    assert digest[12:] not in text if digest else True


def _copy_without(bag, out, drop: set[str]):
    """A copy of ``bag`` without the topics in ``drop`` (raw messages, same connections otherwise)."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from ros_mmfusion.core.bagio import typestore

    with Reader(bag) as reader:
        writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=typestore())
                 for c in reader.connections if c.topic not in drop}
        for conn, t, data in reader.messages():
            if conn.id in conns:
                writer.write(conns[conn.id], t, data)
        writer.close()
    return out


@pytest.fixture(scope="module")
def in_process_eval(tiny_bag, tmp_path_factory):
    """One in-process ``mmfusion eval`` of the tiny bag (recording outputs): its report directory and process."""
    from test.conftest import child_env

    out = tmp_path_factory.mktemp("in_process") / "report"
    return out, run(["eval", "--bag", str(tiny_bag), "--preset", "segmentation", "--out", str(out)], child_env())


def test_eval_reports_segmentation_metrics_latency_and_recorded_outputs(in_process_eval):
    out, proc = in_process_eval
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "replayed" in proc.stdout and "mIoU" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    seg = metrics["segmentation"]
    assert 0.0 <= seg["mIoU"] <= 1.0 and 0.0 <= seg["pixel_accuracy"] <= 1.0
    assert seg["frames"] >= 4 and seg["ignore_index"] == 0 and seg["IoU"]["unlabeled"] is None
    assert sum(map(sum, seg["confusion"])) > 0.9 * 160 * 120 * seg["frames"] * 0.5
    for topic in ("/segmentation/labels", "/segmentation/color"):
        lat = metrics["latency"][topic]
        assert lat["expected"] == 5 and lat["count"] + lat["dropped"] >= 5 and lat["count"] >= 4
        assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"] < 10_000
    for name in ("report.md", "report.html", "iou_per_class.png", "latency_histogram.png", "latency_timeline.png",
                 "sample_frame.png"):
        assert (out / name).stat().st_size > 200, name
    assert "mIoU" in (out / "report.md").read_text() and "<img" in (out / "report.html").read_text()
    assert_names_the_model(metrics, out / "report.md", "/fusion_segmentation", "trained",
                           "models/cmx_b0_rgbt_synthetic_320/weights.pt")

    from ros_mmfusion.core.bagio import BagSource, read_header_stamp

    with BagSource(out / "outputs") as outputs:
        assert outputs.message_counts["/segmentation/labels"] == metrics["latency"]["/segmentation/labels"]["count"]
        for message in outputs.messages(["/segmentation/labels"]):  # input stamp kept, logged at arrival
            assert 0 < message.log_time_ns - read_header_stamp(message.data) < 10**10


def test_eval_queues_every_frame_for_scoring_unless_the_user_sets_it(tiny_bag):
    """Offline scoring scores every frame: the latest-frame worker may let a replayed burst wait (bounded), so a loaded
    machine delays frames instead of dropping them; a user's --set (e.g. 1, the live behaviour) wins."""
    from ros_mmfusion.launcher import typed_parameters
    from ros_mmfusion.launcher.evaluation import OFFLINE_WAITING_FRAMES, EvaluationSettings, prepare

    def waiting(overrides):
        preset = prepare(EvaluationSettings(overrides=overrides), tiny_bag).preset
        return {n.name: typed_parameters(n).get("max_waiting_frames") for n in preset.nodes}

    assert waiting({})["fusion_segmentation"] == OFFLINE_WAITING_FRAMES > 1
    assert waiting({"fusion_segmentation": {"max_waiting_frames": 1}})["fusion_segmentation"] == 1
    assert waiting({})["bag_player"] is None  # only nodes that declare it


def test_eval_scales_stamp_time_timeouts_by_the_replay_rate_unless_the_user_sets_them(tiny_bag):
    """The player restamps with the wall clock, so at x0.1 a 10 Hz X camera's stamps are 1 s apart: a 0.5 s X
    timeout would call X stopped before every frame and segment it without X. Timeouts in stamp time scale by
    1 / rate (within their maximum); a user's --set wins; at x1 nothing changes."""
    from ros_mmfusion.launcher import typed_parameters
    from ros_mmfusion.launcher.evaluation import EvaluationSettings, prepare

    def params(rate, overrides=None, preset="segmentation"):
        loaded = prepare(EvaluationSettings(preset=preset, rate=rate, overrides=overrides or {}), tiny_bag).preset
        return {n.name: typed_parameters(n) for n in loaded.nodes}

    assert params(1.0)["fusion_segmentation"]["x_timeout"] == 0.5
    assert params(0.1)["fusion_segmentation"]["x_timeout"] == pytest.approx(5.0)
    assert params(2.0)["fusion_segmentation"]["x_timeout"] == pytest.approx(0.25)
    assert params(0.1, {"fusion_segmentation": {"x_timeout": 0.3}})["fusion_segmentation"]["x_timeout"] == 0.3
    demo = params(0.05, preset="demo")["detection3d"]
    assert demo["painting_timeout"] == pytest.approx(10.0) and demo["sweeps_max_age"] == 5.0  # its maximum
    # pairing tolerances too: restamped at x0.1, an RGB and X 0.02 s apart in the bag are 0.2 s apart
    assert params(0.1)["fusion_segmentation"]["sync_max_interval"] == pytest.approx(0.5)
    assert demo["sync_max_interval"] == 1.0  # 0.05 / 0.05, within its maximum


def test_eval_across_processes_matches_the_in_process_accuracy(tiny_bag, in_process_eval, tmp_path, ros_child_env):
    """--processes: every node in its own OS process, DDS between them; the same frames give the same masks as the
    in-process run (recording outputs or not changes no mask)."""
    out = tmp_path / "many"
    proc = run(["eval", "--bag", str(tiny_bag), "--preset", "segmentation", "--out", str(out), "--no-record",
                "--processes"], ros_child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert in_process_eval[1].returncode == 0, in_process_eval[1].stderr[-3000:]
    results = {"one": json.loads((in_process_eval[0] / "metrics.json").read_text()),
               "many": json.loads((out / "metrics.json").read_text())}
    one, many = results["one"]["segmentation"], results["many"]["segmentation"]
    assert many["frames"] >= 4 and results["many"]["latency"]["/segmentation/labels"]["count"] >= 4
    if many["frames"] == one["frames"]:
        assert abs(many["mIoU"] - one["mIoU"]) < 1e-9, "the same frames must give the same masks in both modes"


def test_eval_without_ground_truth_skips_accuracy_with_a_note(tiny_bag, tmp_path, ros_child_env):
    bag = _copy_without(tiny_bag, tmp_path / "no_gt", {"/ground_truth/semantic"})
    shutil.copy(tiny_bag / "calibration.yaml", bag)
    out = tmp_path / "report"
    proc = run(["eval", "--bag", str(bag), "--out", str(out), "--no-record"], ros_child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "segmentation" not in metrics and metrics["latency"]["/segmentation/labels"]["count"] >= 4
    assert any("no /ground_truth/semantic" in note for note in metrics["notes"])
    assert not (out / "outputs").exists()


def test_eval_errors_are_one_clear_line_and_exit_2(tiny_bag, tmp_path, ros_child_env):
    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_bag, truncated)
    mcap = next(truncated.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    no_camera = _copy_without(tiny_bag, tmp_path / "no_camera", {"/camera/color/image_raw"})
    cases = [
        (["--bag", str(tiny_bag), "--preset", "no_such_preset"], "unknown preset 'no_such_preset'"),
        (["--bag", str(tmp_path / "missing")], "bag not found"),
        (["--bag", str(truncated)], "cannot read bag"),
        (["--bag", str(no_camera)], "lacks the topic(s) the preset needs: /camera/color/image_raw"),
    ]
    for args, message in cases:
        proc = run(["eval", "--out", str(tmp_path / "out"), *args], ros_child_env(), timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_benchmark_writes_fixed_rate_and_peak_figures(tiny_bag, tmp_path, ros_child_env):
    out = tmp_path / "bench"
    proc = run(["bench-graph", "--bag", str(tiny_bag), "--out", str(out), "--rates", "4", "--duration", "1.5",
                "--repeats", "1", "--peak-steps", "1"], ros_child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "benchmark.json").read_text())
    (fixed,) = result["fixed_rate"]
    assert fixed["target_rate_hz"] == 4 and fixed["p50_ms"] > 0 and fixed["rss_mb_max"] > 50
    assert fixed["all_runs"][0]["published"] >= 5
    assert len(result["peak"]["probes"]) == 1
    assert "| input Hz |" in (out / "benchmark.md").read_text()
    network = result["network_alone"]["/fusion_segmentation"]  # the network by itself in the same run
    assert 0 < network["p50_ms"] <= network["p95_ms"] and network["runs"] > 0
    (probed,) = [r["network_p50_ms"] for r in fixed["all_runs"]]  # timed right after the run, the graph idle
    assert probed > 0 and fixed["network_p50_ms"] == pytest.approx(probed, rel=1e-3)
    assert fixed["p50_over_network"] == pytest.approx(fixed["p50_ms"] / probed, rel=1e-2)
    peak = result["peak"]
    if peak["rate_hz"]:
        assert peak["fraction_of_network_rate"] == pytest.approx(peak["rate_hz"] * peak["network_p50_ms"] / 1e3,
                                                                 rel=1e-2)
    assert "Network alone (/fusion_segmentation" in (out / "benchmark.md").read_text()
    record = result["models"]["/fusion_segmentation"]
    assert record["weights"] == "trained" and len(record["sha256"]) == 64
    assert f"| {record['sha256'][:12]} |" in (out / "benchmark.md").read_text()


def test_benchmark_rejects_bad_rates(tiny_bag, ros_child_env):
    proc = run(["bench-graph", "--bag", str(tiny_bag), "--rates", "fast"], ros_child_env(), timeout=60)
    assert proc.returncode == 2 and "--rates expects numbers" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def tiny_day_bag(tmp_path_factory):
    from ros_mmfusion.core.sim.recorder import record

    bag = tmp_path_factory.mktemp("eval_day") / "urban_day_bag"
    record("urban_day", bag, 5, seed=3, size=(160, 120), beams=16)
    return bag


def test_eval_detection_preset_reports_average_precision(tiny_day_bag, tmp_path, ros_child_env):
    out = tmp_path / "report"
    proc = run(["eval", "--bag", str(tiny_day_bag), "--preset", "detection", "--out", str(out), "--no-record"],
               ros_child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3D detection: BEV mAP" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    det = metrics["detection"]  # untrained weights: the values are meaningless, their presence and range are not
    assert det["frames"] >= 4 and det["classes"] == ["car", "pedestrian", "cyclist"] and sum(det["num_gt"].values())
    iou, dist = ("0.5", "0.7"), ("0.5", "1", "2", "4")
    for kind, thresholds in (("bev", iou), ("3d", iou), ("center_distance", dist)):
        for thr in thresholds:
            for value in [det[kind][thr]["mAP"], *det[kind][thr]["AP"].values()]:
                assert value is None or 0.0 <= value <= 1.0, (kind, thr, value)
    assert 0.0 <= det["center_distance_mAP"]["mAP"] <= 1.0
    assert metrics["latency"]["/detections"]["count"] >= 4
    assert (out / "pr_curves.png").stat().st_size > 200 and "3D detection" in (out / "report.md").read_text()
    assert (out / "detection_sample_bev.png").stat().st_size > 1000, "a frame with boxes drawn in the report"
    # the param file's default: the trained package
    assert_names_the_model(metrics, out / "report.md", "/detection3d", "trained",
                           "models/pointpillars_synthetic_lite/weights.pt")
    assert not any("/detection3d ran untrained weights" in n for n in metrics["notes"]), metrics["notes"]
    assert "model of /detection3d: trained weights, model package pointpillars_synthetic_lite" in proc.stdout

    bag = _copy_without(tiny_day_bag, tmp_path / "no_boxes", {"/ground_truth/boxes"})
    shutil.copy(tiny_day_bag / "calibration.yaml", bag)
    proc = run(["eval", "--bag", str(bag), "--preset", "detection", "--out", str(tmp_path / "r2"), "--no-record"],
               ros_child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert "detection" not in metrics and any("no /ground_truth/boxes" in n for n in metrics["notes"])


def test_eval_navigation_reports_localisation_accuracy_and_waypoint_errors(tmp_path, ros_child_env):
    """A corridor pass-1 topomap and a short pass-2 bag through the navigation preset; untrained weights, so the
    documented test hook ``distance_source: odometry`` localises (test/ros/test_navigation_nodes.py)."""
    from ros_mmfusion.core.navigation import build_topomap
    from ros_mmfusion.core.sim import record

    record("indoor_corridor", tmp_path / "pass1", 12, size=(64, 48), beams=16, rate=4.0)  # 3 s: nodes at 0..2 m
    record("indoor_corridor_pass2", tmp_path / "pass2", 16, size=(64, 48), beams=16, rate=4.0)  # 4 s
    build_topomap(tmp_path / "pass1", "/camera/color/image_raw", 1.0, tmp_path / "map", "/odom")
    out = tmp_path / "report"
    env = ros_child_env()
    env["MMFUSION_CACHE_DIR"] = str(tmp_path / "cache")
    proc = run(["eval", "--preset", "navigation", "--bag", str(tmp_path / "pass2"), "--arg",
                f"topomap={tmp_path / 'map'}", "--set", "vint_navigation.distance_source=odometry",
                "--set", "vint_navigation.threads=1", "--out", str(out)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "navigation: localisation accuracy" in proc.stdout, proc.stdout[-2000:]
    nav = json.loads((out / "metrics.json").read_text())["navigation"]
    loc, wp = nav["localisation"], nav["waypoints"]
    assert nav["paths"] >= 4 and nav["topomap_nodes"] >= 2
    assert loc["frames"] >= 4 and 0.0 <= loc["accuracy"] <= 1.0
    assert wp["dt_s"] == 0.25 and wp["frames"] >= 1 and wp["frames"] + wp["skipped"] == nav["paths"]
    for value in (wp["ADE_m"], wp["FDE_m"]):
        assert math.isfinite(value) and value >= 0.0
    assert "## Navigation" in (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())  # the context's frames are named, not left as losses
    (note,) = [n for n in metrics["notes"] if n.startswith("/navigation/path: vint_navigation publishes one path")]
    assert "its 4 Hz sampler" in note and "(5 frames before it)" in note  # the default model's, read from it
    assert not any("evaluate navigation at --rate 1" in n for n in metrics["notes"])  # it ran at x1
    assert (out / "trajectory.png").stat().st_size > 1000 and nav["trajectory"]["nodes_xy"]


def test_a_bag_of_compressed_camera_topics_runs_through_the_demo_preset(tmp_path, ros_child_env):
    """`mmfusion sim --compressed` writes CompressedImage camera topics only; `demo_compressed` (the demo preset with
    the segmentation node on the compressed transport) segments and detects on it, scored like the raw demo."""
    import yaml

    from ros_mmfusion.core.bagio import BagSource

    bag = tmp_path / "night_jpeg"
    proc = run(["sim", "--scenario", "urban_night", "--frames", "5", "--seed", "3", "--size", "160x120",
                "--compressed", "--out", str(bag)], ros_child_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with BagSource(bag) as source:
        types = dict(source.topics)
    cameras = {t: m for t, m in types.items() if "image" in t and not t.startswith("/ground_truth")}
    assert cameras == {f"{t}/compressed": "sensor_msgs/msg/CompressedImage" for t in
                       ("/camera/color/image_raw", "/camera/depth/image_rect_raw", "/thermal/image_raw")}
    scenario = yaml.safe_load((bag / "scenario.yaml").read_text())
    assert (scenario["compressed"], scenario["depth_encoding"]) == ("jpeg", "16UC1")

    out = tmp_path / "report"
    proc = run(["eval", "--bag", str(bag), "--preset", "demo_compressed", "--out", str(out)], ros_child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["input_frames"] == {"/camera/color/image_raw/compressed": 5, "/lidar/points": 5}, metrics
    assert metrics["segmentation"]["frames"] >= 1 and 0.0 <= metrics["segmentation"]["mIoU"] <= 1.0
    assert metrics["latency"]["/segmentation/labels"]["count"] >= 1
    assert metrics["latency"]["/detections"]["count"] >= 1
    with BagSource(out / "outputs") as outputs:
        assert outputs.message_counts["/segmentation/labels"] == metrics["latency"]["/segmentation/labels"]["count"]

    proc = run(["sim", "--scenario", "urban_night", "--frames", "1", "--compressed", "png", "--depth-encoding",
                "32FC1", "--out", str(tmp_path / "refused")], ros_child_env(), timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--depth-encoding must be 16UC1" in proc.stderr and not (tmp_path / "refused").exists()


def test_the_navigation_notes_name_the_nodes_own_sampling_rate_and_context():
    """The eval's notes on ViNT's sampler read the rate and context from the node's parameters and model (a robot's
    ``frame_rate``, a package's context), not a hard-coded 4 Hz / 5 frames."""
    from ros_mmfusion import presets
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.launcher.evaluation import _navigation_timing

    def timing(overrides):
        loaded = presets.load("navigation", {"bag": "b", "topomap": "m"}, {"vint_navigation": overrides})
        (launch,) = [n for n in loaded.nodes if n.name == "vint_navigation"]
        return _navigation_timing(launch)

    assert timing({}) == (4.0, 5)
    assert timing({"frame_rate": 2.0}) == (2.0, 5)
    with pytest.raises(ConfigError, match="model_package"):
        timing({"weights": "x.pt"})  # a package and weights both set: the note falls back, the run reports it
