"""One evaluation run of a segmentation output (ROS-free): predictions are paired with ground truth by stamp (ns,
the restamped input stamp they share) and folded into one confusion matrix; a sample frame is kept for the report.

Pending frames are bounded (``pending_limit`` per kind, oldest evicted first and counted), so a stream whose
partner never arrives costs bounded memory.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ros_mmfusion.core.evaluation.segmentation import confusion_matrix, scores


@dataclass
class SegmentationAccumulator:
    """Pairs predictions with ground truth by stamp and accumulates one confusion matrix.

    ``add(stamp, gt=...)`` / ``add(stamp, pred=...)`` take ``(H, W)`` class-id arrays; ``add_rgb`` the camera image
    of a frame (``(H, W, 3+)`` uint8), used only for the report's sample frame."""

    num_classes: int
    ignore_index: int | None
    sample_after: int = 0  # the sample frame is the first matched frame at or after this many matched frames
    pending_limit: int = 100
    confusion: np.ndarray = field(init=False)
    matched: int = 0
    size_mismatch: int = 0
    evicted: int = 0
    sample: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    last: tuple[np.ndarray, np.ndarray, None] | None = None
    _gt: OrderedDict = field(default_factory=OrderedDict)
    _pred: OrderedDict = field(default_factory=OrderedDict)
    _rgb: OrderedDict = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

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
        self.confusion += confusion_matrix(gt, pred, self.num_classes, self.ignore_index)
        if self.sample is None and self.matched >= self.sample_after and stamp in self._rgb:
            self.sample = (gt, pred, self._rgb[stamp])
        self.last = (gt, pred, None)
        self.matched += 1

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
        return {**scores(self.confusion, self.ignore_index).as_dict(class_names), "frames": self.matched,
                "ignore_index": self.ignore_index, "ground_truth_frames": ground_truth_frames,
                "class_names": class_names, "confusion": self.confusion.tolist()}
