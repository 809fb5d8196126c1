"""RGB-D frames, image sequences and RGB-thermal frames to a rosbag2 (``mmfusion import rgbd``); ROS-free.

Inputs (see docs/datasets.md, "RGB-D and image sequences"):

- a **TUM RGB-D** sequence folder: ``rgb.txt`` and ``depth.txt`` (``timestamp filename`` lines, ``#`` comments),
  depth associated with the nearest colour frame within ``max_difference`` seconds (TUM's ``associate.py`` rule,
  0.02 s); ``groundtruth.txt`` (``timestamp tx ty tz qx qy qz qw``, world <- camera) when present becomes odometry;
- a **folder of timestamped frames**: image files named by their capture time in seconds (``1341847980.722988.png``),
  colour only (e.g. ../shared/real/tum_sequence);
- **single pairs** (``rgb_file``, ``depth_file``) in any vendor depth encoding
  (:mod:`ros_mmfusion.core.modalities.depth_encodings`);
- **MFNet** RGB-thermal frames (``layout="mfnet"``): 4-channel PNGs, R, G, B colour and A the 8-bit thermal image,
  one frame per file at ``rate`` Hz in file-name order.

Output topics: ``/camera/color/image_raw`` (rgb8) + ``/camera/color/camera_info``, ``/camera/depth/image_rect_raw``
(32FC1 metres or 16UC1 millimetres, REP-118) + ``/camera/depth/camera_info``, ``/thermal/image_raw`` (mono8),
``/groundtruth/odometry`` (nav_msgs/Odometry, ``world`` <- camera optical frame). Depth registered to colour
(TUM, SUN, Kinect v2 samples) shares the colour frame; NYU raw depth is in its own depth-camera frame.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from ros_mmfusion.core.bagio import is_bag_written_by
from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.geometry import PinholeCamera
from ros_mmfusion.core.modalities.depth_encodings import DEPTH_ENCODINGS, default_camera, read_depth_file

COLOUR_TOPIC, COLOUR_INFO_TOPIC = "/camera/color/image_raw", "/camera/color/camera_info"
DEPTH_TOPIC, DEPTH_INFO_TOPIC = "/camera/depth/image_rect_raw", "/camera/depth/camera_info"
THERMAL_TOPIC = "/thermal/image_raw"
ODOMETRY_TOPIC = "/groundtruth/odometry"
COLOUR_FRAME, DEPTH_FRAME, THERMAL_FRAME = "camera_color_optical_frame", "camera_depth_optical_frame", "thermal_frame"
WORLD_FRAME = "world"
MARKER = "rgbd_import.yaml"
"""Written into every bag this importer makes (``--overwrite`` replaces only such a bag)."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm")
_STAMP_NAME = re.compile(r"^\d+(\.\d+)?$")


@dataclass
class Frame:
    """One time step: capture time (ns) and the files that hold it (None: not recorded at that step)."""

    stamp_ns: int
    rgb: Path | None = None
    depth: Path | None = None


@dataclass
class ImportSummary:
    bag: Path
    frames: int
    messages: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _stamp_ns(seconds: str) -> int:
    whole, _, fraction = seconds.partition(".")
    return int(whole) * 1_000_000_000 + int((fraction + "000000000")[:9])


