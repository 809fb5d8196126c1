"""A detector moved to another range (``pipeline.with_range``) keeps the anchors it was trained with, and
``mmfusion bench-network`` times a named detector over another range (``--point-cloud-range``)."""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core.detection3d.anchors import generate_anchors
from ros_mmfusion.core.detection3d.pipeline import with_range
from ros_mmfusion.core.detection3d.training import AnchorTargets, Windows
from ros_mmfusion.core.models.pointpillars import VARIANTS, decoder_for

LITE = VARIANTS["pointpillars_synthetic_lite"]  # 0..39.68 x +-19.84 m, 248 x 248 pillars, 124 x 124 head cells
WIDER = (0.0, -24.96, -3.0, 49.92, 24.96, 1.0)  # 312 x 312 pillars: the same cells and more around them
CELLS_Y = 16  # (24.96 - 19.84) m / 0.32 m: rows of head cells WIDER adds on each side


def test_a_detector_moved_to_a_wider_range_keeps_its_anchors_on_the_cells_they_share():
    own = decoder_for(LITE).anchors()
    wider = with_range(LITE, WIDER)
    moved = decoder_for(wider).anchors()
    assert moved.shape == (156, 156, 6, 7) and wider.anchor_range == LITE.point_cloud_range
    np.testing.assert_allclose(moved[CELLS_Y:CELLS_Y + 124, :124], own, rtol=0, atol=1e-5)
    # the lattice goes on at the trained stride beyond the old range
    step = np.diff(moved[0, :, 0, 0].astype(np.float64))
    np.testing.assert_allclose(step, 39.68 / 123, atol=1e-5)
    # OpenPCDet's own layout of the wider extent moves the shared anchors by up to 0.1 m (what was measured as an AP
    # loss of the lite package at the KITTI range)
    relaid = decoder_for(with_range(LITE, WIDER, keep_anchors=False)).anchors()
    assert np.abs(relaid[CELLS_Y:CELLS_Y + 124, :124] - own).max() > 0.05


def test_moving_twice_or_back_keeps_the_first_layout_and_the_own_range_is_unchanged():
    back = with_range(with_range(LITE, WIDER), LITE.point_cloud_range)
    assert back.anchor_range == LITE.point_cloud_range
    np.testing.assert_array_equal(decoder_for(back).anchors(), decoder_for(LITE).anchors())
    near = with_range(with_range(LITE, WIDER), (0.0, -10.24, -3.0, 20.48, 10.24, 1.0))
    cells_y = round((19.84 - 10.24) / 0.32)  # the near range starts 30 head cells into the lite range's rows
    np.testing.assert_allclose(decoder_for(near).anchors(), decoder_for(LITE).anchors()[cells_y:cells_y + 64, :64],
                               rtol=0, atol=1e-5)


def test_training_targets_use_the_decoders_anchors_and_windows_keep_their_own_layout():
    wider = with_range(LITE, WIDER)
    np.testing.assert_array_equal(AnchorTargets.of(wider).anchors, decoder_for(wider).anchors().reshape(-1, 7))
    config, _ = Windows(LITE, 20.48).draw(np.random.default_rng(0))
    assert config.anchor_range is None  # training windows: anchors laid over the window, as the package was trained
    np.testing.assert_array_equal(
        decoder_for(config).anchors(),
        generate_anchors(LITE.head.anchor_generator, config.point_cloud_range, config.grid.grid_size))


def test_bench_times_a_named_detector_over_another_range(tmp_path):
    from ros_mmfusion.core.bench import bench_detection

    cloud = np.zeros(200, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4")])
    rng = np.random.default_rng(0)
    cloud["x"], cloud["y"], cloud["z"] = rng.uniform(0, 10, 200), rng.uniform(-5, 5, 200), rng.uniform(-2, 0, 200)
    result = bench_detection("pointpillars_synthetic_lite", "onnxruntime", (cloud, "200 random points"), threads=1,
                             warmup=0, runs=1, workdir=tmp_path, point_cloud_range=(0.0, -5.12, -3.0, 10.24, 5.12, 1.0))
    assert result.grid == "64x64 pillars" and result.point_cloud_range == pytest.approx((0, -5.12, -3, 10.24, 5.12, 1))
    assert result.points_in_range == 200 and result.pillars > 0
