"""TensorRT for every graph, without TensorRT: each exported graph (segmentation CMX, pillar encoder, backbone+head,
ViNT) against TensorRT's ONNX operator table, their optimization profiles, their engine-cache identities (rebuilt
when the GPU, the TensorRT version or the model changes; sidecar contents), the backends' one-line refusal where
TensorRT is absent, the fp16 copies ONNX Runtime's CUDA provider runs, and the chunking of a batch longer than a
profile's maximum.

The cache entries are real builds of an artifact that can be built here (ONNX Runtime's optimized model, as in
``test_engine_cache.py``) under the TensorRT engine's identity (``tensorrt_support.engine_spec``): the identity and
the cache's decisions are what is under test; the engine bytes themselves need a GPU.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.engine_cache import EngineCache, file_sha256
from ros_mmfusion.core.inference.ort_optimized import build_optimized, load_optimized
from ros_mmfusion.core.inference.tensorrt_ops import SUPPORT, check_parser_support, parser_problems, support_for
from ros_mmfusion.core.inference.tensorrt_support import (
    engine_spec,
    join_leading_axis,
    profile_from_onnx,
    split_leading_axis,
    tensorrt_unavailable,
)

SMALL_RANGE = [0.0, -5.12, -3.0, 10.24, 5.12, 1.0]  # 64 x 64 pillars of 0.16 m
GPU, TRT = "NVIDIA H100 80GB HBM3", "10.13.0.35"
needs_no_tensorrt = pytest.mark.skipif(tensorrt_unavailable() is None, reason="TensorRT is usable here")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, network_onnx) -> dict[str, tuple[Path, dict]]:
    """Every graph the nodes run, exported small (CMX and ViNT shared with the hygiene test), with the profile its
    TensorRT engine is built for."""
    from ros_mmfusion.core.detection3d.artifacts import DetectorSpec, engine_profiles, onnx_files
    from ros_mmfusion.core.detection3d.pipeline import with_range
    from ros_mmfusion.core.navigation.artifacts import engine_profile

    tmp = tmp_path_factory.mktemp("trt_graphs")
    spec = DetectorSpec.named("pointpillars_synthetic", onnx_dir=str(tmp / "pillars"))
    spec = dataclasses.replace(spec, config=dataclasses.replace(with_range(spec.config, SMALL_RANGE),
                                                                max_pillars=3000))
    encoder, head = onnx_files(spec)
    encoder_profile, head_profile = engine_profiles(spec)
    vint = network_onnx("vint_reduced")
    cmx = network_onnx("cmx_mit_b0", (64, 96))
    return {"pillar_encoder": (encoder, encoder_profile), "backbone_head": (head, head_profile),
            "vint": (vint, engine_profile(vint, 9)),
            "segmentation": (cmx, profile_from_onnx(cmx, {"rgb": (1, 3, 64, 96), "x": (1, 3, 64, 96)}))}


GRAPHS = ("segmentation", "pillar_encoder", "backbone_head", "vint")


@pytest.mark.parametrize("name", GRAPHS)
def test_every_graph_parses_under_each_tabled_tensorrt_version(graphs, name):
    path, _ = graphs[name]
    for version in SUPPORT:
        assert parser_problems(path, version) == [], f"{name} under TensorRT {version}"
    check_parser_support(path, "10.13.0.35")  # a full version string finds its row


def _with_node(src: Path, out: Path, node, opset: int | None = None, domain: str = "") -> Path:
    model = onnx.load(str(src))
    first = model.graph.output[0].name
    model.graph.node.append(node(first))
    if domain:
        model.opset_import.append(helper.make_opsetid(domain, 1))
    if opset is not None:
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = opset
    onnx.save(model, str(out))
    return out


def test_the_operator_check_catches_what_the_parser_would_reject(graphs, tmp_path):
    encoder, _ = graphs["pillar_encoder"]
    unique = _with_node(encoder, tmp_path / "unique.onnx", lambda x: helper.make_node("Unique", [x], ["u"]))
    assert any(p.startswith("Unique ") for p in parser_problems(unique, "10")), parser_problems(unique, "10")
    with pytest.raises(ConfigError, match="cannot parse it: Unique"):
        check_parser_support(unique, "10")
    plugin = _with_node(encoder, tmp_path / "plugin.onnx",
                        lambda x: helper.make_node("PillarScatter", [x], ["s"], domain="com.example"),
                        domain="com.example")
    assert any("com.example::PillarScatter" in p and "plugin" in p for p in parser_problems(plugin, "10"))
    gelu = _with_node(encoder, tmp_path / "gelu.onnx", lambda x: helper.make_node("Gelu", [x], ["g"]), opset=20)
    assert parser_problems(gelu, "10") == []  # TensorRT 10 parses opset 20 and Gelu ...
    problems = parser_problems(gelu, "8.6")  # ... 8.6 neither
    assert any(p.startswith("opset 20") for p in problems) and any(p.startswith("Gelu ") for p in problems)
    with pytest.raises(ConfigError, match="no ONNX operator table for TensorRT 7"):
        support_for("7.2")


def test_the_tables_agree_with_the_documented_table():
    """docs/backends.md carries the table's versions, opsets and the operators 8.6 lacks: the same as the module."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "backends.md").read_text()
    for row in SUPPORT.values():
        assert f"| {row.version} | {row.min_opset}-{row.max_opset} |" in doc, row.version
    assert all(op in doc for op in SUPPORT["10"].ops - SUPPORT["8.6"].ops)


