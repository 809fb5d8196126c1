"""Shared by the convention end-to-end tests: a topological map built from a convention bag with the
``mmfusion topomap build`` command, and the checks of the paths ViNT publishes in the convention's odometry frame."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CONTEXT_FRAMES = 6
"""Frames ViNT's context holds before its first step (the default model's context_size 5, plus the current frame)."""
NAVIGATION = {"threads": 1, "frame_rate": 10.0}
"""vint_navigation overrides of the tests: every 10 Hz frame into the context (the model's 4 Hz would need a bag
2.5 times longer before the first path)."""


def build_topomap(bag: Path, image_topic: str, out: Path, dt: float = 0.2):
    """``mmfusion topomap build --bag BAG --image-topic TOPIC --dt DT --out OUT`` (the odometry topic found in the
    bag, as a user runs it); the map it wrote."""
    from ros_mmfusion.cli.main import main
    from ros_mmfusion.core.navigation.topomap import load_topomap

    code = main(["topomap", "build", "--bag", str(bag), "--image-topic", image_topic, "--dt", str(dt),
                 "--out", str(out)])
    assert code == 0
    return load_topomap(out)


def assert_paths_in_odometry_frame(paths: dict, images: dict, odometry: dict, frame: str, frames: int,
                                   spacing: float) -> None:
    """``paths`` ({stamp ns: nav_msgs/Path}) are ViNT's, one per camera frame after the context filled: stamped
    with camera frames of ``images`` ({stamp: Image}), in the odometry ``frame`` (the preset's ``path_frame``, moved
    with the recorded odometry ``odometry`` {stamp: Odometry}), five poses each, the first ahead of the robot's
    odometry pose at that stamp by 0..3 waypoint ``spacing`` (metres; the model, trained on forward driving,
    predicts about one spacing per waypoint) and within two spacings of its heading line (the default package
    steers up to about one spacing sideways on the car platform's views, which it was not trained on; a path in the
    wrong frame is metres off). The synthetic robots start
    at the odometry origin and drive ahead, more than 1.5 spacings by the first path: waypoints left in the body
    frame (about one spacing from its origin) would lie behind the robot."""
    assert 1 <= len(paths) <= frames - CONTEXT_FRAMES + 1, f"{len(paths)} paths for {frames} frames"
    assert set(paths) <= set(images), "paths stamped with the camera frames"
    for stamp, path in paths.items():
        assert path.header.frame_id == frame and len(path.poses) == 5
        assert all(p.header.frame_id == frame for p in path.poses)
        odom = odometry[stamp]
        assert odom.header.frame_id == frame
        robot, q = odom.pose.pose.position, odom.pose.pose.orientation
        assert np.hypot(robot.x, robot.y) > 1.5 * spacing, "the check needs a robot that has driven 1.5 spacings"
        yaw = np.arctan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
        first = path.poses[0].pose.position
        dx, dy = first.x - robot.x, first.y - robot.y
        along, across = dx * np.cos(yaw) + dy * np.sin(yaw), -dx * np.sin(yaw) + dy * np.cos(yaw)
        assert 0.0 < along < 3.0 * spacing and abs(across) < 2.0 * spacing, (stamp, first, robot, yaw)
