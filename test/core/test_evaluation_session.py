"""The ROS-free accumulators of one ``mmfusion eval`` run (core/evaluation/session.py, core/segmentation/metrics.py,
detection3d/metrics.py DetectionAccumulator), fed with arrays and stamps as the ROS feed gives them."""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core.bagio import scan_bag
from ros_mmfusion.core.detection3d.metrics import DetectionAccumulator, DetectionEvaluator
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.evaluation.latency import pipeline_latency_summary
from ros_mmfusion.core.evaluation.session import GT_BOXES, GT_SEMANTIC, EvaluationSession
from ros_mmfusion.core.evaluation.topics import resolve_topic
from ros_mmfusion.core.navigation.metrics import NavigationRecord
from ros_mmfusion.core.segmentation.metrics import SegmentationAccumulator, confusion_matrix, scores

NAMES = ["unlabeled", "road", "car"]
CAR = [10.0, 0.0, -1.0, 4.0, 2.0, 1.5, 0.0]
PED = [5.0, 3.0, -1.0, 0.8, 0.8, 1.8, 0.0]


def _frames(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 3, (4, 5), dtype=np.uint8), rng.integers(0, 3, (4, 5), dtype=np.uint8))
            for _ in range(n)]


def test_segmentation_pairs_by_stamp_in_any_arrival_order_and_scores_like_one_confusion_matrix():
    frames = _frames(6)
    acc = SegmentationAccumulator(3, ignore_index=0)
    for i, (gt, _) in enumerate(frames):  # ground truth first for even frames, prediction first for odd ones
        if i % 2:
            acc.add(1000 + i, pred=frames[i][1])
        acc.add(1000 + i, gt=gt)
    for i in range(0, 6, 2):
        acc.add(1000 + i, pred=frames[i][1])
    acc.add(99, pred=frames[0][1])  # a prediction without ground truth is never matched
    assert acc.matched == 6
    expected = sum(confusion_matrix(gt, pred, 3, 0) for gt, pred in frames)
    np.testing.assert_array_equal(acc.confusion, expected)
    notes: list[str] = []
    result = acc.results(NAMES, ground_truth_frames=7, notes=notes)
    assert notes == []
    assert result == {**scores(expected, 0).as_dict(NAMES), "frames": 6, "ignore_index": 0,
                      "ground_truth_frames": 7, "class_names": NAMES, "confusion": expected.tolist(),
                      "out_of_range_by_class": [0, 0, 0]}


def test_segmentation_skips_size_mismatches_with_a_note_and_without_matches_gives_none():
    acc = SegmentationAccumulator(3, ignore_index=None)
    notes: list[str] = []
    assert acc.results(NAMES, 0, notes) is None
    assert notes == ["segmentation metrics skipped: no prediction matched a ground-truth frame by stamp"]
    acc.add(1, gt=np.zeros((4, 5), np.uint8), pred=np.zeros((5, 4), np.uint8))
    acc.add(2, gt=np.ones((4, 5), np.uint8), pred=np.ones((4, 5), np.uint8))
    notes = []
    result = acc.results(NAMES, 2, notes)
    assert (acc.size_mismatch, acc.matched, result["frames"]) == (1, 1, 1)
    assert notes == ["1 predictions differ in size from their ground truth: skipped"]
    assert result["confusion"][1][1] == 20 and np.sum(result["confusion"]) == 20


def test_segmentation_pending_frames_are_bounded_and_evictions_counted():
    acc = SegmentationAccumulator(3, ignore_index=0, pending_limit=4)
    for stamp in range(10):
        acc.add(stamp, gt=np.zeros((2, 2), np.uint8))  # ground truth whose predictions never come
        acc.add_rgb(stamp, np.zeros((2, 2, 3), np.uint8))
    assert len(acc._gt) == 4 and len(acc._rgb) == 4
    assert acc.evicted == 6  # camera images are not counted: they are only for the picture
    acc.add(9, pred=np.zeros((2, 2), np.uint8))
    assert acc.matched == 1
    acc.add(0, pred=np.zeros((2, 2), np.uint8))  # its ground truth was evicted: no match
    assert acc.matched == 1


def test_the_sample_frame_comes_from_the_second_half_with_its_camera_image_else_black():
    frames = _frames(4, seed=1)
    acc = SegmentationAccumulator(3, ignore_index=0, sample_after=2)
    rgb = [np.full((4, 5, 4), i, np.uint8) for i in range(4)]  # RGBA: the sample keeps three channels
    for i, (gt, pred) in enumerate(frames):
        acc.add_rgb(i, rgb[i])
        acc.add(i, gt=gt, pred=pred)
    gt, pred, image = acc.sample_frame()
    np.testing.assert_array_equal(gt, frames[2][0])
    np.testing.assert_array_equal(pred, frames[2][1])
    assert image.shape == (4, 5, 3) and (image == 2).all()

    no_rgb = SegmentationAccumulator(3, ignore_index=0, sample_after=0)
    assert no_rgb.sample_frame() is None
    for i, (gt, pred) in enumerate(frames):
        no_rgb.add(i, gt=gt, pred=pred)
    gt, pred, image = no_rgb.sample_frame()  # the last matched frame, on black
    np.testing.assert_array_equal(gt, frames[-1][0])
    assert image.shape == (4, 5, 3) and not image.any()


