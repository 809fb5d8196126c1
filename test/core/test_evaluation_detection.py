"""3D detection metrics on hand-built cases with known answers (core/detection3d/metrics.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ros_mmfusion.core.detection3d.box_iou import greedy_match
from ros_mmfusion.core.detection3d.metrics import (
    DetectionEvaluator,
    average_precision,
    bev_iou_matrix,
    iou3d_matrix,
    nuscenes_ap,
    pr_curve,
)

CAR = [10.0, 0.0, -1.0, 4.0, 2.0, 1.5, 0.0]
PED = [5.0, 3.0, -1.0, 0.8, 0.8, 1.8, 0.0]


def _evaluate(frames, **kw) -> dict:
    ev = DetectionEvaluator(**kw)
    for gt, gl, det, dl, sc in frames:
        ev.add_frame(gt, gl, det, dl, sc)
    return ev.results()


@pytest.mark.parametrize("interpolation", ["r40", "all"])
def test_perfect_detections_score_one_everywhere(interpolation):
    r = _evaluate([([CAR, PED], ["car", "pedestrian"], [PED, CAR], ["pedestrian", "car"], [0.9, 0.8])],
                  interpolation=interpolation)
    for kind in ("bev", "3d", "center_distance"):
        for section in r[kind].values():
            assert section["AP"] == {"car": pytest.approx(1.0), "pedestrian": pytest.approx(1.0)}
            assert section["mAP"] == pytest.approx(1.0)
    assert r["center_distance_mAP"]["mAP"] == pytest.approx(1.0)
    assert r["num_gt"] == {"car": 1, "pedestrian": 1}


def test_no_detections_score_zero_and_no_ground_truth_is_undefined():
    r = _evaluate([([CAR], ["car"], [], [], [])])
    assert r["bev"]["0.5"]["AP"]["car"] == 0.0 and r["center_distance"]["1"]["AP"]["car"] == 0.0
    r = _evaluate([([], [], [CAR], ["car"], [0.5])])
    assert r["bev"]["0.5"]["AP"]["car"] is None and r["bev"]["0.5"]["mAP"] is None
    assert r["bev"]["0.5"]["curves"]["car"]["num_det"] == 1


def test_false_positive_ranked_first_halves_precision():
    far = [30.0, 10.0, -1.0, 4.0, 2.0, 1.5, 0.0]
    r = _evaluate([([CAR], ["car"], [far, CAR], ["car", "car"], [0.9, 0.5])], interpolation="all")
    assert r["bev"]["0.7"]["AP"]["car"] == pytest.approx(0.5)  # recall 1 reached at precision 1/2
    curve = r["bev"]["0.7"]["curves"]["car"]
    assert curve["precision"] == pytest.approx([0.0, 0.5]) and curve["recall"] == pytest.approx([0.0, 1.0])
    assert _evaluate([([CAR], ["car"], [far, CAR], ["car", "car"], [0.9, 0.5])])["bev"]["0.7"]["AP"]["car"] == \
        pytest.approx(0.5)
    # ranked last instead: the miss costs nothing
    r = _evaluate([([CAR], ["car"], [far, CAR], ["car", "car"], [0.1, 0.5])])
    assert r["3d"]["0.7"]["AP"]["car"] == pytest.approx(1.0)
    # nuScenes: precision 0.5 over recall (0.1, 1] -> (0.5 - 0.1) / 0.9
    assert r["center_distance"]["0.5"]["AP"]["car"] == pytest.approx(1.0)
    r = _evaluate([([CAR], ["car"], [far, CAR], ["car", "car"], [0.9, 0.5])])
    assert r["center_distance"]["4"]["AP"]["car"] == pytest.approx(0.4 / 0.9)


def test_rotated_boxes_iou():
    a = [0, 0, 0, 2, 2, 1, 0]
    b = [0, 0, 0, 2, 2, 1, math.pi / 4]  # a square rotated 45 deg: octagon overlap 8(sqrt2-1)
    inter = 8 * (math.sqrt(2) - 1)
    assert bev_iou_matrix([a], [b])[0, 0] == pytest.approx(inter / (8 - inter))
    assert bev_iou_matrix([CAR], [[*CAR[:6], math.pi]])[0, 0] == pytest.approx(1.0)  # yaw pi: same rectangle
    assert bev_iou_matrix([CAR], [[*CAR[:6], math.pi / 2]])[0, 0] == pytest.approx(4 / 12)  # 2x2 of 4x2 and 2x4
    # a car rotated by 90 degrees is no match at 0.5 but one at 0.3
    rotated = [*CAR[:6], math.pi / 2]
    r = _evaluate([([CAR], ["car"], [rotated], ["car"], [0.9])], iou_thresholds=(0.3, 0.5))
    assert r["bev"]["0.3"]["AP"]["car"] == pytest.approx(1.0) and r["bev"]["0.5"]["AP"]["car"] == 0.0


def test_classes_never_match_each_other():
    r = _evaluate([([CAR], ["car"], [CAR], ["pedestrian"], [0.9])])
    assert r["bev"]["0.5"]["AP"] == {"car": 0.0, "pedestrian": None}
    r = _evaluate([([CAR], ["car"], [CAR], ["pedestrian"], [0.9])], classes=["car"])
    assert r["classes"] == ["car"] and r["3d"]["0.5"]["AP"] == {"car": 0.0}


def test_3d_iou_uses_the_vertical_overlap():
    lifted = [*CAR[:2], CAR[2] + 0.75, *CAR[3:]]  # half the 1.5 m height overlaps
    assert bev_iou_matrix([CAR], [lifted])[0, 0] == pytest.approx(1.0)
    assert iou3d_matrix([CAR], [lifted])[0, 0] == pytest.approx(0.5 / 1.5)
    above = [*CAR[:2], CAR[2] + 2.0, *CAR[3:]]
    assert iou3d_matrix([CAR], [above])[0, 0] == 0.0
    half = [*CAR[:3], 4.0, 1.0, 1.5, 0.0]  # half the footprint, same height
    assert iou3d_matrix([CAR], [half])[0, 0] == pytest.approx(0.5)
    r = _evaluate([([CAR], ["car"], [lifted], ["car"], [0.9])])
    assert r["bev"]["0.7"]["AP"]["car"] == pytest.approx(1.0) and r["3d"]["0.5"]["AP"]["car"] == 0.0


def test_greedy_matching_by_score_and_ap_across_frames():
    # the higher-scored detection takes the ground truth first even if the other overlaps it more
    tp = greedy_match(np.array([[0.6], [0.9]]), [0.9, 0.5], np.array([[True], [True]]))
    assert tp.tolist() == [True, False]
    # two frames, 2 GT: ranks TP, FP, TP -> all-point AP = 0.5*1 + 0.5*(2/3)
    shifted = [CAR[0] + 20, *CAR[1:]]
    frames = [([CAR], ["car"], [CAR, shifted], ["car", "car"], [0.9, 0.8]),
              ([CAR], ["car"], [CAR], ["car"], [0.7])]
    r = _evaluate(frames, interpolation="all")
    assert r["bev"]["0.5"]["AP"]["car"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    r40 = _evaluate(frames)["bev"]["0.5"]["AP"]["car"]
    assert r40 == pytest.approx((20 * 1 + 20 * 2 / 3) / 40)
    assert r["frames"] == 2


def test_curve_helpers():
    recall, precision = pr_curve([True, False, True], [0.9, 0.8, 0.7], 4)
    assert recall.tolist() == [0.25, 0.25, 0.5] and precision == pytest.approx([1, 0.5, 2 / 3])
    assert average_precision([], []) == 0.0 and average_precision([], [], "all") == 0.0
    assert nuscenes_ap([1.0], [1.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        average_precision(recall, precision, "11pt")


def _jittered_frames(count: int, seed: int) -> list:
    """Frames of a car and a pedestrian with detections displaced, duplicated and missed at random (tied scores
    included), so that the ranking across frames matters."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        gt = [[v + d for v, d in zip(box, rng.normal(0, 3, 7) * [1, 1, 0, 0, 0, 0, 0], strict=True)]
              for box in (CAR, PED)]
        det = [[v + d for v, d in zip(box, rng.normal(0, 0.4, 7) * [1, 1, 0.2, 0.2, 0.2, 0.2, 1], strict=True)]
               for box in gt + gt[:1] if rng.random() < 0.8]
        names = (["car", "pedestrian", "car"])[:len(det)]
        frames.append((gt, ["car", "pedestrian"], det, names, rng.choice([0.3, 0.5, 0.9], len(det)).tolist()))
    return frames


