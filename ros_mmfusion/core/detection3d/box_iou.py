"""Box geometry shared by the detection metrics of every protocol (``metrics``, ``kitti_eval``, ``nuscenes_eval``):
boxes ``(N, 7)`` x, y, z (centre), dx, dy, dz, yaw in one frame (metres, radians); pairwise BEV and 3D IoU, centre
distances, greedy matching and LiDAR points per box. A leaf module, so the protocol modules and ``metrics`` import it
without importing each other."""
from __future__ import annotations

import numpy as np

from ros_mmfusion.core.detection3d.nms import intersection_area_pairs


def _boxes(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 7))
    b = b.reshape(-1, b.shape[-1])
    if b.shape[1] < 7:
        raise ValueError(f"boxes must be (N, 7) (x, y, z, dx, dy, dz, yaw), got {b.shape}")
    return b[:, :7]


def _pairwise_bev_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    i, j = np.meshgrid(np.arange(a.shape[0]), np.arange(b.shape[0]), indexing="ij")
    inter = intersection_area_pairs(a[i.ravel()], b[j.ravel()]).reshape(a.shape[0], b.shape[0])
    return np.minimum(inter, np.minimum.outer(a[:, 3] * a[:, 4], b[:, 3] * b[:, 4]))


def bev_iou_matrix(boxes_a, boxes_b) -> np.ndarray:
    """``(Na, Nb)`` exact rotated BEV IoU."""
    a, b = _boxes(boxes_a), _boxes(boxes_b)
    inter = _pairwise_bev_intersection(a, b)
    union = np.add.outer(a[:, 3] * a[:, 4], b[:, 3] * b[:, 4]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou3d_matrix(boxes_a, boxes_b) -> np.ndarray:
    """``(Na, Nb)`` 3D IoU of yawed boxes: BEV intersection x vertical overlap / union volume."""
    a, b = _boxes(boxes_a), _boxes(boxes_b)
    inter_bev = _pairwise_bev_intersection(a, b)
    top = np.minimum.outer(a[:, 2] + a[:, 5] / 2, b[:, 2] + b[:, 5] / 2)
    bottom = np.maximum.outer(a[:, 2] - a[:, 5] / 2, b[:, 2] - b[:, 5] / 2)
    inter = inter_bev * np.clip(top - bottom, 0.0, None)
    vol_a, vol_b = a[:, 3] * a[:, 4] * a[:, 5], b[:, 3] * b[:, 4] * b[:, 5]
    union = np.add.outer(vol_a, vol_b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def center_distance_matrix(boxes_a, boxes_b) -> np.ndarray:
    """``(Na, Nb)`` BEV (x, y) centre distances in metres."""
    a, b = _boxes(boxes_a), _boxes(boxes_b)
    return np.hypot(np.subtract.outer(a[:, 0], b[:, 0]), np.subtract.outer(a[:, 1], b[:, 1]))


def greedy_assign(affinity: np.ndarray, scores, accept: np.ndarray) -> np.ndarray:
    """The ground truth each detection matched, ``(D,)`` int (``-1``: none), by greedy score-ordered matching.

    ``affinity`` ``(D, G)``: higher is better (IoU, or minus the distance); ``accept`` ``(D, G)``: whether a pair may
    match at all (IoU >= threshold, distance <= threshold). Each detection, best score first, takes the unmatched
    ground truth of highest affinity among those it may match.
    """
    d, g = affinity.shape
    matched = np.full(d, -1, dtype=np.int64)
    if d == 0 or g == 0:
        return matched
    taken = np.zeros(g, dtype=bool)
    for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        ok = accept[i] & ~taken
        if ok.any():
            j = int(np.argmax(np.where(ok, affinity[i], -np.inf)))
            taken[j] = True
            matched[i] = j
    return matched


def greedy_match(affinity: np.ndarray, scores, accept: np.ndarray) -> np.ndarray:
    """True-positive flags ``(D,)`` (in input order) of :func:`greedy_assign`."""
    return greedy_assign(affinity, scores, accept) >= 0


def points_in_boxes(xyz: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(G,)`` number of the ``(N, 3)`` points inside each yawed box ``(x, y, z, dx, dy, dz, yaw)``."""
    b = _boxes(boxes)
    pts = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    counts = np.zeros(b.shape[0], dtype=np.int64)
    for k, (x, y, z, dx, dy, dz, yaw) in enumerate(b):
        near = pts[(np.abs(pts[:, 0] - x) <= (dx + dy) / 2) & (np.abs(pts[:, 1] - y) <= (dx + dy) / 2)]
        c, s = np.cos(yaw), np.sin(yaw)
        lx = (near[:, 0] - x) * c + (near[:, 1] - y) * s
        ly = -(near[:, 0] - x) * s + (near[:, 1] - y) * c
        counts[k] = int(np.sum((np.abs(lx) <= dx / 2) & (np.abs(ly) <= dy / 2) & (np.abs(near[:, 2] - z) <= dz / 2)))
    return counts
