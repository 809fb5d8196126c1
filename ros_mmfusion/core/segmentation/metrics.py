"""Semantic segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy, with an ignore label.

Conventions: rows are ground truth, columns predictions; pixels whose ground truth is the ignore label (or outside
``0..C-1``) are left out; a valid pixel whose *prediction* is outside ``0..C-1`` (e.g. 255) is wrong: it counts in its
ground-truth class's row total (``out_of_range``, a miss of that class) and in pixel accuracy's denominator. mIoU
(``miou_convention``): ``"present"`` (default, Cityscapes/mmseg) averages the classes that occur in the ground truth
or the predictions of the evaluated set (classes absent from both are NaN and skipped); ``"all"`` (SemanticKITTI)
counts such classes as IoU 0 (the ignore class is never counted).

:class:`ConfusionAccumulator` adds frames up; accumulators of the same label set merge (``a + b``, ``a.merge(b)``),
so a fleet evaluation, a per-scenario breakdown or parallel workers sum to exactly the one-pass result.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int | None = 0) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts of (ground truth, prediction) pixel pairs."""
    gt = np.asarray(gt).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth and prediction differ in size: {gt.shape} vs {pred.shape}")
    keep = (gt >= 0) & (gt < num_classes) & (pred >= 0) & (pred < num_classes)
    if ignore_index is not None:
        keep &= gt != ignore_index
    return np.bincount(gt[keep] * num_classes + pred[keep], minlength=num_classes**2).reshape(num_classes, num_classes)


MIOU_CONVENTIONS = ("present", "all")


def out_of_range_predictions(gt: np.ndarray, pred: np.ndarray, num_classes: int,
                             ignore_index: int | None = 0) -> np.ndarray:
    """``(num_classes,)`` int64: per ground-truth class, the evaluated pixels whose prediction is outside
    ``0..num_classes-1`` (wrong predictions that the confusion matrix has no column for)."""
    gt = np.asarray(gt).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth and prediction differ in size: {gt.shape} vs {pred.shape}")
    bad = (gt >= 0) & (gt < num_classes) & ((pred < 0) | (pred >= num_classes))
    if ignore_index is not None:
        bad &= gt != ignore_index
    return np.bincount(gt[bad], minlength=num_classes)


@dataclass(frozen=True)
class SegmentationScores:
    iou: np.ndarray  # (C,) NaN for classes absent from ground truth and predictions (and the ignore class)
    miou: float
    pixel_accuracy: float
    class_accuracy: np.ndarray
    miou_convention: str = "present"
    out_of_range: int = 0  # evaluated pixels predicted outside 0..C-1 (counted wrong)

    def as_dict(self, class_names: list[str] | tuple[str, ...] | None = None) -> dict:
        names = class_names or [str(i) for i in range(len(self.iou))]
        return {"mIoU": self.miou, "pixel_accuracy": self.pixel_accuracy, "miou_convention": self.miou_convention,
                "out_of_range_predictions": self.out_of_range,
                "IoU": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, self.iou, strict=True)}}


def scores(confusion: np.ndarray, ignore_index: int | None = 0, out_of_range: np.ndarray | None = None,
           miou_convention: str = "present") -> SegmentationScores:
    """Per-class IoU, mIoU (``miou_convention``: ``present`` | ``all``), pixel and class accuracy of a confusion
    matrix; ``out_of_range`` ``(C,)``: per ground-truth class, pixels predicted outside the classes (wrong)."""
    if miou_convention not in MIOU_CONVENTIONS:
        raise ValueError(f"miou_convention must be one of {MIOU_CONVENTIONS}, got {miou_convention!r}")
    c = confusion.astype(np.float64)
    tp = np.diag(c)
    oor = np.zeros(len(c)) if out_of_range is None else np.asarray(out_of_range, np.float64).reshape(len(c))
    gt_total, pred_total = c.sum(axis=1) + oor, c.sum(axis=0)
    union = gt_total + pred_total - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        class_acc = np.where(gt_total > 0, tp / gt_total, np.nan)
    counted = np.ones(len(iou), bool)
    if ignore_index is not None and 0 <= ignore_index < len(iou):
        iou[ignore_index] = np.nan
        class_acc[ignore_index] = np.nan
        counted[ignore_index] = False
    averaged = np.where(np.isnan(iou) & counted, 0.0, iou) if miou_convention == "all" else iou
    total = c.sum() + oor.sum()
    return SegmentationScores(iou, float(np.nanmean(averaged)) if np.any(~np.isnan(averaged)) else float("nan"),
                              float(tp.sum() / total) if total else float("nan"), class_acc, miou_convention,
                              int(oor.sum()))


