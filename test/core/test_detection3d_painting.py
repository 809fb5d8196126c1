"""PointPainting: points land on the pixels the pinhole model says, take those pixels' scores (one-hot from a class-id
mask or class probabilities), unseen points take the outside score, and a painted detector whose extra weights are
zero reproduces the unpainted detector exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ros_mmfusion.core.detection3d.artifacts import DetectorSpec, build_detector, build_module
from ros_mmfusion.core.detection3d.painting import (
    FIRST_PFN_WEIGHT,
    OUTSIDE_SCORE,
    SegmentationScores,
    paint_class_ids,
    paint_points,
    painted_config,
    painted_state_dict,
)
from ros_mmfusion.core.detection3d.pipeline import with_range
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import PinholeCamera, Transform
from ros_mmfusion.core.labels import CAR, CYCLIST, PEDESTRIAN, ROAD
from ros_mmfusion.core.models.pointpillars import VARIANTS
from test.fixtures import FIXTURES as ALL_FIXTURES

FIXTURE = ALL_FIXTURES / "pointpillars"

# A 40 x 30 camera, f = 20 px, principal point (19.5, 14.5), at the LiDAR origin looking along LiDAR +x: a LiDAR point
# (x, y, z) is at optical (-y, -z, x), so it lands on u = 19.5 - 20 y / x, v = 14.5 - 20 z / x.
CAMERA = PinholeCamera(k=np.array([[20.0, 0, 19.5], [0, 20.0, 14.5], [0, 0, 1]]), width=40, height=30)
LOOKING_FORWARD = Transform.from_xyz_quat([0, 0, 0], [0.5, -0.5, 0.5, 0.5])
POINTS = np.array([
    [10.0, 0.05, 0.05, 0.3],     # u = 19.4 -> 19, v = 14.4 -> 14
    [10.0, -5.0, 0.0, 0.3],      # u = 29.5 -> rint 30 (half to even), v = 14.5 -> 14
    [10.0, 0.0, 6.0, 0.3],       # v = 2.5 -> 2, u = 19.5 -> 20
    [-10.0, 0.0, 0.0, 0.3],      # behind the camera
    [10.0, 20.0, 0.0, 0.3],      # u = -20.5: left of the image
    [np.nan, 0.0, 0.0, 0.3],     # not a point
], dtype=np.float32)
PIXELS = [(14, 19), (14, 30), (2, 20)]  # (row, col) of the first three points


def test_pixels_follow_the_pinhole_model_and_unseen_points_are_flagged():
    rows, cols, seen = SegmentationScores(CAMERA, LOOKING_FORWARD, labels=np.zeros((30, 40), np.uint8),
                                          class_ids=(CAR,)).pixels(POINTS[:, :3])
    assert seen.tolist() == [True, True, True, False, False, False]
    assert list(zip(rows[:3].tolist(), cols[:3].tolist(), strict=True)) == PIXELS


def test_class_id_masks_paint_one_hot_scores_and_unseen_points_the_outside_score():
    mask = np.full((30, 40), ROAD, np.uint8)
    for (r, c), cls in zip(PIXELS, (CAR, CYCLIST, ROAD), strict=True):
        mask[r, c] = cls
    scores = SegmentationScores(CAMERA, LOOKING_FORWARD, labels=mask, class_ids=(CAR, PEDESTRIAN, CYCLIST))
    painted = paint_points(POINTS, scores, 3)
    assert painted.shape == (6, 7) and painted.dtype == np.float32
    np.testing.assert_array_equal(painted[:, :4], POINTS)
    np.testing.assert_array_equal(painted[:3, 4:], [[1, 0, 0], [0, 0, 1], [0, 0, 0]])  # road is not painted
    np.testing.assert_array_equal(painted[3:, 4:], OUTSIDE_SCORE)


def test_probability_images_paint_the_pixels_vectors_and_a_mask_of_another_size_is_rescaled():
    rng = np.random.default_rng(0)
    probabilities = rng.random((60, 80, 2)).astype(np.float32)  # twice the calibrated size
    scores = SegmentationScores(CAMERA, LOOKING_FORWARD, probabilities=probabilities)
    painted = paint_points(POINTS[:1], scores, 2)
    # point 0 at (u, v) = (19.4, 14.4) in the 40 x 30 camera is (39.3, 29.3) at 80 x 60 (pixel-centre convention)
    np.testing.assert_array_equal(painted[0, 4:], probabilities[29, 39])


def test_an_extrinsic_offset_moves_the_pixel():
    below = Transform.from_xyz_quat([0.0, 0.5, 0.0], [0.5, -0.5, 0.5, 0.5])  # camera 0.5 m above the LiDAR
    rows, cols, seen = SegmentationScores(CAMERA, below, labels=np.zeros((30, 40), np.uint8),
                                          class_ids=(CAR,)).pixels(POINTS[:1, :3])
    assert seen[0] and (rows[0], cols[0]) == (round(14.5 + 20 * (0.5 - 0.05) / 10), 19)


def test_missing_segmentation_paints_every_point_with_the_outside_score():
    painted = paint_points(POINTS, None, 3)
    np.testing.assert_array_equal(painted[:, 4:], np.full((6, 3), OUTSIDE_SCORE))
    with pytest.raises(ConfigError, match="paints 1 channels"):
        paint_points(POINTS, SegmentationScores(CAMERA, LOOKING_FORWARD, labels=np.zeros((30, 40), np.uint8),
                                                class_ids=(CAR,)), 3)
    assert paint_class_ids(["car", "pedestrian", "cyclist"]) == (CAR, PEDESTRIAN, CYCLIST)


def test_painted_checkpoint_gets_zero_columns_where_the_scores_enter():
    config = VARIANTS["pointpillars_kitti"]
    state = build_module(DetectorSpec(config)).state_dict()
    wide = painted_state_dict(state, config, 3)
    w, w_wide = state[FIRST_PFN_WEIGHT], wide[FIRST_PFN_WEIGHT]
    assert w.shape == (64, 10) and w_wide.shape == (64, 13)
    assert torch.equal(w_wide[:, :4], w[:, :4]) and torch.equal(w_wide[:, 7:], w[:, 4:])
    assert torch.count_nonzero(w_wide[:, 4:7]) == 0
    assert torch.equal(painted_state_dict(wide, config, 3)[FIRST_PFN_WEIGHT], w_wide)  # already painted: as is
    assert painted_config(config, 3).num_input_features == 13
    with pytest.raises(ConfigError, match="takes 13 channels"):
        painted_state_dict(wide, config, 5)


@pytest.mark.parametrize("variant", ["pointpillars_kitti", "centerpoint_pillar"])
def test_painted_model_with_zero_extra_weights_reproduces_the_unpainted_detector_exactly(variant):
    """Whatever the painted scores, zero-initialised extra weights give bit-identical detections."""
    torch.set_num_threads(1)
    config = with_range(VARIANTS[variant], (0.0, -10.24, -3.0, 20.48, 10.24, 1.0))
    weights = str(FIXTURE / "state_pointpillars_kitti_fp16.npz") if variant == "pointpillars_kitti" \
        and (FIXTURE / "io.npz").is_file() else ""
    rng = np.random.default_rng(1)
    cloud = np.concatenate([rng.uniform([0, -10, -2, 0], [20, 10, 0.5, 1], (6000, 4)),
                            rng.normal([8, 2, -1, 0.5], [1, 0.5, 0.4, 0.1], (1500, 4))]).astype(np.float32)
    mask = rng.choice([ROAD, CAR, PEDESTRIAN, CYCLIST], (30, 40)).astype(np.uint8)
    scores = SegmentationScores(CAMERA, LOOKING_FORWARD, labels=mask, class_ids=(CAR, PEDESTRIAN, CYCLIST))
    plain = build_detector(DetectorSpec(config, weights=weights, seed=5), backend="torch", threads=1,
                           score_thresholds=0.05)
    painted = build_detector(DetectorSpec(config, weights=weights, seed=5, paint_channels=3), backend="torch",
                             threads=1, score_thresholds=0.05)
    expected = plain(cloud)
    assert len(expected.detections) > 0
    assert paint_points(cloud, scores, 3)[:, 4:].any(), "some points must really be painted"
    for segmentation in (scores, None):
        got = painted(cloud, segmentation)
        assert got.painted is (segmentation is not None) and expected.painted is None
        np.testing.assert_array_equal(got.detections.boxes, expected.detections.boxes)
        np.testing.assert_array_equal(got.detections.scores, expected.detections.scores)
        np.testing.assert_array_equal(got.detections.labels, expected.detections.labels)
