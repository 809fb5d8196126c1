"""3D detection metrics (ROS-free): average precision per class in bird's-eye view, in 3D, and by centre distance.

Implemented from the published metric definitions (PASCAL VOC / KITTI object benchmark / nuScenes detection task):

* **Boxes** are ``(N, 7)`` ``(x, y, z, dx, dy, dz, yaw)``: centre, length/width/height (metres), yaw about +z
  (radians), all in one frame (the LiDAR frame for ``/ground_truth/boxes`` and ``detection3d_node``'s output).
* **BEV IoU** is the exact rotated-rectangle IoU of ``core.detection3d.nms`` (CPU). **3D IoU** = BEV intersection area
  x vertical overlap of the two ``[z - dz/2, z + dz/2]`` intervals / (volume a + volume b - that intersection).
* **Matching** (per frame and class): detections in descending score order (ties in input order); each takes the
  still unmatched ground-truth box of its class with the highest IoU, a true positive when that IoU is
  ``>= threshold``, else a false positive; ground truth left unmatched are misses. Centre-distance matching is the same
  with the BEV (x, y) centre distance, the nearest unmatched box, a true positive when ``<= threshold`` metres.
  Classes never meet: a ``car`` detection cannot match a ``pedestrian`` box. No difficulty levels and no "don't care"
  regions. With ``bev_range`` ``(x_min, y_min, x_max, y_max)`` (the detector's range), ground-truth boxes and
  detections whose centre lies outside it are left out before matching; without it every box counts.
* **AP (IoU)**: the detections of all frames are ranked by score; ``precision(k) = TP(k) / k`` and
  ``recall(k) = TP(k) / num_gt``. ``interpolation="r40"`` (default, the KITTI benchmark's since 2019): the mean over
  the 40 recall levels ``1/40, 2/40, ..., 1`` of the interpolated precision ``max{precision(k) : recall(k) >= r}``
  (0 when recall ``r`` is never reached). ``interpolation="all"`` (PASCAL VOC 2010+): the exact area under the
  precision envelope (precision made monotonically non-increasing in recall), summed over every recall step.
* **Centre-distance AP** (nuScenes): thresholds 0.5, 1, 2, 4 m; precision interpolated at 101 recall levels
  ``0, 0.01, ..., 1`` as above; levels with recall <= 0.1 are dropped and 0.1 subtracted from precision (clipped at
  0); AP is the mean of what remains divided by 0.9, so a perfect detector scores 1. mAP per class averages the four
  thresholds; the overall mAP averages classes.
* **Merging**: ``DetectionEvaluator.merge`` adds another evaluator's frames (e.g. one per robot or per bag, evaluated
  apart); the results equal those of one evaluator given every frame, the merged-in frames after its own.
* **One run** (``mmfusion eval``): :class:`DetectionAccumulator` pairs each detection frame with its ground-truth
  frame by stamp (ns) and feeds a :class:`DetectionEvaluator`; pending frames are bounded.
* A class without ground truth has AP ``None`` (undefined; its detections are counted); a class with ground truth
  but no detections has AP 0. mAP figures average the classes whose AP is defined.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ros_mmfusion.core.detection3d.box_iou import (
    _boxes,
    bev_iou_matrix,
    center_distance_matrix,
    greedy_assign,
    iou3d_matrix,
    points_in_boxes,
)

INTERPOLATIONS = ("r40", "all")
CENTER_DISTANCE_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)
DEFAULT_IOU_THRESHOLDS = (0.5, 0.7)


@dataclass
class PRCurve:
    """Precision and recall after each ranked detection (best score first), and the AP computed from them."""

    recall: np.ndarray
    precision: np.ndarray
    ap: float | None
    num_gt: int
    num_det: int

    def as_dict(self, max_points: int = 101) -> dict:
        """JSON-friendly; the curve is subsampled to at most ``max_points`` points (ends kept) for plotting."""
        idx = np.arange(self.recall.size)
        if idx.size > max_points:
            idx = np.unique(np.linspace(0, idx.size - 1, max_points).round().astype(int))
        return {"AP": self.ap, "num_gt": self.num_gt, "num_det": self.num_det,
                "recall": self.recall[idx].tolist(), "precision": self.precision[idx].tolist()}


def pr_curve(tp, scores, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision of the detections ranked by descending score (ties in input order)."""
    tp = np.asarray(tp, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ctp = np.cumsum(tp[order])
    precision = ctp / np.arange(1, tp.size + 1)
    recall = ctp / num_gt if num_gt > 0 else np.zeros(tp.size)
    return recall.astype(np.float64), precision.astype(np.float64)


def _interpolated_precision(recall: np.ndarray, precision: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """max{precision(k) : recall(k) >= r} for each level r (0 where no point reaches r)."""
    if recall.size == 0:
        return np.zeros(levels.size)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # envelope[k] = max precision at index >= k
    # recall is non-decreasing: the first index with recall >= r
    first = np.searchsorted(recall, levels - 1e-12, side="left")
    return np.where(first < recall.size, envelope[np.minimum(first, recall.size - 1)], 0.0)


def average_precision(recall, precision, interpolation: str = "r40") -> float:
    """AP from a ranked precision-recall curve: ``r40`` (KITTI 40 recall levels) or ``all`` (VOC all points)."""
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if interpolation == "r40":
        return float(_interpolated_precision(recall, precision, np.arange(1, 41) / 40.0).mean())
    if interpolation == "all":
        if recall.size == 0:
            return 0.0
        r = np.concatenate([[0.0], recall])
        p = np.concatenate([[0.0], precision])
        envelope = np.maximum.accumulate(p[::-1])[::-1]
        return float(np.sum((r[1:] - r[:-1]) * envelope[1:]))
    raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


def nuscenes_ap(recall, precision, min_recall: float = 0.1, min_precision: float = 0.1) -> float:
    """nuScenes AP: 101 recall levels, those <= ``min_recall`` dropped, precision above ``min_precision`` normalised."""
    levels = np.linspace(0.0, 1.0, 101)
    prec = _interpolated_precision(np.asarray(recall, np.float64), np.asarray(precision, np.float64), levels)
    prec = prec[levels > min_recall + 1e-12]
    return float(np.mean(np.clip(prec - min_precision, 0.0, None)) / (1.0 - min_precision))


@dataclass
class _Ranked:
    scores: list[np.ndarray] = field(default_factory=list)
    tp: list[np.ndarray] = field(default_factory=list)
    num_gt: int = 0


def _key(value: float) -> str:
    return f"{value:g}"


@dataclass
class DetectionEvaluator:
    """Accumulates frames of ground truth and detections; ``results()`` gives AP per class, kind and threshold.

    ``classes``: class names evaluated (default: every name seen in ground truth or detections, sorted);
    ``iou_thresholds``: applied to every class for both BEV and 3D AP; ``distance_thresholds``: metres, centre distance.
    """

    PROTOCOL = "generic"

    classes: Sequence[str] | None = None
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS
    distance_thresholds: Sequence[float] = CENTER_DISTANCE_THRESHOLDS
    interpolation: str = "r40"
    bev_range: Sequence[float] | None = None
    frames: int = 0
    _ranked: dict = field(default_factory=dict)  # (kind, threshold, class) -> _Ranked
    _seen: set = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")

    def _kinds(self) -> Iterable[tuple[str, float]]:
        yield from (("bev", t) for t in self.iou_thresholds)
        yield from (("3d", t) for t in self.iou_thresholds)
        yield from (("center_distance", t) for t in self.distance_thresholds)

    def add_frame(self, gt_boxes, gt_labels: Sequence[str], det_boxes, det_labels: Sequence[str], det_scores,
                  gt_ignore=None) -> None:
        """One frame: ground-truth boxes and class names, detected boxes, class names and scores.

        ``gt_ignore`` ``(G,)`` bools mark ground truth that neither counts nor penalises (too few LiDAR points, as
        KITTI's difficulty levels and Waymo's LEVEL_1 leave out): it is matched like any other box, but a detection
        that takes it is dropped from the ranking (neither true nor false positive) and a miss of it is no miss."""
        gt, det = _boxes(gt_boxes), _boxes(det_boxes)
        ignore = np.zeros(gt.shape[0], bool) if gt_ignore is None else np.asarray(gt_ignore, bool).reshape(-1)
        if ignore.size != gt.shape[0]:
            raise ValueError("gt_ignore and the ground-truth boxes disagree in number")
        gt_labels, det_labels = np.asarray(list(gt_labels), dtype=object), np.asarray(list(det_labels), dtype=object)
        det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
        if gt.shape[0] != gt_labels.size or det.shape[0] != det_labels.size or det.shape[0] != det_scores.size:
            raise ValueError("boxes, labels and scores disagree in number")
        if self.bev_range is not None:
            x0, y0, x1, y1 = (float(v) for v in self.bev_range)
            keep_gt = (gt[:, 0] >= x0) & (gt[:, 0] <= x1) & (gt[:, 1] >= y0) & (gt[:, 1] <= y1)
            keep_det = (det[:, 0] >= x0) & (det[:, 0] <= x1) & (det[:, 1] >= y0) & (det[:, 1] <= y1)
            gt, gt_labels, ignore = gt[keep_gt], gt_labels[keep_gt], ignore[keep_gt]
            det, det_labels, det_scores = det[keep_det], det_labels[keep_det], det_scores[keep_det]
        self.frames += 1
        self._seen.update(gt_labels.tolist())
        self._seen.update(det_labels.tolist())
        classes = self.classes if self.classes is not None else sorted(set(gt_labels) | set(det_labels))
        for name in classes:
            g, d = gt[gt_labels == name], det[det_labels == name]
            ig = ignore[gt_labels == name]
            s = det_scores[det_labels == name]
            bev = iou3d = dist = None
            for kind, thr in self._kinds():
                if kind == "bev":
                    bev = bev_iou_matrix(d, g) if bev is None else bev
                    matched = greedy_assign(bev, s, bev >= thr)
                elif kind == "3d":
                    iou3d = iou3d_matrix(d, g) if iou3d is None else iou3d
                    matched = greedy_assign(iou3d, s, iou3d >= thr)
                else:
                    dist = center_distance_matrix(d, g) if dist is None else dist
                    matched = greedy_assign(-dist, s, dist <= thr)
                dropped = (matched >= 0) & ig[np.maximum(matched, 0)] if ig.size else np.zeros(len(s), bool)
                ranked = self._ranked.setdefault((kind, thr, name), _Ranked())
                ranked.scores.append(s[~dropped])
                ranked.tp.append((matched >= 0)[~dropped])
                ranked.num_gt += int(g.shape[0] - ig.sum())

    def _settings(self) -> tuple:
        return (None if self.classes is None else tuple(self.classes), tuple(self.iou_thresholds),
                tuple(self.distance_thresholds), self.interpolation,
                None if self.bev_range is None else tuple(float(v) for v in self.bev_range))

    def merge(self, other: DetectionEvaluator) -> DetectionEvaluator:
        """Add ``other``'s frames to this evaluator (in place; returns it). Both must evaluate the same way (classes,
        thresholds, interpolation, range), else ValueError. ``other`` is left unchanged."""
        if other._settings() != self._settings():
            raise ValueError(f"cannot merge detection evaluators with different settings: {other._settings()} into "
                             f"{self._settings()}")
        for key, theirs in other._ranked.items():
            ranked = self._ranked.setdefault(key, _Ranked())
            ranked.scores.extend(theirs.scores)
            ranked.tp.extend(theirs.tp)
            ranked.num_gt += theirs.num_gt
        self._seen.update(other._seen)
        self.frames += other.frames
        return self

    def curve(self, kind: str, threshold: float, name: str) -> PRCurve:
        ranked = self._ranked.get((kind, threshold, name), _Ranked())
        scores = np.concatenate(ranked.scores) if ranked.scores else np.zeros(0)
        tp = np.concatenate(ranked.tp) if ranked.tp else np.zeros(0, bool)
        recall, precision = pr_curve(tp, scores, ranked.num_gt)
        if ranked.num_gt == 0:
            ap = None
        elif kind == "center_distance":
            ap = nuscenes_ap(recall, precision)
        else:
            ap = average_precision(recall, precision, self.interpolation)
        return PRCurve(recall, precision, ap, ranked.num_gt, int(scores.size))

    def results(self, curve_points: int = 101) -> dict:
        """``{"bev"|"3d": {thr: {"AP": {class: ap}, "mAP": m, "curves": {class: ...}}}, "center_distance": {...}}``."""
        classes = list(self.classes) if self.classes is not None else sorted(self._seen)
        out: dict = {"protocol": self.PROTOCOL, "frames": self.frames, "classes": classes,
                     "interpolation": self.interpolation,
                     "iou_thresholds": list(self.iou_thresholds),
                     "distance_thresholds": list(self.distance_thresholds),
                     "bev_range": None if self.bev_range is None else [float(v) for v in self.bev_range]}
        for kind, thresholds in (("bev", self.iou_thresholds), ("3d", self.iou_thresholds),
                                 ("center_distance", self.distance_thresholds)):
            section: dict = {}
            for thr in thresholds:
                curves = {c: self.curve(kind, thr, c) for c in classes}
                aps = {c: cv.ap for c, cv in curves.items()}
                defined = [v for v in aps.values() if v is not None]
                section[_key(thr)] = {"AP": aps, "mAP": float(np.mean(defined)) if defined else None,
                                      "curves": {c: cv.as_dict(curve_points) for c, cv in curves.items()}}
            out[kind] = section
        per_class = {}
        for c in classes:
            values = [out["center_distance"][_key(t)]["AP"][c] for t in self.distance_thresholds]
            values = [v for v in values if v is not None]
            per_class[c] = float(np.mean(values)) if values else None
        defined = [v for v in per_class.values() if v is not None]
        out["center_distance_mAP"] = {"per_class": per_class, "mAP": float(np.mean(defined)) if defined else None}
        out["num_gt"] = {c: self._ranked.get(("bev", self.iou_thresholds[0], c), _Ranked()).num_gt
                         for c in classes} if self.iou_thresholds else {}
        return out


Boxes = tuple[np.ndarray, Sequence[str], np.ndarray]
"""One frame: ``(N, 7)`` boxes, ``N`` class names and ``(N,)`` scores (ignored for ground truth)."""


PROTOCOLS = ("generic", "kitti", "nuscenes")
"""``generic``: :class:`DetectionEvaluator` (this module); ``kitti``: ``kitti_eval.KittiEvaluator`` (the official
KITTI procedure); ``nuscenes``: ``nuscenes_eval.NuScenesEvaluator`` (nuscenes-devkit's). docs/evaluation.md compares
them."""


def make_evaluator(protocol: str, **generic):
    """The evaluator of ``protocol``; ``generic`` keywords (classes, thresholds, interpolation, range) configure the
    generic one, ``classes`` the others (default: their benchmark's classes). ValueError for an unknown protocol."""
    if protocol == "generic":
        return DetectionEvaluator(**generic)
    if protocol == "kitti":
        from ros_mmfusion.core.detection3d.kitti_eval import KITTI_CLASSES, KittiEvaluator

        return KittiEvaluator(classes=tuple(generic.get("classes") or KITTI_CLASSES))
    if protocol == "nuscenes":
        from ros_mmfusion.core.detection3d.nuscenes_eval import NuScenesEvaluator

        return NuScenesEvaluator()
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


@dataclass
class DetectionAccumulator:
    """Pairs detections with ground truth by stamp (ns) and feeds ``evaluator``; keeps the matched frame with the
    most ground-truth boxes for the report's BEV picture (``sample``: JSON-ready, coordinates rounded to mm).

    ``evaluator`` is a :class:`DetectionEvaluator` (generic protocol), a ``KittiEvaluator`` or a
    ``NuScenesEvaluator``. Ground truth may come as ``(boxes, names, scores, ids)``: the KITTI protocol reads
    truncation and occlusion from the ids and, with ``needs_2d``, pairs the frame's 2D boxes (``add(stamp,
    boxes_2d=(boxes, names, ids))``); the nuScenes protocol pairs the LiDAR cloud (``add(stamp, cloud=xyz)``) to drop
    ground truth without points.

    With ``min_points`` > 0 (generic protocol) the LiDAR cloud of each frame is paired too and a second
    evaluator, ``level``, scores the same frames with ground truth of fewer than ``min_points`` returns ignored
    (``DetectionEvaluator.add_frame``'s ``gt_ignore``): the all-boxes figures stay the headline."""

    evaluator: Any
    pending_limit: int = 100
    min_points: int = 0
    level: DetectionEvaluator | None = None
    needs_2d: bool = False
    matched: int = 0
    evicted: int = 0
    _gt: OrderedDict = field(default_factory=OrderedDict)
    _pred: OrderedDict = field(default_factory=OrderedDict)
    _cloud: OrderedDict = field(default_factory=OrderedDict)
    _boxes_2d: OrderedDict = field(default_factory=OrderedDict)
    sample: dict | None = None

    def __post_init__(self) -> None:
        generic = isinstance(self.evaluator, DetectionEvaluator)
        if self.min_points > 0 and self.level is None and generic:
            self.level = DetectionEvaluator(**{k: getattr(self.evaluator, k) for k in (
                "classes", "iou_thresholds", "distance_thresholds", "interpolation", "bev_range")})

    @property
    def protocol(self) -> str:
        return self.evaluator.PROTOCOL

    @property
    def needs_cloud(self) -> bool:
        return self.level is not None or self.protocol == "nuscenes"

    def add(self, stamp: int, gt: tuple | None = None, pred: Boxes | None = None, cloud: np.ndarray | None = None,
            boxes_2d: tuple | None = None) -> None:
        for store, value in ((self._gt, gt), (self._pred, pred), (self._cloud, cloud), (self._boxes_2d, boxes_2d)):
            if value is not None:
                store[stamp] = value
                while len(store) > self.pending_limit:
                    store.popitem(last=False)
                    self.evicted += 1
        if (stamp in self._gt and stamp in self._pred and (not self.needs_cloud or stamp in self._cloud)
                and (not self.needs_2d or stamp in self._boxes_2d)):
            gt_frame, (db, dl, ds) = self._gt.pop(stamp), self._pred.pop(stamp)
            gb, gl = gt_frame[0], gt_frame[1]
            ids = list(gt_frame[3]) if len(gt_frame) > 3 else [""] * len(gl)
            counts = points_in_boxes(self._cloud.pop(stamp), gb) if self.needs_cloud else None
            extras: dict = {}
            if self.protocol == "kitti" and self.needs_2d:
                from ros_mmfusion.core.detection3d.kitti_eval import kitti_frame_extras

                extras = kitti_frame_extras(ids, *self._boxes_2d.pop(stamp))
            elif self.protocol == "nuscenes":
                extras = {"gt_num_points": counts}
            self.evaluator.add_frame(gb, gl, db, dl, ds, **extras)
            if self.level is not None:
                self.level.add_frame(gb, gl, db, dl, ds, gt_ignore=counts < self.min_points)
            self.matched += 1
            if self.sample is None or len(gl) > len(self.sample["gt_labels"]):
                self.sample = {"stamp_ns": stamp, "gt_boxes": np.asarray(gb).round(3).tolist(),
                               "gt_labels": list(gl), "det_boxes": np.asarray(db).round(3).tolist(),
                               "det_labels": list(dl), "det_scores": np.asarray(ds).round(3).tolist()}

    def results(self, ground_truth_frames: int, notes: list[str]) -> dict | None:
        """The ``detection`` section of ``metrics.json`` (the evaluator's results with its ``protocol``, the sample
        frame; with ``min_points`` the ``min_points_level`` results too), or None with a note in ``notes`` when no
        detection matched a ground-truth frame."""
        if not self.matched:
            notes.append("3D detection metrics skipped: no detection matched a ground-truth frame by stamp")
            return None
        out = {**self.evaluator.results(), "ground_truth_frames": ground_truth_frames,
               "sample_bev": self.sample}
        if hasattr(self.evaluator, "notes"):
            notes.extend(self.evaluator.notes())
        if self.level is not None:
            level = self.level.results()
            aps = {kind: {thr: {"AP": v["AP"], "mAP": v["mAP"]} for thr, v in level[kind].items()}
                   for kind in ("bev", "3d")}
            out["min_points_level"] = {"min_points": self.min_points, "num_gt": level["num_gt"], **aps}
        return out
