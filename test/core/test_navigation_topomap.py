"""Topological maps from a synthetic corridor bag: one node per dt of bag time with the exact camera pixels, header
stamps and odometry poses; the manifest round trip; upstream image-only topomaps; `mmfusion topomap build` and its
refusals (bad arguments, unreadable bags, an existing directory is never touched)."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from ros_mmfusion.cli.main import main
from ros_mmfusion.core.bagio import BagSource
from ros_mmfusion.core.codec.image import decode_rgb
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.navigation import MANIFEST, build_topomap, load_topomap, topomap_from_goal_image

IMAGE = "/camera/color/image_raw"
RATE = 4.0
FRAMES = 24  # 6 s of the mapping pass at 1 m/s


@pytest.fixture(scope="module")
def corridor_bag(tmp_path_factory):
    from ros_mmfusion.core.sim import record

    bag = tmp_path_factory.mktemp("bags") / "pass1"
    record("indoor_corridor", bag, FRAMES, size=(96, 72), beams=16, rate=RATE)
    return bag


def bag_frames(bag) -> list[tuple[int, np.ndarray]]:
    with BagSource(bag) as source:
        out = []
        for message in source.messages([IMAGE]):
            msg = source.deserialize(message)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            out.append((stamp, decode_rgb(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)))
        return out


def test_one_node_per_dt_with_the_camera_pixels_stamps_and_odometry_poses(corridor_bag, tmp_path):
    summary = build_topomap(corridor_bag, IMAGE, 1.0, tmp_path / "map", "/odom")
    assert summary.images_seen == FRAMES and summary.nodes_without_pose == 0
    topomap = load_topomap(tmp_path / "map")
    assert len(topomap) == FRAMES / RATE
    frames = bag_frames(corridor_bag)
    for i, node in enumerate(topomap.nodes):
        stamp, rgb = frames[i * int(RATE)]
        assert node.image == f"{i}.png" and node.stamp_ns == stamp and node.bag_time_ns == stamp
        np.testing.assert_array_equal(topomap.image(i), rgb)
    poses = topomap.poses_xy_yaw()
    np.testing.assert_allclose(poses[:, 0], np.arange(len(topomap)), atol=1e-6)  # 1 m/s straight down the corridor
    np.testing.assert_allclose(poses[:, 1:], 0.0, atol=1e-6)
    assert (topomap.pose_frame, topomap.child_frame) == ("odom", "base_link")
    manifest = yaml.safe_load((tmp_path / "map" / MANIFEST).read_text())
    assert manifest["format"] == "ros_mmfusion/topomap/v1"
    assert manifest["source"] == {"bag": str(corridor_bag.resolve()), "image_topic": IMAGE, "odom_topic": "/odom",
                                  "dt": 1.0}
    assert topomap.resolve_goal(-1) == len(topomap) - 1
    with pytest.raises(ConfigError, match="outside"):
        topomap.resolve_goal(len(topomap))


def test_half_second_dt_and_no_odometry(corridor_bag, tmp_path):
    summary = build_topomap(corridor_bag, IMAGE, 0.5, tmp_path / "map")
    topomap = load_topomap(tmp_path / "map")
    assert len(topomap) == 12 and summary.nodes_without_pose == 12 and not topomap.has_poses
    assert np.all(np.diff([n.stamp_ns for n in topomap.nodes]) == 500_000_000)
    with pytest.raises(ConfigError, match="no odometry poses"):
        topomap.poses_xy_yaw()


def test_upstream_topomaps_of_numbered_images_and_single_goal_images_load(tmp_path):
    from PIL import Image

    for i in (0, 1, 2, 10):
        Image.fromarray(np.full((8, 12, 3), i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    topomap = load_topomap(tmp_path)
    assert [n.image for n in topomap.nodes] == ["0.png", "1.png", "2.png", "10.png"], "numeric, not lexical, order"
    assert topomap.image(3)[0, 0, 0] == 10 and not topomap.has_poses
    goal = topomap_from_goal_image(tmp_path / "2.png")
    assert len(goal) == 1 and goal.image(0)[0, 0, 0] == 2


@pytest.mark.parametrize("problem, message", [
    ("missing_topic", "has no topic '/camera/missing'"),
    ("not_an_image", "/odom is nav_msgs/msg/Odometry, not an Image"),
    ("missing_odom", "has no nav_msgs/Odometry topic '/nope'"),
    ("bad_dt", "dt must be a positive number"),
])
def test_build_refuses_bad_arguments_and_leaves_nothing_behind(corridor_bag, tmp_path, problem, message):
    args = {"missing_topic": ("/camera/missing", 1.0, None), "not_an_image": ("/odom", 1.0, None),
            "missing_odom": (IMAGE, 1.0, "/nope"), "bad_dt": (IMAGE, 0.0, None)}[problem]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_topomap(corridor_bag, args[0], args[1], tmp_path / "map", args[2])
    assert list(tmp_path.iterdir()) == []


def test_manifest_problems_are_named(tmp_path):
    (tmp_path / MANIFEST).write_text("format: ros_mmfusion/topomap/v1\nnodes:\n  - image: 0.png\n")
    with pytest.raises(ConfigError, match="node image\\(s\\) missing: 0.png"):
        load_topomap(tmp_path)
    (tmp_path / MANIFEST).write_text("format: something/else\n")
    with pytest.raises(ConfigError, match="not a topomap manifest"):
        load_topomap(tmp_path)
    with pytest.raises(ConfigError, match="topomap directory not found"):
        load_topomap(tmp_path / "absent")


def test_cli_builds_a_topomap_with_the_bags_odometry(corridor_bag, tmp_path, capsys):
    out = tmp_path / "map"
    code = main(["topomap", "build", "--bag", str(corridor_bag), "--image-topic", IMAGE, "--dt", "2", "--out",
                 str(out)])
    assert code == 0
    assert "wrote 3 nodes from 24 images" in capsys.readouterr().out
    assert load_topomap(out).has_poses, "the bag's only Odometry topic is used by default"


@pytest.mark.parametrize("args, message", [
    (["--image-topic", IMAGE, "--out", "OUT"], "--bag is required"),
    (["--bag", "BAG", "--out", "OUT"], "--image-topic is required"),
    (["--bag", "BAG", "--image-topic", IMAGE, "--out", "OUT", "--dt", "-1"], "--dt must be a positive number"),
    (["--bag", "BAG", "--image-topic", "/camera/nope", "--out", "OUT"], "has no topic '/camera/nope'"),
    (["--bag", "NOTABAG", "--image-topic", IMAGE, "--out", "OUT"], "cannot read bag"),
    (["--bag", "/nonexistent/bag", "--image-topic", IMAGE, "--out", "OUT"], "bag not found: /nonexistent/bag"),
    (["--bag", "BAG", "--image-topic", IMAGE, "--out", "FULL"], "exists and is not an empty directory"),
])
def test_cli_errors_are_one_line_and_exit_2_and_never_touch_an_existing_directory(corridor_bag, tmp_path, capsys,
                                                                                   args, message):
    (tmp_path / "notabag").mkdir()
    (tmp_path / "notabag" / "readme.txt").write_text("not a bag")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("precious")
    paths = {"BAG": str(corridor_bag), "OUT": str(tmp_path / "out"), "NOTABAG": str(tmp_path / "notabag"),
             "FULL": str(full)}
    code = main(["topomap", "build", *[paths.get(a, a) for a in args]])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in full.iterdir()) == ["keep.txt"] and (full / "keep.txt").read_text() == "precious"
    assert not (tmp_path / "out").exists()
