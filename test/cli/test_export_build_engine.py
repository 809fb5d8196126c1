"""``mmfusion export`` and ``mmfusion build-engine`` (build-only mode) on a machine without TensorRT."""
from __future__ import annotations

import onnx
import pytest

from ros_mmfusion.cli.main import main
from ros_mmfusion.core.inference.tensorrt_support import tensorrt_unavailable

needs_no_tensorrt = pytest.mark.skipif(tensorrt_unavailable() is None, reason="TensorRT is usable here")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "vint_reduced.onnx"
    assert main(["export", "--model", "vint_reduced", "--out", str(out)]) == 0
    return out


def test_export_writes_a_checked_onnx_file_and_refuses_to_overwrite(exported, capsys):
    onnx.checker.check_model(str(exported))
    assert [i.name for i in onnx.load(str(exported)).graph.input] == ["obs_img", "goal_img"]
    assert main(["export", "--model", "vint_reduced", "--out", str(exported)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_export_rejects_unknown_models_bad_sizes_and_missing_weights(tmp_path, capsys):
    assert main(["export", "--model", "nope", "--out", str(tmp_path / "a.onnx")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["export", "--model", "vint_reduced", "--out", str(tmp_path / "a.onnx"), "--size", "32x32"]) == 2
    assert "inputs only" in capsys.readouterr().err
    assert main(["export", "--model", "vint_reduced", "--out", str(tmp_path / "a.onnx"), "--weights", "x.pt"]) == 2
    assert "--weights x.pt: no such file" in capsys.readouterr().err
    assert not (tmp_path / "a.onnx").exists()


@needs_no_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_engine_without_tensorrt_exits_2_and_says_so(exported, precision, capsys):
    assert main(["build-engine", "--onnx", str(exported), "--precision", precision]) == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "no engine was built" in err
    assert ("--target onnxruntime" in err) == (precision == "int8")
    assert not list(exported.parent.glob("*.engine*"))


def test_build_engine_cpu_int8_needs_a_package_and_int8(exported, capsys):
    assert main(["build-engine", "--onnx", str(exported), "--precision", "fp16", "--target", "onnxruntime"]) == 2
    assert "INT8 model only" in capsys.readouterr().err
    assert main(["build-engine", "--onnx", str(exported), "--precision", "int8", "--target", "onnxruntime"]) == 2
    assert "needs --package" in capsys.readouterr().err
    assert main(["build-engine", "--onnx", "missing.onnx", "--precision", "int8"]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--quantize-from", "--calib"])  # --calib: the old name, kept
def test_build_engine_checks_the_quantization_source_under_both_names(exported, tmp_path, capsys, option):
    assert main(["build-engine", "--onnx", str(exported), "--precision", "int8", "--target", "onnxruntime",
                 option, str(tmp_path / "no_bag")]) == 2
    assert f"--quantize-from {tmp_path / 'no_bag'}: not a rosbag2 directory" in capsys.readouterr().err


@needs_no_tensorrt
def test_bench_accepts_the_new_backends_and_explains_a_missing_tensorrt(capsys):
    assert main(["bench-network", "--model", "vint_reduced", "--backend", "tensorrt"]) == 2
    assert "--backend tensorrt: TensorRT is not installed" in capsys.readouterr().err


@needs_no_tensorrt
@pytest.mark.parametrize("task", ["detection3d", "navigation"])
def test_build_engine_for_a_task_without_tensorrt_exits_2_before_exporting(task, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["build-engine", "--task", task, "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert f"no engine was built for --task {task}" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists()


def test_build_engine_names_an_operator_tensorrt_cannot_parse(exported, tmp_path, capsys):
    from onnx import helper

    model = onnx.load(str(exported))
    model.graph.node.append(helper.make_node("Unique", [model.graph.output[0].name], ["u"]))
    bad = tmp_path / "unique.onnx"
    onnx.save(model, str(bad))
    assert main(["build-engine", "--onnx", str(bad), "--precision", "fp16"]) == 2
    assert "TensorRT 10 cannot parse it: Unique" in capsys.readouterr().err
    assert main(["build-engine", "--onnx", str(exported), "--task", "navigation", "--precision", "fp16"]) == 2
    assert "give one of --onnx FILE and --task" in capsys.readouterr().err
