"""The KITTI object benchmark's 3D detection evaluation (ROS-free), as its official devkit computes it.

Written from the procedure of the KITTI devkit's ``evaluate_object`` (C++) and of the widely used Python port
(kitti-object-eval-python, used by OpenPCDet and mmdetection3d); the numbers are fractions (the tools print x100):

* **Classes and IoU**: car (and van, truck) at IoU ``> 0.7``, pedestrian, cyclist (and the others) at ``> 0.5``,
  strictly greater, BEV (rotated rectangle) and 3D IoU of :mod:`ros_mmfusion.core.detection3d.metrics`.
* **Difficulty levels** from the ground truth's 2D box (camera image) height, occlusion and truncation: easy
  (height > 40 px, occluded <= 0, truncated <= 0.15), moderate (> 25 px, <= 1, <= 0.3), hard (> 25 px, <= 2, <= 0.5).
  Ground truth outside a level is *ignored* (neither a miss nor, when detected, a false positive). A detection whose
  2D box is lower than the level's height (``<``, pixels) is ignored too (of any class, as the devkit does).
* **Similar classes**: a van for car and a person_sitting for pedestrian are ignored ground truth (detecting one is
  not a false positive; missing it not a miss). DontCare regions (2D boxes): a detection of the class whose 2D box
  lies more than the class's IoU threshold inside one (intersection / detection area) is not a false positive (the
  C++ devkit, every metric; ``dontcare_bev_3d=False``: the Python port, which applies it to 2D boxes only, so not to
  BEV/3D). Without detection 2D boxes (a LiDAR detector's output has none) neither rule can apply: results say so.
* **Matching** (per frame, class, level, threshold): each non-ignored-class ground truth takes, among unassigned
  detections of the class, the one of highest score (for the threshold scores) or of highest overlap (for
  precision and recall; a non-ignored detection before an ignored one) with IoU above the threshold.
* **AP**: the scores of the true positives over all frames give up to 41 score thresholds (``get_thresholds``:
  walking the scores best first, a score is taken when its recall ``(i + 1) / num_gt`` is nearer the next recall
  level ``k / 40`` than the next score's, and always for the last true positive, which so is credited with one more
  recall level); at each threshold precision = TP / (TP + FP); precision is made non-increasing (maximum over the
  later thresholds); **AP40** = the mean of the 40 sampled precisions after the first, **AP11** = the mean of the 11
  at indices 0, 4, ..., 40. A class with fewer than 40 ground-truth objects gets at most one threshold per true
  positive, so its AP40 is capped at ``(num_gt - 1) / 40`` (the rule the official tools have).
* A class/level without ground truth has AP ``None`` (the tools print 0).

:class:`KittiEvaluator` keeps per frame and class plain arrays (overlaps, flags, scores), so evaluators merge
(``merge``: the frames of both) and give exactly what one evaluator of every frame gives.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ros_mmfusion.core.detection3d.box_iou import _boxes, bev_iou_matrix, iou3d_matrix

KITTI_CLASSES = ("car", "pedestrian", "cyclist")
MIN_OVERLAP = {"car": 0.7, "van": 0.7, "truck": 0.7}
"""IoU thresholds of the KITTI benchmark for BEV and 3D (``>``); classes not listed: 0.5."""
SIMILAR_CLASS = {"car": "van", "pedestrian": "person_sitting"}
"""Ground truth of the similar class is ignored for the evaluated class (neither a miss nor a false positive)."""
LEVELS = {"easy": (40.0, 0, 0.15), "moderate": (25.0, 1, 0.3), "hard": (25.0, 2, 0.5)}
"""Difficulty: (minimum 2D box height in pixels, maximum occlusion, maximum truncation)."""
N_SAMPLE_PTS = 41
KINDS = ("bev", "3d")


def min_overlap(name: str) -> float:
    """KITTI's IoU threshold of class ``name`` (lower case)."""
    return MIN_OVERLAP.get(name, 0.5)


