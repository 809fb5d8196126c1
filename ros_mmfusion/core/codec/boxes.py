"""Yaw/quaternion conversions and 3D box geometry used to build detection and marker messages, without ROS.

Frames follow REP-103: x forward, y left, z up; yaw is the rotation about +z in radians, counter-clockwise seen from
above, 0 along +x. Quaternions are ``(x, y, z, w)`` as in geometry_msgs/Quaternion. A box is its centre (metres),
its size ``(length along the box's x, width along its y, height along z)`` in metres and its yaw.
"""
from __future__ import annotations

import zlib

import numpy as np

from ros_mmfusion.core.errors import MessageFormatError

# re-exported: boxes are built from yaw and read back to yaw
from ros_mmfusion.core.geometry import quaternion_to_yaw, yaw_to_quaternion  # noqa: F401

# Corners of a unit box, bottom face then top face, each counter-clockwise from (+x, +y) seen from above.
_UNIT_CORNERS = 0.5 * np.array(
    [[1, 1, -1], [-1, 1, -1], [-1, -1, -1], [1, -1, -1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1], [1, -1, 1]],
    dtype=np.float64,
)
# The 12 edges as pairs of corner indices: bottom ring, top ring, then the 4 verticals.
BOX_EDGES = np.array(
    [[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]], dtype=np.intp
)


def _triples(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size % 3:
        raise MessageFormatError(f"box {name} must be (N, 3), got shape {array.shape}")
    return array.reshape(-1, 3)


def _boxes(centers: np.ndarray, sizes: np.ndarray, yaws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centers = _triples(centers, "centres")
    sizes = _triples(sizes, "sizes")
    yaws = np.asarray(yaws, dtype=np.float64).reshape(-1)
    if not len(centers) == len(sizes) == len(yaws):
        raise MessageFormatError(
            f"boxes disagree in number: {len(centers)} centres, {len(sizes)} sizes, {len(yaws)} yaws"
        )
    return centers, sizes, yaws


def box_corners(centers: np.ndarray, sizes: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """``(N, 8, 3)`` corners (metres, the boxes' frame) of N yawed boxes; order as ``BOX_EDGES`` expects."""
    centers, sizes, yaws = _boxes(centers, sizes, yaws)
    local = _UNIT_CORNERS[None, :, :] * sizes[:, None, :]
    cos, sin = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
    out = np.empty_like(local)
    out[..., 0] = cos * local[..., 0] - sin * local[..., 1]
    out[..., 1] = sin * local[..., 0] + cos * local[..., 1]
    out[..., 2] = local[..., 2]
    return out + centers[:, None, :]


def box_line_list(centers: np.ndarray, sizes: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """``(N, 24, 3)`` segment end points drawing each box's 12 edges, as a visualization_msgs LINE_LIST wants."""
    corners = box_corners(centers, sizes, yaws)
    return corners[:, BOX_EDGES.reshape(-1), :]


# A qualitative palette (RGB in [0, 1]) that stays readable on RViz's dark background.
_PALETTE = np.array(
    [
        [0.90, 0.10, 0.29], [0.24, 0.71, 0.29], [1.00, 0.88, 0.10], [0.26, 0.39, 0.85], [0.96, 0.51, 0.19],
        [0.57, 0.12, 0.71], [0.27, 0.94, 0.94], [0.94, 0.20, 0.90], [0.74, 0.96, 0.05], [0.98, 0.75, 0.83],
        [0.00, 0.50, 0.50], [0.86, 0.75, 1.00], [0.67, 0.43, 0.16], [1.00, 0.98, 0.78], [0.50, 0.00, 0.00],
        [0.67, 1.00, 0.76],
    ]
)


def class_color(class_id: str | int) -> tuple[float, float, float]:
    """A stable RGB colour in [0, 1] for a class: the same class gets the same colour in every process and run.

    Integer ids (or digit strings) index the 16-colour palette in order, so classes 0..15 never share a colour; other
    names are hashed (CRC-32) onto it and may collide: pass explicit colours where that matters.
    """
    text = str(class_id).strip()
    index = int(text) if text.isdigit() else zlib.crc32(text.encode())
    r, g, b = _PALETTE[index % len(_PALETTE)]
    return float(r), float(g), float(b)
