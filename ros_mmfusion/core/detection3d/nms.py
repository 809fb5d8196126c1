"""Bird's-eye-view non-maximum suppression on the CPU: rotated-rectangle IoU (exact) and circle NMS.

Rotated IoU: the intersection of two convex quadrilaterals is the convex polygon whose vertices are the corners of
either box lying inside the other plus the crossings of their edges. All candidate points (4 + 4 + 16 per pair) are
formed at once for many pairs, sorted by angle about their centroid and measured with the shoelace formula, so the
result is exact up to float64 rounding and the work is vectorised over pairs.

``rotated_nms`` is greedy NMS in descending score order (ties broken by input order, so the output is
deterministic): a box is suppressed when its BEV IoU with an already kept box exceeds the threshold, as OpenPCDet's
``nms_gpu`` does. Only pairs whose circumscribed circles and axis-aligned bounds overlap, and whose IoU bound from
their areas and bounds reaches the threshold, are measured, a few dozen boxes per vectorised round.
``circle_nms`` (CenterPoint) suppresses by centre distance instead.

Boxes are ``(N, 7+)`` ``(x, y, z, dx, dy, dz, yaw)`` (metres, radians); only ``x, y, dx, dy, yaw`` are used.
"""
from __future__ import annotations

import numpy as np

from ros_mmfusion.core.codec.boxes import box_corners

_INSIDE_TOL = 1e-11
"""Metres: a corner this close outside the other box still counts as inside (float64 rounding of a corner lying on
a shared edge; such corners are also found as edge crossings). It bounds the area error at ~1e-11 m per metre of
perimeter."""
_PARAM_TOL = 1e-12
"""Edge-crossing parameters this far outside [0, 1] still count as a crossing."""


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, np.shape(boxes)[-1])


def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4, 2)`` float64 BEV corners, counter-clockwise seen from above."""
    boxes = _as_boxes(boxes)
    return box_corners(boxes[:, 0:3], boxes[:, 3:6], boxes[:, 6])[:, :4, :2]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(M, K)``: whether ``points`` ``(M, K, 2)`` lie in BEV box ``boxes[m]`` (``(M, 7)``), boundary included."""
    d = points - boxes[:, None, 0:2]
    cos, sin = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    local_x = d[..., 0] * cos + d[..., 1] * sin
    local_y = -d[..., 0] * sin + d[..., 1] * cos
    return ((np.abs(local_x) <= boxes[:, None, 3] / 2 + _INSIDE_TOL)
            & (np.abs(local_y) <= boxes[:, None, 4] / 2 + _INSIDE_TOL))


_NEXT = np.array([1, 2, 3, 0])


