"""KITTI (Geiger et al.) object-detection and raw-data folders read, and written as a rosbag2 (ROS-free).

Two layouts (docs/datasets.md, "KITTI"):

* **object** (the 3D object benchmark, ``training/`` or ``testing/``): ``image_2/NNNNNN.png`` (left colour camera,
  rectified), ``velodyne/NNNNNN.bin`` (float32 x, y, z, reflectance in the Velodyne frame), ``calib/NNNNNN.txt``
  (``P0..P3`` 3x4, ``R0_rect`` 3x3, ``Tr_velo_to_cam`` and ``Tr_imu_to_velo`` 3x4) and, in training,
  ``label_2/NNNNNN.txt``. Frames are independent snapshots with no time: stamps are synthesized at ``rate`` Hz from
  :data:`OBJECT_START_STAMP_NS`.
* **raw** (a synchronized drive, ``YYYY_MM_DD_drive_NNNN_sync/``): ``image_02/data/NNNNNNNNNN.png`` with
  ``image_02/timestamps.txt``, ``velodyne_points/data/NNNNNNNNNN.bin`` with ``velodyne_points/timestamps.txt``,
  optionally ``oxts/data/NNNNNNNNNN.txt`` with ``oxts/timestamps.txt``; the calibration ``calib_cam_to_cam.txt``
  (``P_rect_02``, ``R_rect_00``, ``S_rect_02``), ``calib_velo_to_cam.txt`` (``R``, ``T``) and
  ``calib_imu_to_velo.txt`` (``R``, ``T``) in the drive folder or its parent (the date folder, as KITTI ships them).

Geometry (all transforms ``T_a_b`` map frame ``b`` into ``a``, :mod:`ros_mmfusion.core.geometry`):

* ``rect0`` is KITTI's rectified reference camera (camera 0 after ``R0_rect``); label locations live there.
  ``T_rect0_velo = R0_rect @ Tr_velo_to_cam`` (its rotation made exactly orthonormal, nearest rotation by SVD).
* ``P2 = K2 [I | t2]``: camera 2's projection of ``rect0`` points. Its left 3x3 is the intrinsic matrix ``K2`` and its
  4th column ``K2 t2`` is camera 2's offset from camera 0 (about 6 cm along x). The camera's optical frame here is
  camera 2's own: ``T_cam2_rect0`` is the translation ``t2 = K2^-1 P2[:, 3]``, so a point in that frame projects with
  ``K2`` alone, and the CameraInfo has ``K = P2[:, :3]``, ``P = [K2 | 0]``, ``R = I``, ``D = 0`` (the images are
  already rectified). ``P = P2`` with that frame would count the offset twice.
* The frame tree: ``base_link`` is placed at the Velodyne (``base_link -> velo_link`` identity), with
  ``base_link -> camera_color_optical_frame`` (``T_velo_cam2``) and, when the IMU calibration is known,
  ``base_link -> imu_link`` (``Tr_imu_to_velo``). With OXTS data, ``/tf`` carries ``odom -> base_link``.
* A label (``h w l``, location = bottom centre in ``rect0``, ``rotation_y`` about rect0's y) becomes a LiDAR-frame box
  ``(x, y, z, dx=l, dy=w, dz=h, yaw)``: centre ``T_velo_rect0 (loc - (0, h/2, 0))``, yaw the heading
  ``(cos ry, 0, -sin ry)`` rotated into the LiDAR frame (about ``-ry - pi/2``).
"""
from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ros_mmfusion import __version__
from ros_mmfusion.core.bagio import is_bag_written_by
from ros_mmfusion.core.calibration import FORMAT, CameraCalibration, LidarCalibration
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import PinholeCamera, Transform

GENERATOR = "ros_mmfusion import kitti"
DATASET_FILE = "dataset.yaml"
"""What the importer wrote (source, layout, frames, topics, per-frame calibration); marks the bag as ours."""
LAYOUTS = ("object", "raw")
OBJECT_START_STAMP_NS = 1_704_067_200 * 1_000_000_000
"""Stamp of the first frame of an object-layout import (2024-01-01T00:00:00Z, the simulator's start)."""

BASE_FRAME, LIDAR_FRAME, CAMERA_FRAME, IMU_FRAME, ODOM_FRAME = (
    "base_link", "velo_link", "camera_color_optical_frame", "imu_link", "odom")
CAMERA_NAME = "color"
"""The camera's name in calibration.yaml (the presets' ``camera: color``)."""

