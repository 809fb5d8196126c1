"""The nuScenes detection task's evaluation (ROS-free), as nuscenes-devkit's ``detection`` eval computes it.

Written from the procedure of nuscenes-devkit (``eval/detection``: ``algo.accumulate``, ``calc_ap``, ``calc_tp``,
the ``detection_cvpr_2019`` configuration):

* **Classes**: the fixed list of 10 (:data:`NUSCENES_CLASSES`); mAP averages all 10, a class without ground truth
  (or without any match) scoring AP 0 and TP errors 1, as the devkit. Other class names are not evaluated.
* **Filtering** before matching: boxes (ground truth and detections) at or beyond the class's range
  (:data:`CLASS_RANGE`, metres, BEV distance from the origin of the boxes' frame; the devkit measures from the ego
  vehicle, our boxes are in the LiDAR frame) are removed (kept when ``distance < range``); ground truth with zero
  LiDAR points is removed (when the point counts are given).
* **Matching** per class and centre-distance threshold (0.5, 1, 2, 4 m, BEV): detections of all frames in
  descending score (ties: the later detection first, as the devkit's sort), each takes the nearest unmatched ground
  truth of its frame (the first of equally near ones), a true positive when the distance is ``< threshold``.
* **AP**: precision and recall after each ranked detection, resampled at the 101 recall levels 0, 0.01, ..., 1 by
  linear interpolation of the raw curve (no envelope; 0 beyond the highest recall); the levels up to and including
  recall 0.1 are dropped, 0.1 subtracted from precision (clipped at 0) and the mean divided by 0.9.
* **TP errors** at 2 m: ATE (BEV centre distance, m), ASE (1 - IoU of the boxes aligned in centre and yaw), AOE
  (smallest yaw difference, rad; period pi for barrier), AVE (BEV velocity difference, m/s) and AAE (1 - attribute
  accuracy): their running mean over the matches, resampled on the confidence curve, averaged between recall 0.1
  (exclusive) and the highest recall reached; 1 when that range is empty. Traffic cone has no AOE/AVE/AAE, barrier
  no AVE/AAE. **NDS** = (5 mAP + sum over the five of max(0, 1 - mean error over classes)) / 10. AVE and AAE need
  velocities and attributes: ``vision_msgs/Detection3D`` carries neither, so from ROS messages they are ``None`` and
  NDS is ``None``; ``NDS_without_velocity_attribute`` scores them 0 (a lower bound) and says so.

:class:`NuScenesEvaluator` keeps per class and frame plain arrays (kept boxes, scores, velocities), so evaluators
merge (``merge``) into exactly the one-pass result.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ros_mmfusion.core.detection3d.box_iou import _boxes

NUSCENES_CLASSES = ("car", "truck", "bus", "trailer", "construction_vehicle", "pedestrian", "motorcycle", "bicycle",
                    "traffic_cone", "barrier")
CLASS_RANGE = {"car": 50.0, "truck": 50.0, "bus": 50.0, "trailer": 50.0, "construction_vehicle": 50.0,
               "pedestrian": 40.0, "motorcycle": 40.0, "bicycle": 40.0, "traffic_cone": 30.0, "barrier": 30.0}
"""Evaluation range per class (metres), ``detection_cvpr_2019``."""
DIST_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)
DIST_TH_TP = 2.0
MIN_RECALL = 0.1
MIN_PRECISION = 0.1
MEAN_AP_WEIGHT = 5
TP_METRICS = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
NELEM = 101


@dataclass
class NuScenesFrameClass:
    """One frame's kept boxes of one class (plain arrays): ground truth and detections ``(N, 7)``, detection
    scores, BEV velocities ``(N, 2)`` (NaN: unknown) and attribute names (``""``: none)."""

    gt: np.ndarray
    det: np.ndarray
    scores: np.ndarray
    gt_velocity: np.ndarray
    det_velocity: np.ndarray
    gt_attribute: list[str]
    det_attribute: list[str]


def _yaw_diff(a: float, b: float, period: float) -> float:
    d = (a - b + period / 2) % period - period / 2
    return abs(float(d))


def _scale_iou(gt: np.ndarray, det: np.ndarray) -> float:
    """IoU of the two sizes with centres and yaw aligned (the devkit's ``scale_iou``)."""
    inter = float(np.prod(np.minimum(gt[3:6], det[3:6])))
    union = float(np.prod(gt[3:6]) + np.prod(det[3:6]) - inter)
    return inter / union if union > 0 else 0.0


def _cummean(x: np.ndarray) -> np.ndarray:
    """Running mean ignoring NaN (0 before the first number; all NaN: ones, so the error counts as 1)."""
    if x.size == 0 or np.isnan(x).all():
        return np.ones(x.size)
    sums, counts = np.nancumsum(x), np.cumsum(~np.isnan(x))
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts != 0)


