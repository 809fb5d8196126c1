"""The ``mmfusion`` commands against a hostile user: they never touch a file they did not write, and every bad
argument or file is one line on stderr naming the input and the reason, a non-zero exit, never a traceback.

Each case is checked before the command does any work, so these run through ``main([...])`` in this process and
stay fast; one real ``eval`` run shows what ``--overwrite`` replaces and what it leaves alone.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from ros_mmfusion.cli.main import main
from ros_mmfusion.core.outputs import MARKER, OutputDirectory, OutputFile
from test.cli.oneline import fails_with_one_line


def digest(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (or of ``path`` itself), by relative name."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}



@pytest.fixture(scope="module")
def recorded_bag(tmp_path_factory) -> Path:
    """A bag shaped like ``ros2 bag record -o outputs`` (metadata.yaml + outputs.mcap only) inside ``data/``."""
    from ros_mmfusion.core.sim.recorder import record

    data = tmp_path_factory.mktemp("user") / "data"
    bag = data / "outputs"
    record("urban_night", bag, 4, seed=2, size=(160, 120))
    (bag / "scenario.yaml").unlink()
    (bag / "calibration.yaml").unlink()
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", "outputs.mcap"]
    return bag


@pytest.fixture(scope="module")
def vint_onnx(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "vint_reduced.onnx"
    assert main(["export", "--model", "vint_reduced", "--out", str(out)]) == 0
    return out


@pytest.fixture
def package(tmp_path) -> Path:
    """A segmentation model package (random weights) at a small input size."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "model.yaml").write_text(
        "format: ros_mmfusion/model/v1\ntask: segmentation\nvariant: cmx_mit_b0\nnum_classes: 15\n"
        "decoder_embed_dim: 32\ninput_size: [64, 96]\nrgb_order: rgb\n"
        "x_modality: {name: thermal, params: {window_k: [263.0, 318.0], kelvin_per_count: 0.01}}\n")
    return pkg


# -- 1. never touch what we did not write ---------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_eval_never_deletes_the_bag_it_evaluates(recorded_bag, capsys, extra):
    """`mmfusion eval --bag data/outputs --out data` used to rmtree data/outputs (the bag) before replaying it."""
    before = digest(recorded_bag)
    fails_with_one_line(capsys, ["eval", "--bag", str(recorded_bag), "--out", str(recorded_bag.parent), *extra],
                        str(recorded_bag), "holds the input")
    assert digest(recorded_bag) == before


@pytest.mark.parametrize("command, name", [("eval", "metrics.json"), ("eval", "report.md"),
                                           ("eval", "outputs"), ("bench-graph", "benchmark.json"),
                                           ("bench-graph", "benchmark.md")])
def test_a_users_file_under_a_name_the_command_writes_is_never_replaced(recorded_bag, tmp_path, capsys, command,
                                                                        name):
    out = tmp_path / "report"
    out.mkdir()
    mine = out / name
    if name == "outputs":  # a bag of the user's own, as `ros2 bag record -o outputs` makes it
        import shutil

        shutil.copytree(recorded_bag, mine)
    else:
        mine.write_text("the user's own file\n")
    before = digest(out)
    fails_with_one_line(capsys, [command, "--bag", str(recorded_bag), "--out", str(out)], "--overwrite",
                        "not an empty directory")
    fails_with_one_line(capsys, [command, "--bag", str(recorded_bag), "--out", str(out), "--overwrite"],
                        str(mine), "was not written by mmfusion")
    assert digest(out) == before