#: topic -> (message type, description)
TOPICS: dict[str, tuple[str, str]] = {
    "/camera/color/image_raw": ("sensor_msgs/msg/Image", "rgb8, KITTI camera 2 (left colour), rectified"),
    "/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", "K = P2[:, :3], P = [K | 0], R = I, D = 0"),
    "/lidar/points": ("sensor_msgs/msg/PointCloud2", "x y z intensity float32 (KITTI reflectance 0..1); velo_link"),
    "/tf_static": ("tf2_msgs/msg/TFMessage",
                   "base_link -> velo_link, camera_color_optical_frame, imu_link; again whenever the calibration "
                   "changes (object layout); transient local"),
    "/tf": ("tf2_msgs/msg/TFMessage", "odom -> base_link from OXTS (raw layout with oxts/)"),
    "/ground_truth/boxes": ("vision_msgs/msg/Detection3DArray",
                            "labelled 3D boxes in velo_link (DontCare left out); id = 'row;truncated=..;occluded=..;"
                            "alpha=..'"),
    "/ground_truth/boxes_2d": ("vision_msgs/msg/Detection2DArray",
                               "labelled 2D boxes (pixels, camera 2) of every label row, DontCare included; the "
                               "same id as the 3D box of the row"),
    "/ground_truth/label_info": ("vision_msgs/msg/LabelInfo", "KITTI types (lower case) by index; transient local"),
}
STATIC_TOPICS = ("/tf_static", "/ground_truth/label_info")

KITTI_TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
"""The label types of the KITTI object benchmark; published in lower case (as the detector publishes its names)."""

#: Nominal HDL-64E beam elevations (degrees, lowest first; datasheet: upper block +2 to -8.33 in 1/3 degree steps,
#: lower block -8.83 to -24.33 in 1/2 degree steps) for calibration.yaml; KITTI publishes no per-beam calibration.
HDL64_ELEVATIONS_DEG = tuple(sorted([round(2.0 - k / 3.0, 4) for k in range(32)]
                                    + [round(-8.83 - 0.5 * k, 4) for k in range(32)]))
HDL64_COLUMNS = 2083
"""Azimuth steps a revolution of the HDL-64E at 10 Hz (0.1728 degrees); nominal."""

POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])


