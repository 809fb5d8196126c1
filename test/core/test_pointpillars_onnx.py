"""The two-graph ONNX split of PointPillars (Autoware style) matches PyTorch through ONNX Runtime.

``pillar_encoder.onnx`` takes any number of pillars; ``backbone_head.onnx`` takes the BEV canvas that the (numpy)
scatter between them builds. Graphs must stay plain for TensorRT: no scatter, loops, conditionals or NonZero. The
KITTI model runs with the parity fixture's weights and cloud, through the whole ONNX Runtime pipeline.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ros_mmfusion.core.detection3d.pillarize import crop_to_range, decorate_pillars, pillarize
from ros_mmfusion.core.models.pointpillars import (
    build_model,
    decoder_for,
    export_split,
    group_head_outputs,
    load_checkpoint,
    scatter_to_bev,
)
from ros_mmfusion.core.onnx_export import op_types, ort_session, run_ort
from test.fixtures import FIXTURES as ALL_FIXTURES

FIXTURE = ALL_FIXTURES / "pointpillars"
needs_fixture = pytest.mark.skipif(not (FIXTURE / "io.npz").is_file(), reason="pointpillars fixture not available")
FORBIDDEN = {"ScatterND", "ScatterElements", "Scatter", "Loop", "If", "NonZero"}


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "io.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def kitti(tmp_path_factory, io):
    torch.set_num_threads(1)
    model = build_model("pointpillars_kitti").eval()
    with np.load(FIXTURE / "state_pointpillars_kitti_fp16.npz") as weights:
        load_checkpoint(model, {"model_state": {k: weights[k] for k in weights.files}})
    encoder_path, head_path = export_split(model, tmp_path_factory.mktemp("pointpillars_onnx"))
    return model, encoder_path, head_path


@pytest.fixture(scope="module")
def ort_pipeline(kitti, io):
    """Cloud -> pillars -> ORT encoder -> numpy scatter -> ORT backbone+head; PyTorch on the same canvas."""
    model, encoder_path, head_path = kitti
    grid = model.config.grid
    pillars = pillarize(crop_to_range(io["points"], grid.point_cloud_range), grid)
    features = decorate_pillars(pillars, grid)
    embedded = run_ort(ort_session(encoder_path, threads=1), {"input_features": features})["pillar_features"]
    canvas = scatter_to_bev(embedded, pillars.coords, grid.bev_shape)
    maps = run_ort(ort_session(head_path, threads=1), {"spatial_features": canvas})
    with torch.no_grad():
        reference = model.split()[1](torch.from_numpy(canvas))
    return canvas, maps, dict(zip(model.output_names, (t.numpy() for t in reference), strict=True))


@needs_fixture
def test_graphs_hold_no_scatter_loop_condition_or_nonzero(kitti):
    _, encoder_path, head_path = kitti
    encoder_ops, head_ops = op_types(encoder_path), op_types(head_path)
    assert not encoder_ops & FORBIDDEN and not head_ops & FORBIDDEN
    assert {"MatMul", "ReduceMax"} <= encoder_ops and {"Conv", "ConvTranspose"} <= head_ops


@needs_fixture
@pytest.mark.parametrize("num_pillars", [4641, 17, 1])
def test_pillar_encoder_matches_pytorch_for_any_pillar_count(kitti, io, num_pillars):
    model, encoder_path, _ = kitti
    features = io["pfn_input"][:num_pillars]
    got = run_ort(ort_session(encoder_path, threads=1), {"input_features": features})["pillar_features"]
    with torch.no_grad():
        expected = model.split()[0](torch.from_numpy(features)).numpy()
    assert got.shape == (num_pillars, 64)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, io["pillar_features"][:num_pillars], rtol=1e-4, atol=1e-4)


@needs_fixture
def test_backbone_head_matches_pytorch(ort_pipeline, io):
    canvas, maps, reference = ort_pipeline
    np.testing.assert_allclose(canvas, io["spatial_features"].astype(np.float32), atol=2e-3, rtol=2e-3)
    for name, expected in reference.items():
        assert maps[name].shape == expected.shape
        np.testing.assert_allclose(maps[name], expected, rtol=1e-4, atol=1e-4, err_msg=name)


@needs_fixture
def test_onnx_runtime_pipeline_reproduces_the_reference_boxes(kitti, ort_pipeline, io):
    model, _, _ = kitti
    _, maps, _ = ort_pipeline
    boxes, scores, labels = decoder_for(model.config).candidates(maps["cls_preds"], maps["box_preds"],
                                                                 maps["dir_cls_preds"])
    top = np.argsort(-scores, kind="stable")[:200]
    np.testing.assert_array_equal(top, io["top_anchor_idx"])
    np.testing.assert_allclose(scores[top], io["top_scores"], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(labels[top], io["top_labels"])
    np.testing.assert_allclose(boxes[top], io["top_boxes"], rtol=0, atol=1e-3)


def test_centerpoint_pillar_split_exports_and_matches_pytorch(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("centerpoint_pillar").eval()
    for module in model.modules():  # non-trivial normalisation statistics
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    bev = (64, 80)
    encoder_path, head_path = export_split(model, tmp_path, num_pillars=50, bev_shape=bev)
    assert not (op_types(encoder_path) | op_types(head_path)) & FORBIDDEN

    rng = np.random.default_rng(0)
    features = rng.normal(0, 1, (300, 32, model.config.num_input_features)).astype(np.float32)
    embedded = run_ort(ort_session(encoder_path, threads=1), {"input_features": features})["pillar_features"]
    cells = rng.choice(bev[0] * bev[1], 300, replace=False)
    coords = np.stack([np.zeros(300, np.int64), cells // bev[1], cells % bev[1]], axis=1)
    canvas = scatter_to_bev(embedded, coords, bev)
    outputs = run_ort(ort_session(head_path, threads=1), {"spatial_features": canvas})
    with torch.no_grad():
        torch_embedded = model.split()[0](torch.from_numpy(features))
        reference = model.split()[1](scatter_to_bev(torch_embedded, torch.from_numpy(coords), bev))
    np.testing.assert_allclose(embedded, torch_embedded.numpy(), rtol=1e-5, atol=1e-5)
    assert list(outputs) == list(model.output_names) == ["center_0", "center_z_0", "dim_0", "rot_0", "hm_0"]
    for name, expected in zip(model.output_names, reference, strict=True):
        np.testing.assert_allclose(outputs[name], expected.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)

    heads = group_head_outputs(model.output_names, [outputs[n] for n in model.output_names])
    detections = decoder_for(model.config)(heads)
    assert len(detections) <= model.config.post_processing.nms.post_max_size
    assert np.all(np.diff(detections.scores) <= 0) and set(detections.labels.tolist()) <= {1, 2, 3}
