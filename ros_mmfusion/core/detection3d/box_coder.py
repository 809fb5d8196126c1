"""Residual box coding against anchors (SECOND, Yan et al. 2018) and the direction classifier of anchor heads.

``ResidualCoder`` encodes a box ``(x, y, z, dx, dy, dz, yaw, *extra)`` relative to an anchor ``(xa, ..., ra)``::

    tx = (x - xa) / d,  ty = (y - ya) / d,  tz = (z - za) / dza,   d = sqrt(dxa^2 + dya^2)
    tdx = log(dx / dxa), tdy = log(dy / dya), tdz = log(dz / dza)
    tr = yaw - ra                         (or cos(yaw) - cos(ra), sin(yaw) - sin(ra) when encoding by sin/cos)
    extra: t = value - anchor value

z is the box centre (OpenPCDet's convention, no bottom-centre shift). The residual yaw cannot tell a box from the
same box turned by pi; anchor heads add a direction classifier whose bins fix the heading
(``DirectionClassifier.apply``). ``decode_anchor_head`` turns an anchor head's NCHW maps into per-anchor boxes;
``anchor_head_rows`` + ``decode_anchor_rows`` decode only chosen anchors (the same values).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def limit_period(values: np.ndarray, offset: float = 0.5, period: float = np.pi) -> np.ndarray:
    """``values - floor(values / period + offset) * period``, in ``[-offset * period, (1 - offset) * period)``."""
    return values - np.floor(values / period + offset) * period


@dataclass(frozen=True)
class ResidualCoder:
    """Box residuals against anchors; ``code_size`` 7 (+1 with ``encode_angle_by_sincos``, + extra channels)."""

    code_size: int = 7
    encode_angle_by_sincos: bool = False

    def encode(self, boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """``(..., 7 + E)`` boxes and matching anchors -> ``(..., code_size)`` residuals."""
        boxes = np.asarray(boxes)
        dtype = np.result_type(boxes, anchors, np.float32)
        boxes = boxes.astype(dtype, copy=False)
        anchors = np.asarray(anchors, dtype=dtype).copy()
        anchors[..., 3:6] = np.maximum(anchors[..., 3:6], 1e-5)
        sizes = np.maximum(boxes[..., 3:6], 1e-5)
        xa, ya, za, dxa, dya, dza, ra = np.moveaxis(anchors[..., :7], -1, 0)
        diagonal = np.sqrt(dxa ** 2 + dya ** 2)
        parts = [(boxes[..., 0] - xa) / diagonal, (boxes[..., 1] - ya) / diagonal, (boxes[..., 2] - za) / dza,
                 np.log(sizes[..., 0] / dxa), np.log(sizes[..., 1] / dya), np.log(sizes[..., 2] / dza)]
        yaw = boxes[..., 6]
        if self.encode_angle_by_sincos:
            parts += [np.cos(yaw) - np.cos(ra), np.sin(yaw) - np.sin(ra)]
        else:
            parts.append(yaw - ra)
        out = np.stack(parts, axis=-1)
        extra = boxes[..., 7:] - anchors[..., 7:]
        return np.concatenate([out, extra], axis=-1) if extra.shape[-1] else out

    def decode(self, deltas: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """``(..., code_size)`` residuals and matching anchors -> ``(..., 7 + E)`` boxes (inverse of ``encode``)."""
        deltas = np.asarray(deltas)
        dtype = np.result_type(deltas, anchors, np.float32)
        deltas = deltas.astype(dtype, copy=False)
        anchors = np.asarray(anchors, dtype=dtype)
        xa, ya, za, dxa, dya, dza, ra = np.moveaxis(anchors[..., :7], -1, 0)
        diagonal = np.sqrt(dxa ** 2 + dya ** 2)
        parts = [deltas[..., 0] * diagonal + xa, deltas[..., 1] * diagonal + ya, deltas[..., 2] * dza + za,
                 np.exp(deltas[..., 3]) * dxa, np.exp(deltas[..., 4]) * dya, np.exp(deltas[..., 5]) * dza]
        if self.encode_angle_by_sincos:
            cos, sin = deltas[..., 6] + np.cos(ra), deltas[..., 7] + np.sin(ra)
            parts.append(np.arctan2(sin, cos))
            first_extra = 8
        else:
            parts.append(deltas[..., 6] + ra)
            first_extra = 7
        out = np.stack(parts, axis=-1)
        extra = deltas[..., first_extra:] + anchors[..., 7:]
        return np.concatenate([out, extra], axis=-1) if extra.shape[-1] else out


@dataclass(frozen=True)
class DirectionClassifier:
    """OpenPCDet's direction bins: ``DIR_OFFSET``, ``DIR_LIMIT_OFFSET``, ``NUM_DIR_BINS`` (radians)."""

    dir_offset: float = 0.78539
    dir_limit_offset: float = 0.0
    num_bins: int = 2

    @property
    def period(self) -> float:
        return 2 * np.pi / self.num_bins

    def apply(self, yaw: np.ndarray, dir_logits: np.ndarray) -> np.ndarray:
        """Headings fixed by the bins: ``limit_period(yaw - offset, limit_offset, period) + offset + period * bin``.

        ``bin`` is the argmax of ``dir_logits`` ``(..., num_bins)`` (first maximum on ties).
        """
        yaw = np.asarray(yaw)
        labels = np.argmax(dir_logits, axis=-1).astype(yaw.dtype)
        period = yaw.dtype.type(self.period)
        offset = yaw.dtype.type(self.dir_offset)
        return limit_period(yaw - offset, self.dir_limit_offset, period) + offset + period * labels


