"""Recording in a convention (`record(..., convention=)`, `mmfusion sim --convention`): topics renamed and dropped,
every frame id renamed (headers, child frames, /tf, /tf_static, detections), images in the convention's encodings
(same pixels), ``convert`` applied last, scenario.yaml and calibration.yaml in the convention's names. Every
registered convention records a bag that rclpy-typed readers and our decoders read."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import yaml

from ros_mmfusion.core.bagio import typestore
from ros_mmfusion.core.calibration import load_calibration
from ros_mmfusion.core.codec.image import decode_image
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.sim.conventions import Convention, all_conventions, get_convention
from ros_mmfusion.core.sim.recorder import TOPICS, record

FRAMES, SIZE, SEED = 2, (48, 36), 3


def _read(path) -> dict[str, list]:
    from rosbags.rosbag2 import Reader

    store = typestore()
    out = defaultdict(list)
    with Reader(path) as reader:
        for conn, _, raw in reader.messages():
            out[conn.topic].append(store.deserialize_cdr(bytes(raw), conn.msgtype))
    return out


def _frames(messages: dict[str, list]) -> set[str]:
    """Every frame id any message names."""
    found = set()

    def walk(m):
        import dataclasses

        for f in dataclasses.fields(m):
            v = getattr(m, f.name)
            if f.name in ("frame_id", "child_frame_id"):
                found.add(v)
            elif dataclasses.is_dataclass(v):
                walk(v)
            elif isinstance(v, list) and v and dataclasses.is_dataclass(v[0]):
                for item in v:
                    walk(item)

    for msgs in messages.values():
        for m in msgs:
            walk(m)
    return found


def _added(topic, message, messages):
    """A test convert: the odometry also on an extra topic, the ground-truth instance image dropped."""
    if topic == "/ground_truth/instance":
        return []
    pairs = [(TEST.topic(topic), message)]
    if topic == "/odom":
        pairs.append(("/extra/odometry", message))
    return pairs


TEST = Convention(
    name="test", description="a test convention", preset="demo",
    topics={"/camera/color/image_raw": "/cam/rgb", "/camera/color/camera_info": "/cam/info",
            "/camera/depth/image_rect_raw": "/cam/depth", "/thermal/image_raw": "/ir/image",
            "/lidar/points": "/scan/points", "/odom": "/robot/odom", "/ground_truth/points": None,
            "/camera/depth/camera_info": None},
    frames={"base_link": "robot/base", "odom": "robot/odom", "lidar_link": "robot/lidar",
            "camera_color_optical_frame": "robot/rgb", "camera_depth_optical_frame": "robot/depth",
            "thermal_optical_frame": "robot/ir"},
    encodings={"/camera/color/image_raw": "bgra8", "/camera/depth/image_rect_raw": "16UC1",
               "/thermal/image_raw": "16UC1"},
    descriptions={"/lidar/points": "the scan"},
    convert=_added,
)


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    suite = record("urban_day", root / "suite", FRAMES, seed=SEED, size=SIZE, beams=16)
    ours = record("urban_day", root / "test", FRAMES, seed=SEED, size=SIZE, beams=16, convention=TEST)
    return suite, ours, _read(suite.bag), _read(ours.bag)


def test_topics_are_renamed_dropped_and_added_as_the_convention_says(bags):
    suite, ours, _, messages = bags
    expected = {TEST.topic(t) for t in TOPICS} - {None, "/ground_truth/instance"} | {"/extra/odometry"}
    assert set(messages) == expected
    assert set(ours.messages) == expected and all(ours.messages[t] == len(messages[t]) for t in expected)
    assert len(messages["/cam/rgb"]) == FRAMES and len(messages["/tf_static"]) == 1
    scenario = yaml.safe_load((ours.bag / "scenario.yaml").read_text())
    assert scenario["convention"] == "test"
    assert set(scenario["topics"]) == expected
    assert scenario["topics"]["/scan/points"]["description"] == "the scan"
    assert scenario["topics"]["/extra/odometry"]["type"] == "nav_msgs/msg/Odometry"
    assert "bgra8" in scenario["topics"]["/cam/rgb"]["description"]
    assert scenario["frame_ids"]["base"] == "robot/base" and scenario["frame_ids"]["lidar"] == "robot/lidar"
    assert "convention" not in yaml.safe_load((suite.bag / "scenario.yaml").read_text())


def test_every_frame_id_is_renamed(bags):
    _, _, suite_messages, messages = bags
    suite_frames = _frames(suite_messages)
    assert suite_frames >= set(TEST.frames)
    assert _frames(messages) == {TEST.frame(f) for f in suite_frames}
    tf_static = messages["/tf_static"][0].transforms
    assert {(t.header.frame_id, t.child_frame_id) for t in tf_static} >= {("robot/base", "robot/lidar"),
                                                                         ("robot/base", "robot/ir")}
    odom = messages["/robot/odom"][0]
    assert (odom.header.frame_id, odom.child_frame_id) == ("robot/odom", "robot/base")
    assert messages["/tf"][0].transforms[0].child_frame_id == "robot/base"
    assert {d.header.frame_id for d in messages["/ground_truth/boxes"][-1].detections} <= {"robot/lidar"}


def test_images_carry_the_same_pixels_in_the_convention_encodings(bags):
    _, _, suite, ours = bags
    for k in range(FRAMES):
        rgb = decode_image(*_fields(suite["/camera/color/image_raw"][k]))
        bgra = decode_image(*_fields(ours["/cam/rgb"][k]))
        assert ours["/cam/rgb"][k].encoding == "bgra8" and bgra.shape == (*rgb.shape[:2], 4)
        np.testing.assert_array_equal(bgra[:, :, 2::-1], rgb)
        assert (bgra[:, :, 3] == 255).all()
        depth_m = decode_image(*_fields(suite["/camera/depth/image_rect_raw"][k]))
        depth_mm = decode_image(*_fields(ours["/cam/depth"][k]))
        assert ours["/cam/depth"][k].encoding == "16UC1"
        valid = np.isfinite(depth_m)
        np.testing.assert_array_equal(depth_mm[valid], np.rint(depth_m[valid] * 1000).astype(np.uint16))
        assert (depth_mm[~valid] == 0).all()
        assert ours["/ir/image"][k].encoding == "16UC1"
        np.testing.assert_array_equal(decode_image(*_fields(ours["/ir/image"][k])),
                                      decode_image(*_fields(suite["/thermal/image_raw"][k])))
        assert bytes(ours["/scan/points"][k].data) == bytes(suite["/lidar/points"][k].data)


def _fields(m):
    return m.height, m.width, m.encoding, m.is_bigendian, m.step, m.data


def test_calibration_names_the_convention_topics_and_frames(bags):
    _, ours, _, _ = bags
    data = yaml.safe_load(ours.calibration.read_text())
    assert data["base_frame"] == "robot/base"
    assert data["cameras"]["color"]["topic"] == "/cam/rgb" and data["cameras"]["color"]["frame_id"] == "robot/rgb"
    assert data["cameras"]["color"]["camera_info_topic"] == "/cam/info"
    assert "camera_info_topic" not in data["cameras"]["depth"]  # dropped by the convention
    assert data["lidar"]["topic"] == "/scan/points" and data["lidar"]["frame_id"] == "robot/lidar"
    calibration = load_calibration(ours.calibration)
    assert calibration.lidar.frame_id == "robot/lidar"


def test_bad_convention_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown convention 'nope'"):
        record("urban_day", tmp_path / "a", 1, convention="nope")
    with pytest.raises(ConfigError, match="cannot be combined"):
        record("urban_day", tmp_path / "b", 1, convention=TEST, compressed="png", depth_encoding="16UC1")
    bad = Convention(name="bad", description="", preset="demo", encodings={"/thermal/image_raw": "rgb8"})
    with pytest.raises(ConfigError, match="mono16, 16UC1"):
        record("urban_day", tmp_path / "c", 1, convention=bad)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", [c.name for c in all_conventions()])
def test_every_registered_convention_records_a_readable_bag(tmp_path, name):
    """Each convention's bag: its images decode in their declared encodings, its clouds in their field layout, and
    the preset it names exists."""
    from pathlib import Path

    from ros_mmfusion.core.codec.pointcloud import decode_cloud

    convention = get_convention(name)
    assert (Path(__file__).parents[2] / "config" / "presets" / f"{convention.preset}.yaml").is_file()
    summary = record("indoor_corridor", tmp_path / name, 1, seed=1, size=SIZE, beams=16, convention=name)
    messages = _read(summary.bag)
    for suite_topic, encoding in convention.encodings.items():
        image = messages[convention.topic(suite_topic)][0]
        assert image.encoding == encoding
        assert decode_image(*_fields(image)).shape[:2] == (SIZE[1], SIZE[0])
    cloud_msg = messages[convention.topic("/lidar/points")][0]
    cloud = decode_cloud(cloud_msg.height, cloud_msg.width, cloud_msg.fields, cloud_msg.is_bigendian,
                         cloud_msg.point_step, cloud_msg.row_step, cloud_msg.data)
    assert {"x", "y", "z"} <= set(cloud.dtype.names) and len(cloud) > 100
    assert cloud_msg.header.frame_id == convention.frame("lidar_link")


def test_cli_lists_conventions_and_refuses_bad_ones(monkeypatch, capsys, tmp_path):
    from ros_mmfusion.cli import main as cli

    monkeypatch.setattr(cli, "COMMANDS", {"sim": "sim"})

    def mmfusion(*argv):
        code = cli.main(["sim", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    listed = [c.name for c in all_conventions()]
    code, out, _ = mmfusion("--list")
    assert code == 0 and "conventions" in out and "urban_night" in out
    assert all(f"  {name} (preset " in out for name in listed)
    code, out, _ = mmfusion("--list-conventions")
    assert code == 0 and "urban_night" not in out and out.count("(preset ") == len(listed)
    code, _, err = mmfusion("--scenario", "fog", "--out", str(tmp_path / "x"), "--convention", "nope")
    assert code == 2 and err.count("\n") == 1 and "unknown convention 'nope'" in err
    if listed:
        code, _, err = mmfusion("--scenario", "fog", "--out", str(tmp_path / "x"), "--convention", listed[0],
                                "--compressed")
        assert code == 2 and "cannot be combined with --compressed" in err
    assert not (tmp_path / "x").exists()