@dataclass
class ClassMetric:
    """The devkit's ``DetectionMetricData``: 101 samples of precision, confidence and the TP errors."""

    precision: np.ndarray
    confidence: np.ndarray
    errors: dict[str, np.ndarray]

    @classmethod
    def no_predictions(cls) -> ClassMetric:
        return cls(np.zeros(NELEM), np.zeros(NELEM), {m: np.ones(NELEM) for m in TP_METRICS})

    @property
    def max_recall_ind(self) -> int:
        nonzero = np.flatnonzero(self.confidence)
        return int(nonzero[-1]) if nonzero.size else 0


def calc_ap(md: ClassMetric, min_recall: float = MIN_RECALL, min_precision: float = MIN_PRECISION) -> float:
    prec = md.precision[round(100 * min_recall) + 1:] - min_precision
    return float(np.mean(np.clip(prec, 0.0, None))) / (1.0 - min_precision)


def calc_tp(md: ClassMetric, metric: str, min_recall: float = MIN_RECALL) -> float:
    first, last = round(100 * min_recall) + 1, md.max_recall_ind
    if last < first:
        return 1.0
    return float(np.mean(md.errors[metric][first:last + 1]))


def accumulate(frames: Sequence[NuScenesFrameClass], name: str, dist_th: float) -> ClassMetric:
    """Match the detections of all ``frames`` of class ``name`` at ``dist_th`` metres; the resampled curves."""
    npos = sum(f.gt.shape[0] for f in frames)
    if npos == 0:
        return ClassMetric.no_predictions()
    entries = [(fi, di) for fi, f in enumerate(frames) for di in range(f.scores.size)]
    # the devkit sorts (score, index) pairs and reverses: ties go to the later detection first
    order = sorted(((float(frames[fi].scores[di]), n) for n, (fi, di) in enumerate(entries)), reverse=True)
    taken: set[tuple[int, int]] = set()
    tp, conf = [], []
    match: dict[str, list[float]] = {m: [] for m in TP_METRICS}
    match_conf: list[float] = []
    period = np.pi if name == "barrier" else 2 * np.pi
    for score, n in order:
        fi, di = entries[n]
        f = frames[fi]
        d = f.det[di]
        best, best_j = np.inf, -1
        for j in range(f.gt.shape[0]):
            if (fi, j) in taken:
                continue
            dist = float(np.hypot(f.gt[j, 0] - d[0], f.gt[j, 1] - d[1]))
            if dist < best:
                best, best_j = dist, j
        conf.append(score)
        if not best < dist_th:
            tp.append(0)
            continue
        taken.add((fi, best_j))
        tp.append(1)
        g = f.gt[best_j]
        match["trans_err"].append(best)
        gv, dv = f.gt_velocity[best_j], f.det_velocity[di]
        match["vel_err"].append(float(np.hypot(*(gv - dv))))
        match["scale_err"].append(1.0 - _scale_iou(g, d))
        match["orient_err"].append(_yaw_diff(g[6], d[6], period))
        ga, da = f.gt_attribute[best_j], f.det_attribute[di]
        match["attr_err"].append(np.nan if not ga else 1.0 - float(ga == da))
        match_conf.append(score)
    if not match_conf:
        return ClassMetric.no_predictions()
    ctp = np.cumsum(tp).astype(np.float64)
    cfp = np.cumsum(1 - np.asarray(tp)).astype(np.float64)
    prec, rec, confs = ctp / (ctp + cfp), ctp / float(npos), np.asarray(conf)
    levels = np.linspace(0.0, 1.0, NELEM)
    prec_i = np.interp(levels, rec, prec, right=0)
    conf_i = np.interp(levels, rec, confs, right=0)
    mc = np.asarray(match_conf)
    errors = {m: np.interp(conf_i[::-1], mc[::-1], _cummean(np.asarray(v, np.float64))[::-1])[::-1]
              for m, v in match.items()}
    return ClassMetric(prec_i, conf_i, errors)