def read_file_list(path: Path) -> list[tuple[int, Path]]:
    """TUM ``timestamp filename`` lines of ``path`` as (stamp ns, file path relative to its folder); each listed file
    must exist (ConfigError naming the first missing one)."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) < 2 or not _STAMP_NAME.match(parts[0]):
            raise ConfigError(f"{path}:{number}: expected 'timestamp filename', got {line!r}")
        file = path.parent / parts[1]
        if not file.is_file():
            raise ConfigError(f"{file}: missing (listed in {path.name} line {number})")
        entries.append((_stamp_ns(parts[0]), file))
    if not entries:
        raise ConfigError(f"{path}: lists no frames")
    return entries


def associate(rgb: Sequence[tuple[int, Path]], depth: Sequence[tuple[int, Path]],
              max_difference: float = 0.02) -> list[Frame]:
    """Colour frames each paired with the nearest unused depth frame within ``max_difference`` s (greedy by time
    difference, as TUM's ``associate.py``); colour frames without a partner are kept colour-only."""
    limit = int(max_difference * 1e9)
    candidates = sorted((abs(a - b), i, j) for i, (a, _) in enumerate(rgb) for j, (b, _) in enumerate(depth)
                        if abs(a - b) < limit)
    used_rgb: dict[int, int] = {}
    used_depth: set[int] = set()
    for _, i, j in candidates:
        if i not in used_rgb and j not in used_depth:
            used_rgb[i] = j
            used_depth.add(j)
    return [Frame(stamp, file, depth[used_rgb[i]][1] if i in used_rgb else None) for i, (stamp, file) in enumerate(rgb)]


def scan_folder(folder: Path, max_difference: float = 0.02) -> list[Frame]:
    """The frames of a TUM sequence folder (rgb.txt, depth.txt) or of a folder of images named by capture time."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: missing (not a directory)")
    rgb_list, depth_list = folder / "rgb.txt", folder / "depth.txt"
    if rgb_list.exists() or depth_list.exists():
        if not rgb_list.is_file():
            raise ConfigError(f"{rgb_list}: missing (a TUM sequence folder has rgb.txt beside depth.txt)")
        rgb = read_file_list(rgb_list)
        depth = read_file_list(depth_list) if depth_list.is_file() else []
        return associate(rgb, depth, max_difference)
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and _STAMP_NAME.match(p.stem))
    if not images:
        raise ConfigError(f"{folder}: no rgb.txt and no images named by capture time (e.g. 1341847980.722988.png)")
    return sorted((Frame(_stamp_ns(p.stem), p) for p in images), key=lambda f: f.stamp_ns)


def read_groundtruth(path: Path) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """TUM ``groundtruth.txt``: (stamp ns, position xyz m, quaternion xyzw) of the camera in the world frame."""
    poses = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            values = [float(v) for v in parts[1:8]]
        except ValueError:
            values = []
        if len(parts) < 8 or len(values) != 7 or not _STAMP_NAME.match(parts[0]):
            raise ConfigError(f"{path}:{number}: expected 'timestamp tx ty tz qx qy qz qw', got {line!r}")
        poses.append((_stamp_ns(parts[0]), np.array(values[:3]), np.array(values[3:])))
    return poses


def read_colour(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 R,G,B from a colour image file (8-bit; grey is replicated)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise MessageFormatError(f"{path}: not a readable image")
    if image.dtype != np.uint8:
        raise MessageFormatError(f"{path}: expected an 8-bit colour image, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def read_mfnet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An MFNet frame: ``(H, W, 3)`` uint8 R,G,B colour and ``(H, W)`` uint8 thermal (the PNG's alpha channel)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise MessageFormatError(f"{path}: not a readable image")
    if image.ndim != 3 or image.shape[2] != 4 or image.dtype != np.uint8:
        raise MessageFormatError(f"{path}: an MFNet frame is an 8-bit 4-channel PNG (R, G, B, thermal), got "
                                 f"{image.dtype} with shape {image.shape}")
    return np.ascontiguousarray(image[..., 2::-1]), np.ascontiguousarray(image[..., 3])


def camera_from_intrinsics(values: Sequence[float], width: int, height: int) -> PinholeCamera:
    """A pinhole camera from ``fx fy cx cy`` (pixels) and the image size."""
    if len(values) != 4 or not all(np.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
        raise ConfigError(f"--intrinsics: expected 'fx fy cx cy' with positive focal lengths, got {list(values)}")
    fx, fy, cx, cy = (float(v) for v in values)
    return PinholeCamera(k=np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), width=width, height=height)


def is_rgbd_bag(path: Path) -> bool:
    """Whether ``path`` is a bag this importer wrote (its marker, and nothing but bag files)."""
    return is_bag_written_by(path, MARKER, None)


def write_bag(out: Path, frames: Sequence[Frame], *, depth_encoding: str = "tum", layout: str = "rgbd",
              intrinsics: Sequence[float] | None = None, depth_output: str = "32FC1",
              groundtruth: Path | None = None, rate: float = 1.0,
              progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Write ``frames`` into the rosbag2 (MCAP) directory ``out`` (absent or empty; the caller stages it).

    ``layout`` "rgbd": colour and depth files, depth decoded with ``depth_encoding`` and written as ``depth_output``
    (32FC1 metres / 16UC1 millimetres); CameraInfo from ``intrinsics`` (fx fy cx cy) or the encoding's published
    default camera, scaled to the image size. "mfnet": each ``frame.rgb`` is an MFNet RGBA file (stamps from
    ``rate`` Hz when the frames carry none); CameraInfo only with ``intrinsics``.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ros_mmfusion.core.sim.recorder import SimMessages, _qos, depth_image

    if layout not in ("rgbd", "mfnet"):
        raise ConfigError(f"layout must be rgbd or mfnet, got {layout!r}")
    if depth_encoding not in DEPTH_ENCODINGS:
        raise ConfigError(f"--depth-encoding {depth_encoding!r}: expected one of {', '.join(DEPTH_ENCODINGS)}")
    depth_image(np.zeros((1, 1), np.float32), depth_output)  # validates it
    if not frames:
        raise ConfigError("no frames to import")
    started = time.perf_counter()
    msgs = SimMessages(None, depth_output)
    store = msgs.store
    depth_frame = DEPTH_FRAME if depth_encoding == "nyu_raw" else COLOUR_FRAME
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # the bag writer creates its directory itself
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    (out / MARKER).write_text(f"importer: mmfusion import rgbd\nlayout: {layout}\ndepth_encoding: {depth_encoding}\n"
                              f"depth_output: {depth_output}\nframes: {len(frames)}\n")
    connections: dict[str, object] = {}
    counts: dict[str, int] = {}

    def write(topic: str, message, stamp_ns: int) -> None:
        msgtype = message.__msgtype__
        if topic not in connections:
            connections[topic] = writer.add_connection(topic, msgtype, typestore=store,
                                                       offered_qos_profiles=[_qos(False)])
            counts[topic] = 0
        writer.write(connections[topic], stamp_ns, store.serialize_cdr(message, msgtype))
        counts[topic] += 1

    def info(stamp_ns: int, frame_id: str, camera: PinholeCamera):
        return msgs.camera_info(stamp_ns, SimpleNamespace(camera=camera, frame_id=frame_id))

    def camera_for(shape: tuple[int, ...], encoding: str | None) -> PinholeCamera | None:
        height, width = shape[:2]
        if intrinsics is not None:
            return camera_from_intrinsics(intrinsics, width, height)
        return None if encoding is None else default_camera(encoding, width, height)

    try:
        for index, frame in enumerate(frames):
            stamp = frame.stamp_ns
            if layout == "mfnet":
                colour, thermal = read_mfnet(frame.rgb)
                write(COLOUR_TOPIC, msgs.image(stamp, COLOUR_FRAME, colour, "rgb8"), stamp)
                write(THERMAL_TOPIC, msgs.image(stamp, THERMAL_FRAME, thermal, "mono8"), stamp)
                camera = camera_for(colour.shape, None)
                if camera is not None:
                    write(COLOUR_INFO_TOPIC, info(stamp, COLOUR_FRAME, camera), stamp)
            else:
                if frame.rgb is not None:
                    colour = read_colour(frame.rgb)
                    write(COLOUR_TOPIC, msgs.image(stamp, COLOUR_FRAME, colour, "rgb8"), stamp)
                    # NYU's colour camera is the one the "sun" default names (NYU toolbox colour intrinsics).
                    camera = camera_for(colour.shape, "sun" if depth_encoding == "nyu_raw" else depth_encoding)
                    write(COLOUR_INFO_TOPIC, info(stamp, COLOUR_FRAME, camera), stamp)
                if frame.depth is not None:
                    metres = read_depth_file(frame.depth, depth_encoding)
                    depth = depth_image(np.where(metres > 0, metres, np.nan), depth_output)
                    write(DEPTH_TOPIC, msgs.image(stamp, depth_frame, depth, depth_output), stamp)
                    write(DEPTH_INFO_TOPIC, info(stamp, depth_frame, camera_for(metres.shape, depth_encoding)),
                          stamp)
            if progress is not None:
                progress(index + 1, len(frames))
        if groundtruth is not None:
            first, last = frames[0].stamp_ns, frames[-1].stamp_ns
            for stamp, position, quaternion in read_groundtruth(groundtruth):
                if first <= stamp <= last:
                    write(ODOMETRY_TOPIC, odometry(msgs, stamp, position, quaternion), stamp)
    finally:
        writer.close()
    return ImportSummary(out, len(frames), counts, time.perf_counter() - started)


def odometry(msgs, stamp_ns: int, position: np.ndarray, quaternion: np.ndarray):
    """nav_msgs/Odometry of the camera (``child_frame_id`` its optical frame) in the world, zero twist."""
    covariance = np.zeros(36)
    pose = msgs.new("geometry_msgs/msg/PoseWithCovariance", pose=msgs.pose(position, quaternion),
                    covariance=covariance)
    twist = msgs.new("geometry_msgs/msg/TwistWithCovariance", twist=msgs.new(
        "geometry_msgs/msg/Twist", linear=msgs.vector3((0, 0, 0)), angular=msgs.vector3((0, 0, 0))),
        covariance=covariance)
    return msgs.new("nav_msgs/msg/Odometry", header=msgs.header(stamp_ns, WORLD_FRAME), child_frame_id=COLOUR_FRAME,
                    pose=pose, twist=twist)


__all__ = ["COLOUR_TOPIC", "DEPTH_TOPIC", "MARKER", "ODOMETRY_TOPIC", "THERMAL_TOPIC", "Frame", "ImportSummary",
           "associate", "camera_from_intrinsics", "is_rgbd_bag", "read_colour", "read_file_list", "read_groundtruth",
           "read_mfnet", "scan_folder", "write_bag"]
