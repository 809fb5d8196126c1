"""Train a pillar detector (PointPillars anchor head) on the synthetic world or on users' bags; write a model package.

The recipe is OpenPCDet's PointPillars (``kitti_models/pointpillar.yaml``), written from its published description:

* **targets**: per class, anchors are matched to that class's ground-truth boxes by axis-aligned BEV IoU (boxes turned
  to the nearest axis, as OpenPCDet's ``nearest_bev``): IoU >= ``matched_threshold`` (car 0.6, others 0.5) or the
  best anchor of a box is positive, < ``unmatched_threshold`` (0.45 / 0.35) negative, the rest ignored; positives
  regress the residuals of :class:`~.box_coder.ResidualCoder` and classify the heading bin of
  :class:`~.box_coder.DirectionClassifier`;
* **losses**: sigmoid focal loss (alpha 0.25, gamma 2) over classes, smooth-L1 (beta 1/9) on the residuals with the
  yaw residual compared as ``sin(a - b)``, cross-entropy on the direction bins; weights 1, 2, 0.2; all normalised by
  the number of positives;
* **augmentation**: ground-truth sampling (objects with >= 5 points cut from other training frames and pasted where
  they do not collide, their own points only, the points already there removed), random flip about the x axis,
  global rotation about z (+-pi/4) and global scaling (0.95..1.05);
* AdamW with warm-up and cosine decay (:mod:`ros_mmfusion.core.training`), validation by BEV/3D AP on held-out seeds
  (car IoU 0.7, pedestrian and cyclist 0.5) with the deployment's own decoder and NMS
  (:class:`~.pipeline.PillarDetector` on the live modules).

Data: ``build_samples`` renders LiDAR scans and boxes of synthetic scenarios; ``bag_samples`` reads a PointCloud2 and
a ``vision_msgs/Detection3DArray`` ground-truth topic from rosbag2 bags (paired by header stamp), and for painted
detectors a mono8 class-id label image of the colour camera with its CameraInfo and the LiDAR -> camera chain of
``/tf_static`` (the label image nearest each cloud's stamp; painted by the node's own ``SegmentationScores``).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError, TransformLookupError
from ros_mmfusion.core.training import (
    Checkpoints,
    LoopConfig,
    check_data_sources,
    check_positive_ints,
    config_identity,
    default_checkpoint_dir,
    fit,
    run_record,
)

if TYPE_CHECKING:
    from ros_mmfusion.core.geometry import PinholeCamera

Log = Callable[[str], None]
MIN_SAMPLE_POINTS = 5
"""Objects with fewer LiDAR returns do not enter the ground-truth sampling database."""
FOCAL_ALPHA, FOCAL_GAMMA, SMOOTH_L1_BETA = 0.25, 2.0, 1.0 / 9.0
LOSS_WEIGHTS = {"cls": 1.0, "loc": 2.0, "dir": 0.2}
GROUND_TRUTH_LABELS_TOPIC = "/ground_truth/semantic"
"""The simulated bags' ground-truth class-id mask of the colour camera (``mmfusion sim``)."""
CORRUPT_CHOICES = ("auto", "always", "never")


@dataclass
class DetectionTrainConfig:
    """What ``mmfusion train detection`` trains (field names as its options)."""

    variant: str = "pointpillars_synthetic_lite"
    scenarios: tuple[str, ...] = ("urban_day", "urban_night", "fog")
    train_seeds: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    val_seeds: tuple[int, ...] = (101, 102)
    frames_per_seed: int = 60
    val_frames_per_seed: int = 20
    frame_stride: int = 3
    beams: int = 32
    bags: tuple[str, ...] = ()
    val_bags: tuple[str, ...] = ()
    points_topic: str = "/lidar/points"
    boxes_topic: str = "/ground_truth/boxes"
    batch: int = 2
    intensity_scale: float = 1.0 / 255.0
    init: str = ""
    paint_classes: tuple[str, ...] = ()
    """PointPainting: the label-set classes whose segmentation scores are appended to every point (empty: unpainted)."""
    paint_dropout: float = 0.2
    labels_topic: str = GROUND_TRUTH_LABELS_TOPIC
    """Painted training from bags: the mono8 class-id Image of the colour camera painted from (the simulated bags'
    ground truth; on a robot, the segmentation node's ``/segmentation/labels`` recorded in the bag)."""
    camera_info_topic: str = "/camera/color/camera_info"
    """Painted training from bags: the CameraInfo of the camera ``labels_topic`` belongs to."""
    sync_tolerance: float = 0.05
    """Painted training from bags: largest stamp difference (s) between a cloud and the label image painted onto it
    (the node's ``sync_max_interval``); clouds without one are skipped (and counted)."""
    corrupt_labels: str = "auto"
    """Painted training from bags: apply :func:`corrupt_mask` to the labels ("always", "never", or "auto": only when
    ``labels_topic`` is the ground truth's, as the synthetic path does; a real segmentation's errors are its own)."""
    gt_sampling: dict = field(default_factory=lambda: {"car": 6, "pedestrian": 8, "cyclist": 8})
    rotation: float = math.pi / 4
    scaling: tuple[float, float] = (0.95, 1.05)
    flip: bool = True
    bn_momentum: float = 0.1
    window: float = 20.48
    """Side (m) of the square BEV window each batch trains on, drawn anywhere in the range in steps of 8 pillars
    (the network is convolutional: a quarter of the area costs a quarter of the compute); 0 trains on the whole range.
    Validation always runs over the whole range."""
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(iterations=3000, lr=2e-3, warmup=100,
                                                                schedule="cosine", validate_every=1000))

    def check(self) -> None:
        from ros_mmfusion.core.models.pointpillars import VARIANTS, AnchorHeadConfig

        if self.variant not in VARIANTS or not isinstance(VARIANTS[self.variant].head, AnchorHeadConfig):
            anchored = [n for n, c in VARIANTS.items() if isinstance(c.head, AnchorHeadConfig)]
            raise ConfigError(f"variant {self.variant!r} is not a trainable anchor-head detector: "
                              f"{', '.join(anchored)}")
        check_positive_ints(self, ("frames_per_seed", "val_frames_per_seed", "frame_stride", "batch"))
        if self.beams not in (16, 32, 64, 128):
            raise ConfigError(f"beams must be 16, 32, 64 or 128, got {self.beams}")
        check_data_sources(self.scenarios, self.train_seeds, self.val_seeds, self.bags, self.val_bags, self.init)
        from ros_mmfusion.core import labels as L

        known = {label.name for label in L.LABELS}
        unknown = [c for c in self.paint_classes if c not in known]
        if unknown:
            raise ConfigError(f"paint classes {unknown} are not in the label set ({', '.join(sorted(known))})")
        if self.corrupt_labels not in CORRUPT_CHOICES:
            raise ConfigError(f"corrupt_labels must be one of {', '.join(CORRUPT_CHOICES)}, "
                              f"got {self.corrupt_labels!r}")
        if not (math.isfinite(self.sync_tolerance) and 0 <= self.sync_tolerance <= 10):
            raise ConfigError(f"sync_tolerance must be in [0, 10] s, got {self.sync_tolerance}")
        if not 0.0 <= self.paint_dropout <= 1.0:
            raise ConfigError(f"paint_dropout must be in [0, 1], got {self.paint_dropout}")
        if not (self.window >= 0 and math.isfinite(self.window)):
            raise ConfigError(f"window must be >= 0 m, got {self.window}")
        if not (self.intensity_scale > 0 and math.isfinite(self.intensity_scale)):
            raise ConfigError(f"intensity_scale must be positive, got {self.intensity_scale}")
        self.loop.check()

    def bag_painting(self, dropout: float) -> BagPainting | None:
        """How ``bag_samples`` paints bag clouds (None: unpainted), with ``dropout`` of the scans left unscored."""
        if not self.paint_classes:
            return None
        from ros_mmfusion.core.detection3d.painting import paint_class_ids

        corrupt = self.corrupt_labels == "always" or (self.corrupt_labels == "auto"
                                                      and self.labels_topic == GROUND_TRUTH_LABELS_TOPIC)
        return BagPainting(paint_class_ids(self.paint_classes), self.labels_topic, self.camera_info_topic,
                           self.sync_tolerance, corrupt, dropout)


