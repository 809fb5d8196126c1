"""CPU INT8 with ONNX Runtime static quantization (QDQ): calibration from a bag or the synthetic world, the cache
entry beside the fp32 ONNX, the accuracy report, and the ``onnxruntime-int8`` backend through the factory and the
segmentation pipeline. A small CMX (mit_b0, decoder 64, 64x96 input, seeded random weights) keeps it fast; the
measured numbers for the trained model are in docs/backends.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference import create_backend
from ros_mmfusion.core.inference.cpu_features import X86_AVX2, X86_AVX512_VNNI, CpuIsa
from ros_mmfusion.core.inference.engine_cache import EngineCache
from ros_mmfusion.core.inference.int8 import (
    CPU_INT8,
    TENSORRT_INT8,
    U8S8_REDUCED,
    Int8Settings,
    cpu_int8_settings,
    int8_spec,
    is_quantized,
    quantized_model,
)
from ros_mmfusion.core.segmentation.artifacts import build_backend, int8_onnx_for, onnx_for
from ros_mmfusion.core.segmentation.pipeline import (
    INPUTS,
    OUTPUTS,
    FusionSegmenter,
    SegmentationModelSpec,
    postprocess,
)
from ros_mmfusion.core.segmentation.quantize import compare_int8, feeds_of, frames_from_bag, frames_from_simulation

SIZE = (64, 96)  # (height, width)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """A thermal-X model package with seeded random weights."""
    from ros_mmfusion.core import labels
    from ros_mmfusion.core.models.cmx import build_cmx

    folder = tmp_path_factory.mktemp("int8_pkg")
    torch.manual_seed(0)
    model = build_cmx("cmx_mit_b0", num_classes=len(labels.LABELS), decoder_embed_dim=64)
    torch.save(model.state_dict(), folder / "weights.pt")
    (folder / "model.yaml").write_text(yaml.safe_dump({
        "format": "ros_mmfusion/model/v1", "task": "segmentation", "variant": "cmx_mit_b0",
        "num_classes": len(labels.LABELS), "decoder_embed_dim": 64, "input_size": list(SIZE), "rgb_order": "rgb",
        "weights": "weights.pt", "class_names": labels.label_names(), "ignore_index": 0,
        "x_modality": {"name": "thermal", "params": {"window_k": [263.0, 318.0], "kelvin_per_count": 0.01}}}))
    return folder


@pytest.fixture(scope="module")
def spec(package, tmp_path_factory):
    """The package's spec, with the first-use ONNX cache in a temporary directory for this module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMFUSION_CACHE_DIR", str(tmp_path_factory.mktemp("mmfusion_cache")))
        yield SegmentationModelSpec.from_package(package)


@pytest.fixture(scope="module")
def fp32(spec, torch_single_thread) -> Path:
    return onnx_for(spec)


@pytest.fixture(scope="module")
def frames(spec):
    return frames_from_simulation(spec, count=6)


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    from ros_mmfusion.core.sim import record

    out = tmp_path_factory.mktemp("bags") / "calib"
    record("urban_night", out, frames=4, size=(SIZE[1] * 2, SIZE[0] * 2), beams=16)
    return out


def test_simulation_frames_are_encoded_like_the_node_and_carry_ground_truth(spec, frames):
    assert len(frames) == 6
    for f in frames:
        assert f.rgb.shape == (*SIZE, 3) and f.x.shape == (*SIZE, 3) and f.x.dtype == np.uint8
        assert f.labels is not None and f.labels.shape == SIZE
    feeds = feeds_of(spec, frames[:1])[0]
    assert set(feeds) == set(INPUTS) and feeds["rgb"].shape == (1, 3, *SIZE) and feeds["rgb"].dtype == np.float32


def test_bag_frames_pair_rgb_x_and_ground_truth_by_stamp(spec, bag):
    frames = frames_from_bag(spec, bag, count=3)
    assert len(frames) == 3
    assert all(f.rgb.shape == (SIZE[0] * 2, SIZE[1] * 2, 3) and f.labels is not None for f in frames)
    assert len(frames_from_bag(spec, bag, count=10, stride=2)) == 2
    with pytest.raises(ConfigError, match="no topic"):
        frames_from_bag(spec, bag, x_topic="/nope")


def test_quantized_model_is_qdq_cached_beside_the_fp32_onnx_and_close_to_fp32(spec, fp32, frames, bag):
    calib, held_out = frames[0::2], frames[1::2]
    result = quantized_model(fp32, lambda: feeds_of(spec, calib), cache=EngineCache(log=print),
                             notes_of=lambda: {"calibration": "test frames"})
    assert result.status == "built" and result.artifact.parent == fp32.parent and is_quantized(result.artifact)
    assert not is_quantized(fp32)
    again = quantized_model(fp32, lambda: pytest.fail("must not calibrate again"), cache=EngineCache())
    assert again.status == "hit" and again.artifact == result.artifact
    report = compare_int8(fp32, result.artifact, feeds_of(spec, held_out), labels=[f.labels for f in held_out],
                          num_classes=spec.num_classes, threads=2, timing_runs=2,
                          label_of=lambda out, size: postprocess(out[0], size).labels)
    print(report.summary())
    assert report.frames == 3 and report.argmax_agreement > 0.8
    assert report.logits_relative_rmse < 0.25 and np.isfinite(report.logits_max_abs_error)
    assert report.miou_fp32 is not None and report.miou_int8 is not None
    assert report.latency_fp32_ms > 0 and report.latency_int8_ms > 0
    # from a bag (ground truth at twice the model size: labels are compared at the ground truth's size)
    bag_frames = frames_from_bag(spec, bag, count=2)
    report = compare_int8(fp32, result.artifact, feeds_of(spec, bag_frames), labels=[f.labels for f in bag_frames],
                          num_classes=spec.num_classes, timing_runs=0,
                          label_of=lambda out, size: postprocess(out[0], size).labels)
    assert report.miou_int8 is not None and report.frames == 2


