"""PointPillars (OpenPCDet KITTI ``pointpillar``) reproduces the reference fixture stage by stage.

The fixture (``shared/fixtures/pointpillars``) holds a synthetic KITTI-like cloud, the reference voxelizer's pillars,
every intermediate tensor of OpenPCDet's forward pass and the 200 best decoded anchors before NMS, computed with
float16-rounded weights widened to float32. Tolerances are the manifest's ``recommended_tolerance``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ros_mmfusion.core.detection3d.anchors import anchors_per_location, generate_anchors
from ros_mmfusion.core.detection3d.pillarize import (
    PillarGrid,
    crop_to_range,
    decorate_pillars,
    pillarize,
)
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.models.pointpillars import (
    VARIANTS,
    PointPillarsConfig,
    build_model,
    convert_upstream_checkpoint,
    decoder_for,
    load_checkpoint,
    pointpillars_kitti,
    scatter_to_bev,
)
from test.fixtures import FIXTURES as ALL_FIXTURES

FIXTURE = ALL_FIXTURES / "pointpillars"
pytestmark = pytest.mark.skipif(not (FIXTURE / "io.npz").is_file(), reason="pointpillars fixture not available")

FP16_TOL = {"atol": 2e-3, "rtol": 2e-3}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((FIXTURE / "manifest.json").read_text())


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "io.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "state_pointpillars_kitti_fp16.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def model(weights):
    torch.set_num_threads(1)
    net = pointpillars_kitti().eval()
    report = load_checkpoint(net, {"epoch": 80, "model_state": weights}, strict=True)
    assert report.ok and len(report.loaded) == 127
    return net


@pytest.fixture(scope="module")
def pillars(io):
    grid = VARIANTS["pointpillars_kitti"].grid
    return pillarize(crop_to_range(io["points"], grid.point_cloud_range), grid)


@pytest.fixture(scope="module")
def forward(model, pillars):
    """One full forward pass through ``PointPillars.forward``, with every stage's output captured by hooks."""
    grid = model.config.grid
    captured: dict[str, torch.Tensor] = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda _m, _i, out, name=name: captured.__setitem__(name, out)) for name in ("vfe", "map_to_bev",
                                                                                    "backbone_2d")]
    features = torch.from_numpy(decorate_pillars(pillars, grid))
    with torch.no_grad():
        outputs = model(features, torch.from_numpy(pillars.coords))
    for hook in hooks:
        hook.remove()
    return {"features": features.numpy(), **{k: v.numpy() for k, v in captured.items()},
            **{n: o.numpy() for n, o in zip(model.output_names, outputs, strict=True)}}


def test_variant_equals_the_fixture_openpcdet_config(manifest):
    config = PointPillarsConfig.from_openpcdet(manifest["constructor_config"], name="pointpillars_kitti")
    assert config == VARIANTS["pointpillars_kitti"]
    derived = manifest["derived"]
    assert list(config.grid.grid_size) == derived["grid_size_xyz"]
    assert [config.num_bev_features, *config.grid.bev_shape] == derived["bev_canvas"]
    assert anchors_per_location(config.head.anchor_generator) == derived["anchors_per_location"]
    anchors = generate_anchors(config.head.anchor_generator, config.point_cloud_range, config.grid.grid_size)
    assert list(anchors.shape[:2]) == derived["head_map"]
    assert anchors.reshape(-1, 7).shape[0] == derived["num_anchors"]


def test_state_dict_keys_and_shapes_match_the_checkpoint_key_list(model):
    expected = []
    for line in (FIXTURE / "keys_pointpillars_kitti.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            expected.append((key, json.loads(shape), dtype))
    got = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]
    assert got == expected


def test_converter_is_pure_and_widens_half_precision(weights):
    before = {k: v.copy() for k, v in weights.items()}
    state = convert_upstream_checkpoint({"model_state": {f"module.{k}": v for k, v in weights.items()}})
    assert list(state) == list(weights)
    assert state["vfe.pfn_layers.0.linear.weight"].dtype == torch.float32
    assert state["global_step"].dtype == torch.int64
    assert all(np.array_equal(before[k], weights[k]) for k in weights)


def test_strict_load_reports_missing_unexpected_and_misshaped_keys(weights):
    broken = dict(weights)
    del broken["dense_head.conv_cls.bias"]
    broken["dense_head.extra.weight"] = np.zeros(3, np.float16)
    broken["dense_head.conv_box.weight"] = np.zeros((7, 384, 1, 1), np.float16)
    net = build_model("pointpillars_kitti")
    with pytest.raises(ConfigError) as err:
        load_checkpoint(net, {"model_state": broken})
    text = str(err.value)
    assert "dense_head.conv_cls.bias" in text and "dense_head.extra.weight" in text
    assert "dense_head.conv_box.weight (checkpoint [7, 384, 1, 1], model [42, 384, 1, 1])" in text
    report = load_checkpoint(net, {"model_state": broken}, strict=False)
    assert report.missing == ("dense_head.conv_cls.bias",)
    assert report.unexpected == ("dense_head.extra.weight",)
    assert [k for k, _, _ in report.mismatched] == ["dense_head.conv_box.weight"]
    assert len(report.loaded) == 125