# ------------------------------------------------------------------------------------------------------------ data


@dataclass
class Sample:
    """One LiDAR frame: ``points`` (N, 4) float32 x y z intensity (model units), ``boxes`` (M, 7) float32
    (x, y, z, dx, dy, dz, yaw) in the cloud's frame, ``names`` their class names in lower case (a model's "Car" is
    trained on "car")."""

    points: np.ndarray
    boxes: np.ndarray
    names: np.ndarray
    scores: Any = None
    """Painted detectors: the :class:`~.painting.SegmentationScores` of the scan (None: no segmentation); training
    paints ``points`` once (:func:`painted`), validation hands them to the detector as the node does."""


def painted(sample: Sample, num_channels: int) -> Sample:
    """``sample`` with its scores appended to every point (``num_channels`` 0: unchanged)."""
    from ros_mmfusion.core.detection3d.painting import OUTSIDE_SCORE, paint_points

    if not num_channels:
        return sample
    return Sample(paint_points(sample.points, sample.scores, num_channels, OUTSIDE_SCORE), sample.boxes, sample.names)


def _boxes_array(boxes) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray([[*b.center, *b.size, b.yaw] for b in boxes], np.float32).reshape(-1, 7)
    return arr, np.asarray([b.class_name.lower() for b in boxes], dtype=object)


PAINT_SIZE = (320, 240)
"""Camera size (W, H) the ground-truth masks of painted training are rendered at."""


