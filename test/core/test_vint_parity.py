"""ViNT parity with upstream: preprocessing, every intermediate of the reduced fixture model, the released key
structure, and the checkpoint converter (including the released pickled-module format, read without upstream code)."""
from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.models.efficientnet import StaticSameConv2d, efficientnet, swish
from ros_mmfusion.core.models.vint import (
    ViNTConfig,
    convert_upstream_checkpoint,
    create_vint,
    load_checkpoint,
    load_released_checkpoint,
    waypoints_to_metric,
)
from ros_mmfusion.core.navigation.preprocess import center_crop_to_aspect, preprocess_context, preprocess_frame
from test.fixtures import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "vint"
pytestmark = [pytest.mark.skipif(not (FIXTURES / "manifest.json").exists(), reason="ViNT fixtures not available"),
              pytest.mark.usefixtures("torch_single_thread")]

# fixture array suffix -> ViNT.forward_intermediates name
INTERMEDIATES = {"obs_feat": "obs_features", "goal_feat": "goal_features", "tokens": "tokens",
                 "final_repr": "final_repr", "action_raw": "action_raw", "dist": "dist", "action": "action"}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((FIXTURES / "manifest.json").read_text())


@pytest.fixture(scope="module")
def fixture_state() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "state_vint_reduced_fp16.npz") as npz:
        return dict(npz)


@pytest.fixture(scope="module")
def reduced(fixture_state):
    model = create_vint("vint_reduced")
    load_checkpoint(model, fixture_state, allow_missing=model.unused_state_keys())
    return model


