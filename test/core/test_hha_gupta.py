"""HHA as Gupta et al. (ECCV 2014) published it: known answers on ray-cast scenes, and agreement on a real NYU Depth
V2 frame with a separately written reference implementation of the published algorithm.

The reference (``reference_hha`` below) shares no code with the encoder: per-pixel Python loops, one
``numpy.linalg.lstsq`` plane fit per window, ``numpy.linalg.eig`` for the gravity update. It follows the published
description: point cloud in cm; normals fitted in inverse depth over (2r+1)^2 windows (r = 3 for the angle, 10 for
gravity) and oriented away from the camera; gravity from the optical +y axis, iterated 5 times at 45 deg and 5 times at
15 deg (parallel set ``|n.g| > cos t``, perpendicular set ``|n.g| < sin t``, new g = eigenvector of the smallest
eigenvalue of ``sum_perp nn^T - sum_par nn^T``); floor = lowest point, 130 cm below the camera when that is less than
90 cm down; channels ``31000 / max(z_cm, 100)``, height in cm, angle in degrees + 38 (undefined: 180), rounded and
saturated. It runs on an 8-pixel grid (gravity from the grid's normals), so the comparison is on that grid.
Measured: mean |difference| 0 / 0.09 / 0.05 grey levels (d, h, a), gravity 0.06 deg apart.
"""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import R_OPTICAL_FROM_BODY, PinholeCamera, rpy_to_matrix
from ros_mmfusion.core.modalities.depth import gupta_hha_channels
from ros_mmfusion.core.modalities.depth_encodings import DEFAULT_INTRINSICS, default_camera, read_depth_file
from ros_mmfusion.core.modalities.encoders import HHAEncoder, make_encoder
from ros_mmfusion.core.segmentation.pipeline import package_x_params
from ros_mmfusion.core.segmentation.training import default_x_params
from test.fixtures import require_real

CAMERA = PinholeCamera.from_fov(160, 120, np.radians(70.0))


def camera_from_body(pitch_down_deg: float) -> np.ndarray:
    """Rotation optical <- level body (z up) of a camera pitched down by the given angle."""
    return R_OPTICAL_FROM_BODY @ rpy_to_matrix(0.0, np.radians(pitch_down_deg), 0.0).T


def tilted_up(pitch_down_deg: float) -> np.ndarray:
    """Unit up vector in the optical frame of a camera pitched down by the given angle."""
    return camera_from_body(pitch_down_deg) @ np.array([0.0, 0.0, 1.0])