def corrupt_mask(mask: np.ndarray, class_ids: Sequence[int], rng: np.random.Generator, dilate: int = 4,
                 blobs: int = 3) -> np.ndarray:
    """A ground-truth class-id mask made to look like a real segmentation's: object classes grown or shrunk at
    their edges by up to ``dilate`` pixels, and up to ``blobs`` rectangles of a random painted class added where there
    is none (false positives) or removed (misses)."""
    import cv2

    out = mask.copy()
    h, w = mask.shape
    for cid in class_ids:
        region = (mask == cid).astype(np.uint8)
        if not region.any():
            continue
        k = int(rng.integers(0, dilate + 1))
        if k:
            kernel = np.ones((2 * k + 1, 2 * k + 1), np.uint8)
            grown = cv2.dilate(region, kernel) if rng.random() < 0.5 else cv2.erode(region, kernel)
            out[(region > 0) & (grown == 0)] = 0
            out[(grown > 0) & (region == 0)] = cid
    for _ in range(int(rng.integers(0, blobs + 1))):
        # (small masks, e.g. a bag's low-resolution labels, get blobs of up to 4 px, clipped to the mask)
        bh, bw = int(rng.integers(4, max(5, h // 6))), int(rng.integers(4, max(5, w // 8)))
        y, x = int(rng.integers(0, max(1, h - bh))), int(rng.integers(0, max(1, w - bw)))
        out[y:y + bh, x:x + bw] = int(rng.choice(class_ids)) if rng.random() < 0.5 else 0
    return out


def build_samples(scenarios: Sequence[str], seeds: Sequence[int], frames: int, stride: int, beams: int,
                  intensity_scale: float, log: Log = print, paint_classes: Sequence[str] = (),
                  paint_dropout: float = 0.0, seed: int = 0) -> list[Sample]:
    """LiDAR scans with their boxes, ``frames`` per (scenario, seed), every ``stride``-th frame.

    With ``paint_classes`` every point also carries their PointPainting scores from the colour camera's ground-truth
    mask, corrupted by :func:`corrupt_mask` (a perfect segmentation would teach the detector to trust painting more
    than a real one deserves); a fraction ``paint_dropout`` of scans gets no scores at all (the segmentation stopped:
    the detector must still work from geometry)."""
    from ros_mmfusion.core.detection3d.painting import SegmentationScores, paint_class_ids
    from ros_mmfusion.core.detection3d.preprocess import point_features
    from ros_mmfusion.core.sim import Simulation

    ids = paint_class_ids(paint_classes)
    rng = np.random.default_rng(seed)
    out = []
    for scenario in scenarios:
        for sim_seed in seeds:
            # the camera is not used without painting: tiny
            sim = Simulation(scenario, seed=sim_seed, size=PAINT_SIZE if ids else (32, 24), beams=beams)
            camera_from_lidar = sim.rig.color.T_base_sensor.inverse() @ sim.rig.lidar.T_base_sensor
            for k in range(frames):
                frame = sim.frame(k * stride)
                boxes, names = _boxes_array(frame.boxes)
                scores = None
                if ids and rng.random() >= paint_dropout:
                    scores = SegmentationScores(sim.rig.color.camera, camera_from_lidar,
                                                labels=corrupt_mask(frame.camera.semantic, ids, rng), class_ids=ids)
                out.append(Sample(point_features(frame.lidar.points, intensity_scale), boxes, names, scores))
        log(f"  {scenario}: {len(seeds) * frames} scans")
    return out


@dataclass(frozen=True)
class BagPainting:
    """How :func:`bag_samples` paints: the label-set ``class_ids`` of the painted classes, read from the mono8
    ``labels_topic`` with the ``camera_info_topic`` calibration and the LiDAR -> camera chain of ``/tf_static``; each
    cloud takes the label image nearest its stamp within ``tolerance_s``; ``corrupt``: through :func:`corrupt_mask`;
    ``dropout``: the fraction of scans left without scores."""

    class_ids: tuple[int, ...]
    labels_topic: str
    camera_info_topic: str
    tolerance_s: float
    corrupt: bool
    dropout: float


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class _BagCamera:
    """What painting needs from one bag besides the labels: the camera (first valid CameraInfo) and the static
    transforms; ``scores`` builds a frame's :class:`~.painting.SegmentationScores` as the detection node does."""

    def __init__(self, bag: str, paint: BagPainting) -> None:
        from ros_mmfusion.core.tf_buffer import TfBuffer

        self.bag, self.paint = bag, paint
        self.camera: PinholeCamera | None = None
        self.camera_frame = ""
        self.transforms = TfBuffer()  # /tf_static only
        self.extrinsics: dict[tuple[str, str], Any] = {}

    def add_camera_info(self, msg) -> None:
        from ros_mmfusion.core.codec.camera import intrinsics_from_fields

        if self.camera is not None:
            return
        try:
            self.camera = intrinsics_from_fields(msg.height, msg.width, msg.distortion_model, msg.d, msg.k, msg.r,
                                                 msg.p, msg.binning_x, msg.binning_y, msg.roi).pinhole()
        except MessageFormatError as exc:
            raise ConfigError(f"{self.bag}: {self.paint.camera_info_topic}: {exc}") from None
        self.camera_frame = msg.header.frame_id

    def scores(self, labels_msg, cloud_frame: str, rng: np.random.Generator):
        """The painting input of a deserialized label Image for a cloud of ``cloud_frame`` (None: dropped out)."""
        from ros_mmfusion.core.codec.image import decode_image
        from ros_mmfusion.core.detection3d.painting import SegmentationScores

        paint, where = self.paint, f"{self.bag}: {self.paint.labels_topic}"
        if labels_msg.encoding != "mono8":
            raise ConfigError(f"{where} has encoding {labels_msg.encoding!r}: painting reads mono8 class ids")
        if self.camera is None:
            raise ConfigError(f"{self.bag}: no {paint.camera_info_topic} message (the labels' camera)")
        key = (labels_msg.header.frame_id or self.camera_frame, cloud_frame)
        if key not in self.extrinsics:
            if not key[0] or not key[1]:
                raise ConfigError(f"{self.bag}: the labels' and the cloud's header frame_id must both be set to "
                                  f"paint, got {key[0]!r} and {key[1]!r}")
            try:
                self.extrinsics[key] = self.transforms.lookup(*key)
            except TransformLookupError as exc:
                raise ConfigError(f"{self.bag}: /tf_static: {exc}") from None
        try:
            labels = decode_image(labels_msg.height, labels_msg.width, labels_msg.encoding, labels_msg.is_bigendian,
                                  labels_msg.step, labels_msg.data)
        except MessageFormatError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if rng.random() < paint.dropout:  # drawn as build_samples draws it
            return None
        if paint.corrupt:
            labels = corrupt_mask(labels, paint.class_ids, rng)
        return SegmentationScores(self.camera, self.extrinsics[key], labels=np.ascontiguousarray(labels),
                                  class_ids=paint.class_ids)


def bag_samples(bags: Sequence[str], points_topic: str, boxes_topic: str, intensity_scale: float,
                log: Log = print, paint: BagPainting | None = None, seed: int = 0) -> list[Sample]:
    """Clouds of ``points_topic`` paired by header stamp with ``boxes_topic`` (Detection3DArray, the cloud's frame;
    class name: the first hypothesis' class_id); with ``paint``, each with the segmentation scores of the label image
    nearest its stamp (:class:`BagPainting`; clouds without one within the tolerance are skipped and counted).
    ConfigError naming the bag for a missing topic, an unusable CameraInfo or label image, no static transform
    between the cloud's and the labels' frames, or no cloud paired."""
    from ros_mmfusion.core.bagio import BagSource, read_header_stamp
    from ros_mmfusion.core.codec.pointcloud import decode_cloud
    from ros_mmfusion.core.detection3d.preprocess import point_features
    from ros_mmfusion.core.geometry import quaternion_to_yaw
    from ros_mmfusion.core.stamps import nearest_stamp
    from ros_mmfusion.core.tf_buffer import TF_MESSAGE_TYPE, TF_STATIC_TOPIC

    rng = np.random.default_rng(seed)
    wanted = {points_topic: "sensor_msgs/msg/PointCloud2", boxes_topic: "vision_msgs/msg/Detection3DArray"}
    if paint is not None:
        wanted.update({paint.labels_topic: "sensor_msgs/msg/Image", paint.camera_info_topic:
                       "sensor_msgs/msg/CameraInfo", TF_STATIC_TOPIC: TF_MESSAGE_TYPE})
    out = []
    for bag in bags:
        clouds, frames, labels, images = {}, {}, {}, {}
        camera = _BagCamera(bag, paint) if paint is not None else None
        with BagSource(bag) as source:
            topics = source.topics
            for topic, msgtype in wanted.items():
                if topic not in topics:
                    raise ConfigError(f"{bag}: no topic {topic} (topics: {', '.join(sorted(topics))})")
                if topics[topic] != msgtype:
                    raise ConfigError(f"{bag}: {topic} carries {topics[topic]}, not {msgtype}")
            for message in source.messages(list(wanted)):
                if paint is not None and message.topic == paint.labels_topic:
                    images[read_header_stamp(message.data)] = message  # decoded only when a cloud takes it
                    continue
                msg = source.deserialize(message)
                if camera is not None and message.topic == TF_STATIC_TOPIC:
                    try:
                        camera.transforms.add_message(msg.transforms, static=True)
                    except MessageFormatError as exc:
                        raise ConfigError(f"{bag}: {TF_STATIC_TOPIC}: {exc}") from None
                elif camera is not None and message.topic == camera.paint.camera_info_topic:
                    camera.add_camera_info(msg)
                elif message.topic == points_topic:
                    cloud = decode_cloud(msg.height, msg.width, msg.fields, msg.is_bigendian, msg.point_step,
                                         msg.row_step, msg.data)
                    clouds[_stamp_ns(msg)] = point_features(cloud.reshape(-1), intensity_scale)
                    frames[_stamp_ns(msg)] = msg.header.frame_id
                else:
                    rows, names = [], []
                    for det in msg.detections:
                        b = det.bbox
                        q = b.center.orientation
                        rows.append([b.center.position.x, b.center.position.y, b.center.position.z,
                                     b.size.x, b.size.y, b.size.z, quaternion_to_yaw((q.x, q.y, q.z, q.w))])
                        names.append(det.results[0].hypothesis.class_id.lower() if det.results else "")
                    labels[_stamp_ns(msg)] = (np.asarray(rows, np.float32).reshape(-1, 7),
                                              np.asarray(names, dtype=object))
            paired = sorted(set(clouds) & set(labels))
            if not paired:
                raise ConfigError(f"{bag}: no {points_topic} cloud shares a header stamp with a {boxes_topic} message")
            if camera is None:
                out += [Sample(clouds[s], *labels[s]) for s in paired]
                log(f"  {bag}: {len(paired)} clouds with ground truth")
                continue
            assert paint is not None
            stamps = np.array(sorted(images), np.int64)
            tolerance = int(round(paint.tolerance_s * 1e9))
            taken, scored = 0, 0
            for s in paired:
                j = nearest_stamp(stamps, s, tolerance)
                if j is None:
                    continue
                scores = camera.scores(source.deserialize(images[int(stamps[j])]), frames[s], rng)
                out.append(Sample(clouds[s], *labels[s], scores))
                taken, scored = taken + 1, scored + (scores is not None)
        if not taken:
            raise ConfigError(f"{bag}: no {points_topic} cloud with ground truth has a {paint.labels_topic} label "
                              f"image within {paint.tolerance_s:g} s")
        log(f"  {bag}: {taken} clouds with ground truth, {scored} painted from {paint.labels_topic}"
            f"{' (corrupted)' if paint.corrupt else ''}; {len(paired) - taken} skipped without a label image within "
            f"{paint.tolerance_s:g} s")
    return out


# ---------------------------------------------------------------------------------------------------- augmentation


def points_in_box(points: np.ndarray, box: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(N,) True for points inside the yawed ``box`` (x, y, z, dx, dy, dz, yaw) grown by ``margin``."""
    c, s = math.cos(-float(box[6])), math.sin(-float(box[6]))
    d = points[:, :3] - box[:3]
    lx, ly = d[:, 0] * c - d[:, 1] * s, d[:, 0] * s + d[:, 1] * c
    return ((np.abs(lx) <= box[3] / 2 + margin) & (np.abs(ly) <= box[4] / 2 + margin)
            & (np.abs(d[:, 2]) <= box[5] / 2 + margin))


@dataclass
class ObjectDatabase:
    """Objects cut out of the training frames for ground-truth sampling: per class, (box, its points)."""

    objects: dict[str, list[tuple[np.ndarray, np.ndarray]]]

    @classmethod
    def build(cls, samples: Sequence[Sample], classes: Sequence[str]) -> ObjectDatabase:
        objects: dict[str, list] = {c: [] for c in classes}
        for sample in samples:
            for box, name in zip(sample.boxes, sample.names, strict=True):
                if name in objects:  # ground-truth names as the data has them
                    inside = points_in_box(sample.points, box, 0.05)
                    if inside.sum() >= MIN_SAMPLE_POINTS:
                        objects[name].append((box.copy(), sample.points[inside].copy()))
        return cls(objects)

    def summary(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.objects.items()}


def _bev_rects(boxes: np.ndarray) -> np.ndarray:
    """Axis-aligned BEV rectangles (x0, y0, x1, y1) enclosing yawed boxes."""
    c, s = np.abs(np.cos(boxes[:, 6])), np.abs(np.sin(boxes[:, 6]))
    hx = (boxes[:, 3] * c + boxes[:, 4] * s) / 2
    hy = (boxes[:, 3] * s + boxes[:, 4] * c) / 2
    return np.stack([boxes[:, 0] - hx, boxes[:, 1] - hy, boxes[:, 0] + hx, boxes[:, 1] + hy], axis=1)


def nearest_axis_rects(boxes: np.ndarray) -> np.ndarray:
    """BEV rectangles (x0, y0, x1, y1) of yawed boxes turned to the nearest axis (OpenPCDet's ``nearest_bev``)."""
    from ros_mmfusion.core.detection3d.box_coder import limit_period

    near = np.array(boxes, dtype=np.float64, copy=True)
    turned = np.abs(limit_period(near[:, 6], 0.5, np.pi)) > np.pi / 4
    near[turned, 3], near[turned, 4] = boxes[turned, 4], boxes[turned, 3]
    near[:, 6] = 0.0
    return _bev_rects(near)


def _overlaps(rect: np.ndarray, rects: np.ndarray) -> bool:
    if not len(rects):
        return False
    return bool(np.any((rect[0] < rects[:, 2]) & (rects[:, 0] < rect[2]) & (rect[1] < rects[:, 3])
                       & (rects[:, 1] < rect[3])))


def gt_sample(sample: Sample, database: ObjectDatabase, counts: dict[str, int], rng: np.random.Generator
              ) -> Sample:
    """Paste up to ``counts[class]`` database objects (minus those already there) at their recorded poses where their
    BEV footprint meets no other box; the frame's points inside pasted boxes are removed."""
    boxes, names, points = sample.boxes, sample.names, sample.points
    rects = _bev_rects(boxes) if len(boxes) else np.zeros((0, 4), np.float32)
    new_boxes, new_names, new_points = [], [], []
    for name, want in counts.items():
        pool = database.objects.get(name) or []
        missing = want - int(np.sum(names == name))
        if missing <= 0 or not pool:
            continue
        for i in rng.choice(len(pool), size=min(missing, len(pool)), replace=False):
            box, pts = pool[int(i)]
            rect = _bev_rects(box[None])[0]
            if _overlaps(rect, rects):
                continue
            rects = np.concatenate([rects, rect[None]])
            new_boxes.append(box)
            new_names.append(name)
            new_points.append(pts)
    if not new_boxes:
        return sample
    keep = np.ones(len(points), bool)
    for box in new_boxes:
        keep &= ~points_in_box(points, box, 0.1)
    return Sample(np.concatenate([points[keep], *new_points]), np.concatenate([boxes, np.stack(new_boxes)]),
                  np.concatenate([names, np.asarray(new_names, dtype=object)]))


def global_augment(sample: Sample, rng: np.random.Generator, rotation: float, scaling: tuple[float, float],
                   flip: bool) -> Sample:
    """Random flip about the x axis (y -> -y), rotation about z by U(-rotation, rotation), scaling U(scaling)."""
    pts, boxes = sample.points.copy(), sample.boxes.copy()
    if flip and rng.random() < 0.5:
        pts[:, 1] = -pts[:, 1]
        boxes[:, 1] = -boxes[:, 1]
        boxes[:, 6] = -boxes[:, 6]
    angle = rng.uniform(-rotation, rotation) if rotation else 0.0
    c, s = math.cos(angle), math.sin(angle)
    for arr in (pts, boxes):
        x, y = arr[:, 0].copy(), arr[:, 1].copy()
        arr[:, 0], arr[:, 1] = c * x - s * y, s * x + c * y
    boxes[:, 6] += angle
    scale = rng.uniform(*scaling)
    pts[:, :3] *= scale
    boxes[:, :6] *= scale
    return Sample(pts, boxes, sample.names)


# ------------------------------------------------------------------------------------------------------- targets


@dataclass
class AnchorTargets:
    """Anchors of a configuration and how ground truth maps onto them (OpenPCDet's axis-aligned target assigner)."""

    anchors: np.ndarray  # (N, 7)
    anchor_class: np.ndarray  # (N,) class index
    thresholds: list[tuple[float, float]]  # per class (matched, unmatched)
    class_names: tuple[str, ...]
    rects: np.ndarray  # (N, 4) the anchors' nearest-axis BEV rectangles (made once)

    @classmethod
    def of(cls, config) -> AnchorTargets:
        from ros_mmfusion.core.detection3d.anchors import generate_anchors

        gens = config.head.anchor_generator
        anchors = generate_anchors(gens, config.point_cloud_range, config.grid.grid_size, config.anchor_range)
        per_class = np.concatenate([np.full(g.num_anchors_per_location, i) for i, g in enumerate(gens)])
        anchor_class = np.broadcast_to(per_class, anchors.shape[:3]).reshape(-1)
        flat = anchors.reshape(-1, 7)
        return cls(flat, anchor_class, [(g.matched_threshold, g.unmatched_threshold) for g in gens],
                   tuple(g.class_name for g in gens), nearest_axis_rects(flat))

    def assign(self, boxes: np.ndarray, names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``labels`` (N,) int64: class index + 1 for positives, 0 negatives, -1 ignored; ``matched`` (N, 7) the box
        each positive regresses to (zeros elsewhere)."""

        n = len(self.anchors)
        labels = np.full(n, -1, np.int64)
        matched = np.zeros((n, 7), np.float32)
        lowered = np.asarray([str(n).lower() for n in names], dtype=object)
        for ci, name in enumerate(self.class_names):  # ground truth "car" matches a model's "Car"
            idx = np.flatnonzero(self.anchor_class == ci)
            gt = boxes[lowered == name.lower()]
            if not len(gt):
                labels[idx] = 0
                continue
            ar, gr = self.rects[idx], nearest_axis_rects(gt)
            w = np.clip(np.minimum(ar[:, None, 2], gr[None, :, 2]) - np.maximum(ar[:, None, 0], gr[None, :, 0]), 0,
                        None)
            h = np.clip(np.minimum(ar[:, None, 3], gr[None, :, 3]) - np.maximum(ar[:, None, 1], gr[None, :, 1]), 0,
                        None)
            inter = w * h
            area_a = (ar[:, 2] - ar[:, 0]) * (ar[:, 3] - ar[:, 1])
            area_g = (gr[:, 2] - gr[:, 0]) * (gr[:, 3] - gr[:, 1])
            iou = inter / (area_a[:, None] + area_g[None, :] - inter)
            best_gt = iou.argmax(1)
            best_iou = iou[np.arange(len(idx)), best_gt]
            matched_thr, unmatched_thr = self.thresholds[ci]
            lab = np.full(len(idx), -1, np.int64)
            lab[best_iou < unmatched_thr] = 0
            positive = best_iou >= matched_thr
            gt_best = iou.max(0)  # each box's best anchor(s) are positive too
            forced_anchor, forced_gt = np.nonzero((iou == gt_best[None, :]) & (gt_best[None, :] > 0))
            positive[forced_anchor] = True
            best_gt[forced_anchor] = forced_gt
            lab[positive] = ci + 1
            labels[idx] = lab
            matched[idx[positive]] = gt[best_gt[positive]]
        return labels, matched


# ------------------------------------------------------------------------------------------------------ the model


class Batch:
    """Network inputs and targets of a batch of samples (torch tensors)."""

    def __init__(self, samples: Sequence[Sample], config, targets: AnchorTargets) -> None:
        import torch

        from ros_mmfusion.core.detection3d.box_coder import limit_period
        from ros_mmfusion.core.detection3d.pillarize import crop_to_range, decorate_pillars, pillarize

        head = config.head
        coder = head.coder
        grid = config.grid
        feats, coords, labels, reg, dirs = [], [], [], [], []
        for b, sample in enumerate(samples):
            cropped = crop_to_range(sample.points, config.point_cloud_range)
            pillars = pillarize(cropped, grid)
            feats.append(decorate_pillars(pillars, grid, config.vfe.use_absolute_xyz, config.vfe.with_distance)
                         if len(pillars) else np.zeros((0, config.max_points_per_pillar, config.num_input_features),
                                                       np.float32))
            coords.append(np.concatenate([np.full((len(pillars), 1), b), pillars.coords], axis=1))
            x0, y0, _, x1, y1, _ = config.point_cloud_range
            inside = ((sample.boxes[:, 0] >= x0) & (sample.boxes[:, 0] <= x1) & (sample.boxes[:, 1] >= y0)
                      & (sample.boxes[:, 1] <= y1)) if len(sample.boxes) else np.zeros(0, bool)
            lab, matched = targets.assign(sample.boxes[inside], sample.names[inside])
            pos = lab > 0
            r = np.zeros((len(lab), coder.code_size), np.float32)
            r[pos] = coder.encode(matched[pos], targets.anchors[pos])
            # OpenPCDet's direction target: the heading minus the offset in [0, 2 pi), binned into num_dir_bins
            rot = limit_period(matched[:, 6] - head.dir_offset, 0.0, 2 * np.pi)
            d = np.clip(np.floor(rot / (2 * np.pi / head.num_dir_bins)), 0, head.num_dir_bins - 1).astype(np.int64)
            labels.append(lab)
            reg.append(r)
            dirs.append(d)
        self.size = len(samples)
        self.bev_shape = grid.bev_shape
        self.features = torch.from_numpy(np.concatenate(feats))
        self.coords = torch.from_numpy(np.concatenate(coords).astype(np.int64))
        self.labels = torch.from_numpy(np.stack(labels))
        self.reg = torch.from_numpy(np.stack(reg))
        self.dirs = torch.from_numpy(np.stack(dirs))
        self.anchors = torch.from_numpy(targets.anchors)


class Windows:
    """Square training windows of ``side`` metres inside ``config``'s range, on the 8-pillar lattice, each with its
    configuration (:func:`~.pipeline.with_range`) and anchor targets (made on first use)."""

    def __init__(self, config, side: float) -> None:
        from ros_mmfusion.core.detection3d.pipeline import with_range

        self.config = config
        self.cache: dict[tuple[float, float], tuple[Any, AnchorTargets]] = {}
        x0, y0, z0, x1, y1, z1 = config.point_cloud_range
        step = 8 * config.voxel_size[0]
        if side <= 0 or side >= min(x1 - x0, y1 - y0):
            self.origins = [(x0, y0)]
            self.side = None
        else:
            cells = max(1, round(side / step))
            self.side = cells * step
            nx, ny = round((x1 - x0 - self.side) / step), round((y1 - y0 - self.side) / step)
            self.origins = [(x0 + i * step, y0 + j * step) for i in range(nx + 1) for j in range(ny + 1)]
        self._with_range, self._z = with_range, (z0, z1)

    def draw(self, rng: np.random.Generator):
        """A random window: ``(config, AnchorTargets)``."""
        origin = self.origins[int(rng.integers(len(self.origins)))]
        if origin not in self.cache:
            if self.side is None:
                config = self.config
            else:
                x, y = origin
                config = self._with_range(self.config, (round(x, 4), round(y, 4), self._z[0], round(x + self.side, 4),
                                                        round(y + self.side, 4), self._z[1]), keep_anchors=False)
            self.cache[origin] = (config, AnchorTargets.of(config))
        return self.cache[origin]


def forward_batch(model, batch: Batch):
    """Head maps of a batch: the pillar encoder over every sample's pillars, one BEV canvas per sample."""
    feats = model.vfe(batch.features)
    ny, nx = batch.bev_shape
    canvas = feats.new_zeros((batch.size * ny * nx, feats.shape[1]))
    c = batch.coords
    canvas = canvas.index_copy(0, c[:, 0] * ny * nx + c[:, 2] * nx + c[:, 3], feats)
    spatial = canvas.view(batch.size, ny, nx, -1).permute(0, 3, 1, 2).contiguous()
    return model.dense_head(model.backbone_2d(spatial))


def anchor_losses(maps, batch: Batch, num_classes: int, code_size: int, num_dir_bins: int) -> dict:
    """OpenPCDet's anchor-head losses (focal, smooth-L1 with the sin-difference yaw, direction CE)."""
    import torch
    import torch.nn.functional as F

    cls_preds, box_preds, dir_preds = maps
    b = batch.size
    cls = cls_preds.permute(0, 2, 3, 1).reshape(b, -1, num_classes)
    box = box_preds.permute(0, 2, 3, 1).reshape(b, -1, code_size)
    dirl = dir_preds.permute(0, 2, 3, 1).reshape(b, -1, num_dir_bins)
    labels = batch.labels
    pos = (labels > 0).float()
    norm = pos.sum(1, keepdim=True).clamp(min=1.0)
    cls_weight = ((labels >= 0).float()) / norm
    onehot = F.one_hot(labels.clamp(min=0), num_classes + 1)[..., 1:].float()
    p = torch.sigmoid(cls)
    pt = onehot * p + (1 - onehot) * (1 - p)
    alpha = onehot * FOCAL_ALPHA + (1 - onehot) * (1 - FOCAL_ALPHA)
    bce = F.binary_cross_entropy_with_logits(cls, onehot, reduction="none")
    cls_loss = (alpha * (1 - pt).pow(FOCAL_GAMMA) * bce * cls_weight.unsqueeze(-1)).sum() / b
    sin_pred = torch.sin(box[..., 6]) * torch.cos(batch.reg[..., 6])
    sin_target = torch.cos(box[..., 6]) * torch.sin(batch.reg[..., 6])
    pred = torch.cat([box[..., :6], sin_pred.unsqueeze(-1), box[..., 7:]], dim=-1)
    target = torch.cat([batch.reg[..., :6], sin_target.unsqueeze(-1), batch.reg[..., 7:]], dim=-1)
    diff = (pred - target).abs()
    smooth = torch.where(diff < SMOOTH_L1_BETA, 0.5 * diff ** 2 / SMOOTH_L1_BETA, diff - 0.5 * SMOOTH_L1_BETA)
    loc_loss = (smooth.sum(-1) * pos / norm).sum() / b
    dir_ce = F.cross_entropy(dirl.reshape(-1, num_dir_bins), batch.dirs.reshape(-1), reduction="none").view(b, -1)
    dir_loss = (dir_ce * pos / norm).sum() / b
    total = (LOSS_WEIGHTS["cls"] * cls_loss + LOSS_WEIGHTS["loc"] * loc_loss + LOSS_WEIGHTS["dir"] * dir_loss)
    return {"loss": total, "cls": cls_loss.detach(), "loc": loc_loss.detach(), "dir": dir_loss.detach()}


# ----------------------------------------------------------------------------------------------------- validation


def evaluate_detector(detector, samples: Sequence[Sample], classes: Sequence[str]) -> dict:
    """BEV and 3D AP (R40) of ``detector`` (a PillarDetector) on ``samples``: car at IoU 0.7, others at 0.5."""
    from ros_mmfusion.core.detection3d.metrics import DetectionEvaluator

    x0, y0, _, x1, y1, _ = detector.config.point_cloud_range
    evaluator = DetectionEvaluator(classes=[c.lower() for c in classes], iou_thresholds=(0.5, 0.7),
                                   bev_range=(x0, y0, x1, y1))
    for sample in samples:  # class names compared in lower case, as the node publishes them ("Car" -> "car")
        result = detector(sample.points, sample.scores)
        det = result.detections
        evaluator.add_frame(sample.boxes, [str(n).lower() for n in sample.names], det.boxes,
                            [n.lower() for n in result.names], det.scores)
    return summarize(evaluator.results())


def summarize(results: dict) -> dict:
    """The headline numbers: BEV and 3D AP of each class at its KITTI threshold (car 0.7, others 0.5)."""
    out = {}
    for name in results["classes"]:
        thr = "0.7" if name.lower() == "car" else "0.5"
        for kind in ("bev", "3d"):
            ap = results[kind][thr]["AP"].get(name)
            if ap is not None:
                out[f"{name}_{kind}_ap{round(float(thr) * 100)}"] = float(ap)
    out["frames"] = results["frames"]
    return out


def live_detector(model, config, paint_channels: int = 0):
    """A :class:`~.pipeline.PillarDetector` running ``model``'s own modules (torch backend)."""
    from ros_mmfusion.core.detection3d.pipeline import PillarBackends, PillarDetector
    from ros_mmfusion.core.inference.torch_backend import TorchBackend
    from ros_mmfusion.core.models.pointpillars import BackboneHead, PillarEncoder

    encoder, head = model.split()
    backends = PillarBackends(TorchBackend(encoder, PillarEncoder.input_names, PillarEncoder.output_names),
                              TorchBackend(head, BackboneHead.input_names, head.output_names))
    # samples already hold intensities in model units
    return PillarDetector(config, backends, paint_channels=paint_channels, intensity_scale=1.0)


# ---------------------------------------------------------------------------------------------------------- train


def initial_state(path: str):
    """Weights to start from: a model package (its weights) or a checkpoint file (OpenPCDet or ours)."""
    from ros_mmfusion.core.detection3d.artifacts import read_checkpoint
    from ros_mmfusion.core.models.pointpillars import convert_upstream_checkpoint
    from ros_mmfusion.core.training import init_source

    return convert_upstream_checkpoint(read_checkpoint(init_source(path, "detection3d").path))


def train(cfg: DetectionTrainConfig, out: Path, log: Log = print, resume: bool = False,
          checkpoint_dir: Path | None = None) -> dict:
    """Train, validate and write the package (``model.yaml``, ``weights.pt``, ``metrics.json``) into ``out``."""
    cfg.check()
    import torch

    from ros_mmfusion.core.detection3d.painting import FIRST_PFN_WEIGHT, painted_config, painted_state_dict
    from ros_mmfusion.core.model_package import write_package
    from ros_mmfusion.core.models.pointpillars import VARIANTS, AnchorHeadConfig, build_model, load_checkpoint

    base = VARIANTS[cfg.variant]
    channels = len(cfg.paint_classes)
    config = painted_config(base, channels)
    started = time.time()
    log("collecting training scans ...")
    train_samples = [painted(s, channels) for s in build_samples(
        cfg.scenarios, cfg.train_seeds, cfg.frames_per_seed, cfg.frame_stride, cfg.beams, cfg.intensity_scale, log,
        cfg.paint_classes, cfg.paint_dropout, cfg.loop.seed)] if cfg.scenarios else []
    train_samples += [painted(s, channels) for s in bag_samples(
        cfg.bags, cfg.points_topic, cfg.boxes_topic, cfg.intensity_scale, log, cfg.bag_painting(cfg.paint_dropout),
        cfg.loop.seed + 2)]
    log("collecting validation scans ...")
    val_samples = build_samples(cfg.scenarios, cfg.val_seeds, cfg.val_frames_per_seed, cfg.frame_stride, cfg.beams,
                                cfg.intensity_scale, log, cfg.paint_classes, 0.0,
                                cfg.loop.seed + 1) if cfg.scenarios and cfg.val_seeds else []
    val_samples += bag_samples(cfg.val_bags, cfg.points_topic, cfg.boxes_topic, cfg.intensity_scale, log,
                               cfg.bag_painting(0.0), cfg.loop.seed + 3)
    if not val_samples:
        raise ConfigError("no validation data: give --val-seeds with --scenario, or --val-bag")
    if cfg.batch > len(train_samples):
        raise ConfigError(f"batch {cfg.batch} exceeds the {len(train_samples)} training scans")
    database = ObjectDatabase.build(train_samples, [c.lower() for c in config.class_names])
    log(f"ground-truth sampling database: {database.summary()}")
    windows = Windows(config, cfg.window)
    torch.manual_seed(cfg.loop.seed)
    model = build_model(config)
    if cfg.init:
        state = initial_state(cfg.init)
        if channels and state.get(FIRST_PFN_WEIGHT) is not None and \
                state[FIRST_PFN_WEIGHT].shape[1] == base.num_input_features:  # unpainted weights: widen (zeros)
            state = painted_state_dict(state, base, channels)
        report = load_checkpoint(model, state, strict=False)
        log(f"initialised from {cfg.init}: {report}")
    for module in model.modules():  # OpenPCDet's 0.01 suits its ~40k iterations; short runs need running
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):  # statistics that catch up sooner
            module.momentum = cfg.bn_momentum
    model.to(cfg.loop.device)
    head = config.head
    assert isinstance(head, AnchorHeadConfig)  # check() admits anchor-head variants only
    num_classes = len(config.class_names)

    def loss_step(iteration: int, rng: np.random.Generator) -> dict:
        chosen = rng.choice(len(train_samples), cfg.batch, replace=False)
        samples = []
        for i in chosen:
            s = gt_sample(train_samples[int(i)], database, cfg.gt_sampling, rng)
            samples.append(global_augment(s, rng, cfg.rotation, cfg.scaling, cfg.flip))
        window, targets = windows.draw(rng)
        batch = Batch(samples, window, targets)
        maps = forward_batch(model, _to(batch, cfg.loop.device))
        return anchor_losses(maps, batch, num_classes, head.coder.code_size, head.num_dir_bins)

    def validate(m) -> dict:
        return evaluate_detector(live_detector(m, base, channels), val_samples, config.class_names)

    identity = config_identity({**asdict(cfg), "loop": asdict(cfg.loop)})
    checkpoints = Checkpoints(checkpoint_dir or default_checkpoint_dir(out, identity), identity)
    log(f"training {cfg.variant} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters) on "
        f"{len(train_samples)} scans, batch {cfg.batch}, {cfg.loop.iterations} iterations; checkpoints in "
        f"{checkpoints.directory}")
    history = fit(model, loss_step, validate, cfg.loop, checkpoints, resume, log)
    final = history["validation"][-1]
    data = (f"synthetic {list(cfg.scenarios)} seeds {list(cfg.train_seeds)}" if cfg.scenarios else "") + \
           (f" bags {[Path(b).name for b in cfg.bags]}" if cfg.bags else "")
    metrics = {**run_record(cfg.loop, started),
               "config": {**asdict(cfg), "loop": asdict(cfg.loop)},
               "data": {"train_scans": len(train_samples), "validation_scans": len(val_samples),
                        "gt_database": database.summary(), "description": data.strip()},
               "validation": {k: v for k, v in final.items() if k != "iteration"},
               "history": history}
    fields = {"class_names": list(config.class_names), "intensity_scale": cfg.intensity_scale,
              "paint_classes": list(cfg.paint_classes),
              "trained_on": f"ros_mmfusion {data.strip()}, {cfg.loop.iterations} iterations of {cfg.batch}, "
                            f"{metrics['date']} on {metrics['hardware']}",
              "validation": metrics["validation"]}
    write_package(out, "detection3d", cfg.variant, fields, model.state_dict(), metrics)
    log("validation: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics["validation"].items()
                                    if isinstance(v, float)))
    return metrics


def _to(batch: Batch, device: str) -> Batch:
    if device != "cpu":
        for name in ("features", "coords", "labels", "reg", "dirs", "anchors"):
            setattr(batch, name, getattr(batch, name).to(device))
    return batch
