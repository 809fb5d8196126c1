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