@dataclass
class NuScenesEvaluator:
    """Accumulates frames; ``results()`` gives AP per class and distance, mAP, the TP errors and NDS."""

    PROTOCOL = "nuscenes"

    classes: Sequence[str] = NUSCENES_CLASSES
    frames: int = 0
    removed_range: int = 0  # ground truth and detections at or beyond their class's range
    removed_no_points: int = 0  # ground truth without LiDAR points
    frames_without_points: int = 0  # frames whose point counts were not given (no zero-point filtering)
    has_velocity: bool = True  # every frame gave velocities (else AVE is None)
    has_attributes: bool = True  # every frame gave attributes (else AAE is None)
    ignored_names: set = field(default_factory=set)  # class names seen that are not nuScenes classes
    records: dict[str, list[NuScenesFrameClass]] = field(default_factory=dict)

    def add_frame(self, gt_boxes, gt_labels: Sequence[str], det_boxes, det_labels: Sequence[str], det_scores, *,
                  gt_num_points=None, gt_velocity=None, det_velocity=None, gt_attributes=None,
                  det_attributes=None) -> None:
        """One frame: boxes ``(N, 7)`` (one frame, metres, yaw rad), names, scores; ``gt_num_points`` ``(G,)``
        LiDAR returns per ground-truth box; velocities ``(N, 2)`` m/s in the boxes' frame; attribute names."""
        gt, det = _boxes(gt_boxes), _boxes(det_boxes)
        gl, dl = np.asarray(list(gt_labels), dtype=object), np.asarray(list(det_labels), dtype=object)
        ds = np.asarray(det_scores, np.float64).reshape(-1)
        if gt.shape[0] != gl.size or det.shape[0] != dl.size or det.shape[0] != ds.size:
            raise ValueError("boxes, labels and scores disagree in number")
        self.frames += 1
        self.ignored_names.update(set(gl.tolist() + dl.tolist()) - set(self.classes))

        def vel(v, n):
            return np.full((n, 2), np.nan) if v is None else np.asarray(v, np.float64).reshape(n, 2)

        gv, dv = vel(gt_velocity, gt.shape[0]), vel(det_velocity, det.shape[0])
        self.has_velocity &= gt_velocity is not None and det_velocity is not None
        self.has_attributes &= gt_attributes is not None and det_attributes is not None
        ga = [""] * gt.shape[0] if gt_attributes is None else list(gt_attributes)
        da = [""] * det.shape[0] if det_attributes is None else list(det_attributes)
        points = None if gt_num_points is None else np.asarray(gt_num_points).reshape(-1)
        self.frames_without_points += int(points is None)
        gt_dist, det_dist = np.hypot(gt[:, 0], gt[:, 1]), np.hypot(det[:, 0], det[:, 1])
        for name in self.classes:
            limit = CLASS_RANGE.get(name, np.inf)
            g_in, d_in = gl == name, dl == name
            g_keep, d_keep = g_in & (gt_dist < limit), d_in & (det_dist < limit)
            self.removed_range += int(g_in.sum() - g_keep.sum() + d_in.sum() - d_keep.sum())
            if points is not None:
                empty = g_keep & (points == 0)
                self.removed_no_points += int(empty.sum())
                g_keep &= ~empty
            self.records.setdefault(name, []).append(NuScenesFrameClass(
                gt[g_keep], det[d_keep], ds[d_keep], gv[g_keep], dv[d_keep],
                [a for a, k in zip(ga, g_keep, strict=True) if k], [a for a, k in zip(da, d_keep, strict=True) if k]))

    def merge(self, other: NuScenesEvaluator) -> NuScenesEvaluator:
        """Add ``other``'s frames (in place; returns self); ValueError for another class list."""
        if tuple(other.classes) != tuple(self.classes):
            raise ValueError(f"cannot merge nuScenes evaluators of classes {tuple(other.classes)} into "
                             f"{tuple(self.classes)}")
        for name, recs in other.records.items():
            self.records.setdefault(name, []).extend(recs)
        for key in ("frames", "removed_range", "removed_no_points", "frames_without_points"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.has_velocity &= other.has_velocity
        self.has_attributes &= other.has_attributes
        self.ignored_names |= other.ignored_names
        return self

    def results(self) -> dict:
        """``{"AP": {class: {dist: ap}}, "mAP", "per_class_AP", "tp_errors": {metric: {class: err}},
        "mean_tp_errors", "NDS", ...}``."""
        ap: dict[str, dict[str, float]] = {}
        tp_err: dict[str, dict[str, float | None]] = {m: {} for m in TP_METRICS}
        num_gt = {}
        for name in self.classes:
            recs = self.records.get(name, [])
            num_gt[name] = int(sum(r.gt.shape[0] for r in recs))
            ap[name] = {f"{t:g}": calc_ap(accumulate(recs, name, t)) for t in DIST_THRESHOLDS}
            md = accumulate(recs, name, DIST_TH_TP)
            for m in TP_METRICS:
                if (name == "traffic_cone" and m in ("attr_err", "vel_err", "orient_err")) or (
                        name == "barrier" and m in ("attr_err", "vel_err")):
                    tp_err[m][name] = None
                elif (m == "vel_err" and not self.has_velocity) or (m == "attr_err" and not self.has_attributes):
                    tp_err[m][name] = None
                else:
                    tp_err[m][name] = calc_tp(md, m)
        per_class = {c: float(np.mean(list(v.values()))) for c, v in ap.items()}
        mean_ap = float(np.mean(list(per_class.values()))) if per_class else None
        mean_err: dict[str, float | None] = {}
        for m in TP_METRICS:
            values = [v for v in tp_err[m].values() if v is not None]
            computable = not ((m == "vel_err" and not self.has_velocity)
                              or (m == "attr_err" and not self.has_attributes))
            mean_err[m] = float(np.mean(values)) if values and computable else None
        scores = {m: None if e is None else max(0.0, 1.0 - e) for m, e in mean_err.items()}
        nds = lower = None
        if mean_ap is not None:
            lower = (MEAN_AP_WEIGHT * mean_ap + sum(s or 0.0 for s in scores.values())) / (MEAN_AP_WEIGHT + 5)
            nds = lower if all(s is not None for s in scores.values()) else None
        return {"protocol": "nuscenes", "frames": self.frames, "classes": list(self.classes),
                "distance_thresholds": list(DIST_THRESHOLDS), "class_range_m": {c: CLASS_RANGE.get(c)
                                                                                for c in self.classes},
                "num_gt": num_gt, "AP": ap, "per_class_AP": per_class, "mAP": mean_ap,
                "tp_errors": tp_err, "mean_tp_errors": mean_err, "tp_scores": scores, "NDS": nds,
                "NDS_without_velocity_attribute": lower,
                "removed_out_of_range": self.removed_range, "removed_without_points": self.removed_no_points,
                "frames_without_point_counts": self.frames_without_points,
                "not_nuscenes_classes": sorted(self.ignored_names)}

    def notes(self) -> list[str]:
        notes = []
        if not (self.has_velocity and self.has_attributes):
            notes.append("nuScenes protocol: AVE and AAE need velocities and attributes, which "
                         "vision_msgs/Detection3D does not carry: NDS is null; NDS_without_velocity_attribute "
                         "scores them 0 (a lower bound)")
        if self.frames_without_points:
            notes.append(f"nuScenes protocol: {self.frames_without_points} frames without LiDAR point counts: their "
                         "ground truth with zero points was not removed")
        if self.ignored_names:
            notes.append("nuScenes protocol: class names outside the 10 nuScenes classes not evaluated: "
                         + ", ".join(sorted(self.ignored_names)))
        return notes