# ---------------------------------------------------------------------------------------------------------- reading
def parse_calib_text(path: Path) -> dict[str, np.ndarray]:
    """``KEY: v v v ...`` lines of a KITTI calibration file; lines whose values are not all numbers (``calib_time``)
    are skipped. ConfigError naming the file when it cannot be read."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    values: dict[str, np.ndarray] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            values[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            continue
    return values


def _matrix(values: dict[str, np.ndarray], key: str, shape: tuple[int, int], path: Path) -> np.ndarray:
    if key not in values:
        raise ConfigError(f"{path}: no {key} (a KITTI calibration file has {key}: {shape[0] * shape[1]} numbers)")
    v = values[key]
    if v.size != shape[0] * shape[1]:
        raise ConfigError(f"{path}: {key} has {v.size} numbers, expected {shape[0] * shape[1]}")
    return v.reshape(shape)


def rigid(rotation: np.ndarray, translation: np.ndarray) -> Transform:
    """A Transform from a 3x3 that should be a rotation (KITTI's are to about 1e-6) and a translation: the rotation is
    replaced by the nearest proper rotation (SVD), as tf needs a unit quaternion."""
    u, _, vt = np.linalg.svd(np.asarray(rotation, np.float64))
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return Transform(r, np.asarray(translation, np.float64).reshape(3))


@dataclass(frozen=True, eq=False)
class KittiCalibration:
    """One KITTI calibration: ``P2`` (3x4, pixels), ``R0_rect`` (3x3), ``Tr_velo_to_cam`` (3x4, metres, camera 0
    unrectified <- Velodyne), optional ``Tr_imu_to_velo`` (3x4) and the image size; ``source`` names the file(s)."""

    P2: np.ndarray
    R0_rect: np.ndarray
    Tr_velo_to_cam: np.ndarray
    width: int
    height: int
    Tr_imu_to_velo: np.ndarray | None = None
    source: str = ""

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the field's name
        """Camera 2's intrinsic matrix: P2's left 3x3 (pixels)."""
        return self.P2[:, :3].copy()

    @property
    def camera(self) -> PinholeCamera:
        """Camera 2 as a pinhole camera (rectified images: no distortion)."""
        return PinholeCamera(k=self.K, width=self.width, height=self.height, d=np.zeros(5),
                             distortion_model="plumb_bob")

    @property
    def cam2_offset(self) -> np.ndarray:
        """``t2 = K2^-1 P2[:, 3]``: camera 2's optical centre relative to the rectified camera 0, in metres, such that
        ``p_cam2 = p_rect0 + t2`` (about (0.06, 0, 0))."""
        return np.linalg.solve(self.K, self.P2[:, 3])

    @property
    def T_rect0_velo(self) -> Transform:  # noqa: N802
        """Rectified camera 0 <- Velodyne: ``R0_rect @ Tr_velo_to_cam``."""
        m = self.R0_rect @ self.Tr_velo_to_cam
        return rigid(m[:, :3], m[:, 3])

    @property
    def T_cam2_velo(self) -> Transform:  # noqa: N802
        """Camera 2's optical frame <- Velodyne (``t2`` added to :attr:`T_rect0_velo`)."""
        return Transform(np.eye(3), self.cam2_offset) @ self.T_rect0_velo

    @property
    def T_velo_imu(self) -> Transform | None:  # noqa: N802
        """Velodyne <- IMU (OXTS) frame, or None when the calibration has no ``Tr_imu_to_velo``."""
        if self.Tr_imu_to_velo is None:
            return None
        return rigid(self.Tr_imu_to_velo[:, :3], self.Tr_imu_to_velo[:, 3])

    def key(self) -> tuple:
        """Equal for equal calibrations (frames of one drive)."""
        parts = [self.P2, self.R0_rect, self.Tr_velo_to_cam,
                 self.Tr_imu_to_velo if self.Tr_imu_to_velo is not None else np.zeros(0)]
        return (self.width, self.height, *(tuple(np.round(p, 12).ravel()) for p in parts))


def read_object_calibration(path: Path, width: int, height: int) -> KittiCalibration:
    """An object-benchmark ``calib/NNNNNN.txt`` (``P2``, ``R0_rect``, ``Tr_velo_to_cam``, optional ``Tr_imu_to_velo``)
    for an image of ``width`` x ``height`` pixels."""
    v = parse_calib_text(path)
    imu = _matrix(v, "Tr_imu_to_velo", (3, 4), path) if "Tr_imu_to_velo" in v else None
    return KittiCalibration(_matrix(v, "P2", (3, 4), path), _matrix(v, "R0_rect", (3, 3), path),
                            _matrix(v, "Tr_velo_to_cam", (3, 4), path), width, height, imu, str(path))


def read_raw_calibration(cam_to_cam: Path, velo_to_cam: Path, imu_to_velo: Path | None) -> KittiCalibration:
    """A raw drive's calibration: ``P_rect_02``, ``R_rect_00`` and ``S_rect_02`` (image size) of
    ``calib_cam_to_cam.txt``, ``R`` and ``T`` of ``calib_velo_to_cam.txt`` and of ``calib_imu_to_velo.txt``."""
    cc = parse_calib_text(cam_to_cam)
    size = _matrix(cc, "S_rect_02", (1, 2), cam_to_cam).ravel()
    vc = parse_calib_text(velo_to_cam)
    tr = np.hstack([_matrix(vc, "R", (3, 3), velo_to_cam), _matrix(vc, "T", (3, 1), velo_to_cam)])
    imu = None
    if imu_to_velo is not None:
        iv = parse_calib_text(imu_to_velo)
        imu = np.hstack([_matrix(iv, "R", (3, 3), imu_to_velo), _matrix(iv, "T", (3, 1), imu_to_velo)])
    return KittiCalibration(_matrix(cc, "P_rect_02", (3, 4), cam_to_cam), _matrix(cc, "R_rect_00", (3, 3), cam_to_cam),
                            tr, int(round(size[0])), int(round(size[1])), imu,
                            ", ".join(str(p) for p in (cam_to_cam, velo_to_cam, imu_to_velo) if p is not None))


@dataclass(frozen=True)
class KittiObject:
    """One row of a ``label_2`` file (KITTI object devkit): ``type``; ``truncated`` 0..1 (fraction leaving the
    image); ``occluded`` 0 visible, 1 partly, 2 largely occluded, 3 unknown; ``alpha`` observation angle (rad);
    ``bbox`` left, top, right, bottom (pixels, camera 2); ``dimensions`` h, w, l (m); ``location`` x, y, z of the
    bottom centre in the rectified camera 0 frame (m); ``rotation_y`` about that frame's y axis (rad); ``row`` its
    line index in the file; ``score`` (result files only, else None)."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]
    dimensions: tuple[float, float, float]
    location: tuple[float, float, float]
    rotation_y: float
    row: int = 0
    score: float | None = None

    @property
    def class_id(self) -> str:
        """The class name as published: the KITTI type in lower case."""
        return self.type.lower()

    @property
    def has_box(self) -> bool:
        """False for DontCare regions (no 3D box)."""
        return self.type != "DontCare"

    @property
    def ros_id(self) -> str:
        """The ``id`` of this row's Detection3D and Detection2D: ``row;truncated=T;occluded=O;alpha=A``."""
        return f"{self.row};truncated={self.truncated:.2f};occluded={self.occluded};alpha={self.alpha:.2f}"


def read_labels(path: Path) -> list[KittiObject]:
    """The rows of a KITTI label file (15 values a row, or 16 with a score); ConfigError naming file and line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    objects = []
    for index, line in enumerate(lines):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (15, 16):
            raise ConfigError(f"{path}:{index + 1}: a KITTI label row has 15 values (16 with a score), got "
                              f"{len(parts)}")
        try:
            v = [float(p) for p in parts[1:]]
        except ValueError:
            raise ConfigError(f"{path}:{index + 1}: not a number in {line.strip()!r}") from None
        objects.append(KittiObject(parts[0], v[0], int(v[1]), v[2], (v[3], v[4], v[5], v[6]), (v[7], v[8], v[9]),
                                   (v[10], v[11], v[12]), v[13], len(objects), v[14] if len(v) == 15 else None))
    return objects


def boxes_in_lidar(objects: Sequence[KittiObject], calib: KittiCalibration) -> np.ndarray:
    """``(N, 7)`` LiDAR-frame boxes ``(x, y, z, dx, dy, dz, yaw)`` (centre, length l, width w, height h, yaw about
    +z in radians, (-pi, pi]) of ``objects`` (DontCare included as given: filter with ``has_box``)."""
    if not objects:
        return np.zeros((0, 7))
    hwl = np.array([o.dimensions for o in objects], np.float64)
    loc = np.array([o.location for o in objects], np.float64)
    ry = np.array([o.rotation_y for o in objects], np.float64)
    centre_rect = loc - np.stack([np.zeros(len(ry)), hwl[:, 0] / 2.0, np.zeros(len(ry))], axis=1)
    T = calib.T_rect0_velo.inverse()  # velo <- rect0
    centre = T.apply(centre_rect)
    heading = np.stack([np.cos(ry), np.zeros_like(ry), -np.sin(ry)], axis=1) @ T.rotation.T
    yaw = np.arctan2(heading[:, 1], heading[:, 0])
    return np.column_stack([centre, hwl[:, 2], hwl[:, 1], hwl[:, 0], yaw])


def read_velodyne(path: Path) -> np.ndarray:
    """A Velodyne ``.bin`` (float32 x, y, z, reflectance per point) as a structured cloud x y z intensity."""
    try:
        raw = np.fromfile(path, dtype="<f4")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if raw.size % 4:
        raise ConfigError(f"{path}: {raw.size * 4} bytes is not a whole number of points (16 bytes: x y z reflectance)")
    cloud = np.zeros(raw.size // 4, POINT_DTYPE)
    for i, name in enumerate(POINT_DTYPE.names):
        cloud[name] = raw[i::4]
    return cloud


def read_image(path: Path) -> np.ndarray:
    """A KITTI colour PNG as ``(H, W, 3)`` uint8 RGB."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError(f"{path}: not a readable image")
    return np.ascontiguousarray(image[:, :, ::-1])


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG from its header (no decoding)."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ConfigError(f"{path}: not a PNG image")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def parse_timestamps(path: Path) -> list[int]:
    """A raw drive's ``timestamps.txt`` (``YYYY-MM-DD HH:MM:SS.fffffffff`` a line, read as UTC) in nanoseconds."""
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    stamps = []
    for index, line in enumerate(lines):
        try:
            whole, _, frac = line.partition(".")
            t = _dt.datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_dt.timezone.utc)
            stamps.append(int(t.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9] or 0))
        except ValueError:
            raise ConfigError(f"{path}:{index + 1}: not a timestamp (YYYY-MM-DD HH:MM:SS.fffffffff): "
                              f"{line!r}") from None
    return stamps


