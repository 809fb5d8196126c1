"""Sensor arrays -> the pillar encoder's input (ROS-free, numpy): the preparation before graph 1.

``point_features`` reads a decoded cloud into the ``(N, 4)`` ``x, y, z, intensity`` the detector expects (the
intensity in the model's units) and ``pillarize_counted`` groups points into pillars and counts how many cells they
occupied. The stages themselves keep their own modules, because the network file and the parity tests use them
directly: ``pillarize.py`` (range crop, the reference voxelizer, the decorated pillar features) and ``painting.py``
(PointPainting's score channels).
"""
from __future__ import annotations

import numpy as np

from ros_mmfusion.core.codec.pointcloud import field_values, xyz_array
from ros_mmfusion.core.detection3d.pillarize import PillarGrid, Pillars, pillarize_and_count
from ros_mmfusion.core.errors import MessageFormatError


def point_features(points: np.ndarray, intensity_scale: float = 1.0, num_features: int = 4) -> np.ndarray:
    """``(N, 4)`` float32 ``x, y, z, intensity`` of the finite points of a cloud; intensity times ``intensity_scale``.

    ``points`` is a structured cloud (as decoded from a PointCloud2, any field layout, organized or not) with ``x``,
    ``y``, ``z`` and ``intensity`` fields, or a numeric ``(N, 4+)`` array whose first four columns are those. Points
    with a non-finite value among the four are dropped. MessageFormatError when intensity (or x, y, z) is missing.

    ``num_features`` 5 adds the time lag (s) of multi-sweep input (``sweeps.SweepAccumulator``) as a fifth column:
    the fifth column of a numeric ``(N, 5+)`` array (so such an array must hold the lag there, not e.g. nuScenes'
    ring), 0 for a structured cloud or an ``(N, 4)`` array (a single sweep).
    """
    if num_features not in (4, 5):
        raise MessageFormatError(f"points: 4 or 5 features per point are supported, not {num_features}")
    if not isinstance(points, np.ndarray):
        raise MessageFormatError(f"points: expected a numpy array, got {type(points).__name__}")
    if points.dtype.names is not None:
        intensity = field_values(points, "intensity")
        if intensity.ndim != 1:
            raise MessageFormatError(f"cloud field 'intensity' has count {intensity.shape[1]}, expected 1")
        out = np.empty((intensity.shape[0], 4), np.float32)
        out[:, :3] = xyz_array(points, remove_nans=False)
        out[:, 3] = intensity
    elif points.ndim == 2 and points.shape[1] >= 4 and np.issubdtype(points.dtype, np.number):
        out = np.array(points[:, :min(num_features, points.shape[1])], dtype=np.float32)
    else:
        raise MessageFormatError(f"points: expected a structured cloud with x, y, z, intensity or an (N, 4+) numeric "
                                 f"array, got shape {points.shape} {points.dtype}")
    if out.shape[1] < num_features:  # a single sweep: time lag 0
        out = np.concatenate([out, np.zeros((len(out), num_features - out.shape[1]), np.float32)], axis=1)
    if intensity_scale != 1.0:
        out[:, 3] *= np.float32(intensity_scale)
    finite = np.isfinite(out).all(axis=1)
    return out if finite.all() else out[finite]


def pillarize_counted(points: np.ndarray, grid: PillarGrid) -> tuple[Pillars, int]:
    """The cropped (painted) ``(N, C)`` points as pillars of ``grid``, and how many cells they occupy before
    truncation to ``grid.max_pillars``."""
    return pillarize_and_count(points, grid)