_ID_FIELD = re.compile(r"(truncated|occluded)=([-+0-9.eE]+)")


def parse_kitti_id(text: str) -> tuple[float, int] | None:
    """``(truncated, occluded)`` of a Detection3D/2D ``id`` as ``mmfusion import kitti`` writes it
    (``row;truncated=T;occluded=O;alpha=A``), or None when it carries neither."""
    found = dict(_ID_FIELD.findall(text or ""))
    if "truncated" not in found or "occluded" not in found:
        return None
    return float(found["truncated"]), int(float(found["occluded"]))


def get_thresholds(scores: np.ndarray, num_gt: int, num_sample_pts: int = N_SAMPLE_PTS) -> np.ndarray:
    """The score thresholds sampled from the true positives' ``scores`` (the official ``getThresholds``)."""
    scores = np.sort(np.asarray(scores, np.float64))[::-1]
    current_recall = 0.0
    thresholds = []
    for i, score in enumerate(scores):
        l_recall = (i + 1) / num_gt
        r_recall = (i + 2) / num_gt if i < scores.size - 1 else l_recall
        if r_recall - current_recall < current_recall - l_recall and i < scores.size - 1:
            continue
        thresholds.append(score)
        current_recall += 1.0 / (num_sample_pts - 1.0)
    return np.asarray(thresholds, np.float64)


def ap_from_precision(precision: np.ndarray) -> tuple[float, float]:
    """``(AP40, AP11)`` of the 41 sampled precisions (made non-increasing first)."""
    envelope = np.maximum.accumulate(np.asarray(precision, np.float64)[::-1])[::-1]
    return float(envelope[1:].sum() / 40.0), float(envelope[0::4].sum() / 11.0)


def _image_overlap_det_area(det: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """``(D, M)`` intersection / detection area of axis-aligned image boxes (left, top, right, bottom)."""
    if det.shape[0] == 0 or regions.shape[0] == 0:
        return np.zeros((det.shape[0], regions.shape[0]))
    iw = np.minimum.outer(det[:, 2], regions[:, 2]) - np.maximum.outer(det[:, 0], regions[:, 0])
    ih = np.minimum.outer(det[:, 3], regions[:, 3]) - np.maximum.outer(det[:, 1], regions[:, 1])
    area = ((det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1]))[:, None]
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    return np.where(area > 0, inter / np.where(area > 0, area, 1.0), 0.0)


@dataclass
class KittiFrameClass:
    """One frame's data for one evaluated class (plain arrays): ``gt_flag``/``det_flag`` ``(levels, N)`` int8
    (0 evaluated, 1 ignored, -1 not considered), detection ``scores``, ``overlaps`` per kind ``(D, G)`` IoU and
    ``dontcare`` ``(D, M)`` detection-area overlap with the frame's DontCare regions."""

    gt_flag: np.ndarray
    det_flag: np.ndarray
    scores: np.ndarray
    overlaps: dict[str, np.ndarray]
    dontcare: np.ndarray


