"""Builders for the messages the nodes publish: headers and stamps, 3D detections, label maps, box markers, paths.

Thin on purpose: the geometry (yaw -> quaternion, box edges, class colours) lives in ``ros_mmfusion.core.codec.boxes``.
Frames follow REP-103 (x forward, y left, z up); lengths are metres, angles radians, stamps nanoseconds since the
epoch of the clock in use (ROS time or sim time). Boxes: centre ``(N, 3)``, size ``(N, 3)`` as (length along the
box's x, width along its y, height), yaw ``(N,)`` about +z, all in ``header.frame_id``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped, PoseWithCovariance, Quaternion, Vector3
from nav_msgs.msg import Path
from std_msgs.msg import ColorRGBA, Header
from vision_msgs.msg import (
    BoundingBox3D,
    Detection3D,
    Detection3DArray,
    LabelInfo,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
    VisionClass,
)
from visualization_msgs.msg import Marker, MarkerArray

from ros_mmfusion.core.codec.boxes import box_line_list, class_color, yaw_to_quaternion
from ros_mmfusion.core.errors import MessageFormatError
from ros_mmfusion.core.stamps import NS_PER_S, stamp_to_ns

_INT32_MAX = 2**31 - 1


# --- stamps and headers -----------------------------------------------------------------------------------------------


def ns_to_stamp(ns: int) -> Time:
    """``builtin_interfaces/Time`` of ``ns`` nanoseconds (sec floored, nanosec in [0, 1e9))."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    if not -(2**31) <= sec <= _INT32_MAX:
        raise MessageFormatError(f"stamp {ns} ns is outside builtin_interfaces/Time's int32 seconds range")
    return Time(sec=sec, nanosec=nanosec)


def header(stamp: Any, frame_id: str) -> Header:
    """``std_msgs/Header``: ``stamp`` as int nanoseconds, float seconds, a Time message or an ``rclpy.time.Time``."""
    if isinstance(stamp, (float, np.floating)):
        stamp = round(float(stamp) * NS_PER_S)
    return Header(stamp=ns_to_stamp(stamp_to_ns(stamp)), frame_id=str(frame_id))


# --- small message pieces ---------------------------------------------------------------------------------------------


