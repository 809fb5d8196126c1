"""A transform buffer in the sense of tf2, without tf2 (ROS-free, numpy): the frame tree of ``/tf`` and ``/tf_static``.

Each ``geometry_msgs/TransformStamped`` gives ``T_parent_child`` (``header.frame_id`` the parent, ``child_frame_id``
the child; it maps child coordinates into the parent frame, metres and a unit quaternion) at ``header.stamp``. Like
tf2 the frames form a tree: one parent per child (a later transform of the child from another parent replaces the
edge and its history), so the transform between two frames is the chain through their lowest common ancestor, each
edge inverted where the chain walks down it.

* Static edges (``/tf_static``) hold one transform, valid at every time.
* Dynamic edges (``/tf``) hold a time-ordered history of the last ``cache_time`` seconds (tf2's default: 10 s; at most
  ``max_samples`` samples, so a flood of stamps costs bounded memory). A lookup at a stamp between two samples
  interpolates: translation linearly, rotation by spherical linear interpolation (slerp). A stamp up to
  ``tolerance`` seconds beyond the oldest or newest sample takes that sample; farther is refused as an extrapolation
  into the past or the future (a stale transform). Stamp 0 asks for the latest transform: the newest stamp every
  dynamic edge of the chain has (tf2's "latest common time").

Frame names lose a leading ``/`` (tf2 does the same). Errors are :class:`~ros_mmfusion.core.errors.
TransformLookupError` naming both frames and the reason; a malformed transform given to :meth:`TfBuffer.add_message`
is a ``MessageFormatError``.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ros_mmfusion.core.errors import MessageFormatError, TransformLookupError
from ros_mmfusion.core.geometry import Transform, quaternion_to_matrix
from ros_mmfusion.core.params import ParamSpec

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
TF_MESSAGE_TYPE = "tf2_msgs/msg/TFMessage"
DEFAULT_CACHE_TIME_S = 10.0
"""Seconds of history kept per dynamic edge (tf2's default cache time)."""
DEFAULT_TOLERANCE_S = 0.1
"""Seconds a lookup may reach beyond an edge's oldest or newest sample (that sample is used)."""
MAX_DEPTH = 1000
"""Longest parent chain followed (a longer one is a loop in the transforms)."""
MAX_SAMPLES = 10_000
"""Most samples kept per dynamic edge (the oldest go first)."""
MAX_FRAMES = 10_000
"""Most frames a buffer holds; transforms of further new frames are refused (MessageFormatError)."""
_LISTED_FRAMES = 12

TF_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("tf_cache_time", DEFAULT_CACHE_TIME_S, "Seconds of /tf history kept per transform (tf2's default "
              "10 s).", minimum=0.1, maximum=3600.0, read_only=True),
    ParamSpec("tf_tolerance", DEFAULT_TOLERANCE_S, "Seconds a transform lookup may reach beyond the newest (or "
              "oldest) /tf sample, using that sample; farther the transform is stale and the frame is skipped.",
              minimum=0.0, maximum=60.0),
)
"""``tf_cache_time`` and ``tf_tolerance``: add them to the ``PARAMS`` of a node that looks transforms up."""


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions ``(x, y, z, w)`` at ``t`` in [0, 1], the shorter way."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly the same rotation: linear, then normalised
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(min(dot, 1.0))
    return (np.sin((1.0 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)


@dataclass
class _History:
    """The time-ordered samples of one dynamic edge ``parent -> child``."""

    parent: str
    stamps: list[int] = field(default_factory=list)
    """Nanoseconds, ascending."""
    xyz: list[np.ndarray] = field(default_factory=list)
    xyzw: list[np.ndarray] = field(default_factory=list)

    def insert(self, stamp_ns: int, xyz: np.ndarray, xyzw: np.ndarray, cache_ns: int, max_samples: int) -> None:
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:  # the same stamp again: the later one wins
            self.xyz[i], self.xyzw[i] = xyz, xyzw
        else:
            self.stamps.insert(i, stamp_ns)
            self.xyz.insert(i, xyz)
            self.xyzw.insert(i, xyzw)
        oldest = self.stamps[-1] - cache_ns
        drop = max(bisect.bisect_left(self.stamps, oldest), len(self.stamps) - max_samples)
        if drop > 0:
            del self.stamps[:drop], self.xyz[:drop], self.xyzw[:drop]

    def at(self, stamp_ns: int, tolerance_ns: int) -> Transform | str:
        """``T_parent_child`` at ``stamp_ns``, or why not (an extrapolation beyond ``tolerance_ns``)."""
        stamps = self.stamps
        if stamp_ns >= stamps[-1]:
            if stamp_ns - stamps[-1] > tolerance_ns:
                return (f"extrapolation into the future: {stamp_ns / 1e9:.3f} s is {(stamp_ns - stamps[-1]) / 1e9:.3f}"
                        f" s after the newest sample ({stamps[-1] / 1e9:.3f} s)")
            return Transform.from_xyz_quat(self.xyz[-1], self.xyzw[-1])
        if stamp_ns <= stamps[0]:
            if stamps[0] - stamp_ns > tolerance_ns:
                return (f"extrapolation into the past: {stamp_ns / 1e9:.3f} s is {(stamps[0] - stamp_ns) / 1e9:.3f} s "
                        f"before the oldest sample ({stamps[0] / 1e9:.3f} s)")
            return Transform.from_xyz_quat(self.xyz[0], self.xyzw[0])
        i = bisect.bisect_right(stamps, stamp_ns)  # stamps[i - 1] <= stamp_ns < stamps[i]
        t = (stamp_ns - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        xyz = (1.0 - t) * self.xyz[i - 1] + t * self.xyz[i]
        return Transform(quaternion_to_matrix(slerp(self.xyzw[i - 1], self.xyzw[i], t)), xyz)


class TfBuffer:
    """Static and dynamic transforms of a frame tree; :meth:`lookup` gives ``T_target_source`` at a stamp.

    ``cache_time`` (s): history kept per dynamic edge; ``tolerance`` (s): how far a lookup may reach beyond an edge's
    samples. Not thread-safe (rclpy's single-threaded executor calls it from one thread).
    """

    def __init__(self, cache_time: float = DEFAULT_CACHE_TIME_S, tolerance: float = DEFAULT_TOLERANCE_S,
                 max_samples: int = MAX_SAMPLES) -> None:
        self.cache_ns = int(cache_time * 1e9)
        self.tolerance = tolerance
        self.max_samples = max_samples
        self._static: dict[str, tuple[str, Transform]] = {}
        """child -> (parent, ``T_parent_child``)."""
        self._dynamic: dict[str, _History] = {}
        """child -> its history (parent inside)."""

    # -- filling ------------------------------------------------------------------------------------------------------
    @property
    def frames(self) -> set[str]:
        """Every frame named by a transform (children and parents)."""
        return ({*self._static, *self._dynamic} | {p for p, _ in self._static.values()}
                | {h.parent for h in self._dynamic.values()})

    def _check_new_frames(self, parent: str, child: str) -> None:
        known = self._static.keys() | self._dynamic.keys()
        if child not in known and len(known) >= MAX_FRAMES:
            raise MessageFormatError(f"transform {parent} -> {child} refused: the buffer holds {MAX_FRAMES} frames")

    def set_transform(self, parent: str, child: str, T_parent_child: Transform, stamp_ns: int = 0,
                      static: bool = False) -> None:
        """Add ``T_parent_child`` (child coordinates -> parent frame) at ``stamp_ns`` (nanoseconds; ignored for a
        static one). A child keeps one parent: a transform from another parent, or of the other kind (static or
        dynamic), replaces its edge. MessageFormatError for empty or equal frame names."""
        parent, child = parent.strip("/"), child.strip("/")
        if not parent or not child or parent == child:
            raise MessageFormatError(f"a transform needs two different frame names, got {parent!r} -> {child!r}")
        self._check_new_frames(parent, child)
        if static:
            self._dynamic.pop(child, None)
            self._static[child] = (parent, T_parent_child)
            return
        self._static.pop(child, None)
        history = self._dynamic.get(child)
        if history is None or history.parent != parent:
            history = self._dynamic[child] = _History(parent)
        history.insert(int(stamp_ns), np.asarray(T_parent_child.translation, np.float64),
                       T_parent_child.quaternion(), self.cache_ns, self.max_samples)

    def add_message(self, transforms: Iterable[Any], static: bool = False) -> int:
        """Add ``geometry_msgs/TransformStamped`` entries (a ``tf2_msgs/TFMessage``'s ``transforms``; rclpy or rosbags
        objects); returns how many were added. A malformed entry (empty or equal frame names, a non-finite value, a
        quaternion far from unit length) is left out and, once the others are in, raised as MessageFormatError
        naming it and how many entries were refused."""
        added, problems = 0, []
        for t in transforms:
            parent, child = str(t.header.frame_id), str(t.child_frame_id)
            r, q = t.transform.translation, t.transform.rotation
            xyz, xyzw = np.array([r.x, r.y, r.z], np.float64), np.array([q.x, q.y, q.z, q.w], np.float64)
            if not (np.isfinite(xyz).all() and np.isfinite(xyzw).all()) or abs(np.linalg.norm(xyzw) - 1.0) > 1e-3:
                problems.append(f"transform {parent} -> {child} is not finite with a unit quaternion: "
                                f"{xyz.tolist()} {xyzw.tolist()}")
                continue
            stamp_ns = int(t.header.stamp.sec) * 1_000_000_000 + int(t.header.stamp.nanosec)
            try:
                self.set_transform(parent, child, Transform.from_xyz_quat(xyz, xyzw), stamp_ns, static)
                added += 1
            except MessageFormatError as exc:
                problems.append(str(exc))
        if problems:
            more = f" ({len(problems)} transforms refused)" if len(problems) > 1 else ""
            raise MessageFormatError(f"{problems[0]}{more}")
        return added

    def clear(self, static: bool = False) -> None:
        """Forget the dynamic history (after a time jump back, as tf2 does), and the static tree too with ``static``."""
        self._dynamic.clear()
        if static:
            self._static.clear()

    # -- looking up ---------------------------------------------------------------------------------------------------
    def _parent(self, frame: str) -> str | None:
        if frame in self._static:
            return self._static[frame][0]
        history = self._dynamic.get(frame)
        return history.parent if history is not None else None

    def _up(self, frame: str, target: str, source: str) -> list[str]:
        """``[frame, parent, grandparent, ...]`` up to the root of its tree."""
        chain = [frame]
        while (parent := self._parent(chain[-1])) is not None:
            chain.append(parent)
            if len(chain) > MAX_DEPTH:
                raise TransformLookupError(target, source, f"the transforms form a loop through {parent!r}")
        return chain

    def _known(self) -> str:
        frames = sorted(self.frames)
        listed = ", ".join(frames[:_LISTED_FRAMES]) + (f" and {len(frames) - _LISTED_FRAMES} more"
                                                         if len(frames) > _LISTED_FRAMES else "")
        return f"known frames: {listed or 'none'}"

    def lookup(self, target: str, source: str, stamp_ns: int = 0) -> Transform:
        """``T_target_source`` at ``stamp_ns`` (nanoseconds; 0: the latest): maps points of frame ``source`` into frame
        ``target``. TransformLookupError naming both frames for an unknown frame, frames in separate trees, or a stamp
        beyond a dynamic edge's history by more than the tolerance (extrapolation into the past or the future)."""
        target, source = target.strip("/"), source.strip("/")
        for frame in (target, source):
            if not frame:
                raise TransformLookupError(target, source, "a frame name is empty (a message without frame_id?)")
        if target == source:
            return Transform()
        known = self.frames
        for frame in (source, target):
            if frame not in known:
                raise TransformLookupError(target, source, f"unknown frame {frame!r} ({self._known()})")
        up_source, up_target = self._up(source, target, source), self._up(target, target, source)
        in_target = set(up_target)
        common = next((f for f in up_source if f in in_target), None)
        if common is None:
            raise TransformLookupError(target, source, f"no path: {source!r} is in the tree of {up_source[-1]!r}, "
                                                       f"{target!r} in the tree of {up_target[-1]!r}")
        edges_source = up_source[:up_source.index(common)]  # children whose edge to the parent the chain crosses
        edges_target = up_target[:up_target.index(common)]
        if stamp_ns == 0:
            newest = [self._dynamic[c].stamps[-1] for c in (*edges_source, *edges_target) if c in self._dynamic]
            stamp_ns = min(newest, default=0)
        tolerance_ns = int(self.tolerance * 1e9)

        def to_common(children: list[str]) -> Transform:
            T = Transform()  # T_common_frame, built from the common ancestor down to the first child
            for child in reversed(children):
                if child in self._static:
                    edge = self._static[child][1]
                else:
                    history = self._dynamic[child]
                    edge = history.at(stamp_ns, tolerance_ns)
                    if isinstance(edge, str):
                        raise TransformLookupError(target, source, f"{history.parent} -> {child}: {edge}")
                T = T @ edge
            return T

        return to_common(edges_target).inverse() @ to_common(edges_source)

    def can_transform(self, target: str, source: str, stamp_ns: int = 0) -> bool:
        """Whether :meth:`lookup` would give a transform."""
        try:
            self.lookup(target, source, stamp_ns)
            return True
        except TransformLookupError:
            return False


def transform_boxes(T_target_source: Transform, centers: np.ndarray, yaws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upright boxes (centres ``(N, 3)`` metres, yaw ``(N,)`` radians about +z) of frame ``source`` in frame
    ``target``: the centres moved, the yaw the heading of the rotated box (a tilt between the frames, roll and pitch,
    is dropped: the boxes stay upright in ``target``). Sizes do not change."""
    centers = np.asarray(centers, np.float64).reshape(-1, 3)
    yaws = np.asarray(yaws, np.float64).reshape(-1)
    heading = np.stack([np.cos(yaws), np.sin(yaws), np.zeros_like(yaws)], axis=1) @ T_target_source.rotation.T
    return T_target_source.apply(centers), np.arctan2(heading[:, 1], heading[:, 0])


__all__ = ["DEFAULT_CACHE_TIME_S", "DEFAULT_TOLERANCE_S", "TF_MESSAGE_TYPE", "TF_PARAMS", "TF_STATIC_TOPIC", "TF_TOPIC",
           "TfBuffer", "TransformLookupError", "slerp", "transform_boxes"]
