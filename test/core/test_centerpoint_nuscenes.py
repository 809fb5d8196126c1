"""CenterPoint-PointPillar for nuScenes (OpenPCDet ``cbgs_dyn_pp_centerpoint.yaml``, dynamic pillars) reproduces the
reference fixture stage by stage, converts an OpenPCDet checkpoint of that structure without editing, and runs on the
real nuScenes sample, its dense part also through ONNX Runtime.

The fixture (``shared/fixtures/centerpoint``) holds a synthetic nuScenes-like cloud (5 features, 10 sweeps' time lags,
hand-placed range-edge points), every intermediate tensor of OpenPCDet's forward pass up to the NMS input, computed
with float16-rounded *fixture* weights (random and calibrated, not trained). Tolerances are the manifest's
``recommended_tolerance``. Without the fixture or the sample the tests skip, naming what is missing; under ``CI=true``
they fail instead.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_mmfusion.core.detection3d.sweeps import SweepAccumulator
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.models.centerpoint import (
    VARIANTS,
    DynamicPillarsConfig,
    build_model,
    convert_upstream_checkpoint,
    decoder,
    export_dense,
    load_checkpoint,
    scatter_max,
    scatter_mean,
)
from ros_mmfusion.core.models.pointpillars import group_head_outputs
from test.fixtures import FIXTURES

FIXTURE = FIXTURES / "centerpoint"
REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real"
NUSCENES = REAL / "nuscenes_sample"
VARIANT = "centerpoint_pillar_nuscenes"

FP16_TOL = {"atol": 2e-3, "rtol": 2e-3}
MAP_TOL = {"atol": 1e-3, "rtol": 1e-3}


def require(path: Path, what: str) -> Path:
    """``path`` if it exists; otherwise skip naming it, or fail when ``CI=true`` (CI must have the fixtures)."""
    if path.exists():
        return path
    reason = f"{what} not available: {path} is absent"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true requires it)")
    pytest.skip(reason)


def assert_close(got: np.ndarray, expected: np.ndarray, atol: float, rtol: float, what: str = "") -> None:
    """``|got - expected| <= atol + rtol * |expected|`` everywhere (a fast ``assert_allclose`` for large maps)."""
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    excess = np.abs(got - expected) - (atol + rtol * np.abs(expected))
    assert excess.max() <= 0, f"{what}: {(excess > 0).sum()} values off, worst by {excess.max():.3g} beyond tolerance"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((require(FIXTURE / "manifest.json", "centerpoint fixture")).read_text())


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    with np.load(require(FIXTURE / "io.npz", "centerpoint fixture")) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    with np.load(require(FIXTURE / "state_centerpoint_pillar_nuscenes_fp16.npz", "centerpoint fixture")) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def model(weights):
    torch.set_num_threads(1)
    net = build_model(VARIANT).eval()
    report = load_checkpoint(net, {"epoch": 20, "it": 0, "model_state": weights, "optimizer_state": {}}, strict=True)
    assert report.ok and len(report.loaded) == 458
    return net


@pytest.fixture(scope="module")
def stages(model, io) -> dict[str, np.ndarray]:
    """One forward pass through ``CenterPointPillar.forward``, every stage's output captured by hooks."""
    captured: dict[str, object] = {}

    def keep(name, use_input=False):
        return lambda _m, inputs, out: captured.__setitem__(name, inputs[0] if use_input else out)

    hooks = [model.vfe.pfn_layers[0].register_forward_hook(keep("pfn0_input", use_input=True)),
             model.vfe.pfn_layers[0].register_forward_hook(keep("pfn0_output")),
             model.vfe.register_forward_hook(keep("pillar_features")),
             model.map_to_bev.register_forward_hook(keep("spatial_features")),
             model.backbone_2d.register_forward_hook(keep("spatial_features_2d")),
             model.dense_head.shared_conv.register_forward_hook(keep("shared_conv_out"))]
    with torch.no_grad():
        outputs = model(torch.from_numpy(io["points"]))
    for hook in hooks:
        hook.remove()
    return {**{k: v.numpy() for k, v in captured.items()},
            **{n: o.numpy() for n, o in zip(model.output_names, outputs, strict=True)}}


# ------------------------------------------------------------------------------------------- configuration, keys


