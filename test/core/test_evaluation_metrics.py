"""Evaluation metrics on hand-built cases with known answers, and mIoU cross-checked against scikit-learn."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ros_mmfusion.core.evaluation.latency import latency_stats
from ros_mmfusion.core.evaluation.report import LatencySeries, SampleFrame, write_report
from ros_mmfusion.core.segmentation.metrics import ConfusionAccumulator, confusion_matrix, scores


def test_confusion_and_scores_of_a_hand_built_case():
    # 3 classes, class 0 ignored. Ground truth / prediction pixel pairs:
    gt = np.array([[0, 1, 1, 1], [2, 2, 2, 1]])
    pred = np.array([[2, 1, 1, 2], [2, 2, 1, 1]])
    cm = confusion_matrix(gt, pred, 3, ignore_index=0)
    # (gt 1 -> 1) x3, (1 -> 2) x1, (2 -> 2) x2, (2 -> 1) x1; the ignored gt-0 pixel is left out
    assert cm.tolist() == [[0, 0, 0], [0, 3, 1], [0, 1, 2]]
    s = scores(cm, ignore_index=0)
    # IoU1 = 3 / (4 + 4 - 3) = 0.6; IoU2 = 2 / (3 + 3 - 2) = 0.5
    assert math.isnan(s.iou[0])
    assert s.iou[1] == pytest.approx(0.6) and s.iou[2] == pytest.approx(0.5)
    assert s.miou == pytest.approx(0.55)
    assert s.pixel_accuracy == pytest.approx(5 / 7)
    assert s.class_accuracy[1] == pytest.approx(0.75) and s.class_accuracy[2] == pytest.approx(2 / 3)


def test_perfect_and_disjoint_predictions():
    gt = np.array([1, 1, 2, 2, 3])
    perfect = scores(confusion_matrix(gt, gt, 4), ignore_index=0)
    assert perfect.miou == 1.0 and perfect.pixel_accuracy == 1.0
    wrong = scores(confusion_matrix(gt, np.array([2, 2, 3, 3, 1]), 4), ignore_index=0)
    assert wrong.miou == 0.0 and wrong.pixel_accuracy == 0.0


def test_classes_absent_everywhere_are_skipped_and_no_ignore_label_counts_every_class():
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    s = scores(confusion_matrix(gt, pred, 5, ignore_index=None), ignore_index=None)
    # class 0: 1 / (2 + 1 - 1) = 0.5; class 1: 2 / (2 + 3 - 2) = 2/3; classes 2..4 absent -> NaN, not 0
    assert s.iou[0] == pytest.approx(0.5) and s.iou[1] == pytest.approx(2 / 3)
    assert np.isnan(s.iou[2:]).all()
    assert s.miou == pytest.approx((0.5 + 2 / 3) / 2)
    assert s.pixel_accuracy == pytest.approx(0.75)


def test_out_of_range_ids_are_left_out_and_sizes_must_agree():
    cm = confusion_matrix(np.array([1, 255, 2]), np.array([1, 1, 7]), 3, ignore_index=None)
    assert cm.sum() == 1 and cm[1, 1] == 1
    with pytest.raises(ValueError, match="differ in size"):
        confusion_matrix(np.zeros(3), np.zeros(4), 3)


def test_confusion_accumulated_over_frames_equals_one_of_all_pixels():
    rng = np.random.default_rng(1)
    frames = [(rng.integers(0, 6, (7, 9)), rng.integers(0, 6, (7, 9))) for _ in range(4)]
    total = sum(confusion_matrix(g, p, 6) for g, p in frames)
    whole = confusion_matrix(np.concatenate([g for g, _ in frames]), np.concatenate([p for _, p in frames]), 6)
    assert (total == whole).all()


def test_confusion_accumulators_merge_into_the_one_pass_result():
    """Per-worker (or per-scenario) accumulators add up to exactly the accumulator of all frames."""
    rng = np.random.default_rng(2)
    frames = [(rng.integers(0, 6, (7, 9)), rng.integers(0, 6, (7, 9))) for _ in range(5)]
    one_pass, first, second = (ConfusionAccumulator(6, ignore_index=0) for _ in range(3))
    for i, (g, p) in enumerate(frames):
        one_pass.add(g, p)
        (first if i < 2 else second).add(g, p)
    merged = first + second
    assert (merged.confusion == one_pass.confusion).all() and merged.frames == one_pass.frames == 5
    assert (first.merge(second).confusion == merged.confusion).all()
    assert merged.scores().miou == scores(one_pass.confusion, 0).miou
    assert first.frames == 2 and second.frames == 3, "merging leaves its operands unchanged"
    assert sum([first, second], ConfusionAccumulator(6)).frames == 5
    with pytest.raises(ValueError, match="cannot merge"):
        first + ConfusionAccumulator(7)
    with pytest.raises(ValueError, match="cannot merge"):
        first.merge(ConfusionAccumulator(6, ignore_index=None))


@pytest.mark.parametrize("seed, ignore", [(0, 0), (1, 0), (2, None), (3, 4)])
def test_miou_matches_scikit_learn(seed, ignore):
    """Independent implementation: sklearn's confusion_matrix and jaccard_score (per-class IoU)."""
    from sklearn.metrics import accuracy_score, jaccard_score
    from sklearn.metrics import confusion_matrix as sk_confusion

    rng = np.random.default_rng(seed)
    num_classes = 8
    gt = rng.integers(0, num_classes - 1, (40, 50))  # class 7 never in gt ...
    pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, num_classes - 1, gt.shape))
    pred[0, :5] = 7  # ... but predicted a few times: IoU 0, counted in the mean
    ours_cm = confusion_matrix(gt, pred, num_classes, ignore_index=ignore)
    ours = scores(ours_cm, ignore_index=ignore)
    keep = np.ones(gt.size, bool) if ignore is None else gt.ravel() != ignore
    g, p = gt.ravel()[keep], pred.ravel()[keep]
    labels = [c for c in range(num_classes) if c != ignore]
    assert (sk_confusion(g, p, labels=list(range(num_classes))) == ours_cm).all()
    present = [c for c in labels if (g == c).any() or (p == c).any()]
    sk_iou = jaccard_score(g, p, labels=present, average=None, zero_division=0)
    assert np.allclose(ours.iou[present], sk_iou)
    assert ours.miou == pytest.approx(jaccard_score(g, p, labels=present, average="macro", zero_division=0))
    assert ours.pixel_accuracy == pytest.approx(accuracy_score(g, p))