def test_pillarize_reproduces_the_reference_voxelizer(io, pillars, manifest):
    # The reference numbers pillars by first appearance, as pillarize does, so arrays compare element by element.
    np.testing.assert_array_equal(pillars.voxels, io["voxels"])
    np.testing.assert_array_equal(pillars.coords, io["voxel_coords"])
    np.testing.assert_array_equal(pillars.num_points, io["voxel_num_points"])
    checks = manifest["self_checks"]
    assert len(pillars) == checks["num_pillars"]
    assert int(pillars.num_points.sum()) == checks["num_points_in_voxels"]
    assert int((pillars.num_points == 32).sum()) == checks["pillars_truncated_at_32_points"]


def test_decorated_points_match_the_pillar_feature_net_input(io, forward):
    np.testing.assert_allclose(forward["features"], io["pfn_input"], rtol=0, atol=1e-5)


def test_pillar_features_match(io, forward):
    np.testing.assert_allclose(forward["vfe"], io["pillar_features"], rtol=1e-4, atol=1e-4)


def test_bev_canvas_and_backbone_match(io, forward, pillars):
    np.testing.assert_allclose(forward["map_to_bev"], io["spatial_features"].astype(np.float32), **FP16_TOL)
    numpy_canvas = scatter_to_bev(forward["vfe"], pillars.coords, VARIANTS["pointpillars_kitti"].grid.bev_shape)
    np.testing.assert_array_equal(numpy_canvas, forward["map_to_bev"])
    crop = forward["backbone_2d"][:, :, 103:151, 12:60]
    np.testing.assert_allclose(crop, io["spatial_features_2d_crop"].astype(np.float32), **FP16_TOL)


@pytest.mark.parametrize("name", ["cls_preds", "box_preds", "dir_cls_preds"])
def test_head_maps_match(io, forward, name):
    assert forward[name].shape == io[name].shape
    np.testing.assert_allclose(forward[name], io[name].astype(np.float32), **FP16_TOL)


def test_anchor_grid_matches(io, model):
    decoder = decoder_for(model.config)
    anchors = decoder.anchors()
    np.testing.assert_allclose(anchors[0, :, 0, 0], io["anchor_x_centers"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(anchors[:, 0, 0, 1], io["anchor_y_centers"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(anchors.reshape(-1, 7)[io["top_anchor_idx"]], io["top_anchors"], rtol=0, atol=1e-5)


def test_decoded_boxes_before_nms_match(io, model, forward, manifest):
    boxes, scores, labels = decoder_for(model.config).candidates(
        forward["cls_preds"], forward["box_preds"], forward["dir_cls_preds"])
    top = np.argsort(-scores, kind="stable")[:200]
    np.testing.assert_array_equal(top, io["top_anchor_idx"])  # top-200 scores differ by >= 1e-5 in this fixture
    np.testing.assert_allclose(scores[top], io["top_scores"], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(labels[top], io["top_labels"])
    np.testing.assert_allclose(boxes[top], io["top_boxes"], rtol=0, atol=1e-3)
    assert int((scores >= 0.1).sum()) == manifest["self_checks"]["num_scores_ge_SCORE_THRESH_0.1"]


def test_decoding_the_reference_raw_rows_is_exact(io):
    from ros_mmfusion.core.detection3d.box_coder import DirectionClassifier, ResidualCoder

    boxes = ResidualCoder().decode(io["top_box_deltas"], io["top_anchors"])
    boxes[:, 6] = DirectionClassifier(0.78539, 0.0, 2).apply(boxes[:, 6], io["top_dir_logits"])
    np.testing.assert_allclose(boxes, io["top_boxes"], rtol=0, atol=1e-4)


def test_full_detection_is_deterministic_and_within_limits(model, forward):
    decoder = decoder_for(model.config)
    maps = (forward["cls_preds"], forward["box_preds"], forward["dir_cls_preds"])
    first, second = decoder(*maps), decoder(*maps)
    assert 0 < len(first) <= 500
    np.testing.assert_array_equal(first.boxes, second.boxes)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert np.all(np.diff(first.scores) <= 0) and first.scores.min() >= 0.1


def test_pillar_grid_semantics_on_a_hand_built_cloud():
    grid = PillarGrid((0.0, 0.0, -1.0, 1.0, 1.0, 1.0), (0.5, 0.5, 2.0), max_points_per_pillar=2, max_pillars=2)
    pts = np.array([[0.1, 0.1, 0, 1], [0.9, 0.1, 0, 2], [0.2, 0.2, 0, 3], [0.3, 0.3, 0, 4],  # 3 in cell (0, 0)
                    [0.9, 0.9, 0, 5], [0.6, 0.4, 0, 6],  # a third cell: dropped (max 2 pillars); back to cell (1, 0)
                    [0.5, 0.5, 1.0, 7], [1.0, 0.5, 0, 8], [np.nan, 0.2, 0, 9]], np.float32)  # z / x at max; NaN
    out = pillarize(pts, grid)
    np.testing.assert_array_equal(out.coords, [[0, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(out.num_points, [2, 2])
    np.testing.assert_array_equal(out.voxels[:, :, 3], [[1, 3], [2, 6]])
    kept = crop_to_range(pts, grid.point_cloud_range)
    assert 8.0 in kept[:, 3] and 9.0 not in kept[:, 3]  # x == x_max is inside the (inclusive) crop
