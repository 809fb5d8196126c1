"""The fast forms of the PointPillars pipeline against the straightforward implementations they replaced, kept here as
references: greedy rotated NMS box by box, the top-k by a full sort, decoding every anchor, pillarization through
``np.unique`` plus a second sort, the decorated features by masking and the PFN's norm before its max. Each fast
form must give the same results (bit for bit where the arithmetic is the same, to float32 rounding where only the
order of operations changes)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ros_mmfusion.core.detection3d import nms as nms_module
from ros_mmfusion.core.detection3d.anchors import AnchorClassConfig
from ros_mmfusion.core.detection3d.nms import (
    _as_boxes,
    _intersection_area,
    _iou,
    bev_corners,
    rotated_nms,
    score_order,
)
from ros_mmfusion.core.detection3d.pillarize import (
    PillarGrid,
    Pillars,
    _sum_over_slots,
    decorate_pillars,
    pillar_centres,
    pillarize_and_count,
)
from ros_mmfusion.core.detection3d.postprocess import AnchorHeadDecoder, NmsConfig, PostProcessConfig
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.models.pointpillars import (
    PillarEncoder,
    PillarVFE,
)

# --------------------------------------------------------------------------------------------- references (the old)


def reference_score_order(scores, max_size=None):
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order if max_size is None else order[:max_size]


def reference_rotated_nms(boxes, scores, iou_threshold, pre_max_size=None, post_max_size=None):
    """Greedy NMS box by box, measuring every undecided box whose circumscribed circle overlaps the kept one's."""
    order = reference_score_order(scores, pre_max_size)
    b = _as_boxes(boxes)[order]
    n = b.shape[0]
    corners, area = bev_corners(b), b[:, 3] * b[:, 4]
    centre, radius = b[:, 0:2], 0.5 * np.hypot(b[:, 3], b[:, 4])
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    limit = n if post_max_size is None else post_max_size
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(n):
            if suppressed[i]:
                continue
            keep.append(i)
            if len(keep) >= limit:
                break
            rest = np.flatnonzero(~suppressed[i + 1:]) + i + 1
            near = rest[np.hypot(*(centre[rest] - centre[i]).T) < radius[rest] + radius[i]]
            if near.size:
                first = np.zeros(near.size, dtype=np.int64) + i
                iou = _iou(_intersection_area(corners[first], corners[near], b[first], b[near]), area[i], area[near])
                suppressed[near[iou > iou_threshold]] = True
    return order[np.asarray(keep, dtype=np.int64)]