def nchw_to_anchor_rows(head_map: np.ndarray, channels_per_anchor: int) -> np.ndarray:
    """``(1, A*K, ny, nx)`` head map -> ``(ny*nx*A, K)`` rows, row ``n = (y * nx + x) * A + a``."""
    head_map = np.asarray(head_map)
    if head_map.ndim != 4 or head_map.shape[0] != 1:
        raise ValueError(f"a head map must be (1, C, H, W), got {head_map.shape}")
    return np.ascontiguousarray(head_map[0].transpose(1, 2, 0)).reshape(-1, channels_per_anchor)


def decode_anchor_head(cls_preds: np.ndarray, box_preds: np.ndarray, dir_cls_preds: np.ndarray | None,
                       anchors: np.ndarray, coder: ResidualCoder = ResidualCoder(),
                       direction: DirectionClassifier | None = DirectionClassifier(),
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per-anchor boxes and class logits from an anchor head's NCHW maps.

    ``cls_preds`` ``(1, A*C, ny, nx)``, ``box_preds`` ``(1, A*code_size, ny, nx)``, ``dir_cls_preds``
    ``(1, A*bins, ny, nx)`` or None, ``anchors`` ``(ny, nx, A, 7)`` or ``(N, 7)``. Returns float32 ``boxes (N, 7+E)``
    ``(x, y, z, dx, dy, dz, yaw)`` and raw ``logits (N, C)``; no score is applied.
    """
    flat_anchors = np.asarray(anchors).reshape(-1, anchors.shape[-1])
    num = flat_anchors.shape[0]
    per_location = num // (cls_preds.shape[2] * cls_preds.shape[3])
    logits = nchw_to_anchor_rows(cls_preds, cls_preds.shape[1] // per_location)
    deltas = nchw_to_anchor_rows(box_preds, box_preds.shape[1] // per_location)
    if logits.shape[0] != num or deltas.shape[0] != num:
        raise ValueError(f"{num} anchors do not match head maps {cls_preds.shape} / {box_preds.shape}")
    dir_logits = (nchw_to_anchor_rows(dir_cls_preds, direction.num_bins)
                  if direction is not None and dir_cls_preds is not None else None)
    return decode_anchor_rows(deltas, flat_anchors, dir_logits, coder, direction), logits


def decode_anchor_rows(deltas: np.ndarray, anchors: np.ndarray, dir_logits: np.ndarray | None,
                       coder: ResidualCoder = ResidualCoder(),
                       direction: DirectionClassifier | None = DirectionClassifier()) -> np.ndarray:
    """float32 boxes ``(K, 7+E)`` of ``K`` anchors: residual rows ``deltas`` ``(K, code_size)``, the anchors
    ``(K, 7)`` and their direction logits ``(K, bins)`` (None: no direction fix). Row by row, so decoding a subset of
    the anchors gives the same values as decoding all of them."""
    boxes = coder.decode(np.asarray(deltas).astype(np.float32, copy=False), np.asarray(anchors).astype(np.float32,
                                                                                                     copy=False))
    if direction is not None and dir_logits is not None:
        boxes[:, 6] = direction.apply(boxes[:, 6], dir_logits)
    return boxes


def anchor_head_rows(head_map: np.ndarray, channels_per_anchor: int, anchor_index: np.ndarray) -> np.ndarray:
    """``(K, channels_per_anchor)`` rows of a ``(1, A*K', ny, nx)`` head map for the flat anchor indices
    ``anchor_index`` (``n = (y * nx + x) * A + a``): ``nchw_to_anchor_rows(head_map, ...)[anchor_index]`` without
    transposing the whole map."""
    head_map = np.asarray(head_map)
    if head_map.ndim != 4 or head_map.shape[0] != 1:
        raise ValueError(f"a head map must be (1, C, H, W), got {head_map.shape}")
    per_location = head_map.shape[1] // channels_per_anchor
    cells = head_map.shape[2] * head_map.shape[3]
    grouped = head_map[0].reshape(per_location, channels_per_anchor, cells)
    return grouped[anchor_index % per_location, :, anchor_index // per_location]
