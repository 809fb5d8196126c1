"""X-modality encoders: depth (replicated and HHA), thermal and LiDAR, on synthetic scenes with known answers.

The scenes are ray-cast analytically: a camera ``CAMERA_HEIGHT`` metres above a flat floor, optionally facing a
vertical wall, seen through a small pinhole camera. Depth is the optical-axis z of the first plane each ray hits.
"""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core.codec.pointcloud import structured_cloud
from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.geometry import R_OPTICAL_FROM_BODY, PinholeCamera, Transform, rpy_to_matrix
from ros_mmfusion.core.modalities.depth import camera_rays, depth_metres, encode_depth, hha_channels
from ros_mmfusion.core.modalities.encoders import (
    MEAN_COLOUR,
    DepthEncoder,
    HHAEncoder,
    LidarEncoder,
    ThermalEncoder,
    XEncoder,
    make_encoder,
)
from ros_mmfusion.core.modalities.lidar import lidar_depth_image
from ros_mmfusion.core.segmentation.preprocess import x_input

CAMERA = PinholeCamera.from_fov(160, 120, np.radians(70.0))
CAMERA_HEIGHT = 1.2


def camera_from_body(pitch_down_deg: float) -> np.ndarray:
    """Rotation optical <- level body for a camera pitched down by the given angle (body z up)."""
    return R_OPTICAL_FROM_BODY @ rpy_to_matrix(0.0, np.radians(pitch_down_deg), 0.0).T


def ray_cast(up: np.ndarray, wall_distance: float | None = None, far: float = 30.0) -> np.ndarray:
    """Depth (H, W) float32 metres of the floor ``CAMERA_HEIGHT`` below the camera (and a wall ``wall_distance``
    ahead along the horizontal viewing direction); 0 where nothing within ``far`` metres is hit."""
    x, y = camera_rays(CAMERA)
    rays = np.stack([x, y, np.ones_like(x)], axis=-1).astype(np.float64)
    along_up = rays @ up
    depth = np.where(along_up < -1e-9, CAMERA_HEIGHT / np.maximum(-along_up, 1e-9), np.inf)
    if wall_distance is not None:
        forward = np.array([0.0, 0.0, 1.0]) - up * up[2]  # optical z projected onto the horizontal plane
        forward /= np.linalg.norm(forward)
        along_forward = rays @ forward
        wall = np.where(along_forward > 1e-9, wall_distance / np.maximum(along_forward, 1e-9), np.inf)
        depth = np.minimum(depth, wall)
    return np.where(depth <= far, depth, 0.0).astype(np.float32)


def interior(mask: np.ndarray, margin: int = 3) -> np.ndarray:
    """``mask`` shrunk by ``margin`` pixels (away from the plane's boundaries, where normal windows mix surfaces)."""
    import cv2

    return cv2.erode(mask.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)).astype(bool)


# ------------------------------------------------------------------------------------------------------------- depth