def reference_pillarize(points, grid):
    pts = np.ascontiguousarray(points, dtype=np.float32)
    nx, ny, nz = grid.grid_size
    cell_f = np.floor((pts[:, :3] - grid.range_min) / np.asarray(grid.voxel_size, dtype=np.float32))
    inside = np.all((cell_f >= 0) & (cell_f < np.array([nx, ny, nz], dtype=np.float32)), axis=1)
    pts, cell = pts[inside], cell_f[inside].astype(np.int64)
    linear = (cell[:, 2] * ny + cell[:, 1]) * nx + cell[:, 0]
    cells, first_index, inverse = np.unique(linear, return_index=True, return_inverse=True)
    by_appearance = np.argsort(first_index, kind="stable")
    rank = np.empty_like(by_appearance)
    rank[by_appearance] = np.arange(by_appearance.size)
    pillar = rank[inverse.reshape(-1)]
    order = np.argsort(pillar, kind="stable")
    counts = np.bincount(pillar, minlength=cells.size)
    starts = np.cumsum(counts) - counts
    slot = np.empty_like(pillar)
    slot[order] = np.arange(pillar.size) - starts[pillar[order]]
    num = min(cells.size, grid.max_pillars)
    keep = (pillar < num) & (slot < grid.max_points_per_pillar)
    voxels = np.zeros((num, grid.max_points_per_pillar, pts.shape[1]), dtype=np.float32)
    voxels[pillar[keep], slot[keep]] = pts[keep]
    kept = cells[by_appearance[:num]]
    coords = np.stack([kept // (nx * ny), (kept // nx) % ny, kept % nx], axis=1).astype(np.int32)
    return Pillars(voxels, coords, np.minimum(counts[:num], grid.max_points_per_pillar).astype(np.int32)), cells.size


def reference_decorate(pillars, grid, use_absolute_xyz=True, with_distance=False):
    voxels, num = pillars.voxels, pillars.num_points
    xyz = voxels[:, :, :3]
    mean = _sum_over_slots(xyz)[:, None, :] / num.astype(np.float32).reshape(-1, 1, 1)
    parts = [voxels if use_absolute_xyz else voxels[:, :, 3:], xyz - mean,
             xyz - pillar_centres(pillars.coords, grid)[:, None, :]]
    if with_distance:
        parts.append(np.linalg.norm(xyz, axis=2, keepdims=True))
    valid = np.arange(voxels.shape[1])[None, :] < num[:, None]
    return np.concatenate(parts, axis=2) * valid[:, :, None].astype(np.float32)


# ----------------------------------------------------------------------------------------------------------- NMS


def clustered_boxes(rng, n):
    """Boxes in a few dense clusters and scattered, many score ties, some huge, flat or non-finite."""
    centres = rng.uniform(0, 40, (6, 2))
    xy = centres[rng.integers(0, 6, n)] + rng.normal(0, 0.8, (n, 2))
    xy[: n // 4] = rng.uniform(-5, 45, (n // 4, 2))
    size = rng.uniform(0.3, 4.5, (n, 2))
    boxes = np.c_[xy, np.zeros(n), size, np.ones(n), rng.uniform(-np.pi, np.pi, n)]
    boxes[rng.choice(n, 6, replace=False), 3:5] = rng.uniform(30, 3e4, (6, 2))  # huge (untrained heads make these)
    boxes[rng.choice(n, 3, replace=False), 3] = 0.0  # flat
    boxes[rng.choice(n, 2, replace=False), 4] = np.inf
    boxes[rng.choice(n, 2, replace=False), 0] = np.nan
    return boxes, np.round(rng.uniform(0, 1, n), 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_rotated_nms_equals_greedy_nms_box_by_box(seed):
    rng = np.random.default_rng(seed)
    boxes, scores = clustered_boxes(rng, 300)
    for thresh, pre, post in ((0.01, None, None), (0.0, 250, 40), (0.5, 120, None), (0.2, None, 33)):
        np.testing.assert_array_equal(rotated_nms(boxes, scores, thresh, pre, post),
                                      reference_rotated_nms(boxes, scores, thresh, pre, post),
                                      err_msg=f"threshold {thresh}, pre {pre}, post {post}")


def test_rotated_nms_rounds_cover_chunks_of_every_size(monkeypatch):
    rng = np.random.default_rng(5)
    boxes, scores = clustered_boxes(rng, 90)
    expected = reference_rotated_nms(boxes, scores, 0.05)
    for chunk in (1, 2, 7, 200):
        monkeypatch.setattr(nms_module, "NMS_CHUNK", chunk)
        np.testing.assert_array_equal(rotated_nms(boxes, scores, 0.05), expected, err_msg=f"chunk {chunk}")
    assert rotated_nms(boxes[:0], scores[:0], 0.1).size == 0
    with pytest.raises(ConfigError, match="IoU thresholds >= 0"):
        NmsConfig("rotated", -0.1)


def test_top_k_by_partition_equals_a_full_sort():
    rng = np.random.default_rng(3)
    scores = np.round(rng.uniform(0, 1, 5000), 2).astype(np.float32)  # ties at every boundary
    for k in (0, 1, 99, 100, 4096, 5000, 6000, None):
        np.testing.assert_array_equal(score_order(scores, k), reference_score_order(scores, k), err_msg=str(k))
    scores[[3, 70]] = np.nan
    np.testing.assert_array_equal(score_order(scores, 50), reference_score_order(scores, 50))


# ------------------------------------------------------------------------------------------------------ decoding


def test_decoding_only_passing_anchors_equals_decoding_all():
    anchors = (AnchorClassConfig("a", ((3.9, 1.6, 1.56),), (0.0, 1.57), (-1.78,), False, 2),
               AnchorClassConfig("b", ((0.8, 0.6, 1.73),), (0.0, 1.57), (-0.6,), False, 2))
    decoder = AnchorHeadDecoder(anchors, (0.0, -10.24, -3.0, 20.48, 10.24, 1.0), (128, 128, 1))
    rng = np.random.default_rng(2)
    ny, nx, a = 64, 64, 4
    cls = rng.normal(-3, 2, (1, a * 2, ny, nx)).astype(np.float32)
    cls[0, 0, 0, :4] = [np.log(0.3 / 0.7), np.nan, 20.0, -np.inf]  # at a threshold, NaN, saturated, -inf
    box = rng.normal(0, 0.5, (1, a * 7, ny, nx)).astype(np.float32)
    direction = rng.normal(0, 1, (1, a * 2, ny, nx)).astype(np.float32)
    all_boxes, all_scores, all_labels = decoder.candidates(cls, box, direction)
    for thresh in (0.3, (0.3, 0.6), 0.0, 1.0):
        boxes, scores, labels = decoder.passing_candidates(cls, box, direction, thresh)
        table = np.broadcast_to(np.asarray(thresh, np.float64), (2,))
        passing = np.flatnonzero(all_scores >= table[all_labels - 1])
        assert passing.size == scores.size and (thresh != 0.3 or 0 < scores.size < all_scores.size)
        np.testing.assert_array_equal(boxes, all_boxes[passing])
        np.testing.assert_array_equal(scores, all_scores[passing])
        np.testing.assert_array_equal(labels, all_labels[passing])
    config = PostProcessConfig(0.3, NmsConfig("rotated", 0.01, 100, 20))
    fast = dataclasses.replace(decoder, post=config)(cls, box, direction)
    keep = np.flatnonzero(all_scores >= 0.3)
    slow = reference_rotated_nms(all_boxes[keep], all_scores[keep], 0.01, 100, 20)
    np.testing.assert_array_equal(fast.boxes, all_boxes[keep][slow])


# ------------------------------------------------------------------------------------------------- pillarization


def test_pillarize_with_one_sort_equals_the_unique_based_grouping():
    rng = np.random.default_rng(4)
    grid = PillarGrid((0.0, -5.12, -3.0, 10.24, 5.12, 1.0), (0.16, 0.16, 4.0), max_points_per_pillar=6,
                      max_pillars=300)
    points = np.c_[rng.uniform(-1, 11, (6000, 2)) - [0, 5.5], rng.uniform(-4, 2, 6000), rng.uniform(0, 1, 6000)]
    points[rng.choice(6000, 2000)] = points[rng.choice(6000, 2000)]  # crowded cells
    points[:3, 0] = np.nan
    for g in (grid, dataclasses.replace(grid, max_pillars=100000)):
        got, occupied = pillarize_and_count(points, g)
        expected, expected_occupied = reference_pillarize(points, g)
        assert occupied == expected_occupied and (g.max_pillars > occupied or len(got) == g.max_pillars)
        for name in ("voxels", "coords", "num_points"):
            np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
        for options in ({}, {"use_absolute_xyz": False, "with_distance": True}):
            np.testing.assert_array_equal(decorate_pillars(got, g, **options), reference_decorate(got, g, **options))


# ------------------------------------------------------------------------------------------- the deployed graphs


def test_pfn_pooling_before_its_norm_gives_the_same_embeddings():
    torch.manual_seed(0)
    vfe = PillarVFE(10, (64,))
    norm = vfe.pfn_layers[0].norm
    with torch.no_grad():  # negative scales on half the channels take the min branch
        norm.weight.copy_(torch.randn(64))
        norm.bias.copy_(torch.randn(64))
        norm.running_mean.copy_(torch.randn(64))
        norm.running_var.copy_(torch.rand(64) + 0.1)
    vfe.eval()
    encoder = PillarEncoder(vfe).eval()
    points = torch.randn(200, 32, 10) * 4
    points[:, 20:] = 0  # padded slots take part in the max, as in the reference
    with torch.no_grad():
        np.testing.assert_allclose(encoder(points).numpy(), vfe(points).numpy(), rtol=1e-6, atol=1e-5)
    assert (norm.weight < 0).any()