@pytest.mark.parametrize("argv", [
    ["eval", "--bag", "BAG", "--out", "FILE"],
    ["bench-graph", "--bag", "BAG", "--out", "FILE"],
    ["train", "segmentation", "--out", "FILE", "--iterations", "1"],
    ["sim", "--scenario", "fog", "--frames", "1", "--out", "FILE"],
    ["demo", "--out", "FILE"],
    ["topomap", "build", "--bag", "BAG", "--image-topic", "/camera/color/image_raw", "--out", "FILE"],
    ["build-engine", "--onnx", "ONNX", "--precision", "int8", "--target", "onnxruntime", "--cache-dir", "FILE"],
    ["export", "--model", "vint_reduced", "--out", "DIR.onnx"],
    ["convert-checkpoint", "--model", "cmx", "--in", "CKPT", "--out", "DIR.onnx"],
    ["eval", "--bag", "BAG", "--out", "FILE/sub"],
])
def test_out_naming_a_file_where_a_directory_is_expected_or_vice_versa(recorded_bag, vint_onnx, tmp_path, capsys,
                                                                        argv):
    """Used to be a traceback (train only after a minute of work): now one line, before any work."""
    (tmp_path / "FILE").write_text("precious\n")
    (tmp_path / "DIR.onnx").mkdir()
    (tmp_path / "CKPT").write_bytes(b"\x80\x04K\x01.")
    paths = {"BAG": str(recorded_bag), "FILE": str(tmp_path / "FILE"), "FILE/sub": str(tmp_path / "FILE" / "sub"),
             "ONNX": str(vint_onnx), "DIR.onnx": str(tmp_path / "DIR.onnx"), "CKPT": str(tmp_path / "CKPT")}
    before = digest(tmp_path)
    err = fails_with_one_line(capsys, [paths.get(a, a) for a in argv])
    assert any(word in err for word in ("not a directory", "is a directory", "is a file")), err
    assert digest(tmp_path) == before and not list(tmp_path.glob(".*mmfusion-tmp*"))


def test_convert_checkpoint_and_export_never_overwrite_their_input(tmp_path, capsys):
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"not really a checkpoint")
    before = digest(ckpt)
    fails_with_one_line(capsys, ["convert-checkpoint", "--model", "cmx", "--in", str(ckpt), "--out", str(ckpt),
                                 "--overwrite"], "never overwritten")
    weights = tmp_path / "w.onnx"
    weights.write_bytes(b"weights")
    fails_with_one_line(capsys, ["export", "--model", "vint_reduced", "--weights", str(weights), "--out",
                                 str(weights), "--overwrite"], "never overwritten")
    assert digest(ckpt) == before and weights.read_bytes() == b"weights"


def test_demo_and_sim_refuse_a_directory_they_did_not_write(tmp_path, capsys):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    before = digest(out)
    fails_with_one_line(capsys, ["demo", "--out", str(out)], "--overwrite")
    fails_with_one_line(capsys, ["sim", "--scenario", "fog", "--frames", "1", "--out", str(out), "--overwrite"],
                        "not a bag written by mmfusion sim")
    assert digest(out) == before


def test_eval_overwrite_replaces_only_its_own_files(recorded_bag, tmp_path, ros_child_env):
    """A real run into a directory holding an earlier report of ours (marker), a stale plot of ours and the user's
    notes: the report is replaced, the stale plot removed, the notes untouched."""
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    (out / "metrics.json").write_text('{"old": true}\n')
    (out / "pr_curves.png").write_bytes(b"stale plot of an earlier detection run")
    (out / MARKER).write_text(json.dumps({"entries": {"metrics.json": "eval", "pr_curves.png": "eval"}}))
    proc = subprocess.run([sys.executable, "-m", "ros_mmfusion.cli", "eval", "--bag", str(recorded_bag), "--out",
                           str(out), "--overwrite"], env=ros_child_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "notes.txt").read_text() == "my notes\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert "old" not in metrics and metrics["run"]["outputs_bag"] == str(out / "outputs")
    assert not (out / "pr_curves.png").exists()
    assert (out / "outputs" / "metadata.yaml").is_file() and (out / "outputs" / "outputs.mcap").is_file()
    listed = json.loads((out / MARKER).read_text())["entries"]
    assert "notes.txt" not in listed and {"metrics.json", "report.md", "report.html", "outputs"} <= set(listed)
    assert sorted(p.name for p in out.iterdir() if p.name != MARKER) == sorted([*listed, "notes.txt"])