def test_merged_evaluators_report_what_one_evaluator_of_every_frame_reports():
    frames = _jittered_frames(12, seed=4)
    whole, first, second = DetectionEvaluator(), DetectionEvaluator(), DetectionEvaluator()
    for i, frame in enumerate(frames):
        whole.add_frame(*frame)
        (first if i < 7 else second).add_frame(*frame)
    before = second.results()
    merged = first.merge(second).results()
    assert merged == whole.results()
    assert merged["frames"] == 12 and 0 < merged["bev"]["0.5"]["mAP"] < 1  # not a trivial case
    assert second.results() == before, "the merged-in evaluator is left unchanged"
    assert DetectionEvaluator().merge(DetectionEvaluator()).results()["frames"] == 0


def test_evaluators_that_evaluate_differently_do_not_merge():
    with pytest.raises(ValueError, match="different settings"):
        DetectionEvaluator().merge(DetectionEvaluator(interpolation="all"))
    with pytest.raises(ValueError, match="different settings"):
        DetectionEvaluator(bev_range=(0, -20, 40, 20)).merge(DetectionEvaluator())


def test_bev_range_leaves_out_boxes_outside_the_detector_range():
    behind = [-10.0, 0.0, -1.0, 4.0, 2.0, 1.5, 0.0]
    r = _evaluate([([CAR, behind], ["car", "car"], [CAR], ["car"], [0.9])], bev_range=(0.0, -20.0, 40.0, 20.0))
    assert r["num_gt"] == {"car": 1} and r["bev"]["0.7"]["AP"]["car"] == pytest.approx(1.0)
    assert r["bev_range"] == [0.0, -20.0, 40.0, 20.0]
    r = _evaluate([([CAR, behind], ["car", "car"], [CAR], ["car"], [0.9])], interpolation="all")
    assert r["bev"]["0.7"]["AP"]["car"] == pytest.approx(0.5)