def test_depth_encoding_is_linear_far_bright_with_zero_for_no_data():
    depth = np.array([[0.0, np.nan, np.inf, -1.0], [1.0, 5.0, 10.0, 50.0]], np.float32)
    out = DepthEncoder(max_depth=10.0).encode(depth, encoding="32FC1")
    assert out.shape == (2, 4, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    assert out[0].tolist() == [[0, 0, 0]] * 4
    assert out[1, :, 0].tolist() == [26, 128, 255, 255]  # 25.5, 127.5 (half to even), saturated beyond max_depth
    near = DepthEncoder(max_depth=10.0, near_bright=True).encode(depth, encoding="32FC1")[..., 0]
    assert near[1].tolist() == [230, 128, 1, 1] and near[0].tolist() == [0, 0, 0, 0]  # valid pixels never read 0
    assert encode_depth(np.array([[1e-6]]), 10.0)[0, 0] == 1


def test_millimetre_and_metre_depth_give_the_same_encoding():
    rng = np.random.default_rng(0)
    mm = rng.integers(0, 12000, size=(120, 160)).astype(np.uint16)
    mm[rng.random(mm.shape) < 0.1] = 0
    metres = (mm / 1000.0).astype(np.float32)
    metres[mm == 0] = np.nan
    np.testing.assert_array_equal(depth_metres(mm, "16UC1"), depth_metres(metres, "32FC1"))
    for encoder in (DepthEncoder(), HHAEncoder()):
        np.testing.assert_array_equal(encoder.encode(mm, CAMERA, encoding="16UC1"),
                                      encoder.encode(metres, CAMERA, encoding="32FC1"))
    np.testing.assert_array_equal(DepthEncoder().encode(mm), DepthEncoder().encode(metres))  # encoding inferred


def test_floor_seen_from_known_height_has_zero_height_and_angle_along_gravity():
    rotation = camera_from_body(25.0)
    up = rotation @ np.array([0.0, 0.0, 1.0])
    depth = ray_cast(up)
    for camera_height in (CAMERA_HEIGHT, None):  # given, or the lowest-floor estimate
        hha = hha_channels(depth, CAMERA, camera_from_body=rotation, camera_height=camera_height)
        floor = hha.valid
        assert floor.mean() > 0.5
        np.testing.assert_allclose(hha.height[floor], 0.0, atol=1e-4)
        assert hha.normal_ok[interior(floor)].all()
        assert np.abs(hha.angle[interior(floor)]).max() < 1.0  # floor normal parallel to gravity
    encoded = HHAEncoder(hha_scheme="legacy", camera_from_body=rotation,
                         camera_height=CAMERA_HEIGHT).encode(depth, CAMERA)
    assert encoded[..., 1][floor].max() == 0 and encoded[..., 2][interior(floor)].max() <= 1


def test_wall_is_at_ninety_degrees_and_its_height_grows_upwards():
    up = np.array([0.0, -1.0, 0.0])  # level camera: optical y points down
    depth = ray_cast(up, wall_distance=4.0)
    hha = hha_channels(depth, CAMERA, camera_height=CAMERA_HEIGHT)
    y = camera_rays(CAMERA)[1] * depth
    wall = interior(hha.valid & (np.abs(depth - 4.0) < 1e-4))
    floor = interior(hha.valid & (np.abs(y - CAMERA_HEIGHT) < 1e-4))
    assert wall.sum() > 1000 and floor.sum() > 500
    np.testing.assert_allclose(hha.angle[wall], 90.0, atol=1.0)
    np.testing.assert_allclose(hha.angle[floor], 0.0, atol=1.0)
    np.testing.assert_allclose(hha.height[wall], CAMERA_HEIGHT - y[wall], atol=1e-4)
    encoded = HHAEncoder(hha_scheme="legacy", camera_height=CAMERA_HEIGHT).encode(depth, CAMERA)
    assert set(np.unique(encoded[..., 2][wall])) <= {127, 128, 129}


def test_gravity_is_refined_from_the_normals():
    rotation = camera_from_body(15.0)
    true_up = rotation @ np.array([0.0, 0.0, 1.0])
    depth = ray_cast(true_up, wall_distance=5.0)
    assumed_level = hha_channels(depth, CAMERA)  # wrong prior: optical -y, 15 deg off
    refined = hha_channels(depth, CAMERA, refine=True)
    assert np.degrees(np.arccos(assumed_level.up @ true_up)) > 14.0
    assert np.degrees(np.arccos(np.clip(refined.up @ true_up, -1, 1))) < 0.5


def test_disparity_decreases_with_depth():
    depth = ray_cast(np.array([0.0, -1.0, 0.0]), wall_distance=6.0)
    encoded = HHAEncoder(hha_scheme="legacy", min_depth=0.5).encode(depth, CAMERA)
    valid = depth > 0
    order = np.argsort(depth[valid], kind="stable")
    disparity = encoded[..., 0][valid][order].astype(int)
    assert (np.diff(disparity) <= 0).all()
    assert disparity[0] > disparity[-1]
    metric = hha_channels(depth, CAMERA).inverse_depth
    np.testing.assert_allclose(metric[valid], 1.0 / depth[valid], rtol=1e-6)


def test_invalid_pixels_stay_zero_and_non_finite_values_never_reach_the_output():
    depth = ray_cast(np.array([0.0, -1.0, 0.0]), wall_distance=3.0)
    rng = np.random.default_rng(1)
    holes = rng.random(depth.shape) < 0.2
    holes[40:60, 50:90] = True
    depth[holes] = rng.choice(np.array([0.0, np.nan, np.inf, -np.inf, -2.0], np.float32), size=int(holes.sum()))
    hha = hha_channels(depth_metres(depth, "32FC1"), CAMERA)
    for plane in (hha.inverse_depth, hha.height, hha.angle):
        assert np.isfinite(plane).all() and (plane[holes] == 0).all()
    for encoder in (DepthEncoder(), HHAEncoder(hha_scheme="legacy")):
        out = encoder.encode(depth, CAMERA, encoding="32FC1")
        assert out.dtype == np.uint8 and out.shape == (120, 160, 3)
        assert (out[holes] == 0).all()
        assert (out[..., 0][~holes] > 0).all()  # measured pixels are never mistaken for "no data" here
    assert np.isfinite(x_input(HHAEncoder().encode(depth, CAMERA, encoding="32FC1"))).all()


def test_distorted_camera_rays_invert_the_projection():
    camera = PinholeCamera(k=CAMERA.k, width=160, height=120, d=np.array([-0.2, 0.05, 0.001, -0.001, 0.0]))
    x, y = camera_rays(camera)
    points = np.stack([x, y, np.ones_like(x)], axis=-1).reshape(-1, 3) * 3.0
    uv, _, _ = camera.project(points)
    v, u = np.mgrid[0:120, 0:160]
    np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], axis=1), atol=1e-2)


