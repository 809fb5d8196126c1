"""Mergeable evaluation statistics (ROS-free): what one bag's evaluation accumulated, in a form that is stored as JSON,
sent between processes and machines, and merged exactly with other bags' (``mmfusion eval --bags``).

Overall metrics of many bags are computed from merged statistics, never as averages of per-bag averages:

* **segmentation**: the confusion matrix (:class:`~ros_mmfusion.core.segmentation.metrics.ConfusionAccumulator`), so
  the merged IoU is the IoU of every pixel of every bag;
* **3D detection**: the matched detections with their scores, per kind, threshold and class
  (:class:`~ros_mmfusion.core.detection3d.metrics.DetectionEvaluator`), so the merged AP ranks the detections of all
  bags together (also the ``min_points`` level when evaluated);
* **navigation**: the per-frame localisation errors and waypoint ADE/FDE
  (:class:`~ros_mmfusion.core.navigation.metrics.LocalisationAccumulator` and ``WaypointAccumulator``);
* **latency** per output topic: a histogram of input-stamp-to-arrival latencies on fixed log-spaced bins
  (:class:`LatencyHistogram`; :data:`LATENCY_BINS_PER_DECADE` bins per decade from :data:`LATENCY_MIN_MS`), with the
  exact count, sum (integer ns), minimum and maximum, and the expected and dropped frame counts.

:meth:`EvaluationStatistics.merge` is exact: merging the statistics of bags A and B gives the same metrics as one
evaluation fed A's frames then B's (integer counts add; ranked detections and frame errors are concatenated in that
order; latency sums are integers). Latency percentiles are read from the histogram: the upper edge of the bin holding
the percentile, so within one bin width (about 4.7 %) above the exact sample percentile, and the same whether
computed from one bag or merged from many.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ros_mmfusion.core.detection3d.metrics import DetectionEvaluator, _Ranked
from ros_mmfusion.core.navigation.metrics import LocalisationAccumulator, WaypointAccumulator
from ros_mmfusion.core.segmentation.metrics import ConfusionAccumulator

STATE_FORMAT = "ros_mmfusion/eval-statistics/v1"
"""Format tag of :meth:`EvaluationStatistics.to_state` (a different tag is refused by ``from_state``)."""
LATENCY_MIN_MS = 0.01
LATENCY_DECADES = 7  # 0.01 ms .. 100 s
LATENCY_BINS_PER_DECADE = 50
LATENCY_EDGES_MS = LATENCY_MIN_MS * 10.0 ** (np.arange(LATENCY_DECADES * LATENCY_BINS_PER_DECADE + 1)
                                             / LATENCY_BINS_PER_DECADE)
"""Bin edges (ms) of :class:`LatencyHistogram`; below the first edge and above the last are two more bins."""


@dataclass
class LatencyHistogram:
    """Latencies (input stamp to arrival) of one output topic on fixed bins (module docstring), mergeable exactly.

    ``counts`` has ``len(LATENCY_EDGES_MS) + 1`` bins: ``[0]`` below the first edge (negative latencies included,
    from clocks that disagree), ``[-1]`` at or above the last. ``sum_ns``, ``min_ns``, ``max_ns`` are exact (ns).
    ``expected``: input frames that should each have produced one output; ``dropped``: those that did not."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(LATENCY_EDGES_MS.size + 1, np.int64))
    count: int = 0
    sum_ns: int = 0
    min_ns: int | None = None
    max_ns: int | None = None
    expected: int = 0
    dropped: int = 0

    def add(self, latencies_ns: Iterable[int]) -> None:
        """Count latencies given in integer nanoseconds."""
        values = np.asarray(list(latencies_ns), np.int64).reshape(-1)
        if not values.size:
            return
        bins = np.searchsorted(LATENCY_EDGES_MS, values / 1e6, side="right")
        self.counts += np.bincount(bins, minlength=self.counts.size).astype(np.int64)
        self.count += int(values.size)
        self.sum_ns += int(sum(int(v) for v in values))
        low, high = int(values.min()), int(values.max())
        self.min_ns = low if self.min_ns is None else min(self.min_ns, low)
        self.max_ns = high if self.max_ns is None else max(self.max_ns, high)

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """A new histogram holding both."""
        lows = [v for v in (self.min_ns, other.min_ns) if v is not None]
        highs = [v for v in (self.max_ns, other.max_ns) if v is not None]
        return LatencyHistogram(self.counts + other.counts, self.count + other.count, self.sum_ns + other.sum_ns,
                                min(lows) if lows else None, max(highs) if highs else None,
                                self.expected + other.expected, self.dropped + other.dropped)

    def percentile_ms(self, q: float) -> float | None:
        """The upper edge (ms) of the bin holding the ``q``-th percentile (0-100); the exact maximum where that
        bin is the overflow bin or the maximum lies below the edge; None when empty."""
        if not self.count:
            return None
        rank = max(1, int(np.ceil(q / 100.0 * self.count)))
        index = int(np.searchsorted(np.cumsum(self.counts), rank, side="left"))
        edge = float(LATENCY_EDGES_MS[index]) if index < LATENCY_EDGES_MS.size else float("inf")
        return min(edge, self.max_ns / 1e6)  # type: ignore[operator]

    def results(self) -> dict[str, Any]:
        """``count``, ``expected``, ``dropped``, ``drop_ratio``, ``p50_ms``/``p95_ms``/``p99_ms`` (histogram),
        ``mean_ms``, ``min_ms``, ``max_ms`` (exact); None where undefined."""
        def ms(value: float | None) -> float | None:
            return None if value is None else round(float(value), 3)

        return {"count": self.count, "expected": self.expected, "dropped": self.dropped,
                "drop_ratio": round(self.dropped / self.expected, 4) if self.expected else None,
                "p50_ms": ms(self.percentile_ms(50)), "p95_ms": ms(self.percentile_ms(95)),
                "p99_ms": ms(self.percentile_ms(99)),
                "mean_ms": ms(self.sum_ns / self.count / 1e6) if self.count else None,
                "min_ms": ms(None if self.min_ns is None else self.min_ns / 1e6),
                "max_ms": ms(None if self.max_ns is None else self.max_ns / 1e6)}

    def to_state(self) -> dict[str, Any]:
        nonzero = np.flatnonzero(self.counts)
        return {"bins": nonzero.tolist(), "counts": self.counts[nonzero].tolist(), "count": self.count,
                "sum_ns": self.sum_ns, "min_ns": self.min_ns, "max_ns": self.max_ns, "expected": self.expected,
                "dropped": self.dropped}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LatencyHistogram:
        counts = np.zeros(LATENCY_EDGES_MS.size + 1, np.int64)
        counts[np.asarray(state["bins"], np.intp)] = np.asarray(state["counts"], np.int64)
        return cls(counts, int(state["count"]), int(state["sum_ns"]), state["min_ns"], state["max_ns"],
                   int(state["expected"]), int(state["dropped"]))


