"""LiDAR projected into a camera: a sparse or densified depth image aligned with that camera's pixels.

Input points are in the LiDAR frame (metres); ``camera_from_lidar`` maps them into the camera *optical* frame
(x right, y down, z forward). Output depth is float32 metres along the optical axis, 0 where no point landed.
"""
from __future__ import annotations

import cv2
import numpy as np

from ros_mmfusion.core.codec.pointcloud import xyz_array
from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.core.geometry import PinholeCamera, Transform, rasterize_depth


def lidar_depth_image(points_lidar: np.ndarray, camera_from_lidar: Transform, camera: PinholeCamera,
                      max_range: float = 100.0, fill_kernel: int = 0) -> np.ndarray:
    """Depth image (H, W) float32 metres of the LiDAR points seen by ``camera``.

    Points beyond ``max_range`` (metres from the camera) or non-finite are ignored. ``fill_kernel`` > 1 densifies
    the sparse image: each empty pixel takes the *nearest* depth within a ``fill_kernel`` x ``fill_kernel``
    neighbourhood (so foreground edges are not eroded by background), measured pixels are kept as they are.
    """
    pts = np.asarray(points_lidar, dtype=np.float32).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]
    optical = camera_from_lidar.apply(pts)
    optical = optical[np.linalg.norm(optical, axis=1) <= max_range]
    depth = rasterize_depth(camera, optical)
    if fill_kernel > 1:
        depth = fill_nearest(depth, fill_kernel)
    return depth


def fill_nearest(depth: np.ndarray, kernel: int) -> np.ndarray:
    """Fill empty (0) pixels with the smallest positive depth in a ``kernel`` x ``kernel`` window."""
    valid = depth > 0
    if not np.any(valid):
        return depth
    ceiling = float(depth[valid].max()) + 1.0
    inverted = np.where(valid, ceiling - depth, 0.0).astype(np.float32)  # nearest -> largest
    grown = cv2.dilate(inverted, np.ones((kernel, kernel), np.uint8))
    filled = np.where(grown > 0, ceiling - grown, 0.0).astype(np.float32)
    return np.where(valid, depth, filled).astype(np.float32)


def lidar_points_xyz(points: np.ndarray) -> np.ndarray:
    """``(N, 3)`` float32 x, y, z (metres, LiDAR frame) of a point array, checked.

    Accepts a structured cloud with ``x``, ``y``, ``z`` fields (as decoded from a PointCloud2; other fields are
    ignored) or a plain numeric ``(N, C)`` array, ``C >= 3``, whose first three columns are x, y, z (e.g. x y z
    intensity). Non-finite points are kept (the projection drops them). MessageFormatError for anything else.
    """
    if not isinstance(points, np.ndarray):
        raise MessageFormatError(f"LiDAR points: expected a numpy array, got {type(points).__name__}")
    if points.dtype.names is not None:
        return xyz_array(points, remove_nans=False)
    if points.ndim != 2 or points.shape[1] < 3:
        raise MessageFormatError(f"LiDAR points: expected an (N, 3+) array or a structured cloud with x, y, z fields, "
                                 f"got shape {points.shape}")
    if not (np.issubdtype(points.dtype, np.floating) or np.issubdtype(points.dtype, np.integer)):
        raise MessageFormatError(f"LiDAR points: expected a numeric array, got {points.dtype}")
    return np.ascontiguousarray(points[:, :3], dtype=np.float32)