def compute_statistics(frame: KittiFrameClass, kind: str, level: int, threshold: float, min_iou: float,
                       compute_fp: bool) -> tuple[int, int, int, list[float]]:
    """``(tp, fp, fn, true-positive scores)`` of one frame (the devkit's ``computeStatistics``)."""
    overlaps, scores = frame.overlaps[kind], frame.scores
    gt_flag, det_flag = frame.gt_flag[level], frame.det_flag[level]
    n_det = scores.size
    assigned = np.zeros(n_det, bool)
    below = scores < threshold if compute_fp else np.zeros(n_det, bool)
    tp = fp = fn = 0
    tp_scores: list[float] = []
    usable = (det_flag != -1) & ~below
    for i in np.flatnonzero(gt_flag != -1):
        det_idx, found, best, on_ignored = -1, False, 0.0, False
        best_score = -np.inf
        for j in np.flatnonzero(usable & ~assigned):
            overlap = overlaps[j, i]
            if overlap <= min_iou:
                continue
            if not compute_fp:
                if scores[j] > best_score:
                    det_idx, found, best_score = j, True, scores[j]
            elif (overlap > best or on_ignored) and det_flag[j] == 0:
                det_idx, found, best, on_ignored = j, True, overlap, False
            elif not found and det_flag[j] == 1:
                det_idx, found, on_ignored = j, True, True
        if not found:
            fn += int(gt_flag[i] == 0)
        elif gt_flag[i] == 1 or det_flag[det_idx] == 1:
            assigned[det_idx] = True
        else:
            tp += 1
            tp_scores.append(float(scores[det_idx]))
            assigned[det_idx] = True
    if compute_fp:
        free = ~assigned & (det_flag == 0) & ~below
        fp = int(free.sum())
        if frame.dontcare.shape[1]:
            fp -= int((free & (frame.dontcare > min_iou).any(axis=1)).sum())
    return tp, fp, fn, tp_scores


