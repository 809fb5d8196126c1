"""From decoded candidate boxes to final detections: per-class score thresholds, top-k, NMS, output limit.

The defaults reproduce OpenPCDet's ``post_processing`` with ``MULTI_CLASSES_NMS: False``: a candidate's score is its
best class probability and its label that class (1-based); candidates scoring ``>= score_thresh`` (a threshold per
class where one is given per class, as Autoware does) are ranked, the best ``pre_max_size`` go through class-agnostic
NMS and at most ``post_max_size`` survive. ``multi_classes_nms`` runs NMS within each label instead. NMS is rotated
BEV NMS (``nms_gpu``/``nms_cpu`` in OpenPCDet configs) or CenterPoint's circle NMS.

Output boxes are ``(x, y, z, dx, dy, dz, yaw)`` in the LiDAR frame, metres and radians; scores in [0, 1].
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ros_mmfusion.core.detection3d.anchors import AnchorClassConfig, generate_anchors
from ros_mmfusion.core.detection3d.box_coder import (
    DirectionClassifier,
    ResidualCoder,
    anchor_head_rows,
    decode_anchor_head,
    decode_anchor_rows,
)
from ros_mmfusion.core.detection3d.nms import circle_nms, rotated_nms, score_order
from ros_mmfusion.core.errors import ConfigError

NMS_TYPES = {"rotated": "rotated", "nms_gpu": "rotated", "nms_cpu": "rotated", "circle": "circle",
             "circle_nms": "circle"}


@dataclass(frozen=True)
class NmsConfig:
    """``nms_type`` ``rotated`` or ``circle`` (OpenPCDet's ``nms_gpu``/``nms_cpu``/``circle_nms`` are accepted);
    ``nms_thresh`` an IoU (rotated) or a squared centre distance in m^2 (circle), one value or one per class (per-class
    values need ``multi_classes_nms``)."""

    nms_type: str = "rotated"
    nms_thresh: float | tuple[float, ...] = 0.01
    pre_max_size: int = 4096
    post_max_size: int = 500
    multi_classes_nms: bool = False

    def __post_init__(self) -> None:
        if self.nms_type not in NMS_TYPES:
            raise ConfigError(f"nms_type {self.nms_type!r} is not one of {sorted(NMS_TYPES)}")
        object.__setattr__(self, "nms_type", NMS_TYPES[self.nms_type])  # OpenPCDet's names -> rotated / circle
        if not np.isscalar(self.nms_thresh) and not self.multi_classes_nms:
            raise ConfigError("per-class nms_thresh values need multi_classes_nms")
        if self.nms_type == "rotated" and np.min(self.nms_thresh) < 0:
            raise ConfigError(f"rotated NMS takes IoU thresholds >= 0, got {self.nms_thresh!r}")

    @classmethod
    def from_openpcdet(cls, cfg: Mapping) -> NmsConfig:
        """From an OpenPCDet ``NMS_CONFIG`` mapping (``NMS_TYPE``, ``NMS_THRESH``, ``NMS_PRE_MAXSIZE``, ...)."""
        thresh = cfg.get("NMS_THRESH", 0.01)
        return cls(nms_type=str(cfg.get("NMS_TYPE", "nms_gpu")),
                   nms_thresh=float(thresh) if np.isscalar(thresh) else tuple(float(t) for t in thresh),
                   pre_max_size=int(cfg.get("NMS_PRE_MAXSIZE", 4096)),
                   post_max_size=int(cfg.get("NMS_POST_MAXSIZE", 500)),
                   multi_classes_nms=bool(cfg.get("MULTI_CLASSES_NMS", False)))


@dataclass(frozen=True)
class PostProcessConfig:
    """``score_thresh``: one value, or one per class in label order (label 1 first)."""

    score_thresh: float | tuple[float, ...] = 0.1
    nms: NmsConfig = field(default_factory=NmsConfig)

    @classmethod
    def from_openpcdet(cls, cfg: Mapping) -> PostProcessConfig:
        """From an OpenPCDet ``POST_PROCESSING`` mapping."""
        thresh = cfg.get("SCORE_THRESH", 0.1)
        return cls(score_thresh=float(thresh) if np.isscalar(thresh) else tuple(float(t) for t in thresh),
                   nms=NmsConfig.from_openpcdet(cfg.get("NMS_CONFIG", {})))


@dataclass(frozen=True)
class Detections:
    """Final detections: ``boxes`` ``(N, 7)`` float32, ``scores`` ``(N,)`` float32, ``labels`` ``(N,)`` int64 (1-based
    class index into the model's class names), by descending score."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls, box_dim: int = 7) -> Detections:
        return cls(np.zeros((0, box_dim), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def per_class_values(value: float | Sequence[float], labels: np.ndarray) -> np.ndarray:
    """The value for each 1-based label: ``value`` itself, or ``value[label - 1]`` when one is given per class."""
    if np.isscalar(value):
        return np.full(labels.shape, float(value))
    table = np.asarray(value, dtype=np.float64)
    if labels.size and (labels.min() < 1 or labels.max() > table.size):
        raise ConfigError(f"labels {labels.min()}..{labels.max()} need {labels.max()} per-class values, "
                          f"got {table.size}")
    return table[labels - 1]


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return (1 / (1 + np.exp(-x))).astype(np.result_type(x, np.float32), copy=False)


def nms_keep(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, nms: NmsConfig) -> np.ndarray:
    """Indices that survive ``nms`` (class-agnostic, or within each label), by descending score."""
    if nms.multi_classes_nms:
        kept = []
        for label in np.unique(labels):
            idx = np.flatnonzero(labels == label)
            thresh = float(per_class_values(nms.nms_thresh, np.array([label]))[0])
            kept.append(idx[_nms_one(boxes[idx], scores[idx], nms, thresh)])
        merged = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        return merged[score_order(scores[merged], nms.post_max_size)]
    return _nms_one(boxes, scores, nms, float(nms.nms_thresh))


def _nms_one(boxes: np.ndarray, scores: np.ndarray, nms: NmsConfig, thresh: float) -> np.ndarray:
    if nms.nms_type == "circle":
        order = score_order(scores, nms.pre_max_size)
        return order[circle_nms(boxes[order, :2], scores[order], thresh, nms.post_max_size)]
    return rotated_nms(boxes, scores, thresh, nms.pre_max_size, nms.post_max_size)


def select_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                      config: PostProcessConfig = PostProcessConfig()) -> Detections:
    """Threshold (``score >= threshold of its label``), rank, NMS and cap candidate ``boxes`` ``(N, 7+)`` with
    ``scores`` ``(N,)`` and 1-based ``labels``."""
    boxes = np.asarray(boxes)
    scores = np.asarray(scores, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    candidates = np.flatnonzero(scores >= per_class_values(config.score_thresh, labels))
    if candidates.size == 0:
        return Detections.empty(boxes.shape[1])
    keep = candidates[nms_keep(boxes[candidates], scores[candidates], labels[candidates], config.nms)]
    return Detections(boxes=boxes[keep].astype(np.float32), scores=scores[keep], labels=labels[keep])


def class_scores(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, labels)``: the best class probability (sigmoid) of each row and its 1-based label."""
    probs = sigmoid(logits)
    best = np.argmax(probs, axis=1)
    return np.take_along_axis(probs, best[:, None], axis=1)[:, 0], best.astype(np.int64) + 1


@dataclass(frozen=True)
class AnchorHeadDecoder:
    """Everything an anchor head's maps need to become detections: anchors, coder, direction bins, post-processing."""

    anchor_configs: tuple[AnchorClassConfig, ...]
    point_cloud_range: tuple[float, ...]
    grid_size: tuple[int, int, int]
    coder: ResidualCoder = ResidualCoder()
    direction: DirectionClassifier | None = DirectionClassifier()
    post: PostProcessConfig = field(default_factory=PostProcessConfig)
    anchor_range: tuple[float, ...] | None = None
    """The range whose anchor layout the head keeps (None: ``point_cloud_range``; ``anchors.generate_anchors``)."""

    def anchors(self) -> np.ndarray:
        """``(ny, nx, A, 7)`` anchors (cached)."""
        cached = self.__dict__.get("_anchors")
        if cached is None:
            cached = generate_anchors(self.anchor_configs, self.point_cloud_range, self.grid_size, self.anchor_range)
            object.__setattr__(self, "_anchors", cached)
        return cached

    def candidates(self, cls_preds: np.ndarray, box_preds: np.ndarray,
                   dir_cls_preds: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-anchor ``(boxes, scores, labels)`` before thresholds and NMS."""
        boxes, logits = decode_anchor_head(cls_preds, box_preds, dir_cls_preds, self.anchors(), self.coder,
                                           self.direction)
        scores, labels = class_scores(logits)
        return boxes, scores, labels

    def passing_candidates(self, cls_preds: np.ndarray, box_preds: np.ndarray, dir_cls_preds: np.ndarray | None,
                           score_thresh: float | Sequence[float] | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows of ``candidates`` whose score reaches its label's threshold (``score_thresh``, default the
        post-processing's), in anchor order, with the same values: only those anchors are scored in full and decoded.

        Anchors whose best logit lies clearly below the lowest threshold's logit are skipped first (the sigmoid is
        monotonic, and a margin of 1e-3 in logit covers its float32 rounding); the rest get the exact test.
        """
        thresh = self.post.score_thresh if score_thresh is None else score_thresh
        lowest = float(np.min(thresh))
        cells = cls_preds.shape[2] * cls_preds.shape[3]
        anchors = self.anchors().reshape(-1, self.anchors().shape[-1])
        per_location = anchors.shape[0] // cells
        num_classes = cls_preds.shape[1] // per_location
        if lowest <= 0:
            index = np.arange(anchors.shape[0])
        else:
            floor = math.log(lowest / (1 - lowest)) - 1e-3 if lowest < 1 else 15.0  # sigmoid(15) < 1 in float32
            best = np.asarray(cls_preds)[0].reshape(per_location, num_classes, cells).max(axis=1)  # (A, cells)
            index = np.flatnonzero((best >= floor).T)  # n = cell * A + a, ascending
        scores, labels = class_scores(anchor_head_rows(cls_preds, num_classes, index))
        passing = scores >= per_class_values(thresh, labels)
        index, scores, labels = index[passing], scores[passing], labels[passing]
        code_size = box_preds.shape[1] // per_location
        dir_logits = (anchor_head_rows(dir_cls_preds, self.direction.num_bins, index)
                      if self.direction is not None and dir_cls_preds is not None else None)
        boxes = decode_anchor_rows(anchor_head_rows(box_preds, code_size, index), anchors[index], dir_logits,
                                   self.coder, self.direction)
        return boxes, scores, labels

    def __call__(self, cls_preds: np.ndarray, box_preds: np.ndarray,
                 dir_cls_preds: np.ndarray | None = None) -> Detections:
        return select_detections(*self.passing_candidates(cls_preds, box_preds, dir_cls_preds), self.post)