def test_latency_stats_known_answer():
    stamps = [i * 100_000_000 for i in range(10)]  # 10 Hz inputs
    arrivals = [s + (i + 1) * 1_000_000 for i, s in enumerate(stamps)]  # latencies 1..10 ms
    s = latency_stats(stamps, arrivals, expected=12)
    assert s.count == 10 and s.dropped == 2
    assert s.p50_ms == pytest.approx(5.5) and s.max_ms == pytest.approx(10.0)
    assert s.p95_ms == pytest.approx(np.percentile(np.arange(1, 11), 95))
    assert s.p99_ms == pytest.approx(9.91)
    assert s.rate_hz == pytest.approx(9 / 0.909)
    d = s.as_dict()
    assert d["drop_ratio"] == pytest.approx(2 / 12, abs=1e-4) and d["p50_ms"] == 5.5


def test_latency_stats_of_nothing_and_duplicates():
    empty = latency_stats([], [], expected=5)
    assert empty.count == 0 and empty.dropped == 5 and empty.as_dict()["p50_ms"] is None
    dup = latency_stats([1, 1, 2], [5, 6, 7], expected=3)
    assert dup.dropped == 1  # a repeated stamp is one frame
    with pytest.raises(ValueError):
        latency_stats([1], [1, 2])


def test_report_files_are_written_with_plots_and_strict_json(tmp_path):
    s = scores(confusion_matrix(np.array([1, 1, 2]), np.array([1, 2, 2]), 3), ignore_index=0)
    lat = latency_stats([0, 10**8], [5 * 10**6, 10**8 + 7 * 10**6], 2).as_dict()
    metrics = {"run": {"preset": "segmentation", "bag": "b"}, "latency": {"/seg": lat}, "notes": ["a note"],
               "segmentation": {**s.as_dict(["unlabeled", "a", "b"]), "frames": 1, "ignore_index": 0}}
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    sample = SampleFrame(np.zeros((6, 8, 3), np.uint8), np.ones((6, 8), np.uint8), np.full((6, 8), 2, np.uint8),
                         palette)
    paths = write_report(tmp_path, metrics, {"/seg": LatencySeries([0, 10**8], [5 * 10**6, 10**8 + 7 * 10**6])},
                         sample)
    data = json.loads(paths["metrics"].read_text())
    assert data["segmentation"]["IoU"]["unlabeled"] is None and data["segmentation"]["mIoU"] == pytest.approx(0.5)
    for key in ("iou_plot", "latency_histogram", "latency_timeline", "sample"):
        assert paths[key].read_bytes().startswith(b"\x89PNG")
    html = paths["html"].read_text()
    assert "<table>" in html and 'src="iou_per_class.png"' in html and "a note" in html
    assert "| /seg | 2 | 2 | 0 |" in paths["markdown"].read_text()
