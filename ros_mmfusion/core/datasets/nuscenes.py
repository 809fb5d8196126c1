"""nuScenes samples (as mmdetection3d's info files describe them) -> rosbag2, ROS-free (``mmfusion import nuscenes``).

Input: a folder with an info file in JSON (``sample.json`` by default; mmdetection3d's ``nuscenes_infos_*.pkl``
converted to JSON: ``{"metainfo": {"categories": {name: id}}, "data_list": [sample, ...]}``), and the files it names:
per sample six camera JPEGs (``images.<CAM>.img_path``) and the ``LIDAR_TOP`` sweep (``lidar_points.lidar_path``,
``.pcd.bin``: float32 x, y, z, intensity, ring, 5 values per point). Each file is looked up beside the info file, then
in nuScenes' own layout ``samples/<CHANNEL>/<name>``. Per sample the info gives, as 4x4 row-major matrices (metres):
``ego2global`` (at the LiDAR's stamp), ``lidar_points.lidar2ego``, per camera ``cam2ego``, ``lidar2cam`` (camera <-
LiDAR *including the ego motion between the two stamps*: mmdetection3d chains camera <- ego(t_cam) <- global <-
ego(t_lidar) <- LiDAR) and ``cam2img`` (3x3 intrinsics of the undistorted image), and ``instances``: 3D boxes
``bbox_3d`` = x, y, z (box centre), dx, dy, dz (length, width, height), yaw (about z, from +x) in the LiDAR frame,
with ``bbox_label_3d`` indexing ``metainfo.categories`` (-1, a category outside the detection classes, is left out
as mmdetection3d ignores it). ``cam_instances`` (2D boxes per camera) are not written;
the tests use them.

Frames are nuScenes' own: ``map`` (nuScenes' global frame) -> ``base_link`` (the ego vehicle) -> ``LIDAR_TOP``
(x right, y forward, z up for this rig) and ``CAM_FRONT``, ``CAM_FRONT_RIGHT``, ... Each camera's
calibrated-sensor frame already is an optical frame (x right, y down, z forward; the test checks it on the sample),
so ``base_link -> CAM_*`` is ``cam2ego`` as it is and no ``*_optical`` frame is added.

Output (see :data:`TOPICS`; the naming of Foxglove's nuScenes converter, with the camera images on image_transport's
``<base>/compressed`` so ROS image_transport and the suite's ``compressed`` image inputs find them): per camera
``/<CAM>/image_rect/compressed`` (sensor_msgs/CompressedImage, the dataset's JPEG bytes unchanged) and
``/<CAM>/camera_info``; ``/LIDAR_TOP`` (PointCloud2, x y z intensity ring, float32 each: the file's 20 bytes per
point); ``/tf_static`` (base_link -> LIDAR_TOP and every camera, once, transient local); ``/tf`` (map -> base_link at
the LiDAR's stamp and at every camera's stamp, the latter recovered from ``lidar2cam`` as ``ego2global @ lidar2ego @
inv(lidar2cam) @ inv(cam2ego)``, so a time-travelling lookup camera(t_cam) <- map <- LiDAR(t_lidar) gives
mmdetection3d's ``lidar2cam``); ``/ground_truth/boxes`` (vision_msgs/Detection3DArray in LIDAR_TOP, class names as
nuScenes' detection classes). Every message carries its own sensor's stamp (the dataset's microseconds).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion import __version__
from ros_mmfusion.core.bagio import is_bag_written_by
from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.geometry import PinholeCamera, Transform, yaw_to_quaternion

GENERATOR = "ros_mmfusion import nuscenes"
MARKER_FILE = "dataset.yaml"
INFO_FILE = "sample.json"
MAP_FRAME = "map"
BASE_FRAME = "base_link"
LIDAR = "LIDAR_TOP"
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
"""nuScenes' six cameras, in the order mmdetection3d's info files list them (also the painting order of the preset)."""
POINT_FEATURES = ("x", "y", "z", "intensity", "ring")
POINT_DTYPE = np.dtype([(name, "<f4") for name in POINT_FEATURES])
"""One LIDAR_TOP point as the ``.pcd.bin`` file and the bag's PointCloud2 hold it: 5 float32, 20 bytes."""
JPEG_FORMAT = "rgb8; jpeg compressed bgr8"
"""CompressedImage.format of the camera images (image_transport's compressed transport's spelling)."""


