"""Topological maps: the images a robot saw along a route, one node every ``dt`` seconds, with stamps and poses.

On disk a topomap is a directory::

    topomap/
      topomap.yaml      the manifest (format ros_mmfusion/topomap/v1)
      0.png 1.png ...   node images, R,G,B, at the camera's resolution, in route order

The numbered PNGs are the layout of the ViNT deployment's topomaps, so a directory written here is also an upstream
topomap, and :func:`load_topomap` reads an upstream directory (numbered images, no manifest) as a topomap without
stamps or poses. The manifest::

    format: ros_mmfusion/topomap/v1
    source: {bag: /path/to/bag, image_topic: /camera/color/image_raw, odom_topic: /odom, dt: 1.0}
    pose_frame: odom            # frame of the poses (the odometry header frame), child frame base_link
    child_frame: base_link
    nodes:
      - image: 0.png
        stamp_ns: 1704067200000000000   # header stamp of the image (ns since the epoch)
        bag_time_ns: 1704067200000000000
        pose: {position: [x, y, z], orientation_xyzw: [qx, qy, qz, qw], yaw: 0.0}   # or null without odometry

Poses are ``pose_frame <- child_frame`` at the image's stamp (the odometry message nearest in stamp), metres and
radians. They are not needed to navigate (ViNT localises from images alone); they let a user inspect the map, and
the odometry oracle (``localization.odometry_temporal_distances``) uses them to test the pipeline with known
distances.
"""
from __future__ import annotations

import bisect
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion.core.bagio import IMAGE_TYPES, ODOMETRY_TYPE, open_bag, rgb_of_message
from ros_mmfusion.core.errors import ConfigError, MessageFormatError

MANIFEST = "topomap.yaml"
FORMAT = "ros_mmfusion/topomap/v1"
_NUMBERED = re.compile(r"^(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)


@dataclass(frozen=True)
class TopomapNode:
    """One node: its image file (relative to the topomap directory), stamps and pose (None without odometry)."""

    image: str
    stamp_ns: int | None = None
    bag_time_ns: int | None = None
    position: tuple[float, float, float] | None = None
    orientation_xyzw: tuple[float, float, float, float] | None = None

    @property
    def yaw(self) -> float | None:
        """Heading about +z (radians) of the pose, None without one."""
        from ros_mmfusion.core.codec.boxes import quaternion_to_yaw

        return None if self.orientation_xyzw is None else quaternion_to_yaw(self.orientation_xyzw)

    def as_dict(self) -> dict[str, Any]:
        pose = None
        if self.position is not None and self.orientation_xyzw is not None:
            pose = {"position": [float(v) for v in self.position],
                    "orientation_xyzw": [float(v) for v in self.orientation_xyzw], "yaw": float(self.yaw)}
        return {"image": self.image, "stamp_ns": self.stamp_ns, "bag_time_ns": self.bag_time_ns, "pose": pose}


@dataclass
class Topomap:
    """A loaded topological map. Images are read on first use and kept."""

    directory: Path
    nodes: list[TopomapNode]
    pose_frame: str = ""
    child_frame: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    _images: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.nodes)

    def image(self, index: int) -> np.ndarray:
        """Node ``index``'s image as ``(H, W, 3)`` uint8 R,G,B."""
        if index not in self._images:
            self._images[index] = read_rgb(self.directory / self.nodes[index].image)
        return self._images[index]

    @property
    def has_poses(self) -> bool:
        return bool(self.nodes) and all(n.position is not None and n.orientation_xyzw is not None
                                        for n in self.nodes)

    def poses_xy_yaw(self) -> np.ndarray:
        """``(N, 3)`` x, y (metres), yaw (radians) of every node in ``pose_frame``; ConfigError without poses."""
        if not self.has_poses:
            raise ConfigError(f"topomap {self.directory} has no odometry poses (built without an odometry topic)")
        return np.array([(n.position[0], n.position[1], n.yaw) for n in self.nodes], dtype=np.float64)

    def resolve_goal(self, goal_node: int) -> int:
        """The goal's node index: ``goal_node``, or counted from the end when negative (-1 = the last node)."""
        index = goal_node + len(self) if goal_node < 0 else goal_node
        if not 0 <= index < len(self):
            raise ConfigError(f"goal node {goal_node} is outside the topomap's {len(self)} nodes "
                              f"(0..{len(self) - 1}, or -1 for the last)")
        return index

    def manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "source": dict(self.source), "pose_frame": self.pose_frame,
                "child_frame": self.child_frame, "nodes": [n.as_dict() for n in self.nodes]}


