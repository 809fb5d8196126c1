"""The engine cache, exercised with an artifact that can be built here: ONNX Runtime's optimized-model file.

Proves: first use builds and writes a sidecar; a second use loads without building; a corrupt artifact, a changed
builder version, a changed precision and a changed ONNX file rebuild with a clear log line instead of crashing;
two processes starting together build once.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ros_mmfusion.core.inference.engine_cache import SCHEMA, BuildSpec, EngineCache
from ros_mmfusion.core.inference.ort_optimized import build_optimized, load_optimized, optimized_session, optimized_spec
from test.conftest import child_env


def _tiny_onnx(path: Path, scale: float = 2.0) -> Path:
    """y = relu(x @ W * scale + b): small, but with fusable nodes, so the optimized graph differs from the input."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("W", TensorProto.FLOAT, [8, 4], rng.standard_normal((8, 4)).astype(np.float32).ravel())
    b = helper.make_tensor("b", TensorProto.FLOAT, [4], np.arange(4, dtype=np.float32))
    s = helper.make_tensor("s", TensorProto.FLOAT, [], [scale])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Mul", ["m", "s"], ["ms"]),
             helper.make_node("Add", ["ms", "b"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w, b, s])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


@pytest.fixture
def tiny(tmp_path) -> Path:
    return _tiny_onnx(tmp_path / "tiny.onnx")


def _run(session) -> np.ndarray:
    return session.run(None, {"x": np.ones((2, 8), np.float32)})[0]


def test_first_use_builds_with_a_sidecar_and_second_use_loads_without_building(tiny, tmp_path):
    cache = EngineCache(tmp_path / "cache", log=Recorder())
    first = optimized_session(tiny, cache)
    assert first.status == "built" and first.artifact.parent == tmp_path / "cache"
    sidecar = json.loads(first.artifact.with_name(first.artifact.name + ".json").read_text())
    assert sidecar["schema"] == SCHEMA and sidecar["artifact_bytes"] == first.artifact.stat().st_size
    identity = sidecar["identity"]
    assert identity["precision"] == "fp32" and identity["builder"] == "onnxruntime"
    assert identity["device"] and identity["builder_version"] and len(identity["onnx_sha256"]) == 64
    assert sidecar["build"]["graph_optimization_level"] == "extended" and sidecar["built_at"]
    mtime = first.artifact.stat().st_mtime_ns
    second = optimized_session(tiny, cache)
    assert second.status == "hit" and second.artifact == first.artifact
    assert first.artifact.stat().st_mtime_ns == mtime
    np.testing.assert_allclose(_run(second.value), _run(first.value))


