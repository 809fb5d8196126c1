"""Record a simulation as a rosbag2 (MCAP or sqlite3) with ``rosbags``, plus its calibration and scenario files.

:func:`record` is the entry point (``mmfusion sim`` and ``make demo`` call it). The bag directory holds, besides
rosbag2's own ``metadata.yaml`` and storage file, ``calibration.yaml`` (:mod:`.calibration`) and ``scenario.yaml``
(what was generated, with which seed and settings, the label set and the topic table; it also marks the directory as
written by this generator, which is what ``overwrite=True`` checks before deleting anything).

Messages are serialized by the rosbags typestore of :func:`ros_mmfusion.core.bagio.typestore` (ROS 2 Jazzy plus the
suite's vision_msgs and tf2_msgs), connections carry the RIHS01 type hash, and every message of frame ``k`` has the
header stamp (and bag log time) of frame ``k``. ``/tf_static`` and ``/ground_truth/label_info`` are written once,
before frame 0, and offered transient-local (as a latched publisher would).

``record(..., convention=NAME)`` writes the same world as a simulator's bridge or a robot's drivers would publish it
(:mod:`ros_mmfusion.core.sim.conventions`): every message goes through :func:`convention_messages` (frames renamed in
every header, ``child_frame_id`` and transform, topic renamed or dropped, the convention's ``convert`` last), camera
images are built in the convention's encodings (:class:`SimMessages` ``encodings``), and ``scenario.yaml`` and
``calibration.yaml`` name the convention's topics and frames.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion import __version__
from ros_mmfusion.core import labels as L
from ros_mmfusion.core.codec.image import RGB_ENCODINGS, encode_compressed, encode_image
from ros_mmfusion.core.codec.pointcloud import encode_cloud
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.sim.calibration import write_calibration
from ros_mmfusion.core.sim.conventions import Convention, get_convention
from ros_mmfusion.core.sim.ego import EgoState
from ros_mmfusion.core.sim.simulator import SimFrame, Simulation

GENERATOR = "ros_mmfusion sim"
ODOM_FRAME = "odom"
BASE_FRAME = "base_link"

#: topic -> (message type, description) of everything a bag holds.
TOPICS: dict[str, tuple[str, str]] = {
    "/camera/color/image_raw": ("sensor_msgs/msg/Image", "rgb8 colour image"),
    "/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", "colour camera intrinsics"),
    "/camera/depth/image_rect_raw": ("sensor_msgs/msg/Image",
                                     "depth registered to colour: 32FC1 metres (NaN invalid) or 16UC1 mm (0 invalid)"),
    "/camera/depth/camera_info": ("sensor_msgs/msg/CameraInfo", "depth camera intrinsics (= colour)"),
    "/thermal/image_raw": ("sensor_msgs/msg/Image", "mono16 thermal, centikelvin (kelvin x 100), registered to colour"),
    "/thermal/camera_info": ("sensor_msgs/msg/CameraInfo", "thermal camera intrinsics (= colour)"),
    "/lidar/points": ("sensor_msgs/msg/PointCloud2", "x y z intensity float32, ring uint16; LiDAR frame"),
    "/odom": ("nav_msgs/msg/Odometry", "ground-truth odometry odom -> base_link (the ego trajectory)"),
    "/tf": ("tf2_msgs/msg/TFMessage", "odom -> base_link"),
    "/tf_static": ("tf2_msgs/msg/TFMessage", "base_link -> camera, thermal and LiDAR frames; once, transient local"),
    "/ground_truth/semantic": ("sensor_msgs/msg/Image", "mono8 class ids, aligned with the colour image"),
    "/ground_truth/instance": ("sensor_msgs/msg/Image", "mono16 instance ids (0: stuff), aligned with colour"),
    "/ground_truth/boxes": ("vision_msgs/msg/Detection3DArray", "3D boxes of objects with LiDAR returns; LiDAR frame"),
    "/ground_truth/points": ("sensor_msgs/msg/PointCloud2",
                             "x y z float32, label uint16, instance uint16; row for row the /lidar/points cloud"),
    "/ground_truth/label_info": ("vision_msgs/msg/LabelInfo", "class id -> name map; once, transient local"),
}
STATIC_TOPICS = ("/tf_static", "/ground_truth/label_info")
#: The camera image topics, which ``compressed`` recordings write as CompressedImage on ``<topic>/compressed``.
CAMERA_IMAGE_TOPICS = ("/camera/color/image_raw", "/camera/depth/image_rect_raw", "/thermal/image_raw")
#: The encodings each camera image can be written in (the first is the suite's own; depth: 32FC1 metres or 16UC1
#: millimetres, see :func:`depth_image`; thermal: centikelvin either way, mono16 and 16UC1 differ only in name).
IMAGE_ENCODINGS: dict[str, tuple[str, ...]] = {
    "/camera/color/image_raw": RGB_ENCODINGS,
    "/camera/depth/image_rect_raw": ("32FC1", "16UC1"),
    "/thermal/image_raw": ("mono16", "16UC1"),
}
COLOUR_CODECS = ("jpeg", "png")
"""Codecs of the colour image in a compressed recording (depth and thermal are always 16-bit PNG)."""


def topic_table(compressed: str | None = None) -> dict[str, tuple[str, str]]:
    """:data:`TOPICS`, or with ``compressed`` (the colour codec, one of :data:`COLOUR_CODECS`) the camera images
    as sensor_msgs/CompressedImage on ``<topic>/compressed`` (image_transport's naming), in the same order."""
    if compressed is None:
        return TOPICS
    if compressed not in COLOUR_CODECS:
        raise ConfigError(f"compressed colour codec must be one of {', '.join(COLOUR_CODECS)}, got {compressed!r}")
    described = {
        "/camera/color/image_raw": f"rgb8 colour image as {compressed.upper()} (format 'rgb8; {compressed} "
                                   "compressed bgr8')",
        "/camera/depth/image_rect_raw": "16UC1 depth (mm, 0 invalid) registered to colour, as 16-bit PNG (format "
                                        "'16UC1; png compressed mono16')",
        "/thermal/image_raw": "mono16 thermal, centikelvin, registered to colour, as 16-bit PNG (format "
                              "'mono16; png compressed mono16')",
    }
    return {(f"{topic}/compressed" if topic in described else topic):
            (("sensor_msgs/msg/CompressedImage", described[topic]) if topic in described else entry)
            for topic, entry in TOPICS.items()}

_CAMERA_TOPICS = {"color": "/camera/color", "depth": "/camera/depth", "thermal": "/thermal"}
GT_POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "<u2"), ("instance", "<u2")])