# ----------------------------------------------------------------------------------------------------------- thermal


def thermal_scene() -> np.ndarray:
    """mono16 centikelvin: a 293 K background with sensor noise and a uniform 310 K hot spot (4% of the pixels)."""
    rng = np.random.default_rng(2)
    kelvin = 293.0 + rng.normal(0.0, 0.3, size=(120, 160))
    kelvin[50:74, 70:102] = 310.0
    return np.rint(kelvin * 100).astype(np.uint16)


def test_thermal_percentiles_put_the_hot_spot_at_255_and_the_background_low():
    raw = thermal_scene()
    out = ThermalEncoder(percentiles=(1.0, 99.0)).encode(raw, encoding="mono16")
    assert out.shape == (120, 160, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 2]).all()
    hot = np.zeros(raw.shape, bool)
    hot[50:74, 70:102] = True
    assert (out[..., 0][hot] == 255).all()
    assert np.percentile(out[..., 0][~hot], 99) < 32  # the background stays in the lowest eighth


def test_thermal_mono8_and_mono16_agree_in_order():
    raw16 = thermal_scene()
    raw16 = (raw16 - raw16.min()).astype(np.uint16) * 30  # spread over the 16-bit range
    raw8 = (raw16 >> 8).astype(np.uint8)
    encoder = ThermalEncoder(percentiles=(0.0, 100.0))
    out16 = encoder.encode(raw16, encoding="mono16")[..., 0].ravel()
    out8 = encoder.encode(raw8, encoding="mono8")[..., 0].ravel()
    order = np.argsort(raw16.ravel(), kind="stable")
    assert (np.diff(out16[order].astype(int)) >= 0).all()
    assert (np.diff(out8[order].astype(int)) >= 0).all()
    assert np.abs(out16.astype(int) - out8.astype(int)).max() <= 3


def test_thermal_fixed_kelvin_window_and_nan_safety():
    raw = thermal_scene()
    encoder = ThermalEncoder(window_k=(283.0, 313.0), kelvin_per_count=0.01)
    out = encoder.encode(raw, encoding="mono16")[..., 0]
    assert abs(int(out[60, 80]) - round(255 * 27 / 30)) <= 1 and abs(int(out[0, 0]) - round(255 * 10 / 30)) <= 3
    celsius = (raw.astype(np.float32) / 100.0 - 273.15).astype(np.float32)
    celsius[:5] = np.nan
    celsius[5, :] = np.inf
    as_float = ThermalEncoder(window_k=(283.0, 313.0), kelvin_per_count=1.0, kelvin_offset=273.15)
    floated = as_float.encode(celsius, encoding="32FC1")[..., 0]
    assert (floated[:6] == 0).all()
    assert np.abs(floated[6:].astype(int) - out[6:].astype(int)).max() <= 1
    clahe = ThermalEncoder(clahe_clip=2.0).encode(celsius, encoding="32FC1")
    assert clahe.shape == (120, 160, 3) and (clahe[:6] == 0).all()
    uniform = ThermalEncoder().encode(np.full((4, 4), 7, np.uint8), encoding="mono8")
    assert (uniform == 0).all()


# ------------------------------------------------------------------------------------------------------------- lidar


def lidar_scene() -> tuple[np.ndarray, Transform]:
    """Points on a wall 8 m ahead and the floor, in a LiDAR frame (x forward, z up) 0.2 m above the camera."""
    rng = np.random.default_rng(3)
    wall = np.stack([np.full(3000, 8.0), rng.uniform(-6, 6, 3000), rng.uniform(-1.0, 2.0, 3000)], axis=1)
    floor = np.stack([rng.uniform(1, 8, 3000), rng.uniform(-6, 6, 3000), np.full(3000, -1.4)], axis=1)
    points = np.concatenate([wall, floor, [[np.nan, 0, 0], [1000.0, 0.0, 0.0]]]).astype(np.float32)
    camera_from_lidar = Transform(R_OPTICAL_FROM_BODY, R_OPTICAL_FROM_BODY @ np.array([0.0, 0.0, 0.2]))
    return points, camera_from_lidar