def test_variant_equals_the_fixture_openpcdet_config(manifest):
    config = DynamicPillarsConfig.from_openpcdet(manifest["constructor_config"], name=VARIANT)
    assert config == VARIANTS[VARIANT]
    derived = manifest["derived"]
    assert list(config.grid.grid_size) == derived["grid_size_xyz"]
    assert [config.num_bev_features, *config.grid.bev_shape] == derived["bev_canvas"]
    assert config.num_input_features == derived["pfn_in_features"] == 11
    assert [[config.class_names.index(n) for n in group] for group in config.head.class_names_each_head] == \
        [h["global_class_ids_0based"] for h in derived["heads"]]
    static = dict(manifest["constructor_config"], MODEL=dict(manifest["constructor_config"]["MODEL"],
                                                              VFE={"NAME": "PillarVFE", "NUM_FILTERS": [64]}))
    with pytest.raises(ConfigError, match="MODEL.VFE.NAME is 'PillarVFE'"):
        DynamicPillarsConfig.from_openpcdet(static)


def test_state_dict_keys_and_shapes_match_the_checkpoint_key_list(model):
    expected = []
    for line in require(FIXTURE / "keys_centerpoint_pillar_nuscenes.txt", "centerpoint fixture").read_text() \
            .splitlines():
        if line and not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            expected.append((key, json.loads(shape), dtype))
    got = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]
    assert got == expected


def test_openpcdet_checkpoint_converts_without_editing(weights, tmp_path, capsys):
    from ros_mmfusion.cli.main import main

    before = {k: v.copy() for k, v in weights.items()}
    upstream = tmp_path / "cbgs_pp_centerpoint_nds6070.pth"  # OpenPCDet's checkpoint_state layout
    torch.save({"epoch": 20, "it": 0, "model_state": {k: torch.from_numpy(v) for k, v in weights.items()},
                "optimizer_state": {}, "version": "pcdet+0.6.0"}, upstream)
    out = tmp_path / "centerpoint.pt"
    assert main(["convert-checkpoint", "--model", "centerpoint", "--in", str(upstream), "--out", str(out)]) == 0
    assert f"centerpoint {VARIANT} (loaded=458)" in capsys.readouterr().out
    converted = torch.load(out, weights_only=True)
    assert list(converted) == list(weights)
    for key, value in weights.items():
        expected = torch.from_numpy(value.astype(np.float32) if value.dtype == np.float16 else value)
        assert converted[key].dtype == expected.dtype and torch.equal(converted[key], expected), key
    assert all(np.array_equal(before[k], weights[k]) for k in weights)  # the conversion is pure
    state = convert_upstream_checkpoint({f"module.{k}": v for k, v in weights.items()})
    assert list(state) == list(weights) and state["vfe.pfn_layers.0.linear.weight"].dtype == torch.float32
    broken = dict(weights, **{"vfe.pfn_layers.0.linear.weight": np.zeros((32, 10), np.float16)})
    with pytest.raises(ConfigError, match=r"vfe.pfn_layers.0.linear.weight \(checkpoint \[32, 10\], model \[32, 11\]"):
        load_checkpoint(build_model(VARIANT), {"model_state": broken})


# ------------------------------------------------------------------------------------------------ stage parity


def test_dynamic_pillars_reproduce_the_reference_including_the_range_edge(model, io, manifest):
    pillars = model.pillars(io["points"])
    checks = manifest["self_checks"]
    assert pillars.num_pillars == checks["num_pillars"]
    assert len(pillars.points) == checks["num_points_after_vfe_grid_mask"]
    np.testing.assert_array_equal(pillars.coords.numpy(), io["voxel_coords"])
    np.testing.assert_array_equal(pillars.pillar_index.numpy(), io["point_pillar_index"])
    points = io["points"]
    on_far_edge = (points[:, 0] == np.float32(51.2)) | (points[:, 1] == np.float32(51.2))
    assert on_far_edge.sum() == 2  # kept by the dataset's inclusive mask, dropped by the VFE's grid mask
    kept = pillars.points.numpy()
    assert not ((kept[:, 0] == np.float32(51.2)) | (kept[:, 1] == np.float32(51.2))).any()
    assert (kept[:, 2] < -5).any()  # z is never range-checked