@dataclass
class RecordSummary:
    """What :func:`record` wrote: paths, frame and per-topic message counts, wall time, bag size."""

    bag: Path
    calibration: Path
    scenario: str
    frames: int
    messages: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    bytes: int = 0


def depth_image(depth_m: np.ndarray, encoding: str) -> np.ndarray:
    """Depth in ``encoding``: 32FC1 metres with NaN invalid, or 16UC1 millimetres with 0 invalid (REP-118)."""
    if encoding == "32FC1":
        return depth_m.astype(np.float32)
    if encoding == "16UC1":
        mm = np.where(np.isfinite(depth_m), np.rint(depth_m * 1000.0), 0.0)
        return np.clip(mm, 0, 65535).astype(np.uint16)
    raise ConfigError(f"depth encoding must be 32FC1 or 16UC1, got {encoding!r}")


def colour_image(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB image ``rgb`` in ``encoding``: rgb8, bgr8, or rgba8/bgra8 with opaque alpha."""
    if encoding not in RGB_ENCODINGS:
        raise ConfigError(f"colour encoding must be one of {', '.join(RGB_ENCODINGS)}, got {encoding!r}")
    channels = rgb if encoding.startswith("rgb") else rgb[:, :, ::-1]
    if encoding.endswith("a8"):
        channels = np.concatenate([channels, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(channels)


def check_encodings(encodings: Mapping[str, str]) -> None:
    """ConfigError unless every entry maps a camera image topic of :data:`IMAGE_ENCODINGS` to one of its encodings."""
    for topic, encoding in encodings.items():
        if topic not in IMAGE_ENCODINGS:
            raise ConfigError(f"{topic} is not a camera image topic; encodings apply to {', '.join(IMAGE_ENCODINGS)}")
        if encoding not in IMAGE_ENCODINGS[topic]:
            raise ConfigError(f"{topic} can be written as {', '.join(IMAGE_ENCODINGS[topic])}, not {encoding!r}")


def rename_frames(message: Any, rename: Callable[[str], str]) -> Any:
    """``message`` (a rosbags message object) with every ``frame_id`` and ``child_frame_id`` in it, at any depth
    (headers, transforms, detections), replaced by ``rename(frame)``; changed in place, and returned."""
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if f.name in ("frame_id", "child_frame_id") and isinstance(value, str):
            setattr(message, f.name, rename(value))
        elif dataclasses.is_dataclass(value):
            rename_frames(value, rename)
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            for item in value:
                rename_frames(item, rename)
    return message


def convention_messages(convention: Convention | None, topic: str, message: Any,
                        messages: SimMessages) -> list[tuple[str, Any]]:
    """The (topic, message) pairs the suite's ``topic`` and ``message`` are recorded as in ``convention`` (None: the
    suite's own layout, the pair itself): nothing when the convention drops the topic; otherwise the message with
    its frames renamed, on the convention's topic, or what the convention's ``convert`` makes of it."""
    if convention is None:
        return [(topic, message)]
    target = convention.topic(topic)
    if target is None:
        return []
    rename_frames(message, convention.frame)
    if convention.convert is None:
        return [(target, message)]
    return list(convention.convert(topic, message, messages))


def is_simulated_bag(path: Path) -> bool:
    """Whether ``path`` is a bag :func:`record` wrote (what ``mmfusion sim --overwrite`` may replace)."""
    from ros_mmfusion.core.bagio import is_bag_written_by

    return is_bag_written_by(path, "scenario.yaml", GENERATOR, ("calibration.yaml",))


def prepare_output(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a new bag: absent or an empty directory is fine; a bag this generator wrote is
    deleted when ``overwrite``; anything else is refused (ConfigError) and left untouched."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    entries = list(out.iterdir())
    if not entries:
        out.rmdir()
        return
    if not overwrite:
        raise ConfigError(f"--out {out} exists and is not empty; pass --overwrite to replace a bag written by "
                          "mmfusion sim, or choose another directory")
    if not is_simulated_bag(out):
        raise ConfigError(f"--out {out} is not a bag written by mmfusion sim (no matching scenario.yaml, or other "
                          "files in it); refusing to delete it")
    for entry in entries:
        entry.unlink()
    out.rmdir()


class SimMessages:
    """Builds the rosbags message objects of one simulation (the recorder writes them to bags, the simulated-robot
    node publishes them serialized)."""

    def __init__(self, sim: Simulation, depth_encoding: str, compressed: str | None = None,
                 encodings: Mapping[str, str] | None = None) -> None:
        """``encodings`` (suite camera image topic -> encoding, :data:`IMAGE_ENCODINGS`) overrides rgb8 colour,
        ``depth_encoding`` and mono16 thermal for raw images."""
        from ros_mmfusion.core.bagio import typestore

        encodings = dict(encodings or {})
        check_encodings(encodings)
        if encodings and compressed is not None:
            raise ConfigError("image encodings apply to raw images; a compressed recording has its own (see "
                              "topic_table)")
        depth_encoding = encodings.get("/camera/depth/image_rect_raw", depth_encoding)
        self.sim, self.depth_encoding, self.compressed = sim, depth_encoding, compressed
        self.colour_encoding = encodings.get("/camera/color/image_raw", "rgb8")
        self.thermal_encoding = encodings.get("/thermal/image_raw", "mono16")
        self.topics = topic_table(compressed)  # topic -> (message type, description)
        self.store = typestore()
        self.T = self.store.types

    def new(self, msgtype: str, **fields):
        return self.T[msgtype](**fields)

    def header(self, stamp_ns: int, frame_id: str):
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return self.new("std_msgs/msg/Header", stamp=self.new("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec),
                        frame_id=frame_id)

    def image(self, stamp_ns: int, frame_id: str, array: np.ndarray, encoding: str):
        f = encode_image(array, encoding)
        return self.new("sensor_msgs/msg/Image", header=self.header(stamp_ns, frame_id), height=f.height,
                        width=f.width, encoding=f.encoding, is_bigendian=int(f.is_bigendian), step=f.step, data=f.data)

    def camera_image(self, stamp_ns: int, frame_id: str, array: np.ndarray, encoding: str):
        """A camera image: an Image, or in a compressed recording a CompressedImage (colour in the chosen codec,
        16-bit and depth images as PNG, which keeps them exact)."""
        if self.compressed is None:
            return self.image(stamp_ns, frame_id, array, encoding)
        codec = self.compressed if array.ndim == 3 else "png"
        fmt, data = encode_compressed(array, codec, encoding=None if array.ndim == 3 else encoding)
        return self.new("sensor_msgs/msg/CompressedImage", header=self.header(stamp_ns, frame_id), format=fmt,
                        data=data)

    def cloud(self, stamp_ns: int, frame_id: str, points: np.ndarray):
        f = encode_cloud(points)
        fields = [self.new("sensor_msgs/msg/PointField", name=c.name, offset=c.offset, datatype=c.datatype,
                           count=c.count) for c in f.fields]
        return self.new("sensor_msgs/msg/PointCloud2", header=self.header(stamp_ns, frame_id), height=f.height,
                        width=f.width, fields=fields, is_bigendian=bool(f.is_bigendian), point_step=f.point_step,
                        row_step=f.row_step, data=f.data, is_dense=bool(f.is_dense))

    def camera_info(self, stamp_ns: int, sensor):
        cam = sensor.camera
        p = np.zeros((3, 4))
        p[:, :3] = cam.k
        d = cam.d if cam.d.size else np.zeros(5)
        roi = self.new("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.new("sensor_msgs/msg/CameraInfo", header=self.header(stamp_ns, sensor.frame_id), height=cam.height,
                        width=cam.width, distortion_model=cam.distortion_model, d=np.asarray(d, np.float64),
                        k=cam.k.ravel().astype(np.float64), r=np.eye(3).ravel(), p=p.ravel(), binning_x=0,
                        binning_y=0, roi=roi)

    def vector3(self, v):
        return self.new("geometry_msgs/msg/Vector3", x=float(v[0]), y=float(v[1]), z=float(v[2]))

    def quaternion(self, q):
        return self.new("geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))

    def pose(self, position, q):
        point = self.new("geometry_msgs/msg/Point", x=float(position[0]), y=float(position[1]), z=float(position[2]))
        return self.new("geometry_msgs/msg/Pose", position=point, orientation=self.quaternion(q))

    def transform_stamped(self, stamp_ns: int, parent: str, child: str, T: Transform):
        tf = self.new("geometry_msgs/msg/Transform", translation=self.vector3(T.translation),
                      rotation=self.quaternion(T.quaternion()))
        return self.new("geometry_msgs/msg/TransformStamped", header=self.header(stamp_ns, parent),
                        child_frame_id=child, transform=tf)

    def tf_static(self, stamp_ns: int):
        rig = self.sim.rig
        transforms = [self.transform_stamped(stamp_ns, BASE_FRAME, s.frame_id, s.T_base_sensor) for s in rig.cameras]
        transforms.append(self.transform_stamped(stamp_ns, BASE_FRAME, rig.lidar.frame_id, rig.lidar.T_base_sensor))
        return self.new("tf2_msgs/msg/TFMessage", transforms=transforms)

    def label_info(self, stamp_ns: int):
        classes = [self.new("vision_msgs/msg/VisionClass", class_id=label.id, class_name=label.name)
                   for label in L.LABELS]
        return self.new("vision_msgs/msg/LabelInfo", header=self.header(stamp_ns, self.sim.rig.color.frame_id),
                        class_map=classes, threshold=0.0)

    def odometry(self, stamp_ns: int, ego: EgoState):
        """``nav_msgs/Odometry`` odom -> base_link of ``ego`` (pose and body-frame twist)."""
        cov = np.zeros(36)
        cov[[0, 7, 14, 21, 28, 35]] = 1e-6
        pose = self.new("geometry_msgs/msg/PoseWithCovariance",
                        pose=self.pose(ego.T_odom_base.translation, ego.T_odom_base.quaternion()), covariance=cov)
        twist = self.new("geometry_msgs/msg/Twist", linear=self.vector3(ego.linear), angular=self.vector3(ego.angular))
        return self.new("nav_msgs/msg/Odometry", header=self.header(stamp_ns, ODOM_FRAME),
                        child_frame_id=BASE_FRAME, pose=pose,
                        twist=self.new("geometry_msgs/msg/TwistWithCovariance", twist=twist, covariance=cov.copy()))

    def boxes(self, frame: SimFrame):
        frame_id = self.sim.rig.lidar.frame_id
        detections = []
        for box in frame.boxes:
            pose = self.pose(box.center, box.quaternion)
            hyp = self.new("vision_msgs/msg/ObjectHypothesisWithPose",
                           hypothesis=self.new("vision_msgs/msg/ObjectHypothesis", class_id=box.class_name, score=1.0),
                           pose=self.new("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=np.zeros(36)))
            bbox = self.new("vision_msgs/msg/BoundingBox3D", center=self.pose(box.center, box.quaternion),
                            size=self.vector3(box.size))
            detections.append(self.new("vision_msgs/msg/Detection3D", header=self.header(frame.stamp_ns, frame_id),
                                       results=[hyp], bbox=bbox, id=str(box.instance_id)))
        return self.new("vision_msgs/msg/Detection3DArray", header=self.header(frame.stamp_ns, frame_id),
                        detections=detections)

    def frame_messages(self, frame: SimFrame, topics: Collection[str] | None = None) -> list[tuple[str, object]]:
        """(topic, message) of every per-frame topic (or only those in ``topics``), in a fixed order; camera images
        on ``<topic>/compressed`` in a compressed recording (``self.topics`` names them)."""
        rig, s, cam = self.sim.rig, frame.stamp_ns, frame.camera
        lidar_frame = rig.lidar.frame_id

        def gt_points():
            gt = np.zeros(len(frame.lidar.points), GT_POINT_DTYPE)
            for name in ("x", "y", "z"):
                gt[name] = frame.lidar.points[name]
            gt["label"], gt["instance"] = frame.lidar.labels, frame.lidar.instances
            return self.cloud(s, lidar_frame, gt)

        builders: list[tuple[str, Callable[[], object]]] = [
            ("/camera/color/image_raw", lambda: self.camera_image(
                s, rig.color.frame_id, colour_image(cam.rgb, self.colour_encoding), self.colour_encoding)),
            ("/camera/color/camera_info", lambda: self.camera_info(s, rig.color)),
            ("/camera/depth/image_rect_raw", lambda: self.camera_image(s, rig.depth.frame_id,
                                                                       depth_image(cam.depth, self.depth_encoding),
                                                                       self.depth_encoding)),
            ("/camera/depth/camera_info", lambda: self.camera_info(s, rig.depth)),
            ("/thermal/image_raw", lambda: self.camera_image(s, rig.thermal.frame_id, cam.thermal,
                                                             self.thermal_encoding)),
            ("/thermal/camera_info", lambda: self.camera_info(s, rig.thermal)),
            ("/lidar/points", lambda: self.cloud(s, lidar_frame, frame.lidar.points)),
            ("/odom", lambda: self.odometry(s, frame.ego)),
            ("/tf", lambda: self.tf(s, frame.ego.T_odom_base)),
            ("/ground_truth/semantic", lambda: self.image(s, rig.color.frame_id, cam.semantic, "mono8")),
            ("/ground_truth/instance", lambda: self.image(s, rig.color.frame_id, cam.instance, "mono16")),
            ("/ground_truth/boxes", lambda: self.boxes(frame)),
            ("/ground_truth/points", gt_points),
        ]
        if self.compressed is not None:
            builders = [(f"{topic}/compressed" if topic in CAMERA_IMAGE_TOPICS else topic, build)
                        for topic, build in builders]
        return [(topic, build()) for topic, build in builders if topics is None or topic in topics]

    def tf(self, stamp_ns: int, T_odom_base: Transform):
        """The ``/tf`` message of one instant: odom -> base_link."""
        return self.new("tf2_msgs/msg/TFMessage",
                        transforms=[self.transform_stamped(stamp_ns, ODOM_FRAME, BASE_FRAME, T_odom_base)])


def _qos(transient_local: bool):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 1 if transient_local else 10, QosReliability.RELIABLE,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)


def _scenario_yaml(sim: Simulation, frames: int, storage: str, depth_encoding: str,
                   compressed: str | None = None, convention: Convention | None = None,
                   topics: Mapping[str, tuple[str, str]] | None = None) -> str:
    """The text of ``scenario.yaml``; ``topics`` (topic -> (type, description)) defaults to the suite's table."""
    import yaml

    rename = convention.frame if convention is not None else (lambda frame: frame)
    data = {
        "generator": GENERATOR,
        "version": __version__,
        "scenario": sim.scenario.name,
        "description": sim.scenario.description,
        "seed": sim.seed,
        "frames": frames,
        "rate_hz": sim.rate,
        "size": [sim.size[0], sim.size[1]],
        "beams": sim.beams,
        "storage": storage,
        "depth_encoding": depth_encoding,
        **({"compressed": compressed} if compressed is not None else {}),
        **({"convention": convention.name} if convention is not None else {}),
        "start_stamp_ns": sim.start_stamp_ns,
        "frame_ids": {key: rename(frame) for key, frame in (
            ("odom", ODOM_FRAME), ("base", BASE_FRAME), ("lidar", sim.rig.lidar.frame_id),
            *((f"camera_{c.name}", c.frame_id) for c in sim.rig.cameras))},
        "topics": {topic: {"type": msgtype, "description": text}
                   for topic, (msgtype, text) in (topics or topic_table(compressed)).items()},
        "labels": [{"id": lb.id, "name": lb.name, "color": list(lb.color), "thing": lb.is_thing} for lb in L.LABELS],
    }
    return "# Written by `mmfusion sim` (ros_mmfusion); see docs/world.md.\n" + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=None, width=120)


