"""Static transforms of a bag's ``/tf_static`` (``tf2_msgs/TFMessage``) as a frame tree, without tf2 (ROS-free).

Each ``geometry_msgs/TransformStamped`` gives ``T_parent_child`` (``header.frame_id`` the parent, ``child_frame_id``
the child; the transform maps child coordinates into the parent frame, metres and a unit quaternion), as tf2 reads it.
Like tf2 the frames form a tree (one parent per child; a later message for the same child replaces the earlier one),
so the transform between any two frames of one tree is the chain through their common ancestors.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import Transform

TF_STATIC_TOPIC = "/tf_static"
TF_MESSAGE_TYPE = "tf2_msgs/msg/TFMessage"
MAX_DEPTH = 1000
"""Longest parent chain followed (a longer one is a loop in the messages)."""


class StaticTransforms:
    """The static frame tree: ``add`` TFMessages (rclpy or rosbags objects), then ``lookup`` transforms."""

    def __init__(self) -> None:
        self.parents: dict[str, tuple[str, Transform]] = {}
        """child frame -> (parent frame, ``T_parent_child``)."""

    def add(self, transforms: Iterable[Any]) -> None:
        """Add ``geometry_msgs/TransformStamped`` entries (a TFMessage's ``transforms``); ConfigError for an entry
        without frame names or with a non-finite or non-unit rotation."""
        for t in transforms:
            parent, child = t.header.frame_id.strip("/"), t.child_frame_id.strip("/")
            if not parent or not child or parent == child:
                raise ConfigError(f"a static transform needs two different frame names, got {parent!r} -> {child!r}")
            r, q = t.transform.translation, t.transform.rotation
            xyz, xyzw = np.array([r.x, r.y, r.z], np.float64), np.array([q.x, q.y, q.z, q.w], np.float64)
            if not (np.isfinite(xyz).all() and np.isfinite(xyzw).all()) or abs(np.linalg.norm(xyzw) - 1.0) > 1e-3:
                raise ConfigError(f"static transform {parent} -> {child} is not finite with a unit quaternion: "
                                  f"{xyz.tolist()} {xyzw.tolist()}")
            self.parents[child] = (parent, Transform.from_xyz_quat(xyz, xyzw / np.linalg.norm(xyzw)))

    @property
    def frames(self) -> set[str]:
        return set(self.parents) | {parent for parent, _ in self.parents.values()}

    def _chain(self, frame: str) -> list[tuple[str, Transform]]:
        """``[(frame, I), (parent, T_parent_frame), (grandparent, T_grandparent_frame), ...]`` up to the root."""
        out = [(frame, Transform())]
        while frame in self.parents:
            parent, T = self.parents[frame]
            out.append((parent, T @ out[-1][1]))
            frame = parent
            if len(out) > MAX_DEPTH:
                raise ConfigError(f"the static transforms form a loop through {frame!r}")
        return out

    def lookup(self, target: str, source: str) -> Transform:
        """``T_target_source``: maps points of frame ``source`` into frame ``target``; ConfigError naming both
        frames (and the known ones) when no chain of static transforms joins them."""
        target, source = target.strip("/"), source.strip("/")
        up_target = dict(self._chain(target))
        for frame, T_frame_source in self._chain(source):
            if frame in up_target:  # the lowest common ancestor
                return up_target[frame].inverse() @ T_frame_source
        raise ConfigError(f"no static transform joins {source!r} to {target!r} (static frames: "
                          f"{', '.join(sorted(self.frames)) or 'none'})")