def _pose(position: Sequence[float], quaternion: Sequence[float]) -> Pose:
    x, y, z = (float(v) for v in position)
    qx, qy, qz, qw = (float(v) for v in quaternion)
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def _boxes(
    centers: Any, sizes: Any, yaws: Any, class_ids: Sequence[Any], scores: Any | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 3)
    yaws = np.asarray(yaws, dtype=np.float64).reshape(-1)
    labels = [str(c) for c in class_ids]
    scores = np.ones(len(centers)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    counts = {"centers": len(centers), "sizes": len(sizes), "yaws": len(yaws), "class_ids": len(labels),
              "scores": len(scores)}
    if len(set(counts.values())) != 1:
        raise MessageFormatError(f"box arrays disagree in length: {counts}")
    return centers, sizes, yaws, labels, scores


# --- vision_msgs ------------------------------------------------------------------------------------------------------


def detection3d_array(
    header: Header,
    centers: Any,
    sizes: Any,
    yaws: Any,
    class_ids: Sequence[Any],
    scores: Any,
    ids: Sequence[str] | None = None,
) -> Detection3DArray:
    """``vision_msgs/Detection3DArray``: one Detection3D per box with one hypothesis (class id string, score).

    The hypothesis pose and ``bbox.center`` are the box centre with the yaw as quaternion; ``ids`` (tracking ids) are
    optional strings. Every detection carries ``header``.
    """
    centers, sizes, yaws, labels, scores = _boxes(centers, sizes, yaws, class_ids, scores)
    if ids is not None and len(ids) != len(centers):
        raise MessageFormatError(f"{len(ids)} ids for {len(centers)} boxes")
    quaternions = yaw_to_quaternion(yaws)
    out = Detection3DArray(header=header)
    for i in range(len(centers)):
        pose = _pose(centers[i], quaternions[i])
        hypothesis = ObjectHypothesisWithPose(
            hypothesis=ObjectHypothesis(class_id=labels[i], score=float(scores[i])),
            pose=PoseWithCovariance(pose=pose),
        )
        sx, sy, sz = (float(v) for v in sizes[i])
        out.detections.append(
            Detection3D(
                header=header,
                results=[hypothesis],
                bbox=BoundingBox3D(center=pose, size=Vector3(x=sx, y=sy, z=sz)),
                id="" if ids is None else str(ids[i]),
            )
        )
    return out


def label_info(class_map: Mapping[int, str] | Sequence[str], threshold: float = 0.0,
               header: Header | None = None) -> LabelInfo:
    """``vision_msgs/LabelInfo``: ``class_map`` as {id: name} or a list of names (id = index); ``threshold`` in [0, 1].

    Publish it latched (transient local) next to the detections so late subscribers learn the names.
    """
    items = class_map.items() if isinstance(class_map, Mapping) else enumerate(class_map)
    classes = []
    for class_id, name in items:
        if not 0 <= int(class_id) <= 0xFFFF:
            raise MessageFormatError(f"LabelInfo class_id {class_id} does not fit uint16")
        classes.append(VisionClass(class_id=int(class_id), class_name=str(name)))
    return LabelInfo(header=header if header is not None else Header(), class_map=classes, threshold=float(threshold))


# --- visualization_msgs -----------------------------------------------------------------------------------------------


def box_markers(
    header: Header,
    centers: Any,
    sizes: Any,
    yaws: Any,
    class_ids: Sequence[Any],
    scores: Any | None = None,
    *,
    style: Literal["line_list", "cube"] = "line_list",
    ns: str = "boxes",
    line_width: float = 0.05,
    alpha: float = 1.0,
    text_height: float = 0.4,
    labels: bool = True,
    colors: Mapping[str, tuple[float, float, float]] | None = None,
) -> MarkerArray:
    """``visualization_msgs/MarkerArray`` drawing 3D boxes in class colours, with text labels above them.

    The first marker is a DELETEALL (empty ``ns``), so each array replaces everything the previous one drew on this
    topic. Boxes are one LINE_LIST (12 edges, ``line_width`` metres) or one CUBE each, id = box index in ``ns``;
    labels are TEXT_VIEW_FACING "<class> <score>" markers in ``ns + "/labels"``, ``text_height`` metres above the
    box top. ``colors`` overrides :func:`~ros_mmfusion.core.codec.boxes.class_color` per class (RGB in [0, 1]).
    """
    centers, sizes, yaws, names, scores_arr = _boxes(centers, sizes, yaws, class_ids, scores)
    if style not in ("line_list", "cube"):
        raise MessageFormatError(f"box_markers style must be 'line_list' or 'cube', got {style!r}")
    out = MarkerArray()
    out.markers.append(Marker(header=header, action=Marker.DELETEALL))
    quaternions = yaw_to_quaternion(yaws)
    segments = box_line_list(centers, sizes, yaws) if style == "line_list" else None
    for i, name in enumerate(names):
        r, g, b = colors[name] if colors and name in colors else class_color(name)
        color = ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(alpha))
        box = Marker(header=header, ns=ns, id=i, action=Marker.ADD, color=color)
        if segments is not None:
            box.type = Marker.LINE_LIST
            box.pose.orientation.w = 1.0
            box.scale.x = float(line_width)
            box.points = [Point(x=x, y=y, z=z) for x, y, z in segments[i].tolist()]
        else:
            box.type = Marker.CUBE
            box.pose = _pose(centers[i], quaternions[i])
            sx, sy, sz = (float(v) for v in sizes[i])
            box.scale = Vector3(x=sx, y=sy, z=sz)
        out.markers.append(box)
        if labels:
            top = centers[i] + (0.0, 0.0, 0.5 * sizes[i, 2] + text_height)
            text = Marker(header=header, ns=f"{ns}/labels", id=i, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                          pose=_pose(top, (0.0, 0.0, 0.0, 1.0)), color=color)
            text.scale.z = float(text_height)
            text.text = name if scores is None else f"{name} {scores_arr[i]:.2f}"
            out.markers.append(text)
    return out


# --- nav_msgs ---------------------------------------------------------------------------------------------------------


def path_msg(header: Header, waypoints: Any, yaws: Any | None = None) -> Path:
    """``nav_msgs/Path`` through ``(N, 2)`` or ``(N, 3)`` waypoints (metres, ``header.frame_id``; z = 0 for 2D).

    Each pose's yaw is ``yaws[i]`` (radians) when given, else the heading towards the next waypoint (the last one
    keeps the previous heading; a single waypoint gets yaw 0). Every PoseStamped carries ``header``.
    """
    points = np.asarray(waypoints, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise MessageFormatError(f"waypoints must be (N, 2) or (N, 3), got {points.shape}")
    if points.shape[1] == 2:
        points = np.hstack([points, np.zeros((len(points), 1))])
    if yaws is None:
        heading = np.zeros(len(points))
        if len(points) > 1:
            steps = np.diff(points[:, :2], axis=0)
            heading[:-1] = np.arctan2(steps[:, 1], steps[:, 0])
            heading[-1] = heading[-2]
    else:
        heading = np.asarray(yaws, dtype=np.float64).reshape(-1)
        if len(heading) != len(points):
            raise MessageFormatError(f"{len(heading)} yaws for {len(points)} waypoints")
    quaternions = yaw_to_quaternion(heading)
    return Path(
        header=header,
        poses=[PoseStamped(header=header, pose=_pose(p, q)) for p, q in zip(points, quaternions, strict=True)],
    )