def test_report_has_detection_tables_and_pr_curves(tmp_path):
    from ros_mmfusion.core.evaluation.report import write_report

    far = [30.0, 10.0, -1.0, 4.0, 2.0, 1.5, 0.0]
    det = _evaluate([([CAR, PED], ["car", "pedestrian"], [CAR, far], ["car", "car"], [0.5, 0.9])],
                    classes=["car", "pedestrian"])
    paths = write_report(tmp_path, {"run": {"preset": "detection"}, "detection": det, "notes": []})
    assert paths["pr_curves"].stat().st_size > 1000
    md = paths["markdown"].read_text()
    assert "## 3D detection" in md and "| class (BEV AP @IoU) | 0.5 | 0.7 |" in md and "| pedestrian | 0.000 |" in md


def test_ignored_ground_truth_neither_counts_nor_penalises():
    from ros_mmfusion.core.detection3d.metrics import points_in_boxes

    gt = np.array([[10.0, 0, 0, 4, 2, 1.5, 0], [20.0, 5, 0, 4, 2, 1.5, 0.3]])
    det = np.array([[10.0, 0, 0, 4, 2, 1.5, 0], [20.0, 5, 0, 4, 2, 1.5, 0.3], [30.0, -5, 0, 4, 2, 1.5, 0]])
    cloud = np.r_[np.c_[np.random.default_rng(0).uniform(-0.9, 0.9, (40, 2)) + [10, 0], np.zeros(40)],
                  [[20.0, 5.0, 0.0], [20.5, 5.2, 0.1]], [[50.0, 0.0, 0.0]]]
    counts = points_in_boxes(cloud, gt)
    np.testing.assert_array_equal(counts, [40, 2])
    plain, level = DetectionEvaluator(classes=["car"]), DetectionEvaluator(classes=["car"])
    plain.add_frame(gt, ["car", "car"], det, ["car"] * 3, [0.9, 0.8, 0.7])
    level.add_frame(gt, ["car", "car"], det, ["car"] * 3, [0.9, 0.8, 0.7], gt_ignore=counts < 5)
    p, lv = plain.curve("bev", 0.7, "car"), level.curve("bev", 0.7, "car")
    assert (p.num_gt, p.num_det) == (2, 3) and (lv.num_gt, lv.num_det) == (1, 2)
    # the detection of the ignored box is gone, the false positive stays: precision 1 then 1/2 at full recall
    np.testing.assert_allclose(lv.precision, [1.0, 0.5])
    with pytest.raises(ValueError, match="gt_ignore"):
        level.add_frame(gt, ["car", "car"], det, ["car"] * 3, [0.9, 0.8, 0.7], gt_ignore=[True])


def test_accumulator_min_points_level_pairs_clouds_by_stamp():
    from ros_mmfusion.core.detection3d.metrics import DetectionAccumulator

    gt = (np.array([[10.0, 0, 0, 4, 2, 1.5, 0], [20.0, 5, 0, 4, 2, 1.5, 0]]), ["car", "car"], np.ones(2))
    pred = (np.array([[10.0, 0, 0, 4, 2, 1.5, 0]]), ["car"], np.array([0.9]))
    cloud = np.c_[np.random.default_rng(1).uniform(-0.9, 0.9, (30, 2)) + [10, 0], np.zeros(30)]
    acc = DetectionAccumulator(DetectionEvaluator(classes=["car"], iou_thresholds=(0.7,)), min_points=5)
    acc.add(1, gt=gt, pred=pred)
    assert acc.matched == 0  # waits for the cloud
    acc.add(1, cloud=cloud)
    assert acc.matched == 1
    out = acc.results(1, [])
    assert out["bev"]["0.7"]["AP"]["car"] < 0.6  # the empty far car is a miss among every box
    assert out["min_points_level"]["bev"]["0.7"]["AP"]["car"] == pytest.approx(1.0)
    assert out["min_points_level"]["num_gt"] == {"car": 1}