EARTH_RADIUS_M = 6378137.0


def oxts_poses(records: np.ndarray) -> list[Transform]:
    """World <- IMU poses of OXTS records ``(N, >= 6)`` (lat, lon in degrees, alt m, roll, pitch, yaw rad), as the
    KITTI raw devkit computes them: a Mercator projection scaled at the first latitude, ``R = Rz(yaw) Ry(pitch)
    Rx(roll)``; expressed relative to the first pose (the first frame is the origin of ``odom``)."""
    from ros_mmfusion.core.geometry import rpy_to_matrix

    scale = math.cos(math.radians(records[0, 0]))
    poses = []
    for lat, lon, alt, roll, pitch, yaw in records[:, :6]:
        t = [scale * EARTH_RADIUS_M * math.radians(lon),
             scale * EARTH_RADIUS_M * math.log(math.tan(math.radians(90.0 + lat) / 2.0)), alt]
        poses.append(Transform(rpy_to_matrix(roll, pitch, yaw), np.asarray(t)))
    origin = poses[0].inverse()
    return [origin @ p for p in poses]


# ---------------------------------------------------------------------------------------------------------- frames
@dataclass
class KittiFrame:
    """One frame to import: its name, the image and cloud files, the stamps (ns) of each, its calibration, the label
    file (object layout, training) and the IMU pose (raw layout with OXTS; odom <- IMU)."""

    name: str
    image: Path
    cloud: Path
    image_stamp_ns: int
    cloud_stamp_ns: int
    calibration: KittiCalibration
    labels: Path | None = None
    imu_pose: Transform | None = None


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{path}: missing ({what})")
    return path


