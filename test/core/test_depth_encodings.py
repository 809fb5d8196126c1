"""Vendor depth encodings to metres: known answers per formula, the real samples of ../shared/real/rgbd decoded to
plausible indoor ranges, and each through the depth and HHA encoders."""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.modalities.depth import gupta_hha_channels
from ros_mmfusion.core.modalities.depth_encodings import decode_depth, default_camera, read_depth_file, read_pgm16
from ros_mmfusion.core.modalities.encoders import DepthEncoder, HHAEncoder
from test.fixtures import require_real


def test_known_values_of_each_formula():
    raw = np.array([[0, 5000, 12345, 65535]], np.uint16)
    np.testing.assert_allclose(decode_depth(raw, "tum"), [[0.0, 1.0, 2.469, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(decode_depth(raw, "mm"), [[0.0, 5.0, 12.345, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(decode_depth(raw, "tenth_mm"), [[0.0, 0.5, 1.2345, 0.0]], rtol=1e-6)
    # SUN: 1234 mm stored with its 3 low bits rotated to the top.
    stored = np.array([[((1234 << 3) | (1234 >> 13)) & 0xFFFF, 0, ((8000 << 3) & 0xFFFF) | (8000 >> 13)]], np.uint16)
    np.testing.assert_allclose(decode_depth(stored, "sun"), [[1.234, 0.0, 8.0]], rtol=1e-6)
    # NYU: the samples as a PGM reader returns them (big-endian words) hold little-endian disparities.
    disparity = np.array([[700, 900, 1092, 2047]], np.uint16)
    np.testing.assert_allclose(decode_depth(disparity.byteswap(), "nyu_raw"),
                               [[351.3 / 392.5, 351.3 / 192.5, 10.0, 0.0]], rtol=1e-6)  # 1092 -> 702 m, clamped


def test_bad_inputs_are_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="depth encoding 'kinect'"):
        decode_depth(np.zeros((2, 2), np.uint16), "kinect")
    with pytest.raises(MessageFormatError, match="uint16"):
        decode_depth(np.zeros((2, 2), np.float32), "tum")
    eight_bit = tmp_path / "d.pgm"
    eight_bit.write_bytes(b"P5\n2 2\n255\n\x00\x01\x02\x03")
    with pytest.raises(MessageFormatError, match="8-bit PGM"):
        read_pgm16(eight_bit)
    short = tmp_path / "s.pgm"
    short.write_bytes(b"P5\n# comment\n4 4\n65535\n\x00\x01")
    with pytest.raises(MessageFormatError, match="truncated"):
        read_pgm16(short)
    with pytest.raises(MessageFormatError, match="not a readable image"):
        read_depth_file(tmp_path / "missing.png", "tum")


SAMPLES = [("tum_nyu_sun/TUM_depth.png", "tum"), ("tum_nyu_sun/NYU_depth.pgm", "nyu_raw"),
           ("tum_nyu_sun/SUN_depth.png", "sun"), ("kinect2_esanet/sample_depth.png", "tenth_mm")]


@pytest.mark.parametrize("name, encoding", SAMPLES)
def test_real_samples_decode_to_indoor_metres_and_encode(name, encoding):
    depth = read_depth_file(require_real("rgbd", *name.split("/")), encoding)
    valid = depth > 0
    assert valid.mean() > 0.75  # real holes, but mostly measured
    low, median, high = np.percentile(depth[valid], [1, 50, 99])
    assert 0.3 < low < median < high < 10.0 and 1.0 < median < 5.0  # a room seen by a structured-light/ToF camera
    camera = default_camera(encoding, depth.shape[1], depth.shape[0])
    replicated = DepthEncoder().encode(depth, encoding="32FC1")
    assert replicated.shape == (*depth.shape, 3)
    assert (replicated[valid, 0] > 0).all() and (replicated[~valid] == 0).all()
    hha = HHAEncoder().encode(depth, camera, encoding="32FC1")
    assert hha.shape == (*depth.shape, 3) and hha.dtype == np.uint8
    planes = gupta_hha_channels(depth, camera)
    # Each sample sees its floor: a hand-held or tripod camera 1 to 2 m above it, gravity within 35 deg of optical +y.
    assert -200.0 < planes.floor_cm < -100.0
    assert planes.down[1] > np.cos(np.radians(35.0))
    assert np.ptp(hha[..., 2][valid]) > 80  # floors, walls and furniture: varied normals


def test_sun_rotation_and_millimetres_agree_and_nyu_swap_matters():
    sun = require_real("rgbd", "tum_nyu_sun", "SUN_depth.png")
    import cv2

    stored = cv2.imread(str(sun), cv2.IMREAD_UNCHANGED)
    millimetres = (((stored.astype(np.uint32) >> 3) | (stored.astype(np.uint32) << 13)) & 0xFFFF).astype(np.uint16)
    np.testing.assert_array_equal(decode_depth(stored, "sun"), decode_depth(millimetres, "mm"))
    raw = read_pgm16(require_real("rgbd", "tum_nyu_sun", "NYU_depth.pgm"))
    assert raw.byteswap().max() == 2047  # 11-bit Kinect disparity once swapped, as the NYU toolbox does
    assert (decode_depth(raw, "nyu_raw") > 0).mean() > 0.9