def _detection_state(evaluator: DetectionEvaluator) -> dict[str, Any]:
    """A DetectionEvaluator as JSON-ready data: its settings, frames, the class names seen, and per (kind, threshold,
    class) the ranked detections' scores and true-positive flags (frames concatenated in order) and num_gt."""
    ranked = []
    for (kind, threshold, name), r in evaluator._ranked.items():
        scores = np.concatenate(r.scores) if r.scores else np.zeros(0)
        tp = np.concatenate(r.tp) if r.tp else np.zeros(0, bool)
        ranked.append({"kind": kind, "threshold": float(threshold), "class": name, "scores": scores.tolist(),
                       "tp": tp.astype(bool).tolist(), "num_gt": int(r.num_gt)})
    return {"classes": None if evaluator.classes is None else list(evaluator.classes),
            "iou_thresholds": [float(t) for t in evaluator.iou_thresholds],
            "distance_thresholds": [float(t) for t in evaluator.distance_thresholds],
            "interpolation": evaluator.interpolation,
            "bev_range": None if evaluator.bev_range is None else [float(v) for v in evaluator.bev_range],
            "frames": evaluator.frames, "seen": sorted(evaluator._seen), "ranked": ranked}


def _detection_from_state(state: Mapping[str, Any]) -> DetectionEvaluator:
    evaluator = DetectionEvaluator(
        classes=None if state["classes"] is None else tuple(state["classes"]),
        iou_thresholds=tuple(state["iou_thresholds"]), distance_thresholds=tuple(state["distance_thresholds"]),
        interpolation=state["interpolation"],
        bev_range=None if state["bev_range"] is None else tuple(state["bev_range"]))
    evaluator.frames = int(state["frames"])
    evaluator._seen = set(state["seen"])
    for entry in state["ranked"]:
        evaluator._ranked[(entry["kind"], entry["threshold"], entry["class"])] = _Ranked(
            [np.asarray(entry["scores"], np.float64)], [np.asarray(entry["tp"], bool)], int(entry["num_gt"]))
    return evaluator