def detect_layout(root: Path) -> str:
    """``object`` when ``root`` has ``velodyne/`` (or ``training/velodyne``), ``raw`` when it has
    ``velodyne_points/``; ConfigError naming what is missing otherwise."""
    if not root.is_dir():
        raise ConfigError(f"{root}: no such directory")
    if (root / "velodyne").is_dir() or (root / "training" / "velodyne").is_dir():
        return "object"
    if (root / "velodyne_points").is_dir():
        return "raw"
    raise ConfigError(f"{root}: not a KITTI folder: no velodyne/ (object layout) or velodyne_points/ (raw drive)")


def object_frames(root: Path, rate: float = 10.0, start_stamp_ns: int = OBJECT_START_STAMP_NS,
                  max_frames: int | None = None) -> list[KittiFrame]:
    """The frames of an object-layout folder (``root`` or ``root/training``), by index (the file stem), every file
    checked to exist; stamps synthesized at ``rate`` Hz."""
    if not (root / "velodyne").is_dir() and (root / "training" / "velodyne").is_dir():
        root = root / "training"
    for sub in ("velodyne", "image_2", "calib"):
        if not (root / sub).is_dir():
            raise ConfigError(f"{root / sub}: missing (the object layout has image_2/, velodyne/, calib/)")
    names = sorted({p.stem for p in (root / "velodyne").glob("*.bin")}
                   | {p.stem for p in (root / "image_2").glob("*.png")})
    if not names:
        raise ConfigError(f"{root / 'velodyne'}: no NNNNNN.bin frames")
    if max_frames is not None:
        names = names[:max_frames]
    has_labels = (root / "label_2").is_dir()
    frames, calibs = [], {}
    for index, name in enumerate(names):
        image = _require(root / "image_2" / f"{name}.png", "camera 2 image of frame " + name)
        cloud = _require(root / "velodyne" / f"{name}.bin", "Velodyne scan of frame " + name)
        calib_path = _require(root / "calib" / f"{name}.txt", "calibration of frame " + name)
        labels = _require(root / "label_2" / f"{name}.txt", "labels of frame " + name) if has_labels else None
        width, height = image_size(image)
        calib = read_object_calibration(calib_path, width, height)
        calib = calibs.setdefault(calib.key(), calib)  # frames of one drive share one object
        stamp = start_stamp_ns + round(index * 1e9 / rate)
        frames.append(KittiFrame(name, image, cloud, stamp, stamp, calib, labels))
    return frames


def _calib_file(drive: Path, name: str, required: bool = True) -> Path | None:
    for folder in (drive, drive.parent):
        if (folder / name).is_file():
            return folder / name
    if required:
        raise ConfigError(f"{drive.parent / name}: missing (raw calibration; looked in {drive} and {drive.parent})")
    return None