def image_topic(camera: str) -> str:
    """The CompressedImage topic of ``camera`` (base topic ``/<CAM>/image_rect``, transport ``compressed``)."""
    return f"/{camera}/image_rect/compressed"


def camera_info_topic(camera: str) -> str:
    return f"/{camera}/camera_info"


LIDAR_TOPIC = f"/{LIDAR}"
BOXES_TOPIC = "/ground_truth/boxes"
STATIC_TOPICS = ("/tf_static",)
TOPICS: dict[str, tuple[str, str]] = {
    **{topic: entry for camera in CAMERAS for topic, entry in (
        (image_topic(camera), ("sensor_msgs/msg/CompressedImage", f"{camera} JPEG as recorded (undistorted), "
                                                                   f"frame {camera} (optical)")),
        (camera_info_topic(camera), ("sensor_msgs/msg/CameraInfo", f"{camera} intrinsics (cam2img), no distortion")))},
    LIDAR_TOPIC: ("sensor_msgs/msg/PointCloud2", "x y z intensity ring, float32 each (5 per point); frame LIDAR_TOP"),
    "/tf": ("tf2_msgs/msg/TFMessage", "map -> base_link at the LiDAR's and at each camera's stamp"),
    "/tf_static": ("tf2_msgs/msg/TFMessage", "base_link -> LIDAR_TOP and CAM_*; once, transient local"),
    BOXES_TOPIC: ("vision_msgs/msg/Detection3DArray", "annotated 3D boxes (nuScenes detection classes); LIDAR_TOP"),
}


# ------------------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True, eq=False)
class CameraInstance:
    """A 2D annotation of one camera (``cam_instances``): ``label`` name, ``bbox`` x1 y1 x2 y2 (pixels), the
    projected 3D centre ``center_2d`` (pixels) and its ``depth`` (metres)."""

    label: str
    bbox: np.ndarray
    center_2d: np.ndarray
    depth: float


