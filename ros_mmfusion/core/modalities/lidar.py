"""LiDAR projected into a camera: a sparse or densified depth image aligned with that camera's pixels.

Input points are in the LiDAR frame (metres); ``camera_from_lidar`` maps them into the camera *optical* frame
(x right, y down, z forward). Output depth is float32 metres along the optical axis, 0 where no point landed.
"""
from __future__ import annotations

import cv2
import numpy as np

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