@dataclass
class KittiEvaluator:
    """Accumulates frames; ``results()`` gives AP40/AP11 per class, level (easy/moderate/hard) and kind (BEV, 3D).

    ``classes``: evaluated class names (lower case; default car, pedestrian, cyclist); ``dontcare_bev_3d``: apply
    DontCare regions to BEV/3D as the C++ devkit does (True) or not, as the Python port (False)."""

    PROTOCOL = "kitti"

    classes: Sequence[str] = KITTI_CLASSES
    dontcare_bev_3d: bool = True
    frames: int = 0
    frames_without_2d: int = 0  # ground truth without 2D boxes/occlusion/truncation: every box in every level
    frames_without_det_2d: int = 0  # detections without 2D boxes: no height rule, no DontCare for them
    records: dict[str, list[KittiFrameClass]] = field(default_factory=dict)

    def add_frame(self, gt_boxes, gt_labels: Sequence[str], det_boxes, det_labels: Sequence[str], det_scores, *,
                  gt_boxes_2d=None, gt_occluded=None, gt_truncated=None, dontcare_2d=None,
                  det_boxes_2d=None) -> None:
        """One frame. Boxes ``(N, 7)`` LiDAR frame; ``*_boxes_2d`` ``(N, 4)`` image boxes (left, top, right,
        bottom; pixels); ``gt_occluded`` 0..3, ``gt_truncated`` 0..1; ``dontcare_2d`` ``(M, 4)`` DontCare regions."""
        gt, det = _boxes(gt_boxes), _boxes(det_boxes)
        gl = np.asarray([str(v).lower() for v in gt_labels], dtype=object)
        dl = np.asarray([str(v).lower() for v in det_labels], dtype=object)
        ds = np.asarray(det_scores, np.float64).reshape(-1)
        if gt.shape[0] != gl.size or det.shape[0] != dl.size or det.shape[0] != ds.size:
            raise ValueError("boxes, labels and scores disagree in number")
        if gt_boxes_2d is None or gt_occluded is None or gt_truncated is None:
            self.frames_without_2d += 1
            gt_height = np.full(gt.shape[0], np.inf)
            occluded, truncated = np.zeros(gt.shape[0]), np.zeros(gt.shape[0])
        else:
            g2 = np.asarray(gt_boxes_2d, np.float64).reshape(-1, 4)
            gt_height = g2[:, 3] - g2[:, 1]
            occluded = np.asarray(gt_occluded, np.float64).reshape(-1)
            truncated = np.asarray(gt_truncated, np.float64).reshape(-1)
            if not gt_height.size == occluded.size == truncated.size == gt.shape[0]:
                raise ValueError("2D boxes, occlusion and truncation must give one value per ground-truth box")
        if det_boxes_2d is None:
            self.frames_without_det_2d += int(det.shape[0] > 0)
            det_height = np.full(det.shape[0], np.inf)
            d2 = np.zeros((det.shape[0], 4))
            regions = np.zeros((0, 4))
        else:
            d2 = np.asarray(det_boxes_2d, np.float64).reshape(-1, 4)
            if d2.shape[0] != det.shape[0]:
                raise ValueError("det_boxes_2d must give one image box per detection")
            det_height = np.abs(d2[:, 3] - d2[:, 1])
            regions = np.zeros((0, 4)) if dontcare_2d is None else np.asarray(dontcare_2d, np.float64).reshape(-1, 4)
        self.frames += 1
        levels = list(LEVELS.values())
        for name in self.classes:
            similar = SIMILAR_CLASS.get(name)
            g_sel = (gl == name) | ((gl == similar) if similar else False)
            valid = np.where(gl[g_sel] == name, 1, 0)
            ignore_by_level = np.stack([(occluded[g_sel] > occ) | (truncated[g_sel] > trunc)
                                        | (gt_height[g_sel] <= h) for h, occ, trunc in levels]) \
                if g_sel.any() else np.zeros((len(levels), 0), bool)
            gt_flag = np.where((valid == 1) & ~ignore_by_level, 0, 1).astype(np.int8)
            # detections of the class, and of any class when low enough to be ignored (as the devkit)
            low = np.stack([det_height < h for h, _, _ in levels]) if det.shape[0] else np.zeros((len(levels), 0),
                                                                                                 bool)
            d_sel = (dl == name) | low.any(axis=0)
            det_flag = np.where(low[:, d_sel], 1, np.where(dl[d_sel] == name, 0, -1)).astype(np.int8)
            if not g_sel.any() and not d_sel.any():
                continue
            dontcare = (_image_overlap_det_area(d2[d_sel], regions) if self.dontcare_bev_3d
                        else np.zeros((int(d_sel.sum()), 0)))
            overlaps = {"bev": bev_iou_matrix(det[d_sel], gt[g_sel]), "3d": iou3d_matrix(det[d_sel], gt[g_sel])}
            self.records.setdefault(name, []).append(KittiFrameClass(gt_flag, det_flag, ds[d_sel], overlaps,
                                                                     dontcare))

    def _settings(self) -> tuple:
        return tuple(self.classes), self.dontcare_bev_3d

    def merge(self, other: KittiEvaluator) -> KittiEvaluator:
        """Add ``other``'s frames (in place; returns self); ValueError when they evaluate differently."""
        if other._settings() != self._settings():
            raise ValueError(f"cannot merge KITTI evaluators with different settings: {other._settings()} into "
                             f"{self._settings()}")
        for name, recs in other.records.items():
            self.records.setdefault(name, []).extend(recs)
        self.frames += other.frames
        self.frames_without_2d += other.frames_without_2d
        self.frames_without_det_2d += other.frames_without_det_2d
        return self

    def evaluate(self, name: str, kind: str, level: str) -> dict:
        """``{"AP40", "AP11", "num_gt", "thresholds", "precision"}`` of one class, kind and level."""
        recs = self.records.get(name, [])
        li = list(LEVELS).index(level)
        iou = min_overlap(name)
        num_gt = int(sum(int((r.gt_flag[li] == 0).sum()) for r in recs))
        scores: list[float] = []
        for r in recs:
            scores += compute_statistics(r, kind, li, 0.0, iou, compute_fp=False)[3]
        precision = np.zeros(N_SAMPLE_PTS)
        thresholds = get_thresholds(np.asarray(scores), num_gt) if num_gt else np.zeros(0)
        for t_i, thr in enumerate(thresholds[:N_SAMPLE_PTS]):
            tp = fp = 0
            for r in recs:
                s = compute_statistics(r, kind, li, thr, iou, compute_fp=True)
                tp, fp = tp + s[0], fp + s[1]
            precision[t_i] = tp / (tp + fp) if tp + fp else 0.0
        ap40, ap11 = ap_from_precision(precision) if num_gt else (None, None)
        return {"AP40": ap40, "AP11": ap11, "num_gt": num_gt, "thresholds": int(thresholds.size),
                "precision": precision.tolist()}

    def results(self) -> dict:
        """``{"bev"|"3d": {level: {"AP40": {class: ap}, "AP11": {...}, "mAP40", "mAP11", "num_gt"}}}`` and what
        the frames lacked (2D boxes)."""
        out: dict = {"protocol": "kitti", "frames": self.frames, "classes": list(self.classes),
                     "iou_thresholds": {c: min_overlap(c) for c in self.classes},
                     "levels": {k: {"min_height_px": h, "max_occlusion": o, "max_truncation": t}
                                for k, (h, o, t) in LEVELS.items()},
                     "frames_without_ground_truth_2d": self.frames_without_2d,
                     "frames_without_detection_2d": self.frames_without_det_2d,
                     "dontcare_bev_3d": self.dontcare_bev_3d}
        for kind in KINDS:
            section = {}
            for level in LEVELS:
                per = {c: self.evaluate(c, kind, level) for c in self.classes}
                entry: dict = {"num_gt": {c: v["num_gt"] for c, v in per.items()}}
                for ap in ("AP40", "AP11"):
                    entry[ap] = {c: v[ap] for c, v in per.items()}
                    defined = [v for v in entry[ap].values() if v is not None]
                    entry[f"m{ap}"] = float(np.mean(defined)) if defined else None
                section[level] = entry
            out[kind] = section
        return out

    def notes(self) -> list[str]:
        """What the frames lacked, in words (for the report's notes)."""
        notes = []
        if self.frames_without_2d:
            notes.append(f"KITTI protocol: {self.frames_without_2d} of {self.frames} frames had no ground-truth 2D "
                         "boxes/occlusion/truncation (/ground_truth/boxes_2d, ids of `mmfusion import kitti`): their "
                         "boxes count in every difficulty level")
        if self.frames_without_det_2d:
            notes.append(f"KITTI protocol: {self.frames_without_det_2d} frames' detections had no 2D image boxes: "
                         "the minimum-height rule and DontCare regions do not apply to them")
        return notes


