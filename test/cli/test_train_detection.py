"""`mmfusion train detection` end to end on a recorded bag, and its refusals: one line, exit 2, before any work,
nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ros_mmfusion.cli.main import main
from ros_mmfusion.core.model_package import read_package
from test.cli.oneline import fails_with_one_line


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    from ros_mmfusion.core.sim import record

    out = tmp_path_factory.mktemp("bags") / "drive"
    record("urban_day", out, frames=3, seed=9, size=(64, 48))
    record("urban_night", out.parent / "held_out", frames=2, seed=10, size=(64, 48))
    return out


def without_lidar_transform(bag: Path, out: Path) -> Path:
    """A copy of ``bag`` whose /tf_static no longer holds the LiDAR's transform (the cameras' stay)."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from ros_mmfusion.core.bagio import typestore

    store = typestore()
    with Reader(bag) as reader:
        writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections}
        for conn, t, data in reader.messages():
            if conn.topic == "/tf_static":
                msg = store.deserialize_cdr(data, conn.msgtype)
                msg.transforms = [tf for tf in msg.transforms if tf.child_frame_id != "lidar_link"]
                assert msg.transforms
                data = store.serialize_cdr(msg, conn.msgtype)
            writer.write(conns[conn.id], t, data)
        writer.close()
    return out


def test_train_painted_detection_on_a_bag(bag, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "det"
    argv = ["train", "detection", "--out", str(out), "--bag", str(bag), "--val-bag", str(bag.parent / "held_out"),
            "--iterations", "1", "--batch", "2", "--threads", "1", "--window", "10.24", "--paint",
            "car,pedestrian,cyclist", "--labels-topic", "/ground_truth/semantic", "--sync-tolerance", "0.02"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "3 clouds with ground truth, " in printed and "painted from /ground_truth/semantic (corrupted)" in printed
    package = read_package(out, "detection3d")
    assert package.data["paint_classes"] == ["car", "pedestrian", "cyclist"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["labels_topic"] == "/ground_truth/semantic" and metrics["config"]["sync_tolerance"] == 0.02
    assert metrics["validation"]["frames"] == 2 and "car_bev_ap70" in metrics["validation"]


def test_painted_detection_refusals_name_the_bag(bag, tmp_path, capsys):
    held_out = str(bag.parent / "held_out")
    painted = ["train", "detection", "--out", str(tmp_path / "m"), "--val-bag", held_out, "--iterations", "1",
               "--paint", "car"]
    fails_with_one_line(capsys, [*painted, "--bag", str(bag), "--labels-topic", "/segmentation/labels"],
                        str(bag), "no topic /segmentation/labels")
    untied = without_lidar_transform(bag, tmp_path / "untied")
    fails_with_one_line(capsys, [*painted, "--bag", str(untied)], str(untied), "/tf_static",
                        "no transform 'camera_color_optical_frame' <- 'lidar_link': unknown frame 'lidar_link'")
    assert not (tmp_path / "m").exists()
    # the unpainted detector does not need the transform
    assert main(["train", "detection", "--out", str(tmp_path / "u"), "--bag", str(untied), "--val-bag", held_out,
                 "--iterations", "1", "--window", "10.24"]) == 0


def test_train_detection_on_a_bag(bag, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))  # checkpoints go to the cache
    out = tmp_path / "det"
    argv = ["train", "detection", "--out", str(out), "--bag", str(bag), "--val-bag", str(bag.parent / "held_out"),
            "--iterations", "2", "--batch", "2", "--threads", "1", "--window", "10.24"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "3 clouds with ground truth" in printed and f"model package: {out}" in printed and "ETA" in printed
    package = read_package(out, "detection3d")
    assert package.variant == "pointpillars_synthetic_lite" and package.data["paint_classes"] == []
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["bags"] == [str(bag)] and metrics["config"]["scenarios"] == []
    assert "car_bev_ap70" in metrics["validation"]
    assert len(list((tmp_path / "cache" / "train").glob("det-*/last.pt"))) == 1
    before = (out / "weights.pt").read_bytes()
    fails_with_one_line(capsys, argv, "is not an empty directory")  # an existing package is refused, untouched
    assert (out / "weights.pt").read_bytes() == before


@pytest.mark.parametrize(("extra", "message"), [
    (["--seeds", "1-3", "--val-seeds", "3"], "both training and validation seeds"),
    (["--scenario", "atlantis"], "unknown scenario"),
    (["--variant", "centerpoint_pillar"], "not a trainable anchor-head detector"),
    (["--paint", "car,unicorn"], "not in the label set"),
    (["--init", "/nonexistent/pp.pth"], "/nonexistent/pp.pth"),
    (["--window", "-1"], "window must be >= 0"),
    (["--iterations", "0"], "iterations must be a positive integer"),
    (["--device", "cuda"], "cuda"),
])
def test_train_detection_refusals(tmp_path, capsys, extra, message):
    import torch

    if extra[:2] == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    fails_with_one_line(capsys, ["train", "detection", "--out", str(tmp_path / "m"), *extra], message)
    assert not (tmp_path / "m").exists()