def raw_frames(drive: Path, max_frames: int | None = None) -> list[KittiFrame]:
    """The frames of a synchronized raw drive folder, stamped from its ``timestamps.txt`` files; OXTS poses when
    ``oxts/`` is there (then ``calib_imu_to_velo.txt`` is required)."""
    calib_cc = _calib_file(drive, "calib_cam_to_cam.txt")
    calib_vc = _calib_file(drive, "calib_velo_to_cam.txt")
    has_oxts = (drive / "oxts").is_dir()
    calib_iv = _calib_file(drive, "calib_imu_to_velo.txt", required=has_oxts)
    calib = read_raw_calibration(calib_cc, calib_vc, calib_iv)
    image_dir, cloud_dir = drive / "image_02" / "data", drive / "velodyne_points" / "data"
    for folder in (image_dir, cloud_dir):
        if not folder.is_dir():
            raise ConfigError(f"{folder}: missing (a raw drive has image_02/data and velodyne_points/data)")
    image_stamps = parse_timestamps(_require(drive / "image_02" / "timestamps.txt", "camera 2 stamps"))
    cloud_stamps = parse_timestamps(_require(drive / "velodyne_points" / "timestamps.txt", "Velodyne stamps"))
    count = len(image_stamps)
    if len(cloud_stamps) != count:
        raise ConfigError(f"{drive / 'velodyne_points' / 'timestamps.txt'}: {len(cloud_stamps)} stamps, but "
                          f"image_02/timestamps.txt has {count} (a synchronized drive has one of each a frame)")
    if count == 0:
        raise ConfigError(f"{drive / 'image_02' / 'timestamps.txt'}: no frames")
    if max_frames is not None:
        count = min(count, max_frames)
    poses: list[Transform | None] = [None] * count
    if has_oxts:
        records = []
        for index in range(count):
            path = _require(drive / "oxts" / "data" / f"{index:010d}.txt", f"OXTS record of frame {index}")
            values = path.read_text().split()
            if len(values) < 6:
                raise ConfigError(f"{path}: an OXTS record has 30 values (lat lon alt roll pitch yaw ...), got "
                                  f"{len(values)}")
            try:
                records.append([float(v) for v in values[:6]])
            except ValueError:
                raise ConfigError(f"{path}: not numbers") from None
        poses = list(oxts_poses(np.asarray(records)))
    frames = []
    for index in range(count):
        name = f"{index:010d}"
        frames.append(KittiFrame(name, _require(image_dir / f"{name}.png", f"camera 2 image of frame {name}"),
                                 _require(cloud_dir / f"{name}.bin", f"Velodyne scan of frame {name}"),
                                 image_stamps[index], cloud_stamps[index], calib, None, poses[index]))
    return frames


# ---------------------------------------------------------------------------------------------------------- writing
def lidar_calibration(calib: KittiCalibration) -> LidarCalibration:
    """The Velodyne as calibration.yaml describes it (``base_link`` at the Velodyne; nominal beams, range 0..120 m)."""
    return LidarCalibration(LIDAR_FRAME, Transform(), np.radians(HDL64_ELEVATIONS_DEG), HDL64_COLUMNS, 0.9, 120.0)


def camera_calibration(calib: KittiCalibration) -> CameraCalibration:
    """Camera 2 as calibration.yaml describes it: K from P2, ``T_base_sensor`` = base_link (= Velodyne) <- camera."""
    return CameraCalibration(CAMERA_NAME, CAMERA_FRAME, calib.camera, calib.T_cam2_velo.inverse())


def static_transforms(calib: KittiCalibration) -> list[tuple[str, str, Transform]]:
    """(parent, child, T_parent_child) of ``/tf_static``."""
    out = [(BASE_FRAME, LIDAR_FRAME, Transform()), (BASE_FRAME, CAMERA_FRAME, calib.T_cam2_velo.inverse())]
    if calib.T_velo_imu is not None:
        out.append((BASE_FRAME, IMU_FRAME, calib.T_velo_imu))
    return out


def calibration_yaml(calib: KittiCalibration) -> str:
    """The text of ``calibration.yaml`` (format ``ros_mmfusion/calibration/v1``, :mod:`ros_mmfusion.core.calibration`)
    with a ``kitti`` section holding the source matrices."""
    import yaml

    from ros_mmfusion.core.sim.calibration import calibration_dict

    rig = _Rig("KITTI", (camera_calibration(calib),), lidar_calibration(calib))
    data = calibration_dict(rig, {CAMERA_NAME: "/camera/color/image_raw",
                                  f"{CAMERA_NAME}_info": "/camera/color/camera_info", "lidar": "/lidar/points"})
    data["kitti"] = {
        "source": calib.source,
        "P2": [[float(v) for v in row] for row in calib.P2],
        "R0_rect": [[float(v) for v in row] for row in calib.R0_rect],
        "Tr_velo_to_cam": [[float(v) for v in row] for row in calib.Tr_velo_to_cam],
        "cam2_offset_m": [round(float(v), 9) for v in calib.cam2_offset],
        "note": "K = P2[:, :3]; camera_color_optical_frame is camera 2's own (P2's 4th column, K t2, is in the "
                "transform); LiDAR beams are the HDL-64E's nominal ones",
    }
    assert data["format"] == FORMAT
    return "# Sensor calibration written by `mmfusion import kitti` (ros_mmfusion); see docs/datasets.md.\n" + \
        yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)


@dataclass(frozen=True)
class _Rig:
    platform: str
    cameras: tuple[CameraCalibration, ...]
    lidar: LidarCalibration