def test_pillar_feature_net_matches_the_reference(stages, io):
    np.testing.assert_allclose(stages["pfn0_input"], io["pfn0_input"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(stages["pfn0_output"], io["pfn0_output"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stages["pillar_features"], io["pillar_features"], rtol=1e-4, atol=1e-4)


def test_bev_canvas_backbone_and_head_maps_match_the_reference(stages, io, model):
    for name, got in (("spatial_features", stages["spatial_features"]), ("shared_conv_out", stages["shared_conv_out"]),
                      ("spatial_features_2d_crop", stages["spatial_features_2d"][:, :, 40:88, 44:92])):
        assert_close(got, io[name].astype(np.float32), **FP16_TOL, what=name)
    for name in model.output_names:
        key, _, head = name.rpartition("_")
        assert_close(stages[name], io[f"head{head}_{key}"], **MAP_TOL, what=name)


def test_decoded_candidates_and_nms_input_match_the_reference(stages, io, model):
    dec = decoder(model.config)
    heads = group_head_outputs(model.output_names, [stages[n] for n in model.output_names])
    labels_all, offset = [], 0
    for h, maps in enumerate(heads):
        boxes, scores, labels, cells, keep = dec.candidates(maps, h)
        ref_labels = dec.label_map(h)[io[f"head{h}_topk_classes"]]
        row = {(int(c), int(lab)): i
               for i, (c, lab) in enumerate(zip(io[f"head{h}_topk_inds"], ref_labels, strict=True))}
        match = np.array([row[(int(c), int(lab))] for c, lab in zip(cells, labels, strict=True)])  # same candidates
        np.testing.assert_allclose(scores, io[f"head{h}_topk_scores"], rtol=0, atol=1e-4)
        ref = io[f"head{h}_topk_boxes"][match]
        heading = (boxes[:, 6] - ref[:, 6] + np.pi) % (2 * np.pi) - np.pi
        np.testing.assert_allclose(np.delete(boxes, 6, axis=1), np.delete(ref, 6, axis=1), rtol=0, atol=2e-3)
        assert np.abs(heading).max() < 2e-3
        np.testing.assert_array_equal(keep, io[f"head{h}_topk_keep"][match])
        kept_boxes, kept_scores, kept_labels = dec.decode(maps, h)
        # the same NMS input as a set: candidates whose scores tie within float noise may come in either order (the
        # order of a top-k over equal scores differs between CPUs: AVX2 vs AVX-512 kernels)
        ref_boxes, ref_scores = io[f"head{h}_nms_input_boxes7"], io[f"head{h}_nms_input_scores"]
        assert kept_boxes.shape[0] == ref_boxes.shape[0]
        ref_labels_h = io["prenms_labels"][offset:offset + len(ref_boxes)]
        gap = np.abs(kept_boxes[:, None, :7] - ref_boxes[None, :, :7]).max(axis=2)
        gap[kept_labels[:, None] != ref_labels_h[None, :]] = np.inf  # one cell may hold a box of each class
        pair = gap.argmin(axis=1)
        assert len(set(pair.tolist())) == len(pair), "each kept candidate matches its own reference row"
        np.testing.assert_allclose(kept_boxes[:, :7], ref_boxes[pair], rtol=0, atol=2e-3)
        np.testing.assert_allclose(kept_scores, ref_scores[pair], rtol=0, atol=1e-4)
        labels_all.append(kept_labels)
        offset += len(ref_boxes)
    assert offset == len(io["prenms_labels"])
    np.testing.assert_array_equal(np.sort(np.concatenate(labels_all)), np.sort(io["prenms_labels"]))


def test_scatter_mean_and_max_equal_a_per_pillar_loop():
    gen = np.random.default_rng(3)
    values = torch.from_numpy(gen.normal(size=(200, 4)).astype(np.float32))
    index = torch.from_numpy(gen.integers(0, 30, 200))
    mean, top = scatter_mean(values, index, 32), scatter_max(values, index, 32)
    for p in range(32):
        rows = values.numpy()[index.numpy() == p]
        if len(rows):
            np.testing.assert_allclose(mean[p].numpy(), rows.mean(0), rtol=1e-6, atol=1e-6)
            np.testing.assert_array_equal(top[p].numpy(), rows.max(0))  # negative maxima too: no zero floor
        else:
            assert not mean[p].any() and not top[p].any()


def test_points_need_five_features_and_non_finite_or_no_points_give_an_empty_canvas(model):
    with pytest.raises(ConfigError, match="takes 5 features per point, got 4"):
        model.pillars(np.zeros((3, 4), np.float32))
    bad = np.array([[np.nan, 0, 0, 0, 0], [0, np.inf, 0, 0, 0], [1, 1, np.nan, 0, 0], [100, 0, 0, 1, 0],
                    [1, 1, 0, 5, 0]], np.float32)
    for points in (np.zeros((0, 5), np.float32), bad):
        pillars = model.pillars(points)
        with torch.no_grad():
            canvas = model.map_to_bev(model.encode(pillars), pillars.coords)
        assert canvas.shape == (1, 64, 512, 512) and torch.isfinite(canvas).all()
        assert pillars.num_pillars == (1 if len(points) else 0) and (canvas.abs().sum(dim=1) > 0).sum() <= 1


# -------------------------------------------------------------------------------------------- the nuScenes sample


@pytest.fixture(scope="module")
def nuscenes_points() -> np.ndarray:
    """The sample's LIDAR_TOP sweep (x, y, z, intensity, ring) as the model's (N, 5) input: one sweep, lag 0."""
    folder = require(NUSCENES, "nuScenes sample")
    (path,) = folder.glob("*__LIDAR_TOP__*.pcd.bin")
    raw = np.fromfile(path, dtype=np.float32).reshape(-1, 5)
    stamp = int(path.name.split("__")[-1].split(".")[0]) * 1e-6
    return SweepAccumulator(max_sweeps=1).push(stamp, np.eye(4), raw[:, :4])


@pytest.fixture(scope="module")
def nuscenes_run(model, nuscenes_points):
    with torch.no_grad():
        pillars = model.pillars(nuscenes_points)
        canvas = model.map_to_bev(model.encode(pillars), pillars.coords)
        maps = model.dense_head(model.backbone_2d(canvas))
    heads = group_head_outputs(model.output_names, [m.numpy() for m in maps])
    return pillars, canvas, decoder(model.config)(heads)


def test_the_nuscenes_sample_runs_end_to_end(nuscenes_points, nuscenes_run):
    assert nuscenes_points.shape == (34688, 5) and not nuscenes_points[:, 4].any()
    pillars, canvas, detections = nuscenes_run
    # the pillars are the occupied 0.2 m cells of the 102.4 m square, counted independently
    xy = nuscenes_points[:, :2]
    cells = np.floor((xy - np.float32(-51.2)) / np.float32(0.2)).astype(np.int64)
    inside = ((cells >= 0) & (cells < 512)).all(axis=1)
    assert pillars.num_pillars == len(np.unique(cells[inside], axis=0)) and len(pillars.points) == inside.sum()
    assert canvas.shape == (1, 64, 512, 512)
    assert (canvas.abs().sum(dim=1) > 0).sum() <= pillars.num_pillars
    # boxes x, y, z, dx, dy, dz, yaw, vx, vy; at most 83 per head after NMS; scores above 0.1, descending
    n = len(detections)
    assert detections.boxes.shape == (n, 9) and 0 < n <= 6 * 83
    assert np.isfinite(detections.boxes).all() and (detections.boxes[:, 3:6] > 0).all()
    assert np.all(np.abs(detections.boxes[:, :2]) <= 61.2)
    assert set(np.unique(detections.labels)) <= set(range(1, 11))
    assert (detections.scores > 0.1).all() and (np.diff(detections.scores) <= 0).all()


def test_dense_part_on_onnx_runtime_matches_torch(model, nuscenes_run, tmp_path):
    """The exported dense part (BEV canvas -> 36 head maps) on ONNX Runtime agrees with torch, on a 128 x 128 crop
    of the sample's canvas around the car (the graph is the same at any canvas size; full size is benchmarked)."""
    import onnxruntime as ort

    _, canvas, _ = nuscenes_run
    crop = canvas[:, :, 192:320, 192:320].contiguous()
    assert (crop.abs().sum(dim=1) > 0).sum() > 1000  # a crop with real data in it
    path = export_dense(model, tmp_path / "dense.onnx", bev_shape=(128, 128))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"spatial_features": crop.numpy()})
    with torch.no_grad():
        expected = model.dense()(crop)
    assert [o.name for o in session.get_outputs()] == list(model.output_names)
    for name, a, b in zip(model.output_names, got, expected, strict=True):
        assert a.shape == (1, b.shape[1], 32, 32)
        assert_close(a, b.numpy(), **MAP_TOL, what=name)