def kitti_frame_extras(gt_ids: Sequence[str], boxes_2d, labels_2d: Sequence[str], ids_2d: Sequence[str]) -> dict:
    """``add_frame`` keywords from what ``mmfusion import kitti`` publishes for a frame: the 3D ground truth's ids
    (``row;truncated=..;occluded=..;alpha=..``) and the 2D boxes of every label row (``/ground_truth/boxes_2d``:
    ``(M, 4)`` left, top, right, bottom pixels, class names, the same ids), joined by row; DontCare rows become the
    DontCare regions. ``{}`` when a 3D box has no metadata or no 2D box of its row (the frame counts as without)."""
    b2 = np.asarray(boxes_2d, np.float64).reshape(-1, 4)
    rows_2d = {str(i).split(";", 1)[0]: k for k, i in enumerate(ids_2d)}
    boxes, occluded, truncated = [], [], []
    for gid in gt_ids:
        meta, k = parse_kitti_id(gid), rows_2d.get(str(gid).split(";", 1)[0])
        if meta is None or k is None:
            return {}
        truncated.append(meta[0])
        occluded.append(meta[1])
        boxes.append(b2[k])
    dontcare = [b2[k] for k, name in enumerate(labels_2d) if str(name).lower() == "dontcare"]
    return {"gt_boxes_2d": np.asarray(boxes, np.float64).reshape(-1, 4), "gt_occluded": np.asarray(occluded),
            "gt_truncated": np.asarray(truncated), "dontcare_2d": np.asarray(dontcare, np.float64).reshape(-1, 4)}