def floor_and_wall(up: np.ndarray, camera_height: float, wall: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Depth (metres) of a floor ``camera_height`` below the camera and a wall ``wall`` m ahead, and the optical-frame
    ray directions ``(H, W, 3)`` (z = 1)."""
    v, u = np.mgrid[0 : CAMERA.height, 0 : CAMERA.width].astype(np.float64)
    rays = np.stack([(u - CAMERA.k[0, 2]) / CAMERA.k[0, 0], (v - CAMERA.k[1, 2]) / CAMERA.k[1, 1],
                     np.ones_like(u)], axis=-1)
    along_up = rays @ up
    depth = np.where(along_up < -1e-9, camera_height / np.maximum(-along_up, 1e-9), np.inf)
    if wall is not None:
        forward = np.array([0.0, 0.0, 1.0]) - up * up[2]
        forward /= np.linalg.norm(forward)
        depth = np.minimum(depth, np.where(rays @ forward > 1e-9, wall / np.maximum(rays @ forward, 1e-9), np.inf))
    return np.where(depth < 30.0, depth, 0.0), rays


def eroded(mask: np.ndarray, margin: int) -> np.ndarray:
    import cv2

    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


@pytest.mark.parametrize("pitch, camera_height", [(0.0, 1.2), (20.0, 1.5)])
def test_floor_and_wall_give_the_published_channels_exactly(pitch, camera_height):
    up = tilted_up(pitch)
    depth, rays = floor_and_wall(up, camera_height, wall=4.0)
    points_cm = rays * depth[..., None] * 100.0
    height_cm = camera_height * 100.0 + points_cm @ up
    on_floor = (depth > 0) & (np.abs(height_cm) < 1e-6)
    on_wall = (depth > 0) & ~on_floor
    assert on_floor.sum() > 1500 and on_wall.sum() > 1500
    # Gravity estimated from the normals: within 0.5 deg (21x21 windows across the floor-wall edge pull it a little).
    estimated = gupta_hha_channels(depth, CAMERA)
    assert np.degrees(np.arccos(np.clip(-estimated.down @ up, -1, 1))) < 0.5
    assert abs(estimated.floor_cm + camera_height * 100.0) < 400.0 * np.sin(np.radians(0.5))  # at most 4 m away
    for given in (camera_height, None):  # floor from the camera height, or the lowest point (the floor itself)
        hha = HHAEncoder(camera_height=given, camera_from_body=camera_from_body(pitch), refine_gravity=False).encode(
            depth.astype(np.float32), CAMERA, encoding="32FC1")
        # Away from rounding ties, every pixel's channels are the analytic values rounded.
        clear = np.abs(height_cm - np.floor(height_cm) - 0.5) > 0.01
        expected_height = np.clip(np.floor(height_cm + 0.5), 0, 255)
        assert np.array_equal(hha[..., 1][(depth > 0) & clear], expected_height[(depth > 0) & clear])
        expected_disparity = np.clip(np.floor(31000.0 / np.maximum(depth * 100.0, 100.0) + 0.5), 0, 255)
        assert np.array_equal(hha[..., 0][depth > 0], expected_disparity[depth > 0])
        # Angle: floor 0 deg -> 38, wall 90 deg -> 128, inside each plane (7x7 windows on one surface).
        assert set(np.unique(hha[..., 2][eroded(on_floor, 3)])) == {38}
        assert set(np.unique(hha[..., 2][eroded(on_wall, 3)])) == {128}
        assert (hha[..., 1][eroded(on_floor, 3)] == 0).all()


def test_no_floor_in_view_assumes_the_camera_130_cm_up_and_undefined_angles_are_180_degrees():
    up = np.array([0.0, -1.0, 0.0])
    depth, rays = floor_and_wall(up, camera_height=50.0, wall=1.2)  # only a wall in view, reaching 63 cm down
    depth[:, :60] = 0.0  # a hole too wide for any normal window at its centre
    planes = gupta_hha_channels(depth, CAMERA)
    assert planes.floor_cm == -130.0
    hha = HHAEncoder().encode(depth.astype(np.float32), CAMERA, encoding="32FC1")
    wall_height = 130.0 + (rays * depth[..., None] * 100.0) @ up
    valid = depth > 0
    assert np.abs(hha[..., 1][valid].astype(float) - np.clip(wall_height[valid], 0, 255)).max() <= 0.5 + 1e-9
    assert (hha[:, :45, 2] == 218).all()  # 180 + 38: no normal in the hole's interior
    assert (hha[:, :45, 0] == 255).all() and (hha[:, :45, 1] == 130).all()  # z = 0 as upstream: 310 -> 255, camera


def test_channel_order_and_schemes():
    depth, _ = floor_and_wall(tilted_up(10.0), 1.3, wall=3.0)
    depth = depth.astype(np.float32)
    dha = HHAEncoder().encode(depth, CAMERA)
    assert np.array_equal(HHAEncoder(channel_order="ahd").encode(depth, CAMERA), dha[..., ::-1])
    legacy = HHAEncoder(hha_scheme="legacy").encode(depth, CAMERA)
    assert not np.array_equal(legacy, dha)
    assert np.array_equal(make_encoder("depth_hha", {"hha_scheme": "legacy"}).encode(depth, CAMERA), legacy)
    with pytest.raises(ConfigError, match="hha_scheme"):
        HHAEncoder(hha_scheme="nyu")


def test_model_package_metadata_decides_the_hha_scheme():
    # A package from before the published scheme became the default names none: it was trained on legacy HHA.
    assert package_x_params({"name": "depth_hha", "params": {}}) == {"hha_scheme": "legacy"}
    assert make_encoder("depth_hha", package_x_params({"name": "depth_hha"})).hha_scheme == "legacy"
    assert package_x_params({"name": "depth_hha", "params": {"hha_scheme": "gupta"}})["hha_scheme"] == "gupta"
    assert package_x_params({"name": "thermal", "params": {"clahe_clip": 2.0}}) == {"clahe_clip": 2.0}
    # New trainings record the scheme they used.
    assert default_x_params("depth_hha") == {"hha_scheme": "gupta"}


# --------------------------------------------------------------------------------- the independent reference (NYU)


def reference_hha(depth_m: np.ndarray, fx: float, fy: float, cx: float, cy: float, stride: int = 4) -> tuple:
    """Gupta et al.'s HHA at the pixels ``[::stride, ::stride]``, written plainly from the published description."""
    height, width = depth_m.shape
    z = depth_m * 100.0
    vv, uu = np.mgrid[0:height, 0:width].astype(np.float64)
    x = (uu - cx) * z / fx
    y = (vv - cy) * z / fy
    valid = z > 0

    def normal(r: int, c: int, radius: int) -> np.ndarray | None:
        r0, r1, c0, c1 = max(0, r - radius), min(height, r + radius + 1), max(0, c - radius), min(width, c + radius + 1)
        mask = valid[r0:r1, c0:c1]
        if mask.sum() < 3:
            return None
        zw = z[r0:r1, c0:c1][mask]
        design = np.column_stack([x[r0:r1, c0:c1][mask] / zw, y[r0:r1, c0:c1][mask] / zw, np.ones_like(zw)])
        solution, _, rank, _ = np.linalg.lstsq(design, 1.0 / zw, rcond=None)
        if rank < 3 or not np.any(solution):
            return None
        n = solution / np.linalg.norm(solution)
        if n[2] < 0:
            n = -n
        if valid[r, c] and n @ np.array([x[r, c], y[r, c], z[r, c]]) < 0:
            n = -n
        return n

    grid = [(r, c) for r in range(0, height, stride) for c in range(0, width, stride)]
    gravity_normals = np.array([n for n in (normal(r, c, 10) for r, c in grid) if n is not None])
    g = np.array([0.0, 1.0, 0.0])
    for threshold in [45.0] * 5 + [15.0] * 5:
        dots = np.abs(gravity_normals @ g)
        par = gravity_normals[dots > np.cos(np.radians(threshold))]
        perp = gravity_normals[dots < np.sin(np.radians(threshold))]
        values, vectors = np.linalg.eig(perp.T @ perp - par.T @ par)
        new = np.real(vectors[:, np.argmin(np.real(values))])
        g = new if new @ g >= 0 else -new
    heights = -(x * g[0] + y * g[1] + z * g[2])
    floor = heights[valid].min()
    if floor > -90.0:
        floor = -130.0
    rows, cols = len(range(0, height, stride)), len(range(0, width, stride))
    out = np.zeros((rows, cols, 3))
    for i, (r, c) in enumerate(grid):
        n = normal(r, c, 3)
        angle = 180.0 if n is None else np.degrees(np.arccos(np.clip(n @ g, -1.0, 1.0)))
        values = (31000.0 / max(z[r, c], 100.0), heights[r, c] - floor, angle + 128.0 - 90.0)
        out[i // cols, i % cols] = [min(255.0, max(0.0, np.floor(v + 0.5))) for v in values]
    return out, g


def test_real_nyu_frame_matches_an_independent_reference_within_two_grey_levels():
    path = require_real("rgbd", "tum_nyu_sun", "NYU_depth.pgm")
    depth = read_depth_file(path, "nyu_raw").astype(np.float64)
    assert 0.9 < (depth > 0).mean() and 0.3 < np.median(depth[depth > 0]) < 8.0  # a real room, mostly measured
    fx, fy, cx, cy, width, height = DEFAULT_INTRINSICS["nyu_raw"]
    assert depth.shape == (height, width)
    expected, g_reference = reference_hha(depth, fx, fy, cx, cy, stride=8)
    camera = default_camera("nyu_raw")
    ours = HHAEncoder().encode(depth.astype(np.float32), camera, encoding="32FC1")[::8, ::8].astype(np.float64)
    down = gupta_hha_channels(depth, camera).down
    assert np.degrees(np.arccos(np.clip(down @ g_reference, -1, 1))) < 1.0
    mean_difference = np.abs(ours - expected).reshape(-1, 3).mean(axis=0)
    assert (mean_difference <= 2.0).all(), f"mean |ours - reference| per channel (d, h, a): {mean_difference}"
    assert (np.abs(ours - expected) <= 1.0).mean() > 0.99
    # Not trivially equal: the frame spans the range of every channel.
    assert all(np.ptp(expected[..., i]) > 60 for i in range(3))