def test_profiles_follow_max_pillars_the_range_and_the_window(graphs):
    from ros_mmfusion.core.detection3d.artifacts import DetectorSpec, pillar_count_bounds
    from ros_mmfusion.core.detection3d.pipeline import with_range

    (lo, opt, hi) = graphs["pillar_encoder"][1]["input_features"]
    assert (lo[0], opt[0], hi[0]) == (1, 1500, 3000) and lo[1:] == hi[1:] == (32, 10)
    config = with_range(DetectorSpec.named("pointpillars_synthetic").config, SMALL_RANGE)
    assert pillar_count_bounds(dataclasses.replace(config, max_pillars=10**6)) == (1, 2048, 64 * 64)  # the cells
    canvas = graphs["backbone_head"][1]["spatial_features"]
    assert canvas[0] == canvas[2] == (1, 64, 64, 64)
    obs = graphs["vint"][1]["obs_img"]
    assert [s[0] for s in obs] == [1, 9, 9] and obs[0][1:] == obs[2][1:]


@pytest.mark.parametrize("name", GRAPHS)
def test_engine_identity_of_every_graph_names_its_profile_and_changes_with_gpu_tensorrt_and_model(graphs, name,
                                                                                                    tmp_path):
    path, profile = graphs[name]
    cache = EngineCache(tmp_path)
    base = cache.paths(engine_spec(path, "fp16", profile, GPU, TRT))
    identity = base.identity
    assert identity["builder"] == "tensorrt" and identity["builder_version"] == TRT and identity["device"] == GPU
    assert identity["precision"] == "fp16" and identity["onnx_sha256"] == file_sha256(path)
    assert identity["shapes"] == {k: [list(s) for s in v] for k, v in profile.items()}
    assert base.artifact.name.startswith(f"{path.stem}.tensorrt-fp16.") and base.artifact.suffix == ".engine"
    variants = [engine_spec(path, "fp16", profile, "Orin", TRT), engine_spec(path, "fp16", profile, GPU, "10.14.1"),
                engine_spec(path, "int8", profile, GPU, TRT), engine_spec(path, "fp16", profile, GPU, TRT, 1 << 31)]
    keys = {base.key, *(cache.paths(v).key for v in variants)}
    assert len(keys) == 1 + len(variants)
    retrained = tmp_path / path.name
    model = onnx.load(str(path))
    model.doc_string = "retrained"
    onnx.save(model, str(retrained))
    assert cache.paths(engine_spec(retrained, "fp16", profile, GPU, TRT)).key != base.key


