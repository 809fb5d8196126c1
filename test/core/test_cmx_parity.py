"""CMX reproduces upstream (huaaaliu/RGBX_Semantic_Segmentation) numerically from an upstream-format checkpoint.

Reference: ``../shared/fixtures/cmx`` (manifest.json states how it was made): mit_b0, 9 classes, random but
perturbed weights stored as float16, inputs and outputs of the upstream ``EncoderDecoder`` at 480x640 and 240x320.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from torch import nn

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.models.cmx import (
    CMX_VARIANTS,
    build_cmx,
    cmx_mit_b0,
    cmx_mit_b2,
    convert_upstream_checkpoint,
    load_checkpoint,
)
from ros_mmfusion.core.segmentation.preprocess import rgb_input, rgbx_inputs, x_input
from test.fixtures import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES
CMX_DIR = FIXTURES / "cmx"
pytestmark = pytest.mark.skipif(not (CMX_DIR / "manifest.json").exists(), reason=f"no CMX fixture in {CMX_DIR}")

LOGITS_ATOL = LOGITS_RTOL = 1e-4  # manifest recommended_tolerance, fp32 re-implementation
FEATURE_ATOL = FEATURE_RTOL = 2e-3  # features are stored as float16
MARGIN = 1e-3  # argmax must agree wherever the reference's top1-top2 gap exceeds this


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((CMX_DIR / "manifest.json").read_text())


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    return dict(np.load(CMX_DIR / "io.npz"))


@pytest.fixture(scope="module")
def upstream_state() -> dict[str, np.ndarray]:
    return dict(np.load(CMX_DIR / "state_mit_b0_nc9_fp16.npz"))


@pytest.fixture(scope="module")
def model(upstream_state) -> nn.Module:
    torch.set_num_threads(1)
    net = cmx_mit_b0(num_classes=9).eval()
    report = load_checkpoint(net, upstream_state, strict=True)
    assert report.ok and len(report.loaded) == 525
    return net


@pytest.fixture(scope="module")
def outputs(model, io) -> dict[str, dict[str, np.ndarray]]:
    """One ``model(rgb, x)`` per fixture pair, with the fused features and 1/4-resolution logits caught by hooks."""
    caught: dict[str, object] = {}
    hooks = [model.backbone.register_forward_hook(lambda m, i, o: caught.__setitem__("features", o)),
             model.decode_head.register_forward_hook(lambda m, i, o: caught.__setitem__("logits_q", o))]
    result = {}
    try:
        for pair in "ab":
            with torch.no_grad():
                logits = model(torch.from_numpy(io[f"{pair}_rgb_in"]), torch.from_numpy(io[f"{pair}_x_in"]))
            result[pair] = {"logits": logits.numpy(), "logits_q": caught["logits_q"].numpy(),
                            **{f"c{i + 1}": f.numpy() for i, f in enumerate(caught["features"])}}
    finally:
        for hook in hooks:
            hook.remove()
    return result


def test_fixture_files_are_the_ones_the_manifest_describes(manifest):
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((CMX_DIR / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("pair", "ab")
def test_preprocessing_reproduces_upstream_inputs_bitwise(io, pair):
    rgb = io[f"{pair}_bgr_u8"][..., ::-1]  # callers give true R,G,B; the fixture stores what upstream fed (B,G,R)
    rgb_in, x_in = rgbx_inputs(rgb, io[f"{pair}_x_u8"])
    assert rgb_in.dtype == np.float32 and rgb_in.shape == io[f"{pair}_rgb_in"].shape
    assert np.array_equal(rgb_in, io[f"{pair}_rgb_in"])
    assert np.array_equal(x_in, io[f"{pair}_x_in"])
    assert np.array_equal(x_input(io[f"{pair}_x_u8"][..., None]), x_in)


def test_preprocessing_feeds_blue_first_to_released_weights(io):
    rgb = io["b_bgr_u8"][..., ::-1]
    swapped = rgb_input(np.ascontiguousarray(rgb[..., ::-1]))  # giving B,G,R by mistake changes the input
    assert not np.array_equal(swapped, io["b_rgb_in"])
    with pytest.raises(ValueError, match="differ in size"):
        rgbx_inputs(rgb, io["a_x_u8"])


@pytest.mark.parametrize("pair", "ab")
def test_logits_match_upstream(outputs, io, pair):
    ours, ref = outputs[pair]["logits_q"], io[f"{pair}_logits_q"]
    assert ours.shape == ref.shape
    err = np.abs(ours - ref)
    print(f"pair {pair}: logits_q max abs diff {err.max():.3g} (|ref| max {np.abs(ref).max():.3g})")
    assert np.all(err <= LOGITS_ATOL + LOGITS_RTOL * np.abs(ref)), f"max abs diff {err.max():.3g}"


@pytest.mark.parametrize("pair", "ab")
def test_argmax_matches_upstream_at_input_resolution(outputs, io, pair):
    logits = outputs[pair]["logits"]
    assert logits.shape[2:] == io[f"{pair}_pred"].shape and logits.shape[1] == 9
    pred = logits[0].argmax(0)
    agree = pred == io[f"{pair}_pred"]
    decisive = io[f"{pair}_pred_margin"].astype(np.float32) > MARGIN
    assert agree[decisive].all()
    assert agree.mean() >= 0.9999


def test_fused_features_match_upstream(outputs, io):
    for i in range(1, 5):
        ours, ref = outputs["b"][f"c{i}"], io[f"b_c{i}"].astype(np.float32)
        assert ours.shape == ref.shape, f"c{i}"
        np.testing.assert_allclose(ours, ref, rtol=FEATURE_RTOL, atol=FEATURE_ATOL, err_msg=f"c{i}")


def test_norm_epsilons_are_upstream_ones(model, manifest):
    listed = {}
    for kind, by_eps in manifest["norm_eps"].items():
        for eps, names in by_eps.items():
            for name in names:
                module = model.get_submodule(name)
                assert type(module).__name__ == kind and module.eps == float(eps), name
                listed[name] = module
    every_norm = {n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm | nn.BatchNorm2d)}
    assert every_norm == set(listed)


def test_model_is_the_released_nyu_mit_b2_structure():
    expected = {}
    for line in (CMX_DIR / "keys_mit_b2_nc40.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            expected[key] = (json.loads(shape), dtype)
    with torch.device("meta"):
        net = cmx_mit_b2(num_classes=40)
    ours = {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in net.state_dict().items()}
    assert sorted(set(expected) - set(ours)) == [] and sorted(set(ours) - set(expected)) == []
    assert ours == expected
    assert list(ours) == list(expected)  # same order as upstream's state_dict
    assert sum(v.numel() for v in net.state_dict().values() if v.is_floating_point()) == 66586544


def test_named_variants_build_on_meta():
    with torch.device("meta"):
        sizes = {name: sum(p.numel() for p in build_cmx(name, num_classes=40).parameters()) for name in CMX_VARIANTS}
    assert list(sizes) == [f"cmx_mit_b{i}" for i in range(6)]
    assert all(a < b for a, b in zip(list(sizes.values()), list(sizes.values())[1:], strict=False))
    with pytest.raises(ConfigError, match="cmx_mit_b9"):
        build_cmx("cmx_mit_b9")


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sb = b.state_dict()
    for key, value in a.state_dict().items():
        assert torch.equal(value, sb[key]), key


def test_upstream_wrapped_and_data_parallel_checkpoints_load(model, upstream_state):
    tensors = {k: torch.from_numpy(v) for k, v in upstream_state.items()}
    released = {"model": {f"module.{k}": v for k, v in tensors.items()}, "optimizer": {"state": {}}, "epoch": 40}
    for obj in (released, {"state_dict": tensors}, tensors):
        net = cmx_mit_b0(num_classes=9)
        assert load_checkpoint(net, obj).ok
        _assert_same_weights(net, model)
    converted = convert_upstream_checkpoint(released)
    assert set(converted) == set(upstream_state)
    assert converted["decode_head.linear_pred.weight"].dtype == torch.float32


def test_missing_unexpected_and_misshapen_keys_raise_config_error_naming_them(upstream_state):
    state = dict(upstream_state)
    del state["backbone.FFMs.2.cross.cross_attn.kv1.weight"]
    state["decode_head.conv_seg.weight"] = np.zeros((9, 512, 1, 1), np.float16)
    net = cmx_mit_b0(num_classes=40)  # 9-class weights into a 40-class head
    before = net.backbone.patch_embed1.proj.weight.clone()
    with pytest.raises(ConfigError) as err:
        load_checkpoint(net, state)
    text = str(err.value)
    for key in ("backbone.FFMs.2.cross.cross_attn.kv1.weight", "decode_head.conv_seg.weight",
                "decode_head.linear_pred.weight", "[9, 512, 1, 1]", "[40, 512, 1, 1]"):
        assert key in text
    assert torch.equal(net.backbone.patch_embed1.proj.weight, before)  # strict failure loads nothing

    report = load_checkpoint(net, state, strict=False)  # fine-tuning start: everything that fits
    assert report.missing == ("backbone.FFMs.2.cross.cross_attn.kv1.weight",)
    assert report.unexpected == ("decode_head.conv_seg.weight",)
    assert [k for k, _, _ in report.mismatched] == ["decode_head.linear_pred.weight", "decode_head.linear_pred.bias"]
    assert torch.equal(net.backbone.patch_embed1.proj.weight,
                       torch.from_numpy(state["backbone.patch_embed1.proj.weight"]).float())


def test_non_tensor_entries_are_reported():
    with pytest.raises(ConfigError, match="backbone.norm1.weight"):
        convert_upstream_checkpoint({"backbone.norm1.weight": "not a tensor"})


def test_single_branch_mix_transformer_stage_shapes():
    from ros_mmfusion.core.models.mit import MixTransformer

    with torch.no_grad():
        feats = MixTransformer("mit_b0").eval()(torch.zeros(1, 3, 66, 98))
    assert [tuple(f.shape[1:]) for f in feats] == [(32, 17, 25), (64, 9, 13), (160, 5, 7), (256, 3, 4)]


@pytest.mark.parametrize("pair", "ab")
def test_folded_inference_decoder_matches_upstream_logits(model, io, pair):
    """The decoder folded for deployment (ONNX, torch backend) computes upstream's logits too."""
    from ros_mmfusion.core.models.cmx import FoldedMLPDecoder, fold_for_inference

    folded = fold_for_inference(model)
    assert isinstance(folded.decode_head, FoldedMLPDecoder) and not isinstance(model.decode_head, FoldedMLPDecoder)
    with torch.no_grad():
        ours = folded.forward_head(folded.forward_features(torch.from_numpy(io[f"{pair}_rgb_in"]),
                                                           torch.from_numpy(io[f"{pair}_x_in"]))).numpy()
    ref = io[f"{pair}_logits_q"]
    err = np.abs(ours - ref)
    assert np.all(err <= LOGITS_ATOL + LOGITS_RTOL * np.abs(ref)), f"max abs diff {err.max():.3g}"
    assert np.array_equal(ours.argmax(1), ref.argmax(1))
