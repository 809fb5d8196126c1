"""`mmfusion train navigation` end to end on a recorded bag (fine-tuned from the upstream fixture), and its
refusals: one line, exit 2, before any work, nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ros_mmfusion.cli.main import main
from ros_mmfusion.core.model_package import read_package
from test.cli.oneline import fails_with_one_line
from test.fixtures import FIXTURES

VINT_FIXTURE = FIXTURES / "vint" / "state_vint_reduced_fp16.npz"


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    from ros_mmfusion.core.sim import record

    out = tmp_path_factory.mktemp("bags") / "pass1"
    record("indoor_corridor", out, frames=32, seed=4, size=(64, 48), beams=16)
    return out



@pytest.mark.skipif(not VINT_FIXTURE.exists(), reason="ViNT fixtures not available")
def test_train_navigation_on_a_bag_from_the_fixture(bag, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))  # checkpoints go to the cache
    out = tmp_path / "nav"
    argv = ["train", "navigation", "--out", str(out), "--bag", str(bag), "--val-bag", str(bag.parent / "pass2"),
            "--size", "64x48", "--iterations", "1", "--batch", "2", "--goals-per-context", "2", "--threads", "1",
            "--init", str(VINT_FIXTURE)]
    fails_with_one_line(capsys, argv, "bag not found")  # the validation bag does not exist yet
    from ros_mmfusion.core.sim import record

    record("indoor_corridor_pass2", bag.parent / "pass2", frames=32, seed=4, size=(64, 48), beams=16)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "fine-tuned from checkpoint state_vint_reduced_fp16.npz" in printed and f"model package: {out}" in printed
    package = read_package(out, "navigation")
    assert package.variant == "vint_reduced" and package.data["waypoint_spacing"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["held_out"] and metrics["data"]["validation"][0]["name"] == "bag:pass2"
    assert metrics["config"]["bags"] == [str(bag.resolve())] and metrics["config"]["scenarios"] == []
    assert len(list((tmp_path / "cache" / "train").glob("nav-*/last.pt"))) == 1
    # an existing package is refused, and left as it was
    before = (out / "weights.pt").read_bytes()
    fails_with_one_line(capsys, argv, "is not an empty directory")
    assert (out / "weights.pt").read_bytes() == before


@pytest.mark.parametrize(("extra", "message"), [
    (["--seeds", "1,x"], "--seeds expects seeds"),
    (["--seeds", "1-3", "--val-seeds", "3"], "both training and validation seeds"),
    (["--batch", "6", "--goals-per-context", "4"], "multiple of goals_per_context"),
    (["--scenario", "atlantis"], "unknown scenario"),
    (["--variant", "vint_huge"], "variant 'vint_huge'"),
    (["--init", "/nonexistent/vint.pth"], "--init /nonexistent/vint.pth"),
    (["--cross-pass", "2"], "cross_pass must be in [0, 1]"),
    (["--device", "cuda"], "cuda"),
])
def test_train_navigation_refusals(tmp_path, capsys, extra, message):
    import torch

    if extra[:2] == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    fails_with_one_line(capsys, ["train", "navigation", "--out", str(tmp_path / "m"), *extra], message)
    assert not (tmp_path / "m").exists()


def test_train_needs_a_task(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--out", "x"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and "TASK" in err, err
