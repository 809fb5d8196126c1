"""Semantic segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy, with an ignore label.

Conventions (as Cityscapes/mmseg report them): rows are ground truth, columns predictions; pixels whose ground truth
is the ignore label are left out; mIoU averages the IoU of classes that occur in the ground truth or the predictions
of the evaluated set (classes absent from both are NaN and skipped).

:class:`ConfusionAccumulator` adds frames up; accumulators of the same label set merge (``a + b``, ``a.merge(b)``),
so a fleet evaluation, a per-scenario breakdown or parallel workers sum to exactly the one-pass result.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class SegmentationScores:
    iou: np.ndarray  # (C,) NaN for classes absent from ground truth and predictions (and the ignore class)
    miou: float
    pixel_accuracy: float
    class_accuracy: np.ndarray

    def as_dict(self, class_names: list[str] | tuple[str, ...] | None = None) -> dict:
        names = class_names or [str(i) for i in range(len(self.iou))]
        return {"mIoU": self.miou, "pixel_accuracy": self.pixel_accuracy,
                "IoU": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, self.iou, strict=True)}}


def scores(confusion: np.ndarray, ignore_index: int | None = 0) -> SegmentationScores:
    c = confusion.astype(np.float64)
    tp = np.diag(c)
    gt_total, pred_total = c.sum(axis=1), c.sum(axis=0)
    union = gt_total + pred_total - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        class_acc = np.where(gt_total > 0, tp / gt_total, np.nan)
    if ignore_index is not None and 0 <= ignore_index < len(iou):
        iou[ignore_index] = np.nan
        class_acc[ignore_index] = np.nan
    total = c.sum()
    return SegmentationScores(iou, float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan"),
                              float(tp.sum() / total) if total else float("nan"), class_acc)


@dataclass
class ConfusionAccumulator:
    """A running ``(num_classes, num_classes)`` confusion matrix (rows ground truth, columns predictions) over
    ``frames`` frames, with the ignore label ``ignore_index`` left out."""

    num_classes: int
    ignore_index: int | None = 0
    confusion: np.ndarray = field(default=None)  # type: ignore[assignment] - zeros when not given
    frames: int = 0

    def __post_init__(self) -> None:
        if self.num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if self.confusion is None:
            self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        elif self.confusion.shape != (self.num_classes, self.num_classes):
            raise ValueError(f"confusion is {self.confusion.shape}, expected {(self.num_classes,) * 2}")

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Count one frame: ``gt`` and ``pred`` class-id images of the same size."""
        self.confusion += confusion_matrix(gt, pred, self.num_classes, self.ignore_index)
        self.frames += 1

    def merge(self, other: ConfusionAccumulator) -> ConfusionAccumulator:
        """A new accumulator holding the frames of both; ValueError when the label sets differ."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(f"cannot merge confusion matrices of {other.num_classes} classes (ignore "
                             f"{other.ignore_index}) into {self.num_classes} classes (ignore {self.ignore_index})")
        return ConfusionAccumulator(self.num_classes, self.ignore_index, self.confusion + other.confusion,
                                    self.frames + other.frames)

    def __add__(self, other: ConfusionAccumulator) -> ConfusionAccumulator:
        if not isinstance(other, ConfusionAccumulator):
            return NotImplemented
        return self.merge(other)

    def scores(self) -> SegmentationScores:
        """Per-class IoU, mIoU and accuracies of the frames added so far."""
        return scores(self.confusion, self.ignore_index)