def test_default_location_is_beside_the_onnx_file(tiny):
    result = optimized_session(tiny, EngineCache(log=Recorder()))
    assert result.artifact.parent == tiny.parent
    assert result.artifact.name.startswith("tiny.onnxruntime-fp32.") and result.artifact.name.endswith(".ort.onnx")


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage_same_size"])
def test_corrupt_artifact_is_reported_and_rebuilt(tiny, tmp_path, damage):
    log = Recorder()
    cache = EngineCache(tmp_path / "c", log=log)
    built = optimized_session(tiny, cache)
    data = bytearray(built.artifact.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = bytearray(b"\x00" * len(data))
    built.artifact.write_bytes(bytes(data))
    again = optimized_session(tiny, cache)
    assert again.status == "rebuilt" and "corrupt" in again.reason
    assert any("corrupt" in line and "rebuilding" in line for line in log.lines), log.lines
    np.testing.assert_allclose(_run(again.value), _run(built.value))


def test_artifact_the_loader_rejects_is_rebuilt_even_with_a_matching_sidecar(tiny, tmp_path):
    """An incompatible artifact (here: bytes ONNX Runtime cannot parse, with a sidecar that vouches for them, as
    after a runtime upgrade that changed the format) is rebuilt, with the loader's reason in the log."""
    log = Recorder()
    cache = EngineCache(tmp_path / "c", log=log)
    built = optimized_session(tiny, cache)
    sidecar_path = built.artifact.with_name(built.artifact.name + ".json")
    built.artifact.write_bytes(b"not an onnx model")
    meta = json.loads(sidecar_path.read_text())
    from ros_mmfusion.core.inference.engine_cache import file_sha256

    meta.update(artifact_sha256=file_sha256(built.artifact), artifact_bytes=built.artifact.stat().st_size)
    sidecar_path.write_text(json.dumps(meta))
    again = optimized_session(tiny, cache)
    assert again.status == "rebuilt" and "corrupt or incompatible" in again.reason
    assert any("rebuilding" in line for line in log.lines)
    assert _run(again.value).shape == (2, 4)


def test_builder_version_change_rebuilds_and_removes_the_stale_entry(tiny, tmp_path):
    log = Recorder()
    cache = EngineCache(tmp_path / "c", log=log)
    old = optimized_session(tiny, cache, spec=optimized_spec(tiny, builder_version="1.0.0-old"))
    new = optimized_session(tiny, cache, spec=optimized_spec(tiny, builder_version="9.9.9-new"))
    assert new.status == "rebuilt" and new.artifact != old.artifact
    assert "builder_version '1.0.0-old' -> '9.9.9-new'" in new.reason
    assert not old.artifact.exists() and new.artifact.exists()
    assert any("built for another configuration" in line for line in log.lines)


def test_precision_change_builds_a_separate_entry(tiny, tmp_path):
    cache = EngineCache(tmp_path / "c", log=Recorder())
    fp32 = optimized_session(tiny, cache, spec=optimized_spec(tiny, precision="fp32"))
    fp16 = optimized_session(tiny, cache, spec=optimized_spec(tiny, precision="fp16"))
    assert fp16.status == "built" and fp16.artifact != fp32.artifact and "-fp16." in fp16.artifact.name
    assert fp32.artifact.exists()  # another precision is another entry, not a stale one
    assert optimized_session(tiny, cache, spec=optimized_spec(tiny, precision="fp32")).status == "hit"


def test_changed_onnx_file_or_device_or_options_rebuild(tiny, tmp_path):
    cache = EngineCache(tmp_path / "c", log=Recorder())
    first = optimized_session(tiny, cache)
    _tiny_onnx(tiny, scale=3.0)  # same name, new content
    changed = optimized_session(tiny, cache)
    assert changed.status == "rebuilt" and "the ONNX file changed" in changed.reason
    other_gpu = optimized_session(tiny, cache, spec=optimized_spec(tiny, device="Another CPU"))
    assert other_gpu.status == "rebuilt" and "device" in other_gpu.reason
    level = optimized_session(tiny, cache, spec=optimized_spec(tiny, level="basic", device="Another CPU"))
    assert level.status == "rebuilt" and "options" in level.reason
    assert first.artifact != changed.artifact != other_gpu.artifact


def test_force_rebuilds_a_valid_entry(tiny, tmp_path):
    cache = EngineCache(tmp_path / "c", log=Recorder())
    optimized_session(tiny, cache)
    spec = optimized_spec(tiny)
    result = cache.get_or_build(spec, lambda tmp: build_optimized(tiny, tmp), load_optimized, force=True)
    assert result.status == "rebuilt" and result.reason == "rebuild forced"


def test_a_builder_that_fails_leaves_no_entry_and_a_fresh_artifact_that_does_not_load_raises(tiny, tmp_path):
    cache = EngineCache(tmp_path / "c", log=Recorder())
    spec = BuildSpec(tiny, "fp32", "fake", "1", "cpu", suffix=".bin")

    def failing(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="builder crashed"):
        cache.get_or_build(spec, failing, lambda p: p.read_bytes())
    assert cache.lookup(spec) is None
    assert not [p for p in (tmp_path / "c").iterdir() if not p.name.endswith(".lock")]

    def unloadable(path: Path) -> bytes:
        raise ValueError("never loads")

    with pytest.raises(ValueError, match="never loads"):
        cache.get_or_build(spec, lambda tmp: tmp.write_bytes(b"x"), unloadable)


_RACE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ros_mmfusion.core.inference.engine_cache import BuildSpec, EngineCache

    onnx, folder, builds, go = (Path(a) for a in sys.argv[1:5])
    while not go.exists():
        time.sleep(0.005)

    def build(tmp):
        with open(builds, "a") as f:
            f.write("build\\n")
        time.sleep(0.5)
        tmp.write_bytes(b"artifact")

    result = EngineCache(folder, log=lambda line: print(line, flush=True)).get_or_build(
        BuildSpec(onnx, "fp16", "fake", "1", "gpu", suffix=".bin"), build, lambda p: p.read_bytes())
    assert result.value == b"artifact"
    print(result.status)
""")


def test_two_processes_starting_together_build_once(tiny, tmp_path):
    builds, go = tmp_path / "builds.txt", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(tiny), str(tmp_path / "c"), str(builds), str(go)],
                              env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    time.sleep(1.0)  # both started and waiting
    go.touch()
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert builds.read_text().count("build") == 1, outputs
    statuses = sorted(out.strip().splitlines()[-1] for out in outputs)
    assert statuses == ["built", "hit"], outputs


def test_cpu_sessions_do_not_spin_after_a_run(tiny, tmp_path):
    """Both session factories turn off the intra-op threads' busy-wait (a pool spinning after its run took the cores
    from the next session's run: ViNT's two graphs, the node's own threads); asking for it turns it back on."""
    from ros_mmfusion.core.onnx_export import ort_session

    build_optimized(tiny, tmp_path / "tiny.ort.onnx")
    sessions = {"ort_session": ort_session(tiny, threads=2),
                "load_optimized": load_optimized(tmp_path / "tiny.ort.onnx"),
                "spinning": ort_session(tiny, threads=2, spinning=True)}
    spin = {name: s.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
            for name, s in sessions.items()}
    assert spin == {"ort_session": "0", "load_optimized": "0", "spinning": "1"}
    assert np.array_equal(_run(sessions["ort_session"]), _run(sessions["spinning"]))