@dataclass
class SegmentationStatistics:
    """One confusion matrix with what the ``segmentation`` section needs besides it."""

    confusion: ConfusionAccumulator
    class_names: list[str]
    ground_truth_frames: int = 0
    size_mismatch: int = 0

    def merge(self, other: SegmentationStatistics) -> SegmentationStatistics:
        if other.class_names != self.class_names:
            raise ValueError("cannot merge segmentation statistics of different label sets")
        return SegmentationStatistics(self.confusion.merge(other.confusion), list(self.class_names),
                                      self.ground_truth_frames + other.ground_truth_frames,
                                      self.size_mismatch + other.size_mismatch)

    def results(self) -> dict[str, Any]:
        """The ``segmentation`` section (as one ``mmfusion eval`` writes it) of these frames."""
        return {**self.confusion.scores().as_dict(self.class_names), "frames": self.confusion.frames,
                "ignore_index": self.confusion.ignore_index, "ground_truth_frames": self.ground_truth_frames,
                "size_mismatch": self.size_mismatch, "class_names": list(self.class_names),
                "confusion": self.confusion.confusion.tolist()}

    def to_state(self) -> dict[str, Any]:
        c = self.confusion
        return {"num_classes": c.num_classes, "ignore_index": c.ignore_index, "confusion": c.confusion.tolist(),
                "frames": c.frames, "class_names": list(self.class_names),
                "ground_truth_frames": self.ground_truth_frames, "size_mismatch": self.size_mismatch}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SegmentationStatistics:
        confusion = ConfusionAccumulator(int(state["num_classes"]), state["ignore_index"],
                                         np.asarray(state["confusion"], np.int64), int(state["frames"]))
        return cls(confusion, list(state["class_names"]), int(state["ground_truth_frames"]),
                   int(state["size_mismatch"]))


def _merge_optional(a: Any, b: Any, merge: Any) -> Any:
    if a is None:
        return copy.deepcopy(b)
    if b is None:
        return copy.deepcopy(a)
    return merge(a, b)


def _merged_detection(a: DetectionEvaluator, b: DetectionEvaluator) -> DetectionEvaluator:
    return copy.deepcopy(a).merge(b)


def _merged_in_place(a: Any, b: Any) -> Any:
    out = copy.deepcopy(a)
    out.merge(b)
    return out