def released_key_rows() -> list[list[str]]:
    lines = (FIXTURES / "keys_vint_full_default.txt").read_text().splitlines()
    return [line.split("\t") for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("image", ["160x120", "640x360"])
@pytest.mark.parametrize("crop", [False, True])
def test_preprocessing_reproduces_deployment_transform(image, crop):
    with np.load(FIXTURES / "preproc_io.npz") as npz:
        raw, expected = npz[f"pre_img_{image}_u8"], npz[f"pre_x_{image}_{'crop43' if crop else 'nocrop'}"]
    got = preprocess_frame(raw, center_crop=crop)
    assert got.dtype == np.float32 and got.shape == expected.shape == (3, 64, 85)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_context_is_stacked_oldest_first_and_crop_follows_torchvision():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    stacked = preprocess_context(frames)
    assert stacked.shape == (1, 9, 64, 85)
    np.testing.assert_array_equal(stacked[0, 6:9], preprocess_frame(frames[-1]))
    wide = np.arange(360 * 640 * 3, dtype=np.uint32).reshape(360, 640, 3).astype(np.uint8)
    np.testing.assert_array_equal(center_crop_to_aspect(wide), wide[:, 80:560])
    tall = np.ones((100, 60, 3), np.uint8)
    assert center_crop_to_aspect(tall).shape == (45, 60, 3)
    squarish = np.ones((100, 120, 3), np.uint8)  # 6:5 is narrower than 4:3: torchvision zero-pads the width
    cropped = center_crop_to_aspect(squarish)
    assert cropped.shape == (100, 133, 3) and cropped[:, 0].max() == 0 and cropped[:, 7].min() == 1


def test_efficientnet_padding_and_feature_maps_match_upstream_at_64x85(manifest):
    net = efficientnet("efficientnet-b0").eval()
    pads = {name: list(m.static_padding) for name, m in net.named_modules() if isinstance(m, StaticSameConv2d)}
    assert {k: pads[k] for k in manifest["static_padding"]} == manifest["static_padding"]
    sizes = {}
    with torch.no_grad():
        x = swish(net._bn0(net._conv_stem(torch.zeros(1, 3, 64, 85))))
        sizes["_conv_stem"] = list(x.shape[1:])
        for i, block in enumerate(net._blocks):
            x = block(x)
            sizes[f"_blocks.{i}"] = list(x.shape[1:])
        sizes["_conv_head"] = list(net._conv_head(x).shape[1:])
    assert sizes == manifest["feature_map_sizes_64x85"]
    assert all(m.eps == 1e-3 and m.momentum == 0.01 for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_fixture_weights_load_strictly_except_the_unused_keys(manifest, fixture_state):
    model = create_vint("vint_reduced")
    assert model.config == ViNTConfig.from_mapping(manifest["constructor_config"])
    report = load_checkpoint(model, fixture_state, allow_missing=model.unused_state_keys())
    assert sorted(report.missing) == sorted(manifest["weights"]["dropped_keys_unused_in_forward"])
    assert report.unexpected == ()
    widened = torch.as_tensor(fixture_state["decoder.output_layers.0.weight"]).float()
    assert model.decoder.output_layers[0].weight.dtype == torch.float32
    assert torch.equal(model.decoder.output_layers[0].weight, widened)


def test_positional_encoding_is_the_upstream_sinusoid(fixture_state):
    table = create_vint("vint_reduced").decoder.positional_encoding.pos_enc
    stored = torch.as_tensor(fixture_state["decoder.positional_encoding.pos_enc"])
    assert torch.equal(table.half(), stored)


@pytest.mark.parametrize("case", ["b3", "topo"])
def test_reduced_model_matches_every_upstream_intermediate(reduced, case):
    with np.load(FIXTURES / "io.npz") as io:
        arrays = dict(io)
    if case == "b3":
        obs, goal = arrays["b3_obs"], arrays["b3_goal"]
    else:  # the deployment repeats one context for every candidate topomap node
        obs, goal = np.repeat(arrays["topo_obs_ctx"], len(arrays["topo_goal"]), axis=0), arrays["topo_goal"]
    with torch.no_grad():
        out = reduced.forward_intermediates(torch.from_numpy(obs.astype(np.float32)),
                                            torch.from_numpy(goal.astype(np.float32)))
        dist, action = reduced(torch.from_numpy(obs.astype(np.float32)), torch.from_numpy(goal.astype(np.float32)))
    for fixture_name, name in INTERMEDIATES.items():
        expected = arrays[f"{case}_{fixture_name}"]
        assert out[name].shape == expected.shape, name
        np.testing.assert_allclose(out[name].numpy(), expected, rtol=1e-4, atol=1e-4, err_msg=name)
    assert torch.equal(dist, out["dist"]) and torch.equal(action, out["action"])
    norms = torch.linalg.vector_norm(action[..., 2:], dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_vint_default_has_the_released_checkpoint_key_structure():
    rows = released_key_rows()
    model = create_vint("vint_default")
    got = [(k, str(list(v.shape)), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    assert got == [(k, shape, dtype) for k, shape, dtype, _ in rows]
    assert sorted(model.unused_state_keys()) == sorted(k for k, *_, used in rows if used == "unused")


def test_converter_accepts_bare_wrapped_and_prefixed_state_dicts():
    tensor, array = torch.arange(3.0), np.ones((2, 2), np.float16)
    bare = {"a.weight": tensor, "b": array}
    for obj in (bare, {"model": bare}, {"state_dict": bare, "epoch": 3},
                {"module.a.weight": tensor, "module.b": array}, {"model": {"_orig_mod.module.a.weight": tensor,
                                                                           "module._orig_mod.b": array}}):
        state = convert_upstream_checkpoint(obj)
        assert list(state) == ["a.weight", "b"]
        assert state["a.weight"] is tensor and state["b"].dtype == torch.float16
    module = nn.DataParallel(nn.Sequential(nn.Linear(2, 2)))
    assert list(convert_upstream_checkpoint({"model": module})) == ["0.weight", "0.bias"]
    with pytest.raises(ConfigError, match="epoch"):
        convert_upstream_checkpoint({"epoch": 3})


def _fake_upstream_checkpoint(path: Path, marker: Path) -> dict[str, torch.Tensor]:
    """Save an object shaped like the released vint.pth, with classes from stand-in upstream modules.

    The fake modules exist in sys.modules only while pickling. Returns the wrapped module's state_dict.
    """
    packages = ["vint_train", "vint_train.models", "vint_train.models.vint", "vint_train.models.vint.vint",
                "vint_train.models.vint.self_attention", "efficientnet_pytorch", "efficientnet_pytorch.model",
                "efficientnet_pytorch.utils", "warmup_scheduler", "warmup_scheduler.scheduler"]
    fake = {name: types.ModuleType(name) for name in packages}

    class Conv2dStaticSamePadding(nn.Conv2d):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__(cin, cout, 3, stride=2, bias=False)
            self.static_padding = nn.ZeroPad2d((0, 1, 0, 1))

    class MemoryEfficientSwish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    class EfficientNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = Conv2dStaticSamePadding(6, 4)
            self._bn0 = nn.BatchNorm2d(4, eps=1e-3, momentum=0.01)
            self._swish = MemoryEfficientSwish()
            self._fc = nn.Linear(4, 3)

    class PositionalEncoding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("pos_enc", torch.randn(1, 7, 4))

    class MultiLayerDecoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.positional_encoding = PositionalEncoding()
            self.sa_layer = nn.TransformerEncoderLayer(4, 2, 8, batch_first=True, norm_first=True)
            self.sa_decoder = nn.TransformerEncoder(self.sa_layer, 1, enable_nested_tensor=False)

    class ViNT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.goal_encoder = EfficientNet()
            self.compress_goal_enc = nn.Linear(4, 4)
            self.decoder = MultiLayerDecoder()
            self.register_buffer("scratch", torch.zeros(2), persistent=False)

    class GradualWarmupScheduler:
        def __init__(self, optimizer) -> None:
            self.optimizer, self.multiplier = optimizer, 1.0

    class Trap:  # a payload that would create ``marker`` if the loader ran foreign callables
        def __reduce__(self):
            return os.makedirs, (str(marker),)

    utils, attention = "efficientnet_pytorch.utils", "vint_train.models.vint.self_attention"
    placement = {Conv2dStaticSamePadding: utils, MemoryEfficientSwish: utils, PositionalEncoding: attention,
                 MultiLayerDecoder: attention, EfficientNet: "efficientnet_pytorch.model",
                 ViNT: "vint_train.models.vint.vint", GradualWarmupScheduler: "warmup_scheduler.scheduler"}
    for cls, module in placement.items():
        cls.__module__, cls.__qualname__ = module, cls.__name__
        setattr(fake[module], cls.__name__, cls)
    added = [name for name in packages if name not in sys.modules]
    sys.modules.update({name: fake[name] for name in added})
    try:
        torch.manual_seed(0)
        model = ViNT()
        optimizer = torch.optim.AdamW(model.parameters())
        torch.save({"model": nn.DataParallel(model), "epoch": 12, "optimizer": optimizer,
                    "scheduler": GradualWarmupScheduler(optimizer), "avg_total_test_loss": np.float64(0.25),
                    "trap": Trap()}, path)
    finally:
        for name in added:
            sys.modules.pop(name, None)
    return model.state_dict()


def test_released_pickle_format_loads_without_upstream_packages(tmp_path):
    marker = tmp_path / "payload_ran"
    expected = _fake_upstream_checkpoint(tmp_path / "vint.pth", marker)
    assert "vint_train" not in sys.modules and "efficientnet_pytorch" not in sys.modules
    state = load_released_checkpoint(tmp_path / "vint.pth")
    assert list(state) == list(expected)  # no "module." prefix, no non-persistent buffer
    assert "scratch" not in state and "decoder.sa_layer.linear1.weight" in state
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert not marker.exists()
    assert "vint_train" not in sys.modules and "efficientnet_pytorch" not in sys.modules


def test_released_pickle_of_a_full_model_round_trips(reduced, tmp_path):
    torch.save({"model": nn.DataParallel(reduced), "epoch": 1}, tmp_path / "vint.pth")
    state = load_released_checkpoint(tmp_path / "vint.pth")
    expected = reduced.state_dict()
    assert list(state) == list(expected)
    assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_wrong_key_raises_config_error_naming_it(fixture_state):
    model = create_vint("vint_reduced")
    renamed = dict(fixture_state)
    renamed["compress_obs_enc.weights"] = renamed.pop("compress_obs_enc.weight")
    with pytest.raises(ConfigError) as err:
        load_checkpoint(model, renamed, allow_missing=model.unused_state_keys())
    assert "missing keys (1): compress_obs_enc.weight" in str(err.value)
    assert "unexpected keys (1): compress_obs_enc.weights" in str(err.value)
    with pytest.raises(ConfigError, match=r"obs_encoder\._fc\.weight"):  # strict without allow_missing
        load_checkpoint(model, fixture_state)


def test_reduced_weights_do_not_fit_the_default_variant(fixture_state):
    with pytest.raises(ConfigError, match=r"shape mismatches \(32\): compress_obs_enc\.weight "
                                          r"\(checkpoint \[256, 1280\], model \[512, 1280\]\)"):
        load_checkpoint(create_vint("vint_default"), fixture_state)


def test_waypoints_scale_to_metres_by_the_waypoint_spacing():
    waypoints = np.array([[1.0, 2.0, 0.6, 0.8], [3.0, -1.0, 1.0, 0.0]], np.float32)
    metric = waypoints_to_metric(waypoints, 0.2 / 4)
    np.testing.assert_allclose(metric[:, :2], waypoints[:, :2] * 0.05)
    np.testing.assert_array_equal(metric[:, 2:], waypoints[:, 2:])
    torch.testing.assert_close(waypoints_to_metric(torch.from_numpy(waypoints), 0.05), torch.from_numpy(metric))