def _intersection_area(ca: np.ndarray, cb: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas given float64 boxes ``a``, ``b`` ``(M, 7)`` and their corners ``(M, 4, 2)``."""
    # Edge crossings: edge i of a (p + t r) against edge j of b (q + u s), all 16 combinations.
    p, r = ca[:, :, None, :], (ca[:, _NEXT] - ca)[:, :, None, :]
    q, s = cb[:, None, :, :], (cb[:, _NEXT] - cb)[:, None, :, :]
    denom = _cross(r, s)
    parallel = np.abs(denom) < 1e-12
    safe = np.where(parallel, 1.0, denom)
    qp = q - p
    t = _cross(qp, s) / safe
    u = _cross(qp, r) / safe
    crossing = ~parallel & (t >= -_PARAM_TOL) & (t <= 1 + _PARAM_TOL) & (u >= -_PARAM_TOL) & (u <= 1 + _PARAM_TOL)
    crossings = (p + t[..., None] * r).reshape(-1, 16, 2)

    points = np.concatenate([ca, cb, crossings], axis=1)  # (M, 24, 2)
    valid = np.concatenate([_inside(ca, b), _inside(cb, a), crossing.reshape(-1, 16)], axis=1)
    count = valid.sum(axis=1)
    centroid = (points * valid[..., None]).sum(axis=1) / np.maximum(count, 1)[:, None]
    rel = points - centroid[:, None, :]
    angle = np.where(valid, np.arctan2(rel[..., 1], rel[..., 0]), np.inf)
    order = np.argsort(angle, axis=1, kind="stable")
    rows = np.arange(rel.shape[0])[:, None]
    rel, ok = rel[rows, order], valid[rows, order]
    rel = np.where(ok[..., None], rel, rel[:, :1, :])  # unused slots repeat the first vertex: zero-area edges
    nxt = np.concatenate([rel[:, 1:], rel[:, :1]], axis=1)
    area = 0.5 * np.abs(_cross(rel, nxt).sum(axis=1))
    return np.where(count >= 3, area, 0.0)


def intersection_area_pairs(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """``(M,)`` BEV intersection areas (m^2) of box ``a[m]`` with box ``b[m]``."""
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    if a.shape[0] == 0:
        return np.zeros(0)
    return _intersection_area(bev_corners(a), bev_corners(b), a, b)


def rotated_iou_pairs(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """``(M,)`` BEV IoU of box ``a[m]`` with box ``b[m]``; 0 where both areas are 0."""
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    return _iou(intersection_area_pairs(a, b), a[:, 3] * a[:, 4], b[:, 3] * b[:, 4])


def _iou(inter: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    inter = np.minimum(inter, np.minimum(area_a, area_b))  # the inside tolerance may overshoot a hair
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def rotated_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """``(Na, Nb)`` BEV IoU of every box of ``a`` with every box of ``b`` (pairs measured ``chunk`` at a time)."""
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    ca, cb = bev_corners(a), bev_corners(b)
    area_a, area_b = a[:, 3] * a[:, 4], b[:, 3] * b[:, 4]
    out = np.zeros(a.shape[0] * b.shape[0])
    for start in range(0, out.size, chunk):
        pair = np.arange(start, min(start + chunk, out.size))
        i, j = pair // b.shape[0], pair % b.shape[0]
        out[pair] = _iou(_intersection_area(ca[i], cb[j], a[i], b[j]), area_a[i], area_b[j])
    return out.reshape(a.shape[0], b.shape[0])


def score_order(scores: np.ndarray, max_size: int | None = None) -> np.ndarray:
    """Indices by descending score, ties in input order, at most ``max_size`` of them.

    With ``max_size`` below the count, only the scores reaching the ``max_size``-th best are sorted (a partition
    first): the same indices as sorting everything.
    """
    keys = -np.asarray(scores, dtype=np.float64)
    if max_size is None or max_size >= keys.size or np.isnan(keys).any():
        order = np.argsort(keys, kind="stable")
        return order if max_size is None else order[:max_size]
    if max_size <= 0:
        return np.zeros(0, np.int64)
    kth = np.partition(keys, max_size - 1)[max_size - 1]
    head = np.flatnonzero(keys <= kth)  # every score reaching the max_size-th best (ties included), in input order
    return head[np.argsort(keys[head], kind="stable")[:max_size]]


_BOUND_SLACK = 1e-6
"""Relative slack of the IoU upper bound: a pair is skipped only when its bound is below the threshold by more than
float64 rounding of the measured IoU could ever make up."""
NMS_CHUNK = 32
"""Boxes ``rotated_nms`` decides per round."""


class _BevBounds:
    """What the cheap pair tests need of boxes in score order: axis-aligned BEV bounds (widened by rounding),
    circumscribed circles and areas."""

    def __init__(self, b: np.ndarray, corners: np.ndarray) -> None:
        lo, hi = corners.min(axis=1), corners.max(axis=1)
        margin = 1e-9 * (1.0 + np.abs(lo) + np.abs(hi))  # bounds touching up to rounding still touch
        self.lo, self.hi = lo - margin, hi + margin
        self.centre, self.radius, self.area = b[:, 0:2], 0.5 * np.hypot(b[:, 3], b[:, 4]), b[:, 3] * b[:, 4]

    def pairs(self, first: np.ndarray, second: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """The pairs ``(first[k], second[l])`` whose BEV IoU may exceed ``iou_threshold``, as ``(k, l)``.

        A pair is left out only when its IoU provably cannot exceed it: the axis-aligned bounds do not overlap, the
        circumscribed circles do not overlap (the test greedy NMS always made), or the bound
        ``U / (area_i + area_j - U)`` is below the threshold, ``U`` the smallest of the bounds' overlap area and the
        two box areas. Non-finite boxes overlap nothing.
        """
        lo, hi, area = self.lo, self.hi, self.area
        with np.errstate(invalid="ignore", over="ignore"):
            touch = ((lo[first, None, 0] <= hi[None, second, 0]) & (lo[None, second, 0] <= hi[first, None, 0])
                     & (lo[first, None, 1] <= hi[None, second, 1]) & (lo[None, second, 1] <= hi[first, None, 1]))
            k, m = np.nonzero(touch)
            i, j = first[k], second[m]
            ok = np.hypot(*(self.centre[j] - self.centre[i]).T) < self.radius[j] + self.radius[i]
            overlap = (np.minimum(hi[i], hi[j]) - np.maximum(lo[i], lo[j])).prod(axis=1)
            bound = np.minimum(overlap, np.minimum(area[i], area[j]))
            union = area[i] + area[j] - bound
            bound = np.where(union > 0, bound / np.where(union > 0, union, 1.0), 0.0)
            ok &= bound * (1 + _BOUND_SLACK) + 1e-12 > iou_threshold
        return k[ok], m[ok]


def rotated_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, pre_max_size: int | None = None,
                post_max_size: int | None = None) -> np.ndarray:
    """Indices of the kept boxes, by descending score.

    The ``pre_max_size`` best boxes take part; a box is dropped when its BEV IoU with a kept one is ``> iou_threshold``
    (``>= 0``); at most ``post_max_size`` are kept.

    Greedy NMS deciding ``NMS_CHUNK`` boxes at a time: the next undecided boxes are measured against each other (the
    pairs ``_BevBounds.pairs`` gives), kept or dropped in score order, then the kept ones are measured against every
    undecided box ranked below them, all pairs in one vectorised call. A pair's IoU is measured with the same
    arguments in the same order as box-by-box greedy NMS would, so the result is the same.
    """
    order = score_order(scores, pre_max_size)
    b = _as_boxes(boxes)[order]
    n = b.shape[0]
    limit = n if post_max_size is None else post_max_size
    if n == 0 or limit <= 0:
        return np.zeros(0, np.int64)
    corners = bev_corners(b)
    bounds = _BevBounds(b, corners)

    def exceeds(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        iou = _iou(_intersection_area(corners[i], corners[j], b[i], b[j]), bounds.area[i], bounds.area[j])
        return iou > iou_threshold

    undecided = np.ones(n, dtype=bool)
    keep: list[int] = []
    start = 0
    while len(keep) < limit:
        chunk = np.flatnonzero(undecided[start:])[:NMS_CHUNK] + start
        if chunk.size == 0:
            break
        a, c = bounds.pairs(chunk, chunk, iou_threshold)
        a, c = a[a < c], c[a < c]  # pairs within the chunk, the better-ranked box first
        suppresses = np.zeros((chunk.size, chunk.size), dtype=bool)
        if a.size:
            suppresses[a, c] = exceeds(chunk[a], chunk[c])
        dropped = np.zeros(chunk.size, dtype=bool)
        kept_here = []
        for k in range(chunk.size):
            if not dropped[k]:
                kept_here.append(k)
                dropped |= suppresses[k]
                if len(keep) + len(kept_here) >= limit:
                    break
        keep += chunk[kept_here].tolist()
        undecided[chunk] = False
        start = int(chunk[-1]) + 1
        rest = np.flatnonzero(undecided[start:]) + start
        if rest.size and len(keep) < limit:
            kept = chunk[kept_here]
            row, col = bounds.pairs(kept, rest, iou_threshold)
            if row.size:
                undecided[rest[col[exceeds(kept[row], rest[col])]]] = False
    return order[np.asarray(keep, dtype=np.int64)]


def circle_nms(centers: np.ndarray, scores: np.ndarray, dist_sq_threshold: float,
               post_max_size: int | None = None) -> np.ndarray:
    """Greedy NMS by BEV centre distance (CenterPoint): indices kept, by descending score.

    A box is dropped when its squared centre distance (m^2) to a kept box is ``<= dist_sq_threshold`` (CenterPoint's
    ``min_radius`` values are compared to the squared distance in just this way).
    """
    order = score_order(scores)
    xy = np.asarray(centers, dtype=np.float64)[:, :2][order]
    suppressed = np.zeros(xy.shape[0], dtype=bool)
    keep: list[int] = []
    limit = xy.shape[0] if post_max_size is None else post_max_size
    for i in range(xy.shape[0]):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= limit:
            break
        d2 = ((xy[i + 1:] - xy[i]) ** 2).sum(axis=1)
        suppressed[i + 1:] |= d2 <= dist_sq_threshold
    return order[np.asarray(keep, dtype=np.int64)]
