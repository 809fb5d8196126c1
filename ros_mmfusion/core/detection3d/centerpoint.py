"""Decoding of a CenterPoint-style centre head (Yin et al., CVPR 2021) into boxes, as OpenPCDet's ``CenterHead`` does.

Each head (a group of classes) predicts, on a BEV feature map with ``feature_map_stride`` voxels per cell:
``hm`` ``(1, C, H, W)`` class heatmap logits, ``center`` ``(1, 2, H, W)`` sub-cell offsets of the centre (cells),
``center_z`` ``(1, 1, H, W)`` centre height (metres), ``dim`` ``(1, 3, H, W)`` log sizes ``(dx, dy, dz)``, ``rot``
``(1, 2, H, W)`` ``(cos, sin)`` of the heading, optionally ``vel`` ``(1, 2, H, W)`` (m/s).

Decoding takes the ``max_obj_per_sample`` highest heatmap scores (sigmoid) over all classes and cells (optionally only
local 3x3 maxima, CenterNet's peak extraction, used with circle NMS), then::

    x = (col + center[0]) * stride * voxel_x + x_min,   y = (row + center[1]) * stride * voxel_y + y_min
    z = center_z,   (dx, dy, dz) = exp(dim),   yaw = atan2(sin, cos)

and keeps candidates whose centre lies in ``post_center_limit_range`` (inclusive) and whose score is ``>
score_thresh`` (a per-class value where one is given per class). NMS (rotated BEV or circle) then runs per head;
heads are merged by descending score. Ties are broken by class, then cell index, so results are deterministic.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ros_mmfusion.core.detection3d.nms import score_order
from ros_mmfusion.core.detection3d.postprocess import (
    Detections,
    NmsConfig,
    nms_keep,
    per_class_values,
    sigmoid,
)

HEAD_MAPS = ("hm", "center", "center_z", "dim", "rot")
"""Maps every centre head predicts; ``vel`` is optional."""


def heatmap_peaks(heat: np.ndarray, kernel: int = 3) -> np.ndarray:
    """``heat`` ``(C, H, W)`` with every value that is not the maximum of its ``kernel x kernel`` window set to 0."""
    if kernel <= 1:
        return heat
    pad = (kernel - 1) // 2
    padded = np.pad(heat, ((0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    h, w = heat.shape[1:]
    window_max = np.full_like(heat, -np.inf)
    for dy in range(kernel):
        for dx in range(kernel):
            np.maximum(window_max, padded[:, dy:dy + h, dx:dx + w], out=window_max)
    return np.where(window_max == heat, heat, 0)


def top_centres(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best ``(scores, class_ids, rows, cols)`` of ``scores`` ``(C, H, W)`` (ties: class, then cell)."""
    c, h, w = scores.shape
    flat = scores.reshape(-1)
    best = score_order(flat, k)
    class_ids, cell = best // (h * w), best % (h * w)
    return flat[best], class_ids, cell // w, cell % w


@dataclass(frozen=True)
class CenterHeadDecoder:
    """Turns the per-head maps of a centre head into detections.

    ``class_names_each_head`` groups ``class_names`` by head; labels in the output are 1-based indices into
    ``class_names``. ``score_thresh`` is one value or one per class of ``class_names``.
    """

    class_names: tuple[str, ...]
    class_names_each_head: tuple[tuple[str, ...], ...]
    point_cloud_range: tuple[float, ...]
    voxel_size: tuple[float, ...]
    feature_map_stride: int
    max_obj_per_sample: int = 500
    score_thresh: float | tuple[float, ...] = 0.1
    post_center_limit_range: tuple[float, ...] = (-75.2, -75.2, -2.0, 75.2, 75.2, 4.0)
    peak_kernel: int = 0
    nms: NmsConfig = field(default_factory=NmsConfig)

    def label_map(self, head: int) -> np.ndarray:
        """1-based global labels of head ``head``'s heatmap channels."""
        return np.array([self.class_names.index(n) + 1 for n in self.class_names_each_head[head]], dtype=np.int64)

    def decode(self, maps: Mapping[str, np.ndarray], head: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One head's candidate ``(boxes (K, 7 or 9), scores (K,), labels (K,))`` before NMS: the
        ``candidates`` that pass the range and score tests."""
        boxes, scores, labels, _, keep = self.candidates(maps, head)
        return boxes[keep], scores[keep], labels[keep]

    def candidates(self, maps: Mapping[str, np.ndarray], head: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One head's ``max_obj_per_sample`` best ``(boxes, scores, labels, cells, keep)`` by descending score:
        ``cells`` the flat map index ``row * W + col`` and ``keep`` the centre-in-range and score test."""
        heat = sigmoid(np.asarray(maps["hm"], dtype=np.float32)[0])
        if self.peak_kernel > 1:
            heat = heatmap_peaks(heat, self.peak_kernel)
        scores, class_ids, rows, cols = top_centres(heat, self.max_obj_per_sample)

        def at(name: str) -> np.ndarray:
            return np.asarray(maps[name], dtype=np.float32)[0][:, rows, cols].T  # (K, channels)

        offset, rot = at("center"), at("rot")
        stride = np.float32(self.feature_map_stride)
        vx, vy = np.float32(self.voxel_size[0]), np.float32(self.voxel_size[1])
        x = (cols.astype(np.float32) + offset[:, 0]) * stride * vx + np.float32(self.point_cloud_range[0])
        y = (rows.astype(np.float32) + offset[:, 1]) * stride * vy + np.float32(self.point_cloud_range[1])
        parts = [x[:, None], y[:, None], at("center_z"), np.exp(at("dim")), np.arctan2(rot[:, 1:2], rot[:, 0:1])]
        if "vel" in maps:
            parts.append(at("vel"))
        boxes = np.concatenate(parts, axis=1).astype(np.float32)
        labels = self.label_map(head)[class_ids]

        limit = np.asarray(self.post_center_limit_range, dtype=np.float32)
        keep = np.all(boxes[:, :3] >= limit[:3], axis=1) & np.all(boxes[:, :3] <= limit[3:], axis=1)
        keep &= scores > per_class_values(self.score_thresh, labels)
        return boxes, scores.astype(np.float32), labels, rows * heat.shape[2] + cols, keep

    def __call__(self, head_maps: Sequence[Mapping[str, np.ndarray]]) -> Detections:
        """Detections from the maps of every head (one mapping per head, keys as in ``HEAD_MAPS``)."""
        results = []
        for head, maps in enumerate(head_maps):
            boxes, scores, labels = self.decode(maps, head)
            keep = nms_keep(boxes, scores, labels, self.nms)
            results.append((boxes[keep], scores[keep], labels[keep]))
        if not results:
            return Detections.empty()
        boxes = np.concatenate([r[0] for r in results])
        scores = np.concatenate([r[1] for r in results])
        labels = np.concatenate([r[2] for r in results])
        order = score_order(scores)
        return Detections(boxes=boxes[order], scores=scores[order], labels=labels[order])