def is_imported_bag(path: Path) -> bool:
    """True when ``path`` is a bag directory this importer wrote (its ``dataset.yaml`` says so and it holds nothing
    but the bag's files); what ``--overwrite`` may replace."""
    return is_bag_written_by(path, DATASET_FILE, GENERATOR, ("calibration.yaml",))


@dataclass
class ImportSummary:
    """What :func:`import_kitti` wrote."""

    bag: Path
    layout: str
    frames: int
    messages: dict[str, int] = field(default_factory=dict)
    calibrations: int = 1
    seconds: float = 0.0
    bytes: int = 0


def frame_messages(msgs, frame: KittiFrame, camera: CameraCalibration) -> list[tuple[str, object]]:
    """(topic, message) of one frame: image, camera info, cloud and (with labels) the ground truth."""
    out = [("/camera/color/image_raw", msgs.image(frame.image_stamp_ns, CAMERA_FRAME, read_image(frame.image),
                                                  "rgb8")),
           ("/camera/color/camera_info", msgs.camera_info(frame.image_stamp_ns, camera)),
           ("/lidar/points", msgs.cloud(frame.cloud_stamp_ns, LIDAR_FRAME, read_velodyne(frame.cloud)))]
    if frame.labels is not None:
        objects = read_labels(frame.labels)
        out += [("/ground_truth/boxes", boxes_message(msgs, frame.cloud_stamp_ns, objects, frame.calibration)),
                ("/ground_truth/boxes_2d", boxes_2d_message(msgs, frame.image_stamp_ns, objects))]
    return out