def _det_frames():
    return [
        (1_000, ([CAR], ["car"], np.zeros(1)), ([CAR], ["car"], np.array([0.9]))),
        (2_000, ([CAR, PED], ["car", "pedestrian"], np.zeros(2)), ([PED], ["pedestrian"], np.array([0.8]))),
        (3_000, ([PED], ["pedestrian"], np.zeros(1)), ([CAR], ["car"], np.array([0.3]))),
    ]


def test_detection_pairs_by_stamp_and_equals_the_evaluator_fed_directly():
    acc = DetectionAccumulator(DetectionEvaluator(classes=("car", "pedestrian")))
    direct = DetectionEvaluator(classes=("car", "pedestrian"))
    frames = _det_frames()
    for stamp, _, pred in frames:  # predictions all arrive before their ground truth
        acc.add(stamp, pred=pred)
    acc.add(4_000, pred=([CAR], ["car"], np.array([0.5])))  # never matched
    for stamp, gt, pred in frames:
        acc.add(stamp, gt=gt)
        direct.add_frame(*gt[:2], *pred)
    assert acc.matched == 3
    notes: list[str] = []
    result = acc.results(ground_truth_frames=5, notes=notes)
    assert notes == []
    assert result == {**direct.results(), "ground_truth_frames": 5, "sample_bev": acc.sample}
    assert acc.sample["stamp_ns"] == 2_000 and acc.sample["gt_labels"] == ["car", "pedestrian"]
    assert acc.sample["det_scores"] == [0.8]


def test_detection_without_a_match_gives_none_with_a_note_and_pending_frames_are_bounded():
    acc = DetectionAccumulator(DetectionEvaluator(), pending_limit=3)
    for stamp in range(5):
        acc.add(stamp, gt=([CAR], ["car"], np.zeros(1)))
    assert acc.evicted == 2 and len(acc._gt) == 3
    notes: list[str] = []
    assert acc.results(5, notes) is None
    assert notes == ["3D detection metrics skipped: no detection matched a ground-truth frame by stamp"]


def test_the_session_gives_the_sections_it_could_compute_in_order_with_notes_for_the_others():
    seg = SegmentationAccumulator(3, ignore_index=0)
    for i, (gt, pred) in enumerate(_frames(2)):
        seg.add(i, gt=gt, pred=pred)
    det = DetectionAccumulator(DetectionEvaluator())  # nothing matched
    nav = NavigationRecord(np.array([[0.0, 0.0], [1.0, 0.0]]), 0.25)  # nothing recorded
    session = EvaluationSession(segmentation=seg, detection=det, navigation=nav, odom_topic="/robot/odom")
    notes: list[str] = []
    sections = session.results(NAMES, {GT_SEMANTIC: 3, GT_BOXES: 4}, notes)
    assert list(sections) == ["segmentation"]
    assert sections["segmentation"]["ground_truth_frames"] == 3 and sections["segmentation"]["frames"] == 2
    assert notes[0] == "3D detection metrics skipped: no detection matched a ground-truth frame by stamp"
    assert len(notes) == 2 and notes[1].startswith("navigation metrics skipped")
    assert EvaluationSession().results(NAMES, {}, notes) == {} and len(notes) == 2


def test_pipeline_latency_summary():
    assert pipeline_latency_summary([]) is None
    assert pipeline_latency_summary([1.0, 3.0, 2.0]) == {"messages": 3, "p50_ms": 2.0,
                                                         "p95_ms": pytest.approx(2.9)}


def test_topics_resolve_like_a_node_in_the_root_namespace():
    assert resolve_topic("rgb/image", {}) == "/rgb/image"
    assert resolve_topic("/odom", {}) == "/odom"
    assert resolve_topic("rgb/image", {"rgb/image": "/camera/color/image_raw"}) == "/camera/color/image_raw"


def test_scan_bag_refuses_a_missing_or_unreadable_bag_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="bag not found"):
        scan_bag(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as info:
        scan_bag(tmp_path / "empty")
    assert "empty" in str(info.value) and "\n" not in str(info.value)


def test_a_navigation_record_for_a_node_takes_the_topomaps_poses_and_the_context_frame_period(tmp_path):
    from ros_mmfusion.core.navigation.topomap import build_topomap, load_topomap
    from ros_mmfusion.core.sim import record

    record("indoor_corridor", tmp_path / "pass1", 6, size=(48, 36), beams=16, rate=2.0)
    build_topomap(tmp_path / "pass1", "/camera/color/image_raw", 1.0, tmp_path / "bare")
    with pytest.raises(ConfigError, match="no odometry poses"):  # built without odometry: nothing to localise against
        NavigationRecord.for_node(str(tmp_path / "bare"))
    build_topomap(tmp_path / "pass1", "/camera/color/image_raw", 1.0, tmp_path / "map", "/odom")
    poses = load_topomap(tmp_path / "map").poses_xy_yaw()[:, :2]
    default = NavigationRecord.for_node(str(tmp_path / "map"))
    np.testing.assert_array_equal(default.node_xy, poses)
    assert default.dt_s == 0.25  # ViNT's 4 Hz
    assert NavigationRecord.for_node(str(tmp_path / "map"), 2.0).dt_s == 0.5
    assert NavigationRecord.for_node(str(tmp_path / "map"), 0.0, "no_such_variant").dt_s == 0.25
    with pytest.raises(ConfigError):
        NavigationRecord.for_node(str(tmp_path / "missing"))