def test_a_failure_or_ctrl_c_inside_a_command_leaves_the_output_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    (out / "a.json").write_text("old a")
    (out / MARKER).write_text(json.dumps({"entries": {"a.json": "eval"}}))
    before = digest(out)
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with OutputDirectory(out, "eval", overwrite=True, writes=("a.json", "b.json")) as stage:
                (stage / "a.json").write_text("new a")
                (stage / "b.json").write_text("new b")
                raise error
        assert digest(out) == before and sorted(p.name for p in out.iterdir()) == [MARKER, "a.json", "keep.txt"]
    fresh = tmp_path / "deep" / "er" / "fresh"
    with pytest.raises(RuntimeError), OutputDirectory(fresh, "eval", overwrite=False) as stage:
        (stage / "x").write_text("x")
        raise RuntimeError("boom")
    assert not (tmp_path / "deep").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), OutputFile(target, overwrite=True) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "out"]
    with OutputDirectory(out, "eval", overwrite=True, writes=("a.json",)) as stage:
        (stage / "a.json").write_text("new a")
    assert (out / "a.json").read_text() == "new a" and (out / "keep.txt").read_text() == "keep"


# -- 2. one line, never a traceback ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "directory"])
def test_build_engine_rejects_broken_onnx_files(vint_onnx, tmp_path, capsys, kind):
    path = tmp_path / "model.onnx"
    if kind == "directory":
        path.mkdir()
    else:
        data = vint_onnx.read_bytes()
        path.write_bytes({"empty": b"", "truncated": data[: len(data) // 3], "random": os.urandom(4096)}[kind])
    err = fails_with_one_line(capsys, ["build-engine", "--onnx", str(path), "--precision", "int8", "--target",
                                       "onnxruntime"], str(path))
    assert any(word in err for word in ("empty", "not a valid ONNX model", "is a directory")), err


def test_build_engine_rejects_an_onnx_file_of_another_network_for_a_model_package(vint_onnx, package, capsys):
    """A ViNT ONNX with a segmentation package used to end in a KeyError traceback after calibration."""
    fails_with_one_line(capsys, ["build-engine", "--onnx", str(vint_onnx), "--precision", "int8", "--target",
                                 "onnxruntime", "--package", str(package), "--quantize-from", "sim", "--frames", "2"],
                        "takes inputs obs_img, goal_img", "rgb, x")


@pytest.mark.parametrize("model", ["cmx", "vint", "pointpillars", "centerpoint"])
@pytest.mark.parametrize("content", ["random", "empty", "plain_pickle"])
def test_convert_checkpoint_rejects_files_that_are_no_checkpoint(tmp_path, capsys, model, content):
    source = tmp_path / "upstream.pth"
    source.write_bytes({"random": os.urandom(2048), "empty": b"",
                        "plain_pickle": pickle.dumps({"epoch": 3, "note": "no tensors"}, protocol=4)}[content])
    fails_with_one_line(capsys, ["convert-checkpoint", "--model", model, "--in", str(source), "--out",
                                 str(tmp_path / "ours.pt")], str(source))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upstream.pth"]


@pytest.mark.parametrize("argv, message", [
    (["bench-network", "--model", "cmx_mit_b0", "--size", "100000x100000"], "each side must be 16..8192"),
    (["export", "--model", "cmx_mit_b0", "--size", "100000x100000", "--out", "OUT/x.onnx"], "16..8192"),
    (["export", "--model", "cmx_mit_b0", "--size", "0x-3", "--out", "OUT/x.onnx"], "16..8192"),
    (["export", "--model", "HUGE_PACKAGE", "--out", "OUT/x.onnx"], "input_size: 100000x100000"),
    (["train", "segmentation", "--out", "OUT/m", "--size", "100000x100000"], "16..4096"),
    (["train", "segmentation", "--out", "OUT/m", "--frames-per-seed", "100000000"], "GiB in memory"),
    (["sim", "--scenario", "fog", "--out", "OUT/b", "--frames", "100000000000"], "up to 100000"),
    (["eval", "--bag", "BAG", "--out", "OUT/r", "--preset", "detection", "--set",
      "detection3d.point_cloud_range=[-1000000.0, -1000000.0, -3.0, 1000000.0, 1000000.0, 1.0]"], "+-500 m"),
])
def test_absurd_sizes_are_errors_before_any_work(recorded_bag, package, tmp_path, capsys, argv, message):
    huge = tmp_path / "huge"
    huge.mkdir()
    (huge / "model.yaml").write_text((package / "model.yaml").read_text().replace("[64, 96]", "[100000, 100000]"))
    paths = {"BAG": str(recorded_bag), "HUGE_PACKAGE": str(huge)}
    argv = [paths.get(a, a.replace("OUT", str(tmp_path / "out"))) for a in argv]
    writes = any(str(tmp_path / "out") in a for a in argv)
    fails_with_one_line(capsys, argv, message)
    if writes:
        assert not (tmp_path / "out").exists(), "refused before anything was written"


def test_point_cloud_range_limit_holds_for_the_node_config_too():
    from ros_mmfusion.core.detection3d.pipeline import with_range
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.models.registry import detector

    config = detector("pointpillars_synthetic")
    assert with_range(config, (0.0, -19.84, -3.0, 39.68, 19.84, 1.0)).point_cloud_range[3] == pytest.approx(39.68)
    for bad in ([-1e6, -1e6, -3, 1e6, 1e6, 1], [0, -20.48, -3, float("nan"), 20.48, 1]):
        with pytest.raises(ConfigError, match="within \\+-500 m"):
            with_range(config, bad)


@pytest.mark.parametrize("argv, message", [
    (["--threads", "-1"], "threads must be a positive integer, got -1"),
    (["--threads", "0"], "threads must be a positive integer, got 0"),
    (["--batch", "100000"], "exceeds the 720 training frames"),
    (["--variant", "resnet50"], "variant 'resnet50' is not one of cmx_mit_b0"),
    (["--iterations", "0"], "iterations must be a positive integer"),
    (["--decoder-embed-dim", "-8"], "decoder_embed_dim must be a positive integer"),
])
def test_train_checks_its_settings_before_training(tmp_path, capsys, argv, message):
    fails_with_one_line(capsys, ["train", "segmentation", "--out", str(tmp_path / "m"), *argv], message)
    assert not (tmp_path / "m").exists()


def test_train_on_cuda_without_cuda_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    fails_with_one_line(capsys, ["train", "segmentation", "--out", str(tmp_path / "m"), "--device", "cuda"],
                        "no CUDA device is available")


@pytest.mark.parametrize("classes", ["bogus", "car,bogus", ","])
def test_eval_rejects_unknown_detection_classes(recorded_bag, tmp_path, capsys, classes):
    """`--detection-classes bogus` used to give mAP 0.000 and exit 0."""
    err = fails_with_one_line(capsys, ["eval", "--bag", str(recorded_bag), "--out", str(tmp_path / "r"),
                                       "--preset", "detection", "--detection-classes", classes],
                              "--detection-classes", "known: car, pedestrian, cyclist")
    assert "bogus" in err or "(none given)" in err


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["sim", "--scenario", "fog", "--frames", "ten", "--out", "x"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1 and "invalid int value: 'ten'" in err


def test_an_unexpected_exception_is_one_line_with_a_hint(monkeypatch, capsys):
    """The last-resort handler (bugs only: every known bad input has its own message)."""
    import ros_mmfusion.cli.topomap as topomap

    def broken(args):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(topomap, "run", broken)
    assert main(["topomap", "build"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("mmfusion topomap: internal error: ZeroDivisionError: division by zero second line; rerun with "
                   "MMFUSION_DEBUG=1 for the traceback")
    monkeypatch.setenv("MMFUSION_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["topomap", "build"])
