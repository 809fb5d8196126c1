"""The mmfusion CLI as a user runs it: real processes, exit codes and messages, no tracebacks."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

MMFUSION = [sys.executable, "-m", "ros_mmfusion.cli"]


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(MMFUSION + args, env=env, capture_output=True, text=True, timeout=timeout)


def test_help_lists_the_subcommands(ros_child_env):
    proc = run(["--help"], ros_child_env())
    assert proc.returncode == 0
    for sub in ("doctor", "run", "sim", "demo", "bench-network", "bench-graph"):
        assert sub in proc.stdout


def test_doctor_reports_ros_middleware_profile_and_ml_runtimes(ros_child_env):
    proc = run(["doctor", "--json"], ros_child_env())
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["rclpy"] and info["vision_msgs_importable"] and info["tf2_msgs_importable"]
    assert info["dds_profile"].endswith("fastdds_large_messages.xml")
    assert info["torch"].startswith("2.13.0") and info["onnxruntime"]
    assert "CPUExecutionProvider" in info["onnxruntime_providers"]
    assert info["cuda_gpu"] is None or isinstance(info["cuda_gpu"], str)
    # the CPU's instruction-set class and the INT8 decision per model family (the one of int8_plan)
    from ros_mmfusion.core.inference.cpu_features import ISA_CLASSES, cpu_isa
    from ros_mmfusion.core.inference.int8 import MODEL_FAMILIES, int8_plan

    assert info["cpu_isa"].split()[0] == cpu_isa().name in ISA_CLASSES and info["cpu"]
    assert set(info["int8"]) == set(MODEL_FAMILIES)
    for family, plan in info["int8"].items():
        assert plan["message"] == int8_plan(family).message() and plan["format"] in ("u8s8", "u8s8-rr", "u8u8")
    text = run(["doctor"], ros_child_env(MMFUSION_INT8="off"))
    assert "int8_segmentation" in text.stdout and "INT8 declined for segmentation" in text.stdout
    bad = run(["doctor", "--json"], ros_child_env(MMFUSION_INT8="u4s4"))
    assert "MMFUSION_INT8='u4s4'" in json.loads(bad.stdout)["int8"]["error"] and "Traceback" not in bad.stderr


@pytest.mark.parametrize("args, message", [
    (["run", "no_such_preset"], "unknown preset 'no_such_preset'; available: carla, closed_loop, demo,"),
    (["run", "demo"], "preset 'demo' needs the argument 'bag'"),
    (["run", "demo", "--bag", "/nonexistent/bag", "--set", "lidar_depth.fill_kernel=99"], "above its maximum 31"),
    (["run", "demo", "--bag", "/x", "--set", "nobody.rate=1"], "--set names unknown node(s) ['nobody']"),
    (["run", "demo", "--bag", "/x", "--set", "oops"], "--set expects NODE.PARAM=VALUE"),
    (["run", "demo", "--bag", "/nonexistent/bag"], "bag not found: /nonexistent/bag"),
    (["run", "carla", "--bag", "/x", "--set", "vint_navigation.threads=1"],
     "--set names node 'vint_navigation', which preset 'carla' starts only with --arg topomap=VALUE"),
    # an optional node left out is a note, before the run (here failing on its bag) goes on without it
    (["run", "gazebo", "--bag", "/nonexistent/bag"],
     "mmfusion run: note: preset 'gazebo': node 'vint_navigation' not started: it needs --arg topomap=VALUE"),
])
def test_bad_arguments_give_one_clear_line_and_exit_2(ros_child_env, args, message):
    proc = run(args, ros_child_env())
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_list_shows_presets(ros_child_env):
    proc = run(["run", "--list"], ros_child_env())
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 0 and names == sorted(names) and {"demo", "closed_loop", "navigation"} <= set(names)


def test_node_process_exits_cleanly_on_sigterm_and_sigint(ros_child_env):
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([sys.executable, "-m", "ros_mmfusion.nodes.lidar_depth"], env=ros_child_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3.0)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, (sig, err[-2000:])
        assert "Traceback" not in err


def test_node_with_bad_parameter_exits_2_with_the_reason(ros_child_env):
    proc = subprocess.run([sys.executable, "-m", "ros_mmfusion.nodes.lidar_depth", "--ros-args", "-p",
                           "camera_from_lidar:=[1.0, 2.0]"], env=ros_child_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "camera_from_lidar" in proc.stderr and "needs 7 numbers" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_shows_every_task_with_its_metrics_weights_and_pictures(ros_child_env, tmp_path):
    """The demo's two runs (urban bag: depth, segmentation, 3D detection; corridor: topomap and navigation) at tiny
    sizes; the metrics' values mean little here (random detection and navigation weights), their presence does."""
    import math

    import cv2

    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--frames", "6", "--size", "160x120", "--nav-frames", "12", "--rate", "0.5"]
    proc = run(args, ros_child_env(), timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for bag in ("urban_night_bag", "indoor_corridor_bag", "indoor_corridor_pass2_bag"):
        assert (out / bag / "metadata.yaml").is_file() and (out / bag / "calibration.yaml").is_file()
    assert (out / "indoor_corridor_topomap" / "topomap.yaml").is_file()
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["printed"] == proc.stdout.splitlines()[-len(summary["printed"]) - 2:-2]

    seg, det, nav = (summary["tasks"][k] for k in ("segmentation", "detection", "navigation"))
    assert 0.0 <= seg["mIoU"] <= 1.0 and seg["frames"] >= 3
    assert {n: v["iou"] for n, v in det["bev_AP"].items()} == {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
    assert all(v["AP"] is None or 0.0 <= v["AP"] <= 1.0 for v in det["bev_AP"].values()) and det["frames"] >= 3
    assert sum(v["ground_truth_boxes"] for v in det["bev_AP"].values()) > 0
    assert nav["topomap_nodes"] >= 6 and nav["localised_frames"] >= 1
    assert 0.0 <= nav["localisation_exact"] <= nav["localisation_within_1_node"] <= 1.0
    assert nav["waypoint_ADE_m"] is None or (math.isfinite(nav["waypoint_ADE_m"]) and nav["waypoint_ADE_m"] >= 0)
    assert summary["runs"]["navigation"]["distance_source"] == "model", "no odometry oracle in the demo"

    models = summary["models"]
    assert set(models) == {"/fusion_segmentation", "/detection3d", "/vint_navigation"}
    assert models["/fusion_segmentation"]["weights"] == "trained"
    assert all(m["weights"] in ("trained", "file", "fixture", "random") for m in models.values())
    for line in ("segmentation (urban_night): mIoU", "3D detection (urban_night): BEV AP",
                 "localisation within +-1 node", "/fusion_segmentation: trained weights"):
        assert line in proc.stdout, line
    rows = {line.split()[0]: int(line.split()[1]) for line in proc.stdout.splitlines()
            if line.startswith("/") and len(line.split()) == 6}
    assert 1 <= rows["/lidar/depth_image"] <= 6 and 1 <= rows["/detections"] <= 6 and rows["/navigation/path"] >= 1

    picture = cv2.imread(str(out / "demo_urban_night.png"))
    assert picture.shape == (120, 3 * 160, 3), "camera + depth | segmentation | boxes in the camera"
    for name in ("demo_urban_night_bev.png", "demo_navigation.png"):
        assert (out / name).stat().st_size > 1000, name
    again = run(args, ros_child_env(), timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("using existing bag") == 3


def test_demo_rejects_bad_size(ros_child_env, tmp_path):
    proc = run(["demo", "--out", str(tmp_path), "--size", "big"], ros_child_env())
    assert proc.returncode == 2 and "is not WIDTHxHEIGHT" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_reports_both_backends_and_their_ratio(ros_child_env):
    proc = run(["bench-network", "--model", "vint_reduced", "--runs", "2", "--warmup", "1", "--threads", "1", "--json"],
               ros_child_env(), timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert {r["backend"] for r in results} == {"torch", "onnxruntime"}
    assert all(r["median_ms"] > 0 and r["batch"] == 1 and (r["height"], r["width"]) == (64, 85) for r in results)


@pytest.mark.parametrize("args, message", [
    (["bench-network", "--model", "resnet"], "unknown model 'resnet'"),
    (["bench-network", "--model", "vint", "--size", "100x100"], "takes 64x85 inputs only"),
    (["bench-network", "--model", "cmx_mit_b0", "--size", "big"], "--size expects HxW"),
    (["bench-network", "--model", "pointpillars", "--batch", "2"], "no --batch or --size"),
    (["bench-network", "--model", "cmx_mit_b0", "--window", "10"], "--window applies to the vint models only"),
    (["bench-network", "--model", "pointpillars_synthetic_lite", "--point-cloud-range", "0", "-10", "-3", "20", "10",
      "1"], "--point-cloud-range: point_cloud_range [0.0, -10.0, -3.0, 20.0, 10.0, 1.0] gives 125 x 125 pillars"),
])
def test_bench_rejects_bad_arguments(ros_child_env, args, message):
    proc = run(args, ros_child_env())
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("old, new, args, message", [
    ("bench", "bench-network", ["--model", "resnet"], "unknown model 'resnet'"),
    ("benchmark", "bench-graph", ["--bag", "no_such_bag"], "no_such_bag"),
])
def test_old_command_names_print_a_one_line_notice_then_run(ros_child_env, old, new, args, message):
    proc = run([old, *args], ros_child_env())
    notice, *rest = proc.stderr.splitlines()
    assert notice == f"mmfusion {old}: note: renamed to `mmfusion {new}`; the old name still works"
    assert proc.returncode == 2 and any(message in line for line in rest), proc.stderr  # and the command ran
    assert "renamed" not in run([new, *args], ros_child_env()).stderr
