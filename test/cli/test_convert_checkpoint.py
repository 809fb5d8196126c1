"""`mmfusion convert-checkpoint` on upstream-format files: variant inference, strict checking, safe output."""
from __future__ import annotations

import subprocess
import sys

import torch

from ros_mmfusion.core.models.cmx import build_cmx
from ros_mmfusion.core.models.pointpillars import build_model

MMFUSION = [sys.executable, "-m", "ros_mmfusion.cli"]


def run(args, env):
    return subprocess.run(MMFUSION + args, env=env, capture_output=True, text=True, timeout=300)


def test_cmx_training_checkpoint_with_module_prefixes_converts_and_infers_its_variant(tmp_path, ros_child_env):
    torch.manual_seed(0)
    state = build_cmx("cmx_mit_b0", num_classes=9, decoder_embed_dim=64).state_dict()
    upstream = tmp_path / "epoch-500.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "optimizer": {}, "epoch": 500}, upstream)
    out = tmp_path / "cmx.pt"
    proc = run(["convert-checkpoint", "--model", "cmx", "--in", str(upstream), "--out", str(out)], ros_child_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cmx_mit_b0" in proc.stdout and "num_classes=9" in proc.stdout and "decoder_embed_dim=64" in proc.stdout
    converted = torch.load(out, weights_only=True)
    assert converted.keys() == state.keys() and all(torch.equal(converted[k], state[k]) for k in state)
    again = run(["convert-checkpoint", "--model", "cmx", "--in", str(upstream), "--out", str(out)], ros_child_env())
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr


def test_openpcdet_checkpoint_converts_and_a_wrong_architecture_is_a_clear_error(tmp_path, ros_child_env):
    state = build_model("pointpillars_kitti").state_dict()
    upstream = tmp_path / "pointpillar_7728.pth"
    torch.save({"model_state": state, "epoch": 80, "it": 0}, upstream)
    ok = run(["convert-checkpoint", "--model", "pointpillars", "--in", str(upstream), "--out", str(tmp_path / "p.pt")],
             ros_child_env())
    assert ok.returncode == 0, ok.stderr[-2000:]
    wrong = run(["convert-checkpoint", "--model", "cmx", "--in", str(upstream), "--out", str(tmp_path / "c.pt")],
                ros_child_env())
    assert wrong.returncode == 2 and "model_state" in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr and not (tmp_path / "c.pt").exists()
    missing = run(["convert-checkpoint", "--model", "cmx", "--in", str(tmp_path / "nope.pth"), "--out",
                   str(tmp_path / "d.pt")], ros_child_env())
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr
