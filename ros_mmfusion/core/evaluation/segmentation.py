"""Semantic segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy, with an ignore label.

Conventions (as Cityscapes/mmseg report them): rows are ground truth, columns predictions; pixels whose ground truth
is the ignore label are left out; mIoU averages the IoU of classes that occur in the ground truth or the predictions
of the evaluated set (classes absent from both are NaN and skipped).
"""
from __future__ import annotations

from dataclasses import dataclass

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