@dataclass
class ConfusionAccumulator:
    """A running ``(num_classes, num_classes)`` confusion matrix (rows ground truth, columns predictions) over
    ``frames`` frames, with the ignore label ``ignore_index`` left out; ``out_of_range`` ``(num_classes,)`` counts per
    ground-truth class the pixels predicted outside the classes (wrong); ``miou_convention`` present | all."""

    num_classes: int
    ignore_index: int | None = 0
    confusion: np.ndarray = field(default=None)  # type: ignore[assignment] - zeros when not given
    frames: int = 0
    out_of_range: np.ndarray = field(default=None)  # type: ignore[assignment] - zeros when not given
    miou_convention: str = "present"

    def __post_init__(self) -> None:
        if self.num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if self.confusion is None:
            self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        elif self.confusion.shape != (self.num_classes, self.num_classes):
            raise ValueError(f"confusion is {self.confusion.shape}, expected {(self.num_classes,) * 2}")
        if self.out_of_range is None:
            self.out_of_range = np.zeros(self.num_classes, np.int64)
        if self.miou_convention not in MIOU_CONVENTIONS:
            raise ValueError(f"miou_convention must be one of {MIOU_CONVENTIONS}, got {self.miou_convention!r}")

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Count one frame: ``gt`` and ``pred`` class-id images of the same size."""
        self.confusion += confusion_matrix(gt, pred, self.num_classes, self.ignore_index)
        self.out_of_range += out_of_range_predictions(gt, pred, self.num_classes, self.ignore_index)
        self.frames += 1

    def merge(self, other: ConfusionAccumulator) -> ConfusionAccumulator:
        """A new accumulator holding the frames of both; ValueError when the label sets differ."""
        if ((other.num_classes, other.ignore_index, other.miou_convention)
                != (self.num_classes, self.ignore_index, self.miou_convention)):
            raise ValueError(f"cannot merge confusion matrices of {other.num_classes} classes (ignore "
                             f"{other.ignore_index}, mIoU {other.miou_convention}) into {self.num_classes} classes "
                             f"(ignore {self.ignore_index}, mIoU {self.miou_convention})")
        return ConfusionAccumulator(self.num_classes, self.ignore_index, self.confusion + other.confusion,
                                    self.frames + other.frames, self.out_of_range + other.out_of_range,
                                    self.miou_convention)

    def __add__(self, other: ConfusionAccumulator) -> ConfusionAccumulator:
        if not isinstance(other, ConfusionAccumulator):
            return NotImplemented
        return self.merge(other)

    def scores(self) -> SegmentationScores:
        """Per-class IoU, mIoU and accuracies of the frames added so far."""
        return scores(self.confusion, self.ignore_index, self.out_of_range, self.miou_convention)


@dataclass
class SegmentationAccumulator:
    """Pairs predictions with ground truth by stamp and accumulates one confusion matrix.

    ``add(stamp, gt=...)`` / ``add(stamp, pred=...)`` take ``(H, W)`` class-id arrays; ``add_rgb`` the camera image
    of a frame (``(H, W, 3+)`` uint8), used only for the report's sample frame."""

    num_classes: int
    ignore_index: int | None
    sample_after: int = 0  # the sample frame is the first matched frame at or after this many matched frames
    pending_limit: int = 100
    miou_convention: str = "present"
    totals: ConfusionAccumulator = field(init=False)
    size_mismatch: int = 0
    evicted: int = 0
    sample: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    last: tuple[np.ndarray, np.ndarray, None] | None = None
    _gt: OrderedDict = field(default_factory=OrderedDict)
    _pred: OrderedDict = field(default_factory=OrderedDict)
    _rgb: OrderedDict = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.totals = ConfusionAccumulator(self.num_classes, self.ignore_index,
                                           miou_convention=self.miou_convention)

    @property
    def confusion(self) -> np.ndarray:
        return self.totals.confusion

    @property
    def matched(self) -> int:
        """Frames whose prediction met its ground truth (and were counted)."""
        return self.totals.frames

    def _keep(self, store: OrderedDict, stamp: int, value: Any) -> None:
        store[stamp] = value
        while len(store) > self.pending_limit:
            store.popitem(last=False)
            if store is not self._rgb:
                self.evicted += 1

    def add_rgb(self, stamp: int, rgb: np.ndarray) -> None:
        self._keep(self._rgb, stamp, rgb)

    def add(self, stamp: int, gt: np.ndarray | None = None, pred: np.ndarray | None = None) -> None:
        if gt is not None:
            self._keep(self._gt, stamp, gt)
        if pred is not None:
            self._keep(self._pred, stamp, pred)
        if stamp not in self._gt or stamp not in self._pred:
            return
        gt, pred = self._gt.pop(stamp), self._pred.pop(stamp)
        if gt.shape != pred.shape:
            self.size_mismatch += 1
            return
        if self.sample is None and self.matched >= self.sample_after and stamp in self._rgb:
            self.sample = (gt, pred, self._rgb[stamp])
        self.last = (gt, pred, None)
        self.totals.add(gt, pred)

    def sample_frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(ground truth, prediction, rgb)`` of a frame from the second half with its camera image, else of the
        last matched frame with a black image (also when the image's size differs); None before any match."""
        frame = self.sample or self.last
        if frame is None:
            return None
        gt, pred, rgb = frame
        rgb = rgb if rgb is not None and rgb.shape[:2] == gt.shape else np.zeros((*gt.shape, 3), np.uint8)
        return gt, pred, rgb[..., :3]

    def results(self, class_names: list[str], ground_truth_frames: int, notes: list[str]) -> dict | None:
        """The ``segmentation`` section of ``metrics.json`` (IoU per class, mIoU, pixel accuracy, the confusion
        matrix), or None with a note in ``notes`` when no prediction matched a ground-truth frame."""
        if not self.matched:
            notes.append("segmentation metrics skipped: no prediction matched a ground-truth frame by stamp")
            return None
        if self.size_mismatch:
            notes.append(f"{self.size_mismatch} predictions differ in size from their ground truth: skipped")
        return {**self.totals.scores().as_dict(class_names), "frames": self.matched,
                "ignore_index": self.ignore_index, "ground_truth_frames": ground_truth_frames,
                "class_names": class_names, "confusion": self.confusion.tolist(),
                "out_of_range_by_class": self.totals.out_of_range.tolist()}