def test_backend_factory_runs_int8_from_the_cache_or_explains_how_to_build_it(spec, fp32, frames, tmp_path):
    backend = create_backend("onnxruntime-int8", input_names=INPUTS, output_names=OUTPUTS, onnx_path=fp32, threads=2)
    assert backend.info.kind == "onnxruntime-int8" and backend.info.precision == "int8"
    out = backend.run(feeds_of(spec, frames[:1])[0])["logits"]
    assert out.shape == (1, spec.num_classes, *SIZE) and out.dtype == np.float32
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(fp32.read_bytes())
    with pytest.raises(ConfigError, match="mmfusion build-engine --onnx .* --precision int8"):
        create_backend("onnxruntime-int8", input_names=INPUTS, output_names=OUTPUTS, onnx_path=lonely)
    with pytest.raises(ConfigError, match="precision int8 needs backend onnxruntime-int8 or tensorrt"):
        create_backend("onnxruntime", input_names=INPUTS, output_names=OUTPUTS, onnx_path=fp32, precision="int8")


def test_segmentation_pipeline_takes_the_int8_backend(spec, frames):
    """The pipeline asked for INT8 runs this CPU's format (accurate here: on AVX2 the saturating U8S8 agreed on 0.67
    of the pixels); what a node asked for INT8 runs is the decision of ``int8_plan`` (both branches, every CPU
    class: test_cpu_features.py)."""
    int8 = int8_onnx_for(spec)  # the cache entry made above; a fresh cache would calibrate on the synthetic world
    assert is_quantized(int8) and f".onnxruntime-qdq-int8-{cpu_int8_settings().label}." in int8.name
    segmenter = FusionSegmenter(spec, build_backend(spec, "onnxruntime-int8", threads=2))
    reference = FusionSegmenter(spec, build_backend(spec, "onnxruntime", threads=2))
    f = frames[0]
    got, want = segmenter(f.rgb, f.x), reference(f.rgb, f.x)
    assert got.labels.shape == SIZE and (got.labels == want.labels).mean() > 0.8


def test_int8_settings_are_part_of_the_cache_key(fp32):
    assert int8_spec(fp32).options != int8_spec(fp32, Int8Settings(per_channel=False)).options
    with pytest.raises(ValueError, match="calibration must be one of"):
        Int8Settings(calibration="magic")


def test_cpu_and_tensorrt_variants_are_separate_cache_entries(fp32):
    cpu, reduced, trt = int8_spec(fp32, CPU_INT8), int8_spec(fp32, U8S8_REDUCED), int8_spec(fp32, TENSORRT_INT8)
    assert (cpu.precision, reduced.precision, trt.precision) == ("int8-u8s8", "int8-u8s8-rr", "int8-s8s8")
    assert len({EngineCache()._prefix(s) for s in (cpu, reduced, trt)}) == 3  # none is another's stale entry
    assert int8_spec(fp32).precision == f"int8-{cpu_int8_settings().label}"  # default: this CPU's format


def test_cpu_class_is_in_the_identity_and_sidecar_and_an_entry_of_another_class_is_rebuilt(tmp_path):
    """The cache identity of an INT8 model names the CPU class (a tiny graph: the cache logic, not CMX's accuracy,
    is under test here; the CMX INT8 model itself is the next test's)."""
    from test.core.test_engine_cache import _tiny_onnx  # the cache tests' quantizable MatMul graph, x (batch, 8)

    fp32 = _tiny_onnx(tmp_path / "tiny.onnx")
    rng = np.random.default_rng(1)
    samples = [{"x": rng.standard_normal((2, 8)).astype(np.float32)} for _ in range(2)]
    vnni, avx2 = CpuIsa(X86_AVX512_VNNI, "Intel Xeon"), CpuIsa(X86_AVX2, "AMD EPYC")
    a, b = int8_spec(fp32, CPU_INT8, vnni), int8_spec(fp32, CPU_INT8, avx2)
    assert (a.device, b.device) == ("cpu:x86-avx512-vnni", "cpu:x86-avx2")
    assert EngineCache().paths(a).key != EngineCache().paths(b).key
    # the TensorRT file is a GPU artifact: one entry whatever CPU quantized it
    assert EngineCache().paths(int8_spec(fp32, TENSORRT_INT8, vnni)).key == EngineCache().paths(
        int8_spec(fp32, TENSORRT_INT8, avx2)).key

    lines: list[str] = []
    cache = EngineCache(tmp_path / "cache", log=lines.append)
    feeds = lambda: iter(samples)  # noqa: E731
    made = quantized_model(fp32, feeds, CPU_INT8, cache, isa=vnni)
    assert made.status == "built"
    sidecar = json.loads(made.artifact.with_name(made.artifact.name + ".json").read_text())
    assert sidecar["identity"]["device"] == "cpu:x86-avx512-vnni" and sidecar["identity"]["options"]["activations"]
    assert sidecar["notes"]["cpu_isa"] == "x86-avx512-vnni" and sidecar["notes"]["int8_format"] == "u8s8"
    assert quantized_model(fp32, lambda: pytest.fail("reused"), CPU_INT8, cache, isa=vnni).status == "hit"
    again = quantized_model(fp32, feeds, CPU_INT8, cache, isa=avx2)  # same format, another CPU class
    assert again.status == "rebuilt" and again.artifact != made.artifact and not made.artifact.exists()
    assert "'cpu:x86-avx512-vnni' -> 'cpu:x86-avx2'" in again.reason and any("x86-avx2" in line for line in lines)
