"""``mmfusion import rgbd`` on the real samples of ../shared/real: a TUM-layout folder (rgb.txt, depth.txt,
groundtruth.txt) around the real TUM frame, the 17-frame TUM image sequence, a NYU raw pair and MFNet RGB-thermal
frames; the bags are read back with rosbags and deserialised with rclpy."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ros_mmfusion.cli.main import main
from ros_mmfusion.core.modalities.depth_encodings import DEFAULT_INTRINSICS, read_depth_file
from test.fixtures import require_real


def read_bag(path) -> dict[str, list]:
    """topic -> [(msgtype, raw CDR bytes, deserialised rosbags message)] of a bag."""
    from rosbags.rosbag2 import Reader

    from ros_mmfusion.core.bagio import typestore

    store = typestore()
    topics: dict[str, list] = {}
    with Reader(path) as reader:
        for connection, _, raw in reader.messages():
            topics.setdefault(connection.topic, []).append(
                (connection.msgtype, bytes(raw), store.deserialize_cdr(raw, connection.msgtype)))
    return topics


def image_array(message) -> np.ndarray:
    dtype = {"32FC1": np.float32, "16UC1": np.uint16}.get(message.encoding, np.uint8)
    channels = {"rgb8": 3}.get(message.encoding, 1)
    array = np.frombuffer(bytes(message.data), dtype=dtype).reshape(message.height, message.width, channels)
    return array[..., 0] if channels == 1 else array


@pytest.fixture
def tum_folder(tmp_path):
    sample = require_real("rgbd", "tum_nyu_sun")
    folder = tmp_path / "fr3_sample"
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    (folder / "rgb" / "1.000000.png").symlink_to(sample / "TUM_color.png")
    (folder / "depth" / "1.010000.png").symlink_to(sample / "TUM_depth.png")
    (folder / "rgb.txt").write_text("# color images\n# timestamp filename\n1.000000 rgb/1.000000.png\n")
    (folder / "depth.txt").write_text("# depth maps\n1.010000 depth/1.010000.png\n")
    (folder / "groundtruth.txt").write_text("# timestamp tx ty tz qx qy qz qw\n0.99 1 2 3 0 0 0 1\n"
                                            "1.0 1.5 2 3 0 0 0.7071068 0.7071068\n1.2 9 9 9 0 0 0 1\n")
    return folder


def test_tum_folder_to_a_bag_rosbags_and_rclpy_read(tum_folder, tmp_path, capsys):
    out = tmp_path / "bag"
    assert main(["import", "rgbd", str(tum_folder), "--out", str(out)]) == 0
    assert "frame 1/1" in capsys.readouterr().out
    topics = read_bag(out)
    depth_msg = topics["/camera/depth/image_rect_raw"][0][2]
    assert depth_msg.encoding == "32FC1" and depth_msg.header.frame_id == "camera_color_optical_frame"
    expected = read_depth_file(tum_folder / "depth" / "1.010000.png", "tum")
    depth = image_array(depth_msg)
    np.testing.assert_array_equal(np.nan_to_num(depth, nan=0.0), expected)
    assert np.isnan(depth[expected == 0]).all()  # no data as NaN (REP-118)
    colour = image_array(topics["/camera/color/image_raw"][0][2])
    bgr = cv2.imread(str(tum_folder / "rgb" / "1.000000.png"))
    np.testing.assert_array_equal(colour, bgr[..., ::-1])
    fx, fy, cx, cy, _, _ = DEFAULT_INTRINSICS["tum"]
    info = topics["/camera/depth/camera_info"][0][2]
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    odometry = [m for _, _, m in topics["/groundtruth/odometry"]]
    assert len(odometry) == 1 and odometry[0].pose.pose.position.x == 1.5  # the pose within the sequence's span
    # rclpy reads the very bytes (its own type support, not rosbags')
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image

    for topic, cls in (("/camera/depth/image_rect_raw", Image), ("/camera/color/camera_info", CameraInfo)):
        message = deserialize_message(topics[topic][0][1], cls)
        assert message.header.stamp.sec == 1 and message.width == 640
    # A rerun into the bag is refused without --overwrite, replaced with it; 16UC1 millimetres on request.
    assert main(["import", "rgbd", str(tum_folder), "--out", str(out)]) == 2
    assert main(["import", "rgbd", str(tum_folder), "--out", str(out), "--overwrite", "--depth-output", "16UC1"]) == 0
    millimetres = image_array(read_bag(out)["/camera/depth/image_rect_raw"][0][2])
    assert millimetres.dtype == np.uint16
    np.testing.assert_allclose(millimetres / 1000.0, expected, atol=5e-4)


def test_a_missing_listed_file_is_one_line_naming_it(tum_folder, tmp_path, capsys):
    (tum_folder / "depth.txt").write_text("1.010000 depth/1.010000.png\n1.5 depth/gone.png\n")
    assert main(["import", "rgbd", str(tum_folder), "--out", str(tmp_path / "bag")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gone.png: missing (listed in depth.txt line 2)" in err[0]
    assert not (tmp_path / "bag").exists()
    assert main(["import", "rgbd", "--rgb", str(tmp_path / "nope.png"), "--out", str(tmp_path / "b2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rgb" in err[0] and "nope.png: missing" in err[0]


def test_tum_sequence_nyu_pair_and_mfnet_frames(tmp_path):
    sequence = require_real("tum_sequence")
    assert main(["import", "rgbd", str(sequence), "--out", str(tmp_path / "seq")]) == 0
    frames = read_bag(tmp_path / "seq")["/camera/color/image_raw"]
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for _, _, m in frames]
    assert len(frames) == 17 and stamps[0] == pytest.approx(1341847980.722988) and np.all(np.diff(stamps) > 0.9)

    nyu = require_real("rgbd", "tum_nyu_sun")
    assert main(["import", "rgbd", "--rgb", str(nyu / "NYU_color.ppm"), "--depth", str(nyu / "NYU_depth.pgm"),
                 "--depth-encoding", "nyu_raw", "--out", str(tmp_path / "nyu")]) == 0
    topics = read_bag(tmp_path / "nyu")
    depth = image_array(topics["/camera/depth/image_rect_raw"][0][2])
    assert topics["/camera/depth/image_rect_raw"][0][2].header.frame_id == "camera_depth_optical_frame"
    assert 0.9 < np.isfinite(depth).mean() and 1.0 < np.nanmedian(depth) < 5.0

    mfnet = require_real("rgbt_mfnet")
    assert main(["import", "rgbd", "--layout", "mfnet", str(mfnet), "--out", str(tmp_path / "mfnet")]) == 0
    topics = read_bag(tmp_path / "mfnet")
    thermal = [image_array(m) for _, _, m in topics["/thermal/image_raw"]]
    rgba = cv2.imread(str(mfnet / "01234N.png"), cv2.IMREAD_UNCHANGED)
    assert topics["/thermal/image_raw"][0][2].encoding == "mono8"
    np.testing.assert_array_equal(thermal[0], rgba[..., 3])
    np.testing.assert_array_equal(image_array(topics["/camera/color/image_raw"][0][2]), rgba[..., 2::-1])