def _hypothesis(msgs, obj: KittiObject, pose):
    return msgs.new("vision_msgs/msg/ObjectHypothesisWithPose",
                    hypothesis=msgs.new("vision_msgs/msg/ObjectHypothesis", class_id=obj.class_id,
                                        score=1.0 if obj.score is None else float(obj.score)),
                    pose=msgs.new("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=np.zeros(36)))


def boxes_message(msgs, stamp_ns: int, objects: Sequence[KittiObject], calib: KittiCalibration):
    """Detection3DArray in ``velo_link`` of the objects with a 3D box (DontCare left out)."""
    from ros_mmfusion.core.geometry import yaw_to_quaternion

    kept = [o for o in objects if o.has_box]
    detections = []
    for obj, box in zip(kept, boxes_in_lidar(kept, calib), strict=True):
        q = yaw_to_quaternion(box[6])
        detections.append(msgs.new("vision_msgs/msg/Detection3D", header=msgs.header(stamp_ns, LIDAR_FRAME),
                                   results=[_hypothesis(msgs, obj, msgs.pose(box[:3], q))],
                                   bbox=msgs.new("vision_msgs/msg/BoundingBox3D", center=msgs.pose(box[:3], q),
                                                 size=msgs.vector3(box[3:6])),
                                   id=obj.ros_id))
    return msgs.new("vision_msgs/msg/Detection3DArray", header=msgs.header(stamp_ns, LIDAR_FRAME),
                    detections=detections)


def boxes_2d_message(msgs, stamp_ns: int, objects: Sequence[KittiObject]):
    """Detection2DArray in the camera frame of every label row (DontCare too): axis-aligned pixel boxes."""
    detections = []
    for obj in objects:
        left, top, right, bottom = obj.bbox
        centre = msgs.new("vision_msgs/msg/Pose2D", position=msgs.new("vision_msgs/msg/Point2D",
                                                                      x=(left + right) / 2.0, y=(top + bottom) / 2.0),
                          theta=0.0)
        detections.append(msgs.new("vision_msgs/msg/Detection2D", header=msgs.header(stamp_ns, CAMERA_FRAME),
                                   results=[_hypothesis(msgs, obj, msgs.pose((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)))],
                                   bbox=msgs.new("vision_msgs/msg/BoundingBox2D", center=centre,
                                                 size_x=right - left, size_y=bottom - top),
                                   id=obj.ros_id))
    return msgs.new("vision_msgs/msg/Detection2DArray", header=msgs.header(stamp_ns, CAMERA_FRAME),
                    detections=detections)


def _dataset_yaml(root: Path, layout: str, frames: Sequence[KittiFrame], topics: dict[str, tuple[str, str]],
                  changes: list[str]) -> str:
    import yaml

    data = {
        "generator": GENERATOR,
        "version": __version__,
        "dataset": "KITTI",
        "licence": "KITTI data: CC BY-NC-SA 3.0 (Geiger et al.); this bag is a derived work of it",
        "source": str(root.resolve()),
        "layout": layout,
        "frames": len(frames),
        "stamps": ("synthesized at a fixed rate from 2024-01-01T00:00:00Z (the object layout has no time)"
                   if layout == "object" else "image_02 and velodyne_points timestamps.txt (read as UTC)"),
        "frame_names": [f.name for f in frames],
        "calibration_changes": changes,
        "frame_ids": {"base": BASE_FRAME, "lidar": LIDAR_FRAME, "camera_color": CAMERA_FRAME, "imu": IMU_FRAME,
                      "odom": ODOM_FRAME},
        "topics": {topic: {"type": t, "description": d} for topic, (t, d) in topics.items()},
        "labels": [{"id": i, "name": name.lower()} for i, name in enumerate(KITTI_TYPES)],
    }
    return "# Written by `mmfusion import kitti` (ros_mmfusion); see docs/datasets.md.\n" + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=None, width=120)


def import_kitti(root: str | Path, out: str | Path, *, layout: str = "auto", rate: float = 10.0,
                 max_frames: int | None = None, progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Write the KITTI folder ``root`` as a rosbag2 (MCAP) directory ``out`` (which must not exist, or be empty) with
    ``calibration.yaml`` (the first frame's calibration) and ``dataset.yaml``. ``layout``: ``object``, ``raw`` or
    ``auto``; ``rate`` (Hz) stamps object-layout frames. Every input file is checked before anything is written
    (ConfigError naming the first missing one). ``progress(done, total)`` after every frame."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ros_mmfusion.core.sim.recorder import SimMessages, _qos

    root, out = Path(root), Path(out)
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of auto, {', '.join(LAYOUTS)}, got {layout!r}")
    if not 0.1 <= rate <= 100.0:
        raise ConfigError(f"rate must be between 0.1 and 100 Hz, got {rate}")
    frames = object_frames(root, rate, max_frames=max_frames) if layout == "object" else raw_frames(root, max_frames)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty directory")
    if out.is_dir():
        out.rmdir()
    started = time.perf_counter()
    topics = {t: v for t, v in TOPICS.items()
              if (t != "/tf" or frames[0].imu_pose is not None)
              and (not t.startswith("/ground_truth") or frames[0].labels is not None)}
    msgs = SimMessages(None, "32FC1")
    store = msgs.store
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    changes: list[str] = []
    counts = dict.fromkeys(topics, 0)
    try:
        conns = {t: writer.add_connection(t, msgtype, typestore=store, offered_qos_profiles=[_qos(t in STATIC_TOPICS)])
                 for t, (msgtype, _) in topics.items()}

        def write(topic: str, message, stamp_ns: int) -> None:
            writer.write(conns[topic], stamp_ns, store.serialize_cdr(message, topics[topic][0]))
            counts[topic] += 1

        first = min(frames[0].image_stamp_ns, frames[0].cloud_stamp_ns)
        if "/ground_truth/label_info" in topics:
            classes = [msgs.new("vision_msgs/msg/VisionClass", class_id=i, class_name=name.lower())
                       for i, name in enumerate(KITTI_TYPES)]
            write("/ground_truth/label_info", msgs.new("vision_msgs/msg/LabelInfo",
                                                       header=msgs.header(first, CAMERA_FRAME),
                                                       class_map=classes, threshold=0.0), first)
        current = None
        for index, frame in enumerate(frames):
            stamp = min(frame.image_stamp_ns, frame.cloud_stamp_ns)
            if frame.calibration is not current:
                if current is not None:
                    changes.append(frame.name)
                current = frame.calibration
                transforms = [msgs.transform_stamped(stamp, parent, child, T)
                              for parent, child, T in static_transforms(current)]
                write("/tf_static", msgs.new("tf2_msgs/msg/TFMessage", transforms=transforms), stamp)
            if frame.imu_pose is not None and current.T_velo_imu is not None:
                T_odom_base = frame.imu_pose @ current.T_velo_imu.inverse()  # base_link = velo_link
                write("/tf", msgs.new("tf2_msgs/msg/TFMessage", transforms=[
                    msgs.transform_stamped(frame.cloud_stamp_ns, ODOM_FRAME, BASE_FRAME, T_odom_base)]),
                      frame.cloud_stamp_ns)
            camera = camera_calibration(current)
            for topic, message in frame_messages(msgs, frame, camera):
                write(topic, message, message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec)
            if progress is not None:
                progress(index + 1, len(frames))
    finally:
        writer.close()
    (out / "calibration.yaml").write_text(calibration_yaml(frames[0].calibration))
    (out / DATASET_FILE).write_text(_dataset_yaml(root, layout, frames, topics, changes))
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return ImportSummary(out, layout, len(frames), counts, len(changes) + 1, time.perf_counter() - started, size)