def test_lidar_encoder_encodes_the_projected_depth_like_a_depth_image():
    points, camera_from_lidar = lidar_scene()
    encoder = LidarEncoder(max_depth=80.0, fill_kernel=5, camera_from_lidar=camera_from_lidar)
    expected_depth = lidar_depth_image(points, camera_from_lidar, CAMERA, encoder.max_range, encoder.fill_kernel)
    assert (expected_depth > 0).mean() > 0.3
    expected = DepthEncoder(max_depth=80.0).encode(expected_depth, encoding="32FC1")
    np.testing.assert_array_equal(encoder.encode(points, CAMERA), expected)
    cloud = structured_cloud(points, intensity=np.ones(len(points), np.float32))
    np.testing.assert_array_equal(encoder.encode(cloud, CAMERA), expected)
    with_intensity = np.concatenate([points, np.ones((len(points), 1), np.float32)], axis=1)
    np.testing.assert_array_equal(LidarEncoder(fill_kernel=5).encode(with_intensity, CAMERA,
                                                                     camera_from_lidar=camera_from_lidar), expected)
    config = make_encoder("lidar", {"camera_from_lidar": [*camera_from_lidar.translation,
                                                          *camera_from_lidar.quaternion()]})
    np.testing.assert_array_equal(config.encode(points, CAMERA), expected)


# ----------------------------------------------------------------------------------------------- interface and errors


@pytest.mark.parametrize("name", ["depth", "depth_hha", "thermal", "lidar"])
def test_encoders_are_made_by_name_and_have_neutral_inputs(name):
    encoder = make_encoder(name)
    assert isinstance(encoder, XEncoder) and encoder.name == name
    neutral = encoder.neutral(48, 64)
    assert neutral.shape == (48, 64, 3) and neutral.dtype == np.uint8
    if encoder.neutral_fill == "mean":
        assert tuple(neutral[0, 0]) == MEAN_COLOUR
        assert np.abs(x_input(neutral)).max() < 0.01  # a zero input to the X branch
    else:
        assert not neutral.any()


def test_make_encoder_reads_yaml_style_parameters_and_rejects_bad_ones():
    thermal = make_encoder("thermal", {"percentiles": [2, 98], "clahe_clip": 1.5})
    assert thermal.percentiles == (2.0, 98.0)
    for name, params in [("sonar", {}), ("depth", {"max_range": 5.0}), ("depth", {"max_depth": -1.0}),
                         ("thermal", {"percentiles": [99, 1]}), ("thermal", {"window_k": [280, 320]}),
                         ("depth_hha", {"normal_window": 4}), ("depth_hha", {"channel_order": "hha"}),
                         ("depth", {"neutral_fill": "grey"}), ("lidar", {"camera_from_lidar": [1, 2, 3]})]:
        with pytest.raises(ConfigError):
            make_encoder(name, params)


def test_missing_intrinsics_or_extrinsic_is_a_config_error():
    depth = ray_cast(np.array([0.0, -1.0, 0.0]), wall_distance=3.0)
    points, camera_from_lidar = lidar_scene()
    with pytest.raises(ConfigError, match="intrinsics"):
        HHAEncoder().encode(depth)
    with pytest.raises(ConfigError, match="intrinsics"):
        LidarEncoder(camera_from_lidar=camera_from_lidar).encode(points)
    with pytest.raises(ConfigError, match="camera_from_lidar"):
        LidarEncoder().encode(points, CAMERA)


@pytest.mark.parametrize("encoder, raw, kwargs, text", [
    (DepthEncoder(), np.zeros((4, 4), np.float32), {"encoding": "mono8"}, "not a depth encoding"),
    (DepthEncoder(), np.zeros((4, 4), np.float32), {"encoding": "16UC1"}, "uint16"),
    (DepthEncoder(), np.zeros((4, 4), np.uint16), {"encoding": "32FC1"}, "float"),
    (DepthEncoder(), np.zeros((4, 4, 3), np.float32), {"encoding": "32FC1"}, "one-channel"),
    (DepthEncoder(), np.zeros((4, 4), np.int32), {}, "infer"),
    (DepthEncoder(), [[1.0, 2.0]], {"encoding": "32FC1"}, "numpy array"),
    (HHAEncoder(), np.ones((60, 80), np.float32), {"encoding": "32FC1"}, "camera.scaled"),
    (ThermalEncoder(), np.zeros((4, 4), np.uint8), {"encoding": "mono16"}, "uint16"),
    (ThermalEncoder(), np.zeros((4, 4), np.uint16), {"encoding": "rgb8"}, "not supported"),
    (ThermalEncoder(), np.zeros((4, 4, 2), np.uint16), {"encoding": "mono16"}, "one-channel"),
    (LidarEncoder(camera_from_lidar=Transform()), np.zeros((10, 2), np.float32), {}, "N, 3"),
    (LidarEncoder(camera_from_lidar=Transform()), np.zeros((10, 3), bool), {}, "numeric"),
])
def test_malformed_inputs_are_message_format_errors(encoder, raw, kwargs, text):
    with pytest.raises(MessageFormatError, match=text):
        encoder.encode(raw, CAMERA, **kwargs)