@dataclass(frozen=True, eq=False)
class NuScenesCamera:
    """One camera of a sample: the JPEG, its intrinsics (``camera``, undistorted), ``T_ego_cam`` (base_link <-
    optical frame), ``T_cam_lidar`` (mmdetection3d's ``lidar2cam``, ego motion included) and its stamp."""

    name: str
    image_path: Path
    camera: PinholeCamera
    T_ego_cam: Transform
    T_cam_lidar: Transform
    stamp_ns: int
    instances: tuple[CameraInstance, ...] = ()

    @property
    def frame_id(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Box3D:
    """An annotated box in the LiDAR frame: ``center`` (3,) metres, ``size`` dx dy dz (length along the heading,
    width, height), ``yaw`` radians about +z from +x, ``label`` (class name), LiDAR points inside it."""

    center: np.ndarray
    size: np.ndarray
    yaw: float
    label: str
    num_lidar_pts: int = -1

    def corners(self) -> np.ndarray:
        """(8, 3) corners in the LiDAR frame: bottom face first (counter-clockwise from front-left), then top."""
        dx, dy, dz = np.asarray(self.size, dtype=np.float64) / 2.0
        local = np.array([[sx * dx, sy * dy, sz * dz] for sz in (-1, 1) for sx, sy in
                          ((1, 1), (-1, 1), (-1, -1), (1, -1))])
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return local @ rot.T + np.asarray(self.center, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class NuScenesSample:
    """One nuScenes sample (key frame): the LiDAR sweep, six cameras and the boxes."""

    token: str
    stamp_ns: int
    lidar_path: Path
    T_ego_lidar: Transform
    T_global_ego: Transform
    cameras: dict[str, NuScenesCamera]
    boxes: tuple[Box3D, ...] = ()

    def points(self) -> np.ndarray:
        """The sweep as an ``(N,)`` :data:`POINT_DTYPE` array (LiDAR frame, metres; intensity 0..255; ring 0..31)."""
        return load_points(self.lidar_path)

    def T_global_ego_at(self, camera: str) -> Transform:
        """map <- base_link at ``camera``'s stamp, recovered from its ``lidar2cam`` (see the module docstring)."""
        cam = self.cameras[camera]
        return self.T_global_ego @ self.T_ego_lidar @ cam.T_cam_lidar.inverse() @ cam.T_ego_cam.inverse()

    def T_cam_lidar_static(self, camera: str) -> Transform:
        """camera <- LiDAR through base_link alone (``/tf_static``), ignoring the ego motion between the stamps."""
        return self.cameras[camera].T_ego_cam.inverse() @ self.T_ego_lidar


def load_points(path: str | Path) -> np.ndarray:
    """A ``.pcd.bin`` sweep as an ``(N,)`` :data:`POINT_DTYPE` array; ConfigError naming the file when its size is
    not a whole number of 5-float points."""
    path = Path(path)
    raw = np.fromfile(path, dtype="<f4")
    if raw.size % len(POINT_FEATURES):
        raise ConfigError(f"{path}: {path.stat().st_size} bytes is not a whole number of {len(POINT_FEATURES)}-float "
                          f"points ({', '.join(POINT_FEATURES)})")
    return raw.view(POINT_DTYPE).copy()


def _matrix(value: Any, shape: tuple[int, int], where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = np.zeros(0)
    if m.shape != shape or not np.isfinite(m).all():
        raise ConfigError(f"{where}: expected a finite {shape[0]}x{shape[1]} matrix")
    return m


def _rigid(value: Any, where: str) -> Transform:
    m = _matrix(value, (4, 4), where)
    rot = m[:3, :3]
    if np.abs(rot @ rot.T - np.eye(3)).max() > 1e-4 or np.linalg.det(rot) < 0:
        raise ConfigError(f"{where}: not a rigid transform (rotation not orthonormal)")
    u, _, vt = np.linalg.svd(rot)  # float32 round-off of the info file: the nearest rotation
    return Transform(u @ vt, m[:3, 3].copy())


def _stamp_ns(seconds: Any, where: str) -> int:
    if not isinstance(seconds, (int, float)) or not np.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{where}: expected a timestamp in seconds, got {seconds!r}")
    return int(round(float(seconds) * 1e6)) * 1000  # nuScenes stamps are whole microseconds


def find_file(root: Path, name: str, channel: str, info: Path) -> Path:
    """``name`` beside the info file, else in nuScenes' ``samples/<channel>/``; ConfigError naming it otherwise."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{info}: {channel} names no file")
    candidates = [root / name, root / "samples" / channel / Path(name).name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{candidates[0]}: missing ({channel} file named by {info.name}; also looked in "
                      f"{candidates[1].parent})")


def read_samples(path: str | Path) -> list[NuScenesSample]:
    """The samples of a dataset folder (its ``sample.json``) or of an info JSON file, in time order.

    ConfigError (one line, naming the file) for a missing folder, info file, image or sweep, or an info file that
    is not mmdetection3d's layout.
    """
    path = Path(path)
    info = path / INFO_FILE if path.is_dir() else path
    if not path.exists():
        raise ConfigError(f"{path}: no such dataset folder or info file")
    if not info.is_file():
        raise ConfigError(f"{info}: missing (the info file of the nuScenes folder {path})")
    try:
        data = json.loads(info.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{info}: not a readable JSON info file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data_list"), list):
        raise ConfigError(f"{info}: not an mmdetection3d info file (no data_list)")
    categories = (data.get("metainfo") or {}).get("categories") or {}
    names = {int(v): str(k) for k, v in categories.items()} if isinstance(categories, dict) else {}
    if not names:
        raise ConfigError(f"{info}: metainfo.categories is missing: the box labels cannot be named")
    if not data["data_list"]:
        raise ConfigError(f"{info}: data_list holds no sample")
    samples = [_sample(entry, i, names, info) for i, entry in enumerate(data["data_list"])]
    return sorted(samples, key=lambda s: s.stamp_ns)


def _sample(entry: Any, index: int, names: dict[int, str], info: Path) -> NuScenesSample:
    where = f"{info.name} data_list[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{info}: {where} is not an object")
    root = info.parent
    try:
        lidar = entry["lidar_points"]
        images = entry["images"]
    except (KeyError, TypeError):
        raise ConfigError(f"{info}: {where} has no lidar_points or images") from None
    n_feats = lidar.get("num_pts_feats", len(POINT_FEATURES))
    if n_feats != len(POINT_FEATURES):
        raise ConfigError(f"{info}: {where}: num_pts_feats {n_feats}; LIDAR_TOP sweeps have 5 (x y z intensity ring)")
    missing = [c for c in CAMERAS if c not in images]
    if missing:
        raise ConfigError(f"{info}: {where} lacks the cameras {', '.join(missing)}")
    cam_instances = entry.get("cam_instances") or {}
    cameras = {}
    for name in CAMERAS:
        cam = images[name]
        image_path = find_file(root, cam.get("img_path"), name, info)
        width, height = jpeg_size(image_path)
        k = _matrix(cam.get("cam2img"), (3, 3), f"{info}: {where} {name} cam2img")
        instances = tuple(CameraInstance(names.get(int(i.get("bbox_label", -1)), "unknown"),
                                         np.asarray(i["bbox"], np.float64), np.asarray(i["center_2d"], np.float64),
                                         float(i["depth"]))
                          for i in cam_instances.get(name, []) if {"bbox", "center_2d", "depth"} <= set(i))
        cameras[name] = NuScenesCamera(
            name, image_path, PinholeCamera(k=k, width=width, height=height),
            _rigid(cam.get("cam2ego"), f"{info}: {where} {name} cam2ego"),
            _rigid(cam.get("lidar2cam"), f"{info}: {where} {name} lidar2cam"),
            _stamp_ns(cam.get("timestamp"), f"{info}: {where} {name} timestamp"), instances)
    boxes = []
    for j, inst in enumerate(entry.get("instances") or []):
        box = inst.get("bbox_3d") if isinstance(inst, dict) else None
        label = inst.get("bbox_label_3d") if isinstance(inst, dict) else None
        if label == -1:  # a category outside the detection classes (animal, debris, ...): mmdetection3d ignores it
            continue
        if box is None or len(box) != 7 or label not in names:
            raise ConfigError(f"{info}: {where} instances[{j}]: expected bbox_3d (7 numbers) and a bbox_label_3d "
                              f"of metainfo.categories")
        values = np.asarray(box, dtype=np.float64)
        boxes.append(Box3D(values[:3], values[3:6], float(values[6]), names[label],
                           int(inst.get("num_lidar_pts", -1))))
    return NuScenesSample(
        token=str(entry.get("token", index)), stamp_ns=_stamp_ns(entry.get("timestamp"), f"{info}: {where} timestamp"),
        lidar_path=find_file(root, lidar.get("lidar_path"), LIDAR, info),
        T_ego_lidar=_rigid(lidar.get("lidar2ego"), f"{info}: {where} lidar2ego"),
        T_global_ego=_rigid(entry.get("ego2global"), f"{info}: {where} ego2global"),
        cameras=cameras, boxes=tuple(boxes))


def jpeg_size(path: Path) -> tuple[int, int]:
    """(width, height) of a JPEG from its header; ConfigError naming the file when it is no JPEG."""
    from ros_mmfusion.core.codec._headers import image_header

    try:
        with open(path, "rb") as f:
            head = np.frombuffer(f.read(1 << 16), np.uint8)
        header = image_header(head, str(path), "jpeg")
    except (OSError, MessageFormatError) as exc:
        raise ConfigError(f"{path}: not a readable JPEG ({exc})") from None
    if header.codec != "jpeg":
        raise ConfigError(f"{path}: a {header.codec} image, expected a JPEG")
    return header.width, header.height


# ------------------------------------------------------------------------------------------------------ writing


@dataclass
class ImportSummary:
    """What :func:`write_bag` wrote: the bag, samples, per-topic message counts, wall time, bytes."""

    bag: Path
    samples: int
    messages: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    bytes: int = 0


def is_imported_bag(path: Path) -> bool:
    """Whether ``path`` is a bag directory :func:`write_bag` wrote (its marker file names this generator and it holds
    nothing but the bag)."""
    return is_bag_written_by(path, MARKER_FILE, GENERATOR)


def _marker_text(samples: Sequence[NuScenesSample], source: Path, storage: str) -> str:
    import yaml

    data = {
        "generator": GENERATOR, "version": __version__, "dataset": "nuscenes", "source": str(source),
        "storage": storage, "samples": [s.token for s in samples],
        "frame_ids": {"map": MAP_FRAME, "base": BASE_FRAME, "lidar": LIDAR, **{c.lower(): c for c in CAMERAS}},
        "topics": {topic: {"type": t, "description": d} for topic, (t, d) in TOPICS.items()},
        "licence": "nuScenes data: CC BY-NC-SA 4.0 (non-commercial), see https://www.nuscenes.org/terms-of-use",
    }
    return "# Written by `mmfusion import nuscenes` (ros_mmfusion); see docs/datasets.md.\n" + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=None, width=120)


class _Builder:
    """The rosbags messages of nuScenes samples, through the simulator's message builders (``SimMessages``)."""

    def __init__(self) -> None:
        from ros_mmfusion.core.sim.recorder import SimMessages

        self.m = SimMessages(None, "32FC1")  # the builders used here need no simulation
        self.store = self.m.store

    def tf_static(self, sample: NuScenesSample, stamp_ns: int):
        transforms = [self.m.transform_stamped(stamp_ns, BASE_FRAME, LIDAR, sample.T_ego_lidar)]
        transforms += [self.m.transform_stamped(stamp_ns, BASE_FRAME, c.frame_id, c.T_ego_cam)
                       for c in sample.cameras.values()]
        return self.m.new("tf2_msgs/msg/TFMessage", transforms=transforms)

    def tf(self, stamp_ns: int, T_global_ego: Transform):
        return self.m.new("tf2_msgs/msg/TFMessage",
                          transforms=[self.m.transform_stamped(stamp_ns, MAP_FRAME, BASE_FRAME, T_global_ego)])

    def image(self, cam: NuScenesCamera):
        data = np.frombuffer(cam.image_path.read_bytes(), np.uint8)
        return self.m.new("sensor_msgs/msg/CompressedImage", header=self.m.header(cam.stamp_ns, cam.frame_id),
                          format=JPEG_FORMAT, data=data)

    def camera_info(self, cam: NuScenesCamera):
        return self.m.camera_info(cam.stamp_ns, cam)

    def boxes(self, sample: NuScenesSample):
        m, detections = self.m, []
        for i, box in enumerate(sample.boxes):
            q = yaw_to_quaternion(box.yaw)
            hyp = m.new("vision_msgs/msg/ObjectHypothesisWithPose",
                        hypothesis=m.new("vision_msgs/msg/ObjectHypothesis", class_id=box.label, score=1.0),
                        pose=m.new("geometry_msgs/msg/PoseWithCovariance", pose=m.pose(box.center, q),
                                   covariance=np.zeros(36)))
            bbox = m.new("vision_msgs/msg/BoundingBox3D", center=m.pose(box.center, q), size=m.vector3(box.size))
            detections.append(m.new("vision_msgs/msg/Detection3D", header=m.header(sample.stamp_ns, LIDAR),
                                    results=[hyp], bbox=bbox, id=str(i)))
        return m.new("vision_msgs/msg/Detection3DArray", header=m.header(sample.stamp_ns, LIDAR),
                     detections=detections)

    def messages(self, sample: NuScenesSample) -> list[tuple[int, str, Any]]:
        """(stamp, topic, message) of one sample, in stamp order (ties: the topic order of :data:`TOPICS`)."""
        out: list[tuple[int, str, Any]] = []
        for name, cam in sample.cameras.items():
            out.append((cam.stamp_ns, "/tf", self.tf(cam.stamp_ns, sample.T_global_ego_at(name))))
            out.append((cam.stamp_ns, camera_info_topic(name), self.camera_info(cam)))
            out.append((cam.stamp_ns, image_topic(name), self.image(cam)))
        out.append((sample.stamp_ns, "/tf", self.tf(sample.stamp_ns, sample.T_global_ego)))
        out.append((sample.stamp_ns, LIDAR_TOPIC, self.m.cloud(sample.stamp_ns, LIDAR, sample.points())))
        out.append((sample.stamp_ns, BOXES_TOPIC, self.boxes(sample)))
        order = {topic: i for i, topic in enumerate(TOPICS)}
        return sorted(out, key=lambda item: (item[0], order[item[1]]))


def _check_rig(samples: Sequence[NuScenesSample]) -> None:
    """``/tf_static`` holds one calibration: every sample must share the first one's (a sequence of one scene)."""
    first = samples[0]
    for s in samples[1:]:
        pairs = [(LIDAR, first.T_ego_lidar, s.T_ego_lidar)] + [
            (c, first.cameras[c].T_ego_cam, s.cameras[c].T_ego_cam) for c in CAMERAS]
        for name, a, b in pairs:
            if not np.allclose(a.matrix(), b.matrix(), atol=1e-5):
                raise ConfigError(f"sample {s.token}: the {name} extrinsic differs from sample {first.token}'s; "
                                  "import one scene (one vehicle calibration) per bag")


def write_bag(samples: Sequence[NuScenesSample], out: str | Path, *, storage: str = "mcap", source: str | Path = "",
              progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Write ``samples`` (one scene, time order) as the rosbag2 directory ``out`` (absent or empty).

    ``progress(done, total)`` is called after every sample. ConfigError for a bad storage or mixed calibrations.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ros_mmfusion.core.sim.recorder import _qos

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ConfigError(f"storage must be mcap or sqlite3, got {storage!r}")
    if not samples:
        raise ConfigError("no sample to import")
    _check_rig(samples)
    started = time.perf_counter()
    out = Path(out)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # rosbags creates the directory itself (OutputDirectory hands over an empty staging one)
    build = _Builder()
    writer = Writer(out, version=9, storage_plugin=plugins[storage])
    writer.open()
    (out / MARKER_FILE).write_text(_marker_text(samples, Path(source), storage))  # first: --overwrite recognises it
    counts = dict.fromkeys(TOPICS, 0)
    try:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=build.store,
                                              offered_qos_profiles=[_qos(topic in STATIC_TOPICS)])
                 for topic, (msgtype, _) in TOPICS.items()}

        def write(topic: str, message: Any, stamp_ns: int) -> None:
            writer.write(conns[topic], stamp_ns, build.store.serialize_cdr(message, TOPICS[topic][0]))
            counts[topic] += 1

        first = min(min(c.stamp_ns for c in samples[0].cameras.values()), samples[0].stamp_ns)
        write("/tf_static", build.tf_static(samples[0], first), first)
        for index, sample in enumerate(samples):
            for stamp, topic, message in build.messages(sample):
                write(topic, message, stamp)
            if progress is not None:
                progress(index + 1, len(samples))
    finally:
        writer.close()
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return ImportSummary(out, len(samples), counts, time.perf_counter() - started, size)