def convention_table(convention: Convention) -> dict[str, tuple[str, str]]:
    """The topic table (topic -> (message type, description)) of a recording in ``convention``, before its
    ``convert`` adds or retypes topics: the suite's topics renamed, the dropped ones left out."""
    table = {}
    for topic, (msgtype, text) in TOPICS.items():
        target = convention.topic(topic)
        if target is not None:
            encoding = convention.encodings.get(topic)
            table[target] = (msgtype, convention.descriptions.get(topic) or (
                f"{text}; written as {encoding}" if encoding else text) + f" (the suite's {topic})")
    return table


def record(scenario: str, out: str | Path, frames: int, *, seed: int = 0, size: tuple[int, int] = (640, 480),
           beams: int = 32, rate: float = 10.0, storage: str = "mcap", depth_encoding: str = "32FC1",
           overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
           compressed: str | None = None, convention: str | Convention | None = None) -> RecordSummary:
    """Simulate ``frames`` frames of ``scenario`` and write them as a rosbag2 directory ``out``.

    ``storage`` is "mcap" or "sqlite3"; ``depth_encoding`` "32FC1" (metres) or "16UC1" (millimetres).
    ``compressed`` ("jpeg" or "png", the colour codec) writes the camera images as sensor_msgs/CompressedImage on
    ``<topic>/compressed`` instead of Image on ``<topic>`` (:func:`topic_table`): depth and thermal as lossless 16-bit
    PNG, so depth must be 16UC1; the ground truth stays raw. ``convention`` (a name of
    :mod:`ros_mmfusion.core.sim.conventions`, or a Convention) records the topics, frames and image encodings as that
    simulator or driver publishes them (its depth encoding replaces ``depth_encoding``); it cannot be combined with
    ``compressed``. ``out`` must not exist, be empty, or (with ``overwrite``) be a bag this function wrote.
    ``progress(done, total)`` is called after every frame. Raises ConfigError for bad arguments.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    if frames <= 0:
        raise ConfigError(f"frames must be positive, got {frames}")
    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ConfigError(f"storage must be mcap or sqlite3, got {storage!r}")
    if isinstance(convention, str):
        convention = get_convention(convention)
    if convention is not None:
        if compressed is not None:
            raise ConfigError(f"convention {convention.name!r} sets the image encodings; it cannot be combined with "
                              "compressed images")
        check_encodings(convention.encodings)
        depth_encoding = convention.encodings.get("/camera/depth/image_rect_raw", depth_encoding)
    depth_image(np.zeros((1, 1), np.float32), depth_encoding)  # validates the encoding
    topics = topic_table(compressed) if convention is None else convention_table(convention)  # validates the codec
    if compressed is not None and depth_encoding != "16UC1":
        raise ConfigError(f"compressed depth is a 16-bit PNG of millimetres: depth encoding must be 16UC1, "
                          f"got {depth_encoding!r}")
    sim = Simulation(scenario, seed=seed, size=size, beams=beams, rate=rate)
    out = Path(out)
    prepare_output(out, overwrite)
    started = time.perf_counter()
    msgs = SimMessages(sim, depth_encoding, compressed, convention.encodings if convention is not None else None)
    store = msgs.store
    writer = Writer(out, version=9, storage_plugin=plugins[storage])
    writer.open()
    # The marker first: an interrupted recording is still recognisably ours, so --overwrite can replace it.
    scenario_file = out / "scenario.yaml"
    scenario_file.write_text(_scenario_yaml(sim, frames, storage, depth_encoding, compressed, convention, topics))
    static = {convention.topic(t) if convention is not None else t for t in STATIC_TOPICS}
    # the suite's layout declares every topic up front; a convention's as written (its convert may add or retype)
    written: dict[str, tuple[str, str]] = dict(topics) if convention is None else {}
    counts = {topic: 0 for topic in written}
    try:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=store,
                                              offered_qos_profiles=[_qos(topic in static)])
                 for topic, (msgtype, _) in written.items()}

        def write(suite_topic: str, message, stamp_ns: int) -> None:
            for topic, converted in convention_messages(convention, suite_topic, message, msgs):
                msgtype = converted.__msgtype__
                if topic not in conns:
                    known = topics.get(topic)
                    written[topic] = (msgtype, known[1] if known is not None and known[0] == msgtype else
                                      f"written by the {convention.name} convention from the suite's {suite_topic}")
                    conns[topic] = writer.add_connection(topic, msgtype, typestore=store,
                                                         offered_qos_profiles=[_qos(topic in static)])
                    counts[topic] = 0
                elif conns[topic].msgtype != msgtype:
                    raise ConfigError(f"convention {convention.name!r} writes both {conns[topic].msgtype} and "
                                      f"{msgtype} on {topic}")
                writer.write(conns[topic], stamp_ns, store.serialize_cdr(converted, msgtype))
                counts[topic] += 1

        t0 = sim.stamp_ns(0)
        write("/tf_static", msgs.tf_static(t0), t0)
        write("/ground_truth/label_info", msgs.label_info(t0), t0)
        for index in range(frames):
            frame = sim.frame(index)
            for topic, message in msgs.frame_messages(frame):
                write(topic, message, frame.stamp_ns)
            if progress is not None:
                progress(index + 1, frames)
    finally:
        writer.close()
    if convention is not None:  # the table as written
        scenario_file.write_text(_scenario_yaml(sim, frames, storage, depth_encoding, compressed, convention,
                                                written))
    calibration_topics = {
        **{name: f"{prefix}/{'image_rect_raw' if name == 'depth' else 'image_raw'}"
           for name, prefix in _CAMERA_TOPICS.items()},
        **{f"{name}_info": f"{prefix}/camera_info" for name, prefix in _CAMERA_TOPICS.items()},
        "lidar": "/lidar/points",
    }
    if convention is not None:
        calibration_topics = {name: convention.topic(topic) for name, topic in calibration_topics.items()
                              if convention.topic(topic) is not None}
    calibration = write_calibration(out / "calibration.yaml", sim.rig, calibration_topics,
                                    frames=convention.frame if convention is not None else None)
    size_bytes = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return RecordSummary(out, calibration, sim.scenario.name, frames, counts, time.perf_counter() - started,
                         size_bytes)