@dataclass
class EvaluationStatistics:
    """The mergeable statistics of one or more evaluated bags (module docstring); None where nothing was evaluated.

    ``frames``: evaluated input frames per main input topic; ``bags``: how many bags were merged in."""

    segmentation: SegmentationStatistics | None = None
    detection: DetectionEvaluator | None = None
    detection_level: DetectionEvaluator | None = None  # ground truth below ``min_points`` LiDAR returns ignored
    min_points: int = 0
    localisation: LocalisationAccumulator | None = None
    waypoints: WaypointAccumulator | None = None
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    bags: int = 1

    def merge(self, other: EvaluationStatistics) -> EvaluationStatistics:
        """New statistics holding this bag's frames then ``other``'s; neither input changes. ValueError when they
        were evaluated differently (label sets, detection settings, tolerance, waypoint spacing)."""
        if self.detection_level is not None and other.detection_level is not None \
                and self.min_points != other.min_points:
            raise ValueError(f"cannot merge detection levels of min_points {other.min_points} and {self.min_points}")
        latency = {topic: copy.deepcopy(h) for topic, h in self.latency.items()}
        for topic, histogram in other.latency.items():
            latency[topic] = latency[topic].merge(histogram) if topic in latency else copy.deepcopy(histogram)
        return EvaluationStatistics(
            _merge_optional(self.segmentation, other.segmentation, SegmentationStatistics.merge),
            _merge_optional(self.detection, other.detection, _merged_detection),
            _merge_optional(self.detection_level, other.detection_level, _merged_detection),
            self.min_points or other.min_points,
            _merge_optional(self.localisation, other.localisation, _merged_in_place),
            _merge_optional(self.waypoints, other.waypoints, _merged_in_place),
            latency, self.bags + other.bags)

    def metrics(self) -> dict[str, Any]:
        """The metric sections of these statistics: ``segmentation``, ``detection`` (with ``min_points_level``),
        ``navigation`` (``localisation``, ``waypoints``) where evaluated, and ``latency`` per output topic."""
        out: dict[str, Any] = {}
        if self.segmentation is not None and self.segmentation.confusion.frames:
            out["segmentation"] = self.segmentation.results()
        if self.detection is not None and self.detection.frames:
            out["detection"] = self.detection.results()
            if self.detection_level is not None:
                level = self.detection_level.results()
                out["detection"]["min_points_level"] = {
                    "min_points": self.min_points, "num_gt": level["num_gt"],
                    **{kind: {thr: {"AP": v["AP"], "mAP": v["mAP"]} for thr, v in level[kind].items()}
                       for kind in ("bev", "3d")}}
        if self.localisation is not None or self.waypoints is not None:
            out["navigation"] = {
                "localisation": self.localisation.results() if self.localisation is not None else None,
                "waypoints": self.waypoints.results() if self.waypoints is not None else None}
        out["latency"] = {topic: h.results() for topic, h in sorted(self.latency.items())}
        return out

    def to_state(self) -> dict[str, Any]:
        """JSON-ready data (:data:`STATE_FORMAT`); :meth:`from_state` gives equal statistics back."""
        return {"format": STATE_FORMAT, "bags": self.bags, "min_points": self.min_points,
                "segmentation": None if self.segmentation is None else self.segmentation.to_state(),
                "detection": None if self.detection is None else _detection_state(self.detection),
                "detection_level": None if self.detection_level is None else _detection_state(self.detection_level),
                "localisation": None if self.localisation is None else {
                    "tolerance": self.localisation.tolerance,
                    "index_error": _concat(self.localisation.index_error, np.int64).tolist(),
                    "valid": _concat(self.localisation.valid, bool).tolist(),
                    "node_distance": _concat(self.localisation.node_distance, np.float64).tolist()},
                "waypoints": None if self.waypoints is None else {
                    "dt": self.waypoints.dt, "ade": list(self.waypoints.ade), "fde": list(self.waypoints.fde),
                    "skipped": self.waypoints.skipped},
                "latency": {topic: h.to_state() for topic, h in self.latency.items()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> EvaluationStatistics:
        """Statistics from :meth:`to_state` data; ValueError for another format."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not {STATE_FORMAT} statistics")
        loc, wp = state["localisation"], state["waypoints"]
        localisation = None
        if loc is not None:
            localisation = LocalisationAccumulator(int(loc["tolerance"]))
            if loc["index_error"]:
                localisation.index_error = [np.asarray(loc["index_error"], np.int64)]
                localisation.valid = [np.asarray(loc["valid"], bool)]
                localisation.node_distance = [np.asarray(loc["node_distance"], np.float64)]
        waypoints = None
        if wp is not None:
            waypoints = WaypointAccumulator(float(wp["dt"]), [float(v) for v in wp["ade"]],
                                            [float(v) for v in wp["fde"]], int(wp["skipped"]))
        return cls(
            None if state["segmentation"] is None else SegmentationStatistics.from_state(state["segmentation"]),
            None if state["detection"] is None else _detection_from_state(state["detection"]),
            None if state["detection_level"] is None else _detection_from_state(state["detection_level"]),
            int(state["min_points"]), localisation, waypoints,
            {topic: LatencyHistogram.from_state(h) for topic, h in state["latency"].items()}, int(state["bags"]))


def _concat(parts: Sequence[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate([np.asarray(p, dtype).reshape(-1) for p in parts]) if parts else np.zeros(0, dtype)


def merge_all(statistics: Iterable[EvaluationStatistics]) -> EvaluationStatistics | None:
    """The statistics of every bag merged in order; None for none."""
    merged: EvaluationStatistics | None = None
    for item in statistics:
        merged = copy.deepcopy(item) if merged is None else merged.merge(item)
    return merged


def headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A few comparable numbers of a metrics mapping (:meth:`EvaluationStatistics.metrics`), for per-bag and
    per-condition table rows: segmentation mIoU and pixel accuracy, detection BEV/3D mAP at the first IoU threshold
    and the centre-distance mAP, localisation accuracy, ADE/FDE (m), and the worst output p95 latency (ms)."""
    row: dict[str, Any] = {}
    seg = metrics.get("segmentation")
    if seg:
        row.update(mIoU=seg["mIoU"], pixel_accuracy=seg["pixel_accuracy"], segmentation_frames=seg["frames"])
    det = metrics.get("detection")
    if det:
        first = next(iter(det["bev"]), None)
        row.update(detection_frames=det["frames"])
        if first is not None:
            row.update({f"bev_mAP@{first}": det["bev"][first]["mAP"], f"3d_mAP@{first}": det["3d"][first]["mAP"]})
        row["center_distance_mAP"] = det["center_distance_mAP"]["mAP"]
    nav = metrics.get("navigation")
    if nav:
        loc, wp = nav.get("localisation") or {}, nav.get("waypoints") or {}
        row.update(localisation_accuracy=loc.get("accuracy"), ADE_m=wp.get("ADE_m"), FDE_m=wp.get("FDE_m"))
    p95 = [s["p95_ms"] for s in (metrics.get("latency") or {}).values() if s.get("p95_ms") is not None]
    row["latency_p95_ms"] = max(p95) if p95 else None
    return row


def statistics_of_run(session: Any, latency_series: Mapping[str, Any], latency: Mapping[str, Mapping[str, Any]],
                      class_names: list[str], ground_truth_frames: Mapping[str, int],
                      notes: list[str]) -> EvaluationStatistics:
    """The statistics of one evaluation run: its :class:`~ros_mmfusion.core.evaluation.session.EvaluationSession`
    (accumulators), the latency series per output topic (``stamps_ns``, ``arrivals_ns``: ns, one clock) and the run's
    ``latency`` section (for the expected and dropped counts), the label set's class names and the message count
    per ground-truth topic in the bag. Navigation that cannot be evaluated adds its reason to ``notes``."""
    stats = EvaluationStatistics()
    seg = session.segmentation
    if seg is not None and seg.matched:
        stats.segmentation = SegmentationStatistics(copy.deepcopy(seg.totals), list(class_names),
                                                    int(ground_truth_frames.get(session.semantic_topic, 0)),
                                                    int(seg.size_mismatch))
    det = session.detection
    if det is not None and det.matched:
        stats.detection = copy.deepcopy(det.evaluator)
        if det.level is not None:
            stats.detection_level, stats.min_points = copy.deepcopy(det.level), int(det.min_points)
    if session.navigation is not None:
        accumulated = session.navigation.accumulate(notes, session.odom_topic)
        if accumulated is not None:
            stats.localisation, stats.waypoints = accumulated[0], accumulated[1]
    for topic, series in latency_series.items():
        histogram = LatencyHistogram()
        histogram.add(int(a) - int(s) for s, a in zip(series.stamps_ns, series.arrivals_ns, strict=True))
        section = latency.get(topic, {})
        histogram.expected = int(section.get("expected") or 0)
        histogram.dropped = int(section.get("dropped") or 0)
        stats.latency[topic] = histogram
    return stats
