"""`mmfusion train segmentation` end to end on recorded bags (fine-tuned from the upstream CMX fixture) and on the
synthetic world, and its refusals: one line, exit 2, before any work, nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ros_mmfusion.cli.main import main
from ros_mmfusion.core.model_package import read_package
from test.cli.oneline import fails_with_one_line
from test.fixtures import FIXTURES

CMX_FIXTURE = FIXTURES / "cmx" / "state_mit_b0_nc9_fp16.npz"


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> tuple[Path, Path]:
    from ros_mmfusion.core.sim import record

    root = tmp_path_factory.mktemp("bags")
    record("urban_day", root / "day", frames=3, seed=9, size=(64, 48), beams=16)
    record("urban_night", root / "night", frames=2, seed=10, size=(64, 48), beams=16)
    return root / "day", root / "night"


@pytest.mark.skipif(not CMX_FIXTURE.exists(), reason="CMX fixtures not available (../shared/fixtures)")
def test_train_segmentation_on_bags_from_the_upstream_fixture(bags, tmp_path, capsys, monkeypatch):
    from ros_mmfusion.core.segmentation.pipeline import SegmentationModelSpec

    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))  # checkpoints go to the cache
    day, night = bags
    out = tmp_path / "seg"
    argv = ["train", "segmentation", "--out", str(out), "--bag", str(day), "--val-bag", str(night),
            "--size", "64x48", "--iterations", "2", "--batch", "2", "--threads", "1", "--init", str(CMX_FIXTURE)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "bag:day: 3 labelled frames" in printed and "bag:night: 2 labelled frames" in printed
    # the upstream checkpoint has 9 classes and a 512-wide decoder: the backbone loads, the decoder starts afresh
    assert "fine-tuned from checkpoint state_mit_b0_nc9_fp16.npz" in printed and "decode_head.linear_pred" in printed
    assert f"model package: {out}" in printed and "ETA" in printed
    spec = SegmentationModelSpec.from_package(out)
    assert spec.input_size == (48, 64) and spec.x_modality == "thermal" and spec.num_classes == 15
    assert spec.origin.kind == "trained"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["bags"] == [str(day)] and metrics["config"]["scenarios"] == []
    assert metrics["data"] == {"train_frames": 3, "validation_frames": 2, "train": ["bag:day"],
                               "validation": ["bag:night"], "size": [64, 48]}
    assert set(metrics["validation"]["by_source"]) == {"bag:night"}
    assert 0.0 <= metrics["validation"]["mIoU"] <= 1.0 and "neutral_x_mIoU" in metrics["validation"]
    assert [v["iteration"] for v in metrics["history"]["validation"]] == [2]
    assert len(list((tmp_path / "cache" / "train").glob("seg-*/last.pt"))) == 1
    before = (out / "weights.pt").read_bytes()
    fails_with_one_line(capsys, argv, "is not an empty directory")  # an existing package is refused, untouched
    assert (out / "weights.pt").read_bytes() == before


def test_train_segmentation_hha_from_a_bag_and_fine_tune_the_package(bags, tmp_path, capsys, monkeypatch):
    """HHA needs the bag's CameraInfo; the package then initialises a second run (same variant, all tensors)."""
    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))
    day, night = bags
    first = tmp_path / "hha"
    common = ["--bag", str(day), "--val-bag", str(night), "--size", "64x48", "--iterations", "1", "--batch", "2",
              "--x-modality", "depth_hha", "--no-scale-crop"]
    assert main(["train", "segmentation", "--out", str(first), *common]) == 0
    assert read_package(first, "segmentation").data["x_modality"]["name"] == "depth_hha"
    capsys.readouterr()
    second = tmp_path / "hha2"
    assert main(["train", "segmentation", "--out", str(second), *common, "--init", str(first)]) == 0
    printed = capsys.readouterr().out
    assert "fine-tuned from model package hha" in printed and "afresh" not in printed


def test_train_segmentation_on_the_synthetic_world_validates_periodically(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "syn"
    assert main(["train", "segmentation", "--out", str(out), "--scenario", "fog", "--seeds", "1",
                 "--val-seeds", "101", "--frames-per-seed", "2", "--val-frames", "1", "--size", "64x48",
                 "--iterations", "4", "--batch", "2", "--validate-every", "2", "--x-modality", "depth"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [v["iteration"] for v in metrics["history"]["validation"]] == [2, 4]
    assert metrics["seeds"] == {"train": [1], "validation": [101]}
    assert metrics["validation"]["by_source"].keys() == {"fog"}
    assert "with X" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "message"), [
    (["--seeds", "1-3", "--val-seeds", "3"], "both training and validation seeds"),
    (["--scenario", "atlantis"], "unknown scenario"),
    (["--init", "/nonexistent/cmx.pth"], "--init /nonexistent/cmx.pth"),
    (["--bag", "/nonexistent/bag"], "bag not found: /nonexistent/bag"),
    (["--modality-dropout", "1.5"], "modality_dropout must be in [0, 1]"),
    (["--val-seeds", ""], "no validation data"),
])
def test_train_segmentation_refusals(tmp_path, capsys, extra, message):
    fails_with_one_line(capsys, ["train", "segmentation", "--out", str(tmp_path / "m"), *extra], message)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--labels-topic", "/labels"], "no Image topic '/labels'"),
    (["--labels-topic", "/ground_truth/instance"], "labels must be mono8"),
    (["--x-modality", "depth", "--x-topic", "/camera/color/image_raw"], "expected a one-channel"),
])
def test_train_segmentation_bag_problems_are_one_line(bags, tmp_path, capsys, monkeypatch, extra, message):
    """Problems found while reading a bag (after the cheap checks) are one line too, and leave nothing behind."""
    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))
    day, night = bags
    fails_with_one_line(capsys, ["train", "segmentation", "--out", str(tmp_path / "m"), "--bag", str(day),
                                 "--val-bag", str(night), "--size", "64x48", *extra], message)
    assert not (tmp_path / "m").exists()