def read_rgb(path: Path) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 R,G,B; ConfigError when it is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB")).copy()
    except FileNotFoundError:
        raise ConfigError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ConfigError(f"cannot read image {path}: {exc}") from None


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(path)


def _node_from_dict(entry: Any, where: str) -> TopomapNode:
    if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
        raise ConfigError(f"{where}: a node needs an 'image' file name, got {entry!r}")
    pose = entry.get("pose")
    position = orientation = None
    if pose is not None:
        try:
            position = tuple(float(v) for v in pose["position"])
            orientation = tuple(float(v) for v in pose["orientation_xyzw"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{where}: pose needs 'position' [x, y, z] and 'orientation_xyzw' [x, y, z, w]") \
                from None
        if len(position) != 3 or len(orientation) != 4:
            raise ConfigError(f"{where}: pose needs 3 position and 4 orientation numbers")
    stamps = {}
    for key in ("stamp_ns", "bag_time_ns"):
        value = entry.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"{where}: {key} must be an integer of nanoseconds, got {value!r}")
        stamps[key] = value
    return TopomapNode(entry["image"], stamps["stamp_ns"], stamps["bag_time_ns"], position, orientation)


def load_topomap(directory: str | Path) -> Topomap:
    """Read a topomap directory: with ``topomap.yaml``, or an upstream one (``0.png``, ``1.png``, ... only).

    Raises ConfigError naming the problem (missing directory, bad manifest, no nodes, missing image files).
    """
    import yaml

    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"topomap directory not found: {directory}")
    manifest = directory / MANIFEST
    if not manifest.is_file():
        numbered = sorted((int(m.group(1)), p.name) for p in directory.iterdir()
                          if p.is_file() and (m := _NUMBERED.match(p.name)))
        if not numbered:
            raise ConfigError(f"{directory} is not a topomap: no {MANIFEST} and no numbered images (0.png, ...)")
        return Topomap(directory, [TopomapNode(name) for _, name in numbered], source={"upstream": True})
    try:
        data = yaml.safe_load(manifest.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{manifest}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{manifest}: not a topomap manifest (expected format: {FORMAT})")
    entries = data.get("nodes")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{manifest}: 'nodes' must be a non-empty list")
    nodes = [_node_from_dict(e, f"{manifest} nodes[{i}]") for i, e in enumerate(entries)]
    missing = [n.image for n in nodes if not (directory / n.image).is_file()]
    if missing:
        raise ConfigError(f"{manifest}: node image(s) missing: {', '.join(missing[:5])}")
    return Topomap(directory, nodes, str(data.get("pose_frame") or ""), str(data.get("child_frame") or ""),
                   dict(data.get("source") or {}))


def topomap_from_goal_image(path: str | Path) -> Topomap:
    """A one-node topomap of a single goal image (single-goal-image navigation)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"goal image not found: {path}")
    return Topomap(path.parent, [TopomapNode(path.name)], source={"goal_image": str(path)})


def topomap_from_images(images: Mapping[int, np.ndarray], num_nodes: int, name: str = "in memory") -> Topomap:
    """A topomap of ``num_nodes`` route nodes held in memory, ``images`` ``{node: (H, W, 3) uint8 R,G,B}`` (a
    rendered route; the images of nodes not given are never to be read): no files, no stamps, no poses."""
    if any(not 0 <= k < num_nodes for k in images):
        raise ValueError(f"image nodes {sorted(images)} outside 0..{num_nodes - 1}")
    nodes = [TopomapNode(f"{name} node {k}") for k in range(num_nodes)]
    return Topomap(Path(f"<{name}>"), nodes, source={"in_memory": name}, _images=dict(images))


def _prepare_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty directory; choose a new directory "
                          "(nothing there was changed)")


@dataclass
class TopomapBuildSummary:
    topomap: Topomap
    images_seen: int
    nodes_without_pose: int


def build_topomap(bag: str | Path, image_topic: str, dt: float, out: str | Path, odom_topic: str | None = None,
                  odom_tolerance: float = 0.25) -> TopomapBuildSummary:
    """Write a topomap of ``bag``'s ``image_topic`` into ``out``: one node every ``dt`` seconds of bag time.

    ``image_topic`` is a sensor_msgs Image (rgb8, bgr8, rgba8, bgra8) or CompressedImage topic. With ``odom_topic``
    (nav_msgs/Odometry) every node gets the pose of the odometry message nearest its image's header stamp, when one
    lies within ``odom_tolerance`` seconds (else no pose). ``out`` must not exist or be an empty directory; the map is
    assembled in a temporary sibling directory and renamed into place, so a failure leaves nothing behind and an
    existing directory is never touched. Raises ConfigError for bad arguments and unreadable bags or topics.
    """
    from ros_mmfusion.core.bagio import read_header_stamp, typestore
    from ros_mmfusion.core.navigation.sampling import PeriodicSampler

    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt must be a positive number of seconds, got {dt!r}")
    out = Path(out)
    _prepare_output(out)
    with open_bag(bag) as source:
        topics = source.topics
        if image_topic not in topics:
            raise ConfigError(f"bag {bag} has no topic {image_topic!r}; image topics: "
                              f"{sorted(t for t, m in topics.items() if m in IMAGE_TYPES) or 'none'}")
        if topics[image_topic] not in IMAGE_TYPES:
            raise ConfigError(f"{image_topic} is {topics[image_topic]}, not an Image or CompressedImage topic")
        if odom_topic is not None and topics.get(odom_topic) != ODOMETRY_TYPE:
            raise ConfigError(f"bag {bag} has no nav_msgs/Odometry topic {odom_topic!r}; odometry topics: "
                              f"{sorted(t for t, m in topics.items() if m == ODOMETRY_TYPE) or 'none'}")
        store = typestore()
        sampler = PeriodicSampler(dt, tolerance=0.0)
        tmp = out.parent / f".{out.name}.tmp{os.getpid()}"
        tmp.mkdir(parents=True)
        try:
            nodes: list[TopomapNode] = []
            odometry: list[tuple[int, tuple, tuple]] = []  # (stamp ns, position, orientation xyzw)
            pose_frame = child_frame = ""
            images_seen = 0
            wanted = [image_topic] + ([odom_topic] if odom_topic else [])
            for message in source.messages(wanted):
                if message.topic == odom_topic:
                    odom = store.deserialize_cdr(message.data, message.msgtype)
                    p, q = odom.pose.pose.position, odom.pose.pose.orientation
                    pose_frame, child_frame = odom.header.frame_id, odom.child_frame_id
                    odometry.append((odom.header.stamp.sec * 1_000_000_000 + odom.header.stamp.nanosec,
                                     (p.x, p.y, p.z), (q.x, q.y, q.z, q.w)))
                    continue
                images_seen += 1
                if not sampler.offer(message.log_time_ns):
                    continue
                try:
                    rgb = rgb_of_message(store, message)
                except MessageFormatError as exc:
                    raise ConfigError(f"{image_topic}: {exc}") from None
                name = f"{len(nodes)}.png"
                _write_rgb(tmp / name, rgb)
                nodes.append(TopomapNode(name, read_header_stamp(message.data), message.log_time_ns))
            if not nodes:
                raise ConfigError(f"bag {bag} has no messages on {image_topic}")
            nodes, without_pose = _attach_poses(nodes, odometry, odom_tolerance) if odom_topic else \
                (nodes, len(nodes))
            topomap = Topomap(out, nodes, pose_frame, child_frame,
                              {"bag": str(Path(bag).resolve()), "image_topic": image_topic,
                               "odom_topic": odom_topic, "dt": float(dt)})
            _write_manifest(tmp / MANIFEST, topomap)
            if out.exists():
                out.rmdir()  # empty (checked above)
            tmp.rename(out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return TopomapBuildSummary(topomap, images_seen, without_pose)


def _attach_poses(nodes: Sequence[TopomapNode], odometry: list[tuple[int, tuple, tuple]],
                  tolerance_s: float) -> tuple[list[TopomapNode], int]:
    odometry = sorted(odometry, key=lambda o: o[0])
    stamps = [o[0] for o in odometry]
    out, without = [], 0
    for node in nodes:
        i = bisect.bisect_left(stamps, node.stamp_ns)
        near = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
        best = min(near, key=lambda j: abs(stamps[j] - node.stamp_ns), default=None)
        if best is None or abs(stamps[best] - node.stamp_ns) > tolerance_s * 1e9:
            out.append(node)
            without += 1
            continue
        _, position, orientation = odometry[best]
        out.append(TopomapNode(node.image, node.stamp_ns, node.bag_time_ns, tuple(map(float, position)),
                               tuple(map(float, orientation))))
    return out, without


def _write_manifest(path: Path, topomap: Topomap) -> None:
    import yaml

    text = ("# ros_mmfusion topological map: node images (R,G,B PNG) in route order, their header stamps and the\n"
            "# odometry pose (pose_frame <- child_frame) nearest each stamp. See docs/navigation.md.\n")
    path.write_text(text + yaml.safe_dump(topomap.manifest(), sort_keys=False, default_flow_style=None))
