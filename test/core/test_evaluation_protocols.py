"""The KITTI and nuScenes detection protocols (core/detection3d/kitti_eval.py, nuscenes_eval.py) against hand-computed
figures of the official procedures, the segmentation conventions, and exact merging of every accumulator."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ros_mmfusion.core.detection3d.kitti_eval import (
    KittiEvaluator,
    compute_statistics,
    get_thresholds,
    kitti_frame_extras,
    parse_kitti_id,
)
from ros_mmfusion.core.detection3d.metrics import DetectionAccumulator, DetectionEvaluator, make_evaluator
from ros_mmfusion.core.detection3d.nuscenes_eval import NuScenesEvaluator
from ros_mmfusion.core.segmentation.metrics import ConfusionAccumulator


def car(x: float, y: float = 0.0) -> list[float]:
    return [x, y, -1.0, 4.0, 1.8, 1.5, 0.0]


# ---- nuScenes ---------------------------------------------------------------------------------------------------

def _issue_frame(false_positive_x: float):
    return [car(0), car(20)], ["car", "car"], [car(0.1), car(false_positive_x), car(20.1)], ["car"] * 3, [0.9, 0.8, 0.7]


def test_nuscenes_ap_interpolates_the_raw_curve_the_issue_example():
    # TP, FP, TP: recall 0.5, 0.5, 1; precision 1, 0.5, 2/3. Sampled at recall 0.11..1 by linear interpolation of
    # the raw curve: np.interp keeps 0.5 at recall 0.5's second point, then 0.5 -> 2/3 up to recall 1:
    # mean over r = 0.11..1 of max(0, p(r) - 0.1) / 0.9 = 0.7377 (the generic envelope gives 0.7942).
    ev = NuScenesEvaluator()
    ev.add_frame(*_issue_frame(45.0))  # the false positive inside the car range (50 m)
    levels = np.linspace(0, 1, 101)[11:]
    expected = np.mean(np.clip(np.interp(levels, [0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) - 0.1, 0, None)) / 0.9
    assert ev.results()["AP"]["car"]["1"] == pytest.approx(expected) == pytest.approx(0.7377, abs=5e-5)
    generic = DetectionEvaluator(classes=["car"])
    generic.add_frame(*_issue_frame(45.0))
    assert generic.results()["center_distance"]["1"]["AP"]["car"] == pytest.approx(0.7942, abs=5e-5)


def test_nuscenes_class_range_is_strict_and_zero_point_ground_truth_is_removed():
    ev = NuScenesEvaluator()
    ev.add_frame(*_issue_frame(50.0))  # at exactly 50 m: outside the car range (distance < 50 is kept)
    r = ev.results()
    assert r["AP"]["car"]["1"] == pytest.approx(1.0) and r["removed_out_of_range"] == 1
    ev = NuScenesEvaluator()
    ev.add_frame([car(5), car(10), car(39.9, 0.5), car(40.0)], ["car", "car", "pedestrian", "pedestrian"], [], [],
                 [], gt_num_points=[0, 3, 7, 7])
    r = ev.results()
    assert r["num_gt"]["car"] == 1 and r["removed_without_points"] == 1  # the car without LiDAR points
    assert r["num_gt"]["pedestrian"] == 1 and r["removed_out_of_range"] == 1  # 39.90 m kept, 40 m not (40 m range)


def test_nuscenes_match_needs_a_distance_strictly_below_the_threshold():
    ev, generic = NuScenesEvaluator(), DetectionEvaluator(classes=["car"])
    for e in (ev, generic):
        e.add_frame([car(10)], ["car"], [car(11)], ["car"], [0.9])  # exactly 1 m away
    assert ev.results()["AP"]["car"]["1"] == 0.0 and ev.results()["AP"]["car"]["2"] == pytest.approx(1.0)
    assert generic.results()["center_distance"]["1"]["AP"]["car"] == pytest.approx(1.0)  # generic: <=


def test_nuscenes_map_over_ten_classes_tp_errors_and_nds():
    ev = NuScenesEvaluator()
    ev.add_frame([car(10)], ["car"], [car(10)], ["car"], [0.9], gt_velocity=[[1.0, 0.0]], det_velocity=[[1.0, 0.0]],
                 gt_attributes=["vehicle.moving"], det_attributes=["vehicle.moving"])
    r = ev.results()
    assert r["per_class_AP"]["car"] == pytest.approx(1.0) and r["per_class_AP"]["bus"] == 0.0
    assert r["mAP"] == pytest.approx(0.1)  # 9 classes without ground truth score 0, as the devkit
    # car errors 0; the 9 others 1; traffic cone has no AOE/AVE/AAE and barrier no AVE/AAE
    assert r["mean_tp_errors"]["trans_err"] == pytest.approx(0.9)
    assert r["mean_tp_errors"]["orient_err"] == pytest.approx(8 / 9)
    assert r["mean_tp_errors"]["vel_err"] == pytest.approx(7 / 8)
    assert r["NDS"] == pytest.approx((5 * 0.1 + 0.1 + 0.1 + 1 / 9 + 1 / 8 + 1 / 8) / 10)
    plain = NuScenesEvaluator()
    plain.add_frame([car(10)], ["car"], [car(10)], ["car"], [0.9])  # vision_msgs: no velocity, no attributes
    p = plain.results()
    assert p["NDS"] is None and p["mean_tp_errors"]["vel_err"] is None and p["mean_tp_errors"]["attr_err"] is None
    assert p["NDS_without_velocity_attribute"] == pytest.approx((5 * 0.1 + 0.1 + 0.1 + 1 / 9) / 10)
    assert any("AVE and AAE" in n for n in plain.notes())


def test_nuscenes_tp_errors_of_an_offset_detection():
    ev = NuScenesEvaluator()
    det = [10.3, 0.4, -1.0, 4.0, 1.8, 1.5, 0.2]  # 0.5 m off, same size, 0.2 rad turned
    ev.add_frame([car(10)], ["car"], [det], ["car"], [0.9])
    err = ev.results()["tp_errors"]
    assert err["trans_err"]["car"] == pytest.approx(0.5) and err["scale_err"]["car"] == pytest.approx(0.0)
    assert err["orient_err"]["car"] == pytest.approx(0.2)


# ---- KITTI ------------------------------------------------------------------------------------------------------

def _kitti_issue(evaluators, n_gt: int = 80, n_det: int = 61):
    for i in range(n_gt):
        det = [[10.05, 0.0, -1.0, 4.0, 1.8, 1.5, 0.0]] if i < n_det else []
        for ev in evaluators:
            ev.add_frame([car(10)], ["car"], det, ["car"] * len(det), [0.5 + i / 200] if det else [])


def test_kitti_ap40_samples_thresholds_from_true_positives_the_issue_example():
    # 80 cars, 61 found: get_thresholds keeps every other score (recall step 1/80, level step 1/40): 31 of them for
    # the first 61, and the last true positive always: 32 thresholds of precision 1 -> AP40 = 31/40, AP11 = 8/11
    kitti, generic = KittiEvaluator(classes=("car",)), DetectionEvaluator(classes=["car"], iou_thresholds=(0.7,))
    _kitti_issue([kitti, generic])
    assert get_thresholds(np.linspace(1, 0.5, 61), 80).size == 32
    r = kitti.results()
    for kind in ("bev", "3d"):
        assert r[kind]["moderate"]["AP40"]["car"] == pytest.approx(0.775)
        assert r[kind]["moderate"]["AP11"]["car"] == pytest.approx(8 / 11)
    assert generic.results()["bev"]["0.7"]["AP"]["car"] == pytest.approx(0.75)


def test_kitti_ap40_is_capped_below_forty_ground_truth_objects():
    kitti, generic = KittiEvaluator(classes=("car",)), DetectionEvaluator(classes=["car"], iou_thresholds=(0.7,))
    _kitti_issue([kitti, generic], n_gt=10, n_det=10)  # a perfect detector of 10 cars
    r = kitti.results()["bev"]["easy"]
    assert r["AP40"]["car"] == pytest.approx(9 / 40) and r["AP11"]["car"] == pytest.approx(3 / 11)
    assert generic.results()["bev"]["0.7"]["AP"]["car"] == pytest.approx(1.0)


def _stats(ev: KittiEvaluator, level: int, name: str = "car") -> tuple[int, int, int]:
    return compute_statistics(ev.records[name][-1], "bev", level, 0.0, 0.7 if name == "car" else 0.5, True)[:3]


def test_kitti_difficulty_levels_from_height_occlusion_truncation():
    ev = KittiEvaluator(classes=("car",))
    gt = [car(10), car(20), car(30), car(40)]
    ev.add_frame(gt, ["car"] * 4, gt, ["car"] * 4, [0.9] * 4,
                 gt_boxes_2d=[[0, 0, 10, 50], [0, 0, 10, 30], [0, 0, 10, 50], [0, 0, 10, 50]],
                 gt_occluded=[0, 0, 2, 0], gt_truncated=[0.0, 0.0, 0.0, 0.4],
                 det_boxes_2d=[[0, 0, 10, 50]] * 4)
    # easy: only the first (the 30 px box is <= 40, occlusion 2 > 0, truncation 0.4 > 0.15): 1 TP, others ignored
    assert _stats(ev, 0) == (1, 0, 0)
    assert _stats(ev, 1) == (2, 0, 0)  # moderate adds the 30 px box
    assert _stats(ev, 2) == (4, 0, 0)  # hard: everything
    assert [ev.evaluate("car", "bev", lv)["num_gt"] for lv in ("easy", "moderate", "hard")] == [1, 2, 4]


def test_kitti_similar_class_low_detections_and_dontcare_are_not_false_positives():
    ev = KittiEvaluator(classes=("car", "pedestrian"))
    ped = [25.0, 3.0, -1.0, 0.8, 0.6, 1.7, 0.0]
    ev.add_frame([car(10), ped], ["van", "person_sitting"], [car(10), ped, car(40), car(60)],
                 ["car", "pedestrian", "car", "car"], [0.9, 0.8, 0.7, 0.6],
                 gt_boxes_2d=[[0, 0, 10, 60], [50, 0, 60, 60]], gt_occluded=[0, 0], gt_truncated=[0, 0],
                 det_boxes_2d=[[0, 0, 10, 60], [50, 0, 60, 60], [100, 0, 110, 60], [200, 0, 210, 20]],
                 dontcare_2d=[[95, 0, 120, 70]])
    # the car on the van and the pedestrian on the person_sitting: ignored; the car at 40 m lies in a DontCare
    # region; the one at 60 m is 20 px high (< 25, ignored at every level)
    assert _stats(ev, 1) == (0, 0, 0) and _stats(ev, 1, "pedestrian") == (0, 0, 0)
    python_port = KittiEvaluator(classes=("car",), dontcare_bev_3d=False)
    python_port.add_frame([], [], [car(40)], ["car"], [0.7], gt_boxes_2d=[], gt_occluded=[], gt_truncated=[],
                          det_boxes_2d=[[100, 0, 110, 60]], dontcare_2d=[[95, 0, 120, 70]])
    assert _stats(python_port, 1) == (0, 1, 0)  # the Python port applies DontCare to 2D boxes only
    generic = DetectionEvaluator(classes=["car"], iou_thresholds=(0.7,))
    generic.add_frame([car(10)], ["van"], [car(10)], ["car"], [0.9])
    assert generic.curve("bev", 0.7, "car").num_det == 1 and generic.curve("bev", 0.7, "car").ap is None


def test_kitti_ids_and_2d_boxes_of_the_importer_give_the_frame_metadata():
    assert parse_kitti_id("3;truncated=0.25;occluded=1;alpha=-1.57") == (0.25, 1)
    assert parse_kitti_id("7") is None
    extras = kitti_frame_extras(["1;truncated=0.00;occluded=0;alpha=0.10", "0;truncated=0.30;occluded=2;alpha=1.00"],
                                [[0, 0, 10, 30], [5, 5, 25, 65], [100, 100, 150, 150]],
                                ["car", "car", "dontcare"],
                                ["0;truncated=0.30;occluded=2;alpha=1.00", "1;truncated=0.00;occluded=0;alpha=0.10",
                                 "2;truncated=-1.00;occluded=-1;alpha=-10.00"])
    np.testing.assert_array_equal(extras["gt_boxes_2d"], [[5, 5, 25, 65], [0, 0, 10, 30]])
    np.testing.assert_array_equal(extras["gt_occluded"], [0, 2])
    np.testing.assert_array_equal(extras["dontcare_2d"], [[100, 100, 150, 150]])
    assert kitti_frame_extras(["9"], [], [], []) == {}


def test_accumulator_pairs_the_2d_ground_truth_for_kitti_and_the_cloud_for_nuscenes():
    acc = DetectionAccumulator(make_evaluator("kitti"), needs_2d=True)
    gid = "0;truncated=0.00;occluded=0;alpha=0.00"
    acc.add(5, gt=(np.array([car(10)]), ["car"], np.ones(1), [gid]))
    acc.add(5, pred=(np.array([car(10)]), ["car"], np.array([0.9])))
    assert acc.matched == 0  # waits for the 2D boxes of the frame
    acc.add(5, boxes_2d=(np.array([[0, 0, 10, 30]]), ["car"], [gid]))
    assert acc.matched == 1 and acc.evaluator.frames_without_2d == 0
    assert acc.evaluator.evaluate("car", "bev", "easy")["num_gt"] == 0  # 30 px: not easy
    notes: list[str] = []
    assert acc.results(1, notes)["protocol"] == "kitti"
    nus = DetectionAccumulator(make_evaluator("nuscenes"))
    nus.add(7, gt=(np.array([car(10), car(20)]), ["car", "car"], np.ones(2)))
    nus.add(7, pred=(np.zeros((0, 7)), [], np.zeros(0)))
    assert nus.matched == 0
    nus.add(7, cloud=np.array([[10.0, 0.0, -1.0]]))  # one return, inside the first car only
    assert nus.matched == 1 and nus.evaluator.results()["num_gt"]["car"] == 1


# ---- segmentation -----------------------------------------------------------------------------------------------

def test_out_of_range_prediction_on_a_valid_pixel_is_wrong():
    acc = ConfusionAccumulator(3, ignore_index=0)
    acc.add(np.array([1, 1, 2, 2]), np.array([1, 255, 2, 2]))
    s = acc.scores()
    assert s.pixel_accuracy == pytest.approx(0.75) and s.out_of_range == 1
    assert s.iou[1] == pytest.approx(0.5) and s.iou[2] == pytest.approx(1.0)  # class 1: 1 / (2 + 1 - 1)


def test_miou_convention_present_or_all():
    gt, pred = np.array([1, 1, 2, 2]), np.array([1, 1, 2, 1])  # class 3 absent from both
    present, every = ConfusionAccumulator(4), ConfusionAccumulator(4, miou_convention="all")
    for acc in (present, every):
        acc.add(gt, pred)
    iou1, iou2 = 2 / 3, 1 / 2
    assert present.scores().miou == pytest.approx((iou1 + iou2) / 2)
    assert every.scores().miou == pytest.approx((iou1 + iou2 + 0.0) / 3)  # ignore class 0 never counted
    assert every.scores().as_dict()["miou_convention"] == "all"
    with pytest.raises(ValueError, match="mIoU"):
        present.merge(every)


# ---- merging: the sum of two halves is the whole ----------------------------------------------------------------

_box = st.tuples(st.floats(0, 30), st.floats(-5, 5), st.floats(0.5, 4.5), st.floats(0, 3.1))
_frame = st.tuples(st.lists(st.tuples(_box, st.sampled_from(["car", "pedestrian", "van"])), max_size=3),
                   st.lists(st.tuples(_box, st.sampled_from(["car", "pedestrian"]), st.floats(0.05, 1.0)),
                            max_size=3), st.integers(10, 60))


def _arrays(frame):
    gts, dets, height = frame
    gb = [[x, y, -1.0, size, size / 2, 1.5, yaw] for (x, y, size, yaw), _ in gts]
    db = [[x, y, -1.0, size, size / 2, 1.5, yaw] for (x, y, size, yaw), _, _ in dets]
    return (gb, [n for _, n in gts], db, [n for _, n, _ in dets], [s for _, _, s in dets],
            {"gt_boxes_2d": [[0, 0, 10, height]] * len(gts), "gt_occluded": [0] * len(gts),
             "gt_truncated": [0.0] * len(gts), "det_boxes_2d": [[0, 0, 10, height + 5]] * len(dets),
             "dontcare_2d": [[0, 0, 5, 80]]})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frame, min_size=1, max_size=6), st.integers(0, 6))
def test_every_accumulator_merges_exactly(frames, cut):
    cut = min(cut, len(frames))
    makers = (lambda: KittiEvaluator(classes=("car", "pedestrian")), NuScenesEvaluator,
              lambda: DetectionEvaluator(classes=["car", "pedestrian"]))
    for make in makers:
        whole, first, second = make(), make(), make()
        for i, frame in enumerate(frames):
            gb, gl, db, dl, ds, extras = _arrays(frame)
            extras = extras if isinstance(whole, KittiEvaluator) else (
                {"gt_num_points": [1] * len(gb)} if isinstance(whole, NuScenesEvaluator) else {})
            whole.add_frame(gb, gl, db, dl, ds, **extras)
            (first if i < cut else second).add_frame(gb, gl, db, dl, ds, **extras)
        assert first.merge(second).results() == whole.results()
    rng = np.random.default_rng(len(frames) * 7 + cut)
    images = [(rng.integers(0, 4, (3, 5)), rng.choice([0, 1, 2, 3, 255], (3, 5))) for _ in frames]
    whole_seg, a, b = (ConfusionAccumulator(4, miou_convention="all") for _ in range(3))
    for i, (g, p) in enumerate(images):
        whole_seg.add(g, p)
        (a if i < cut else b).add(g, p)
    merged = a.merge(b)
    np.testing.assert_array_equal(merged.confusion, whole_seg.confusion)
    np.testing.assert_array_equal(merged.out_of_range, whole_seg.out_of_range)
    assert merged.scores().as_dict() == whole_seg.scores().as_dict() or np.isnan(whole_seg.scores().miou)