def test_engine_cache_rebuilds_on_gpu_tensorrt_or_model_change_and_writes_the_sidecar(graphs, tmp_path):
    path, profile = graphs["backbone_head"]
    onnx_copy = tmp_path / path.name
    onnx_copy.write_bytes(path.read_bytes())
    lines: list[str] = []
    cache = EngineCache(tmp_path / "engines", log=lines.append)

    def build(spec):
        return cache.get_or_build(spec, lambda tmp: build_optimized(spec.onnx, tmp, "basic"), load_optimized)

    spec = engine_spec(onnx_copy, "fp16", profile, GPU, TRT)
    first = build(spec)
    assert first.status == "built"
    sidecar = json.loads(first.artifact.with_name(first.artifact.name + ".json").read_text())
    assert sidecar["identity"] == cache.paths(spec).identity and sidecar["key"] == cache.paths(spec).key
    assert sidecar["artifact_sha256"] == file_sha256(first.artifact)
    assert sidecar["onnx"] == str(onnx_copy.resolve()) and sidecar["build_seconds"] >= 0
    assert build(spec).status == "hit"
    orin = build(engine_spec(onnx_copy, "fp16", profile, "Orin", TRT))
    assert orin.status == "rebuilt" and f"device {GPU!r} -> 'Orin'" in orin.reason
    newer = build(engine_spec(onnx_copy, "fp16", profile, "Orin", "10.14.1"))
    assert newer.status == "rebuilt" and "builder_version" in newer.reason
    model = onnx.load(str(onnx_copy))
    model.doc_string = "retrained"
    onnx.save(model, str(onnx_copy))
    changed = build(engine_spec(onnx_copy, "fp16", profile, "Orin", "10.14.1"))
    assert changed.status == "rebuilt" and "the ONNX file changed" in changed.reason
    assert len(list((tmp_path / "engines").glob("*.engine"))) == 1  # stale engines removed, not accumulated
    assert any("built for another configuration" in line for line in lines)


def test_split_and_join_along_the_leading_axis():
    feeds = {"a": np.arange(10).reshape(5, 2), "b": np.arange(5)}
    chunks = split_leading_axis(feeds, 2)
    assert [len(c["a"]) for c in chunks] == [2, 2, 1]
    joined = join_leading_axis(chunks)
    assert all(np.array_equal(joined[k], feeds[k]) for k in feeds)
    assert split_leading_axis(feeds, 5)[0]["a"] is feeds["a"]
    with pytest.raises(ConfigError, match="share its length"):
        split_leading_axis({"a": np.zeros(3), "b": np.zeros(4)}, 2)


@needs_no_tensorrt
def test_every_task_refuses_tensorrt_in_one_line_before_any_work(tmp_path, monkeypatch):
    from ros_mmfusion.core.detection3d.artifacts import DetectorSpec, build_backends
    from ros_mmfusion.core.navigation.artifacts import build_backend as build_vint_backend
    from ros_mmfusion.core.segmentation.artifacts import build_backend as build_seg_backend
    from ros_mmfusion.core.segmentation.artifacts import load_package

    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))
    calls = [lambda: build_backends(DetectorSpec.named("pointpillars_synthetic"), "tensorrt", precision="fp16"),
             lambda: build_vint_backend("tensorrt", "vint_reduced", precision="int8"),
             lambda: build_seg_backend(load_package(), "tensorrt")]
    for call in calls:
        with pytest.raises(ConfigError) as info:
            call()
        text = str(info.value)
        assert text.startswith("backend tensorrt: TensorRT is not installed") and "\n" not in text
    assert not (tmp_path / "cache").exists()  # refused before exporting anything


def test_precision_checks_name_the_parameter():
    from ros_mmfusion.core.inference.params import check_precision

    check_precision("tensorrt", "cpu", "int8")
    check_precision("onnxruntime-cuda", "cpu", "fp16")  # the CUDA backends name their device
    with pytest.raises(ConfigError, match="detection3d: parameter 'precision': fp16 runs on CUDA"):
        check_precision("onnxruntime", "cpu", "fp16", "detection3d")
    with pytest.raises(ConfigError, match="int8 needs backend onnxruntime-int8 or tensorrt, not torch-cuda"):
        check_precision("torch-cuda", "cpu", "int8")


def test_fp16_copy_for_the_cuda_provider_is_cached_with_float32_io(graphs, tmp_path):
    from ros_mmfusion.core.inference.fp16 import fp16_model

    vint = tmp_path / "vint.onnx"
    vint.write_bytes(graphs["vint"][0].read_bytes())
    cache = EngineCache(tmp_path / "c")
    first = fp16_model(vint, cache)
    assert fp16_model(vint, cache) == first and first.with_name(first.name + ".json").is_file()
    model = onnx.load(str(first))
    assert {i.type.tensor_type.elem_type for i in (*model.graph.input, *model.graph.output)} == {onnx.TensorProto.FLOAT}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
