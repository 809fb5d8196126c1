"""CameraInfo fields -> validated intrinsics (ROS-free; rosbags messages included)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ros_mmfusion.core.codec import intrinsics_from_fields
from ros_mmfusion.core.errors import MessageFormatError

K = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]


def fields(**overrides):
    base = dict(height=480, width=640, distortion_model="plumb_bob", d=[0.1, -0.05, 0.0, 0.0, 0.01], k=K, r=[0.0] * 9,
                p=[0.0] * 12)
    base.update(overrides)
    return base


def test_calibrated_camera_is_read():
    intrinsics = intrinsics_from_fields(**fields(), frame_id="cam_optical_frame")
    assert (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy) == (500.0, 510.0, 320.0, 240.0)
    assert intrinsics.is_distorted and intrinsics.frame_id == "cam_optical_frame"
    np.testing.assert_array_equal(intrinsics.r, np.eye(3))  # all-zero R means "no rectification"
    assert intrinsics.p_from_k
    np.testing.assert_array_equal(intrinsics.p[:, :3], np.asarray(K).reshape(3, 3))
    camera = intrinsics.pinhole()
    assert (camera.width, camera.height) == (640, 480)


def test_all_zero_k_means_uncalibrated():
    with pytest.raises(MessageFormatError, match=r"CameraInfo.k is all zeros: the camera is uncalibrated"):
        intrinsics_from_fields(**fields(k=[0.0] * 9))


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (dict(k=[500.0, 0, 320, 0, -5.0, 240, 0, 0, 1]), r"non-positive focal lengths fx=500.0, fy=-5.0"),
        (dict(k=[500.0, 0, 320, 0, 500, 240, 0, 0, 2]), r"k's last row is \[0.0, 0.0, 2.0\], expected \[0, 0, 1\]"),
        (dict(k=[500.0] * 8), r"CameraInfo.k has 8 values, expected 9"),
        (dict(p=[1.0] * 11), r"CameraInfo.p has 11 values, expected 12"),
        (dict(d=[0.1, 0.2, 0.3]), r"d has 3 coefficients, but 'plumb_bob' takes one of \(0, 4, 5, 8, 12, 14\)"),
        (dict(distortion_model="equidistant", d=[0.1] * 5), r"'equidistant' takes one of \(0, 4\)"),
        (dict(k=[np.nan] + K[1:]), r"CameraInfo.k contains non-finite values"),
        (dict(width=-1), r"CameraInfo.width must be an unsigned integer, got -1"),
    ],
)
def test_inconsistent_calibrations_are_explained(overrides, pattern):
    with pytest.raises(MessageFormatError, match=pattern):
        intrinsics_from_fields(**fields(**overrides))


def test_unknown_distortion_models_are_kept():
    assert intrinsics_from_fields(**fields(distortion_model="fisheye62", d=[0.0] * 6)).d.size == 6


def test_binning_and_roi_shift_and_scale_k():
    roi = SimpleNamespace(x_offset=100, y_offset=40, height=400, width=400, do_rectify=False)
    intrinsics = intrinsics_from_fields(**fields(), binning_x=2, binning_y=2, roi=roi)
    k = intrinsics.image_k()
    np.testing.assert_allclose(k, [[250.0, 0.0, 110.0], [0.0, 255.0, 100.0], [0.0, 0.0, 1.0]])
    assert intrinsics.image_size() == (200, 200)
    assert intrinsics_from_fields(**fields()).binning_x == 1  # 0 in the message means no binning


def test_rosbags_camera_info_validates_through_the_same_code():
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    info_t = store.types["sensor_msgs/msg/CameraInfo"]
    roi_t = store.types["sensor_msgs/msg/RegionOfInterest"]
    header_t, time_t = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    msg = info_t(header=header_t(stamp=time_t(sec=0, nanosec=0), frame_id="cam"), height=480, width=640,
                 distortion_model="plumb_bob", d=np.zeros(5), k=np.array(K), r=np.eye(3).ravel(), p=np.zeros(12),
                 binning_x=0, binning_y=0, roi=roi_t(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    intrinsics = intrinsics_from_fields(msg.height, msg.width, msg.distortion_model, msg.d, msg.k, msg.r, msg.p,
                                        msg.binning_x, msg.binning_y, msg.roi, msg.header.frame_id)
    assert intrinsics.fy == 510.0 and not intrinsics.is_distorted
