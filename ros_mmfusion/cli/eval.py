"""``mmfusion eval``: replay a bag through a preset's nodes, record their outputs, and report accuracy and latency.

How predictions meet ground truth: the bag player restamps every header stamp onto the wall clock with one formula
(``stamp = wall_start + (stamp_in_bag - bag_start) / rate``), and it replays the bag's ground-truth topics too. A
ground-truth image and the camera image of the same frame share a stamp in the bag, so they share the restamped stamp;
a node stamps its output with its input's header, so a prediction's stamp equals its frame's ground-truth stamp
exactly, with no offset to recover. This works the same in one process and with ``--processes``.

Latency per output topic is the arrival time (wall clock, in this process) minus the output's header stamp (the
restamped input stamp, i.e. when the input was published); dropped frames are input frames whose stamp never came
out. Outputs are recorded with their input stamps into ``REPORT_DIR/outputs`` (MCAP; the log time is the arrival).

``REPORT_DIR`` follows :mod:`ros_mmfusion.core.outputs`: a non-empty directory is refused unless ``--overwrite``,
which replaces only the report files (``REPORT_FILES``) an earlier mmfusion run wrote there; the report is assembled
in a staging directory and moved into place when the run succeeded, and a bag under ``REPORT_DIR/outputs`` that
mmfusion did not write (``ros2 bag record -o outputs``) is never replaced, let alone the bag being evaluated.
"""
from __future__ import annotations

import argparse
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion.core.navigation.metrics import NavigationRecord

HELP = "replay a bag through a preset and report accuracy and latency (metrics.json, report.md/html)"

GT_SEMANTIC = "/ground_truth/semantic"
GT_BOXES = "/ground_truth/boxes"
DEFAULT_DETECTION_CLASSES = ("car", "pedestrian", "cyclist")
OUTPUTS_BAG = "outputs"
#: every entry ``eval`` may write into its report directory (core.evaluation.report names the figures)
REPORT_FILES = ("metrics.json", "report.md", "report.html", "iou_per_class.png", "latency_histogram.png",
                "latency_timeline.png", "pr_curves.png", "detection_sample_bev.png", "trajectory.png",
                "sample_frame.png")


@dataclass(frozen=True)
class Evaluated:
    """What ``eval`` knows of a node: its main input (counts expected frames), outputs, a segmentation output."""

    main_input: str
    required_inputs: tuple[str, ...]
    outputs: tuple[str, ...]  # Image topics (relative names, remappable)
    labels: str | None = None  # the mono8 class-id output compared with GT_SEMANTIC
    inputs: tuple[str, ...] = ()  # every input topic (relative), preloaded by ``mmfusion bench-graph``
    detections: str | None = None  # the Detection3DArray output compared with GT_BOXES (not an Image)
    path: str | None = None  # the nav_msgs/Path of waypoints compared with the future odometry (not an Image)
    closest_node: str | None = None  # the std_msgs/Int32 localised node (no header: paired with ``path`` in order)
    odom: str | None = None  # the nav_msgs/Odometry input used as ground-truth trajectory


#: node key -> what is evaluated; nodes not listed run but only their debug latency is reported
EVALUATED: dict[str, Evaluated] = {
    "fusion_segmentation": Evaluated("rgb/image", ("rgb/image",), ("segmentation/labels", "segmentation/color"),
                                     labels="segmentation/labels",
                                     inputs=("rgb/image", "rgb/camera_info", "x/image")),
    "lidar_depth": Evaluated("lidar/points", ("lidar/points",), ("lidar/depth_image",),
                             inputs=("lidar/points", "camera/camera_info")),
    "detection3d": Evaluated("points", ("points",), ("detections",), detections="detections",
                             inputs=("points",)),  # painting (off in the preset) would add labels and camera_info
    "vint_navigation": Evaluated("image", ("image",), ("navigation/path",), inputs=("image",),
                                 path="navigation/path", closest_node="navigation/closest_node", odom="odom"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bag", required=True, help="rosbag2 directory to replay (e.g. from `mmfusion sim record`)")
    parser.add_argument("--preset", default="segmentation", help="preset whose nodes are evaluated")
    parser.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                        help="other preset arguments (e.g. topomap=DIR for the navigation preset)")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="override a node parameter (YAML value)")
    parser.add_argument("--out", default="eval_out", help="report directory (refused if not empty, unless "
                        "--overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the report files an earlier mmfusion run wrote into --out (listed in its "
                             ".mmfusion-output); nothing else there is ever touched")
    parser.add_argument("--processes", action="store_true", help="one process per node over DDS (default: one "
                        "process, one executor)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--ignore-index", type=int, default=None,
                        help="ground-truth class id left out of the metrics (default: the label set's 'unlabeled', "
                             "0; -1 for none)")
    parser.add_argument("--iou-thresholds", default="0.5,0.7",
                        help="3D detection: comma-separated IoU thresholds for BEV and 3D AP")
    parser.add_argument("--ap-interpolation", choices=("r40", "all"), default="r40",
                        help="3D detection AP: KITTI 40 recall points (r40) or the all-point VOC area (all)")
    parser.add_argument("--detection-classes", default=",".join(DEFAULT_DETECTION_CLASSES),
                        help="3D detection: comma-separated class names evaluated (the label set's object "
                             "classes or the detector's)")
    parser.add_argument("--no-record", action="store_true", help="do not write the outputs bag")
    parser.add_argument("--startup", type=float, default=10.0,
                        help="with --processes: seconds the player waits for the other processes to load")


def _resolve(name: str, remappings: dict[str, str]) -> str:
    return remappings.get(name, name if name.startswith("/") else f"/{name}")


@dataclass
class BagFacts:
    topics: dict[str, str]
    counts: dict[str, int]
    duration_s: float


def scan_bag(path: Path) -> BagFacts:
    """Open and read the whole bag once, so a corrupt or truncated one fails here with a clear message."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.bagio import BagSource
    from ros_mmfusion.core.errors import ConfigError

    if not path.exists():
        raise UserError(f"bag not found: {path}")
    try:
        with BagSource(path) as source:
            topics, counts = source.topics, source.message_counts
            seen = sum(1 for _ in source.messages())
            duration = source.duration_ns / 1e9
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - rosbags raises many kinds for broken files
        raise UserError(f"cannot read bag {path} (corrupt or truncated?): {type(exc).__name__}: {exc}") from None
    if seen != sum(counts.values()):
        raise UserError(f"bag {path} is truncated: metadata lists {sum(counts.values())} messages, {seen} readable")
    if not topics:
        raise UserError(f"bag {path} has no topics")
    return BagFacts(topics, counts, duration)


def _msgtype(msg: Any) -> str:
    cls = type(msg)
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


class OutputsBag:
    """Records rclpy messages (serialized as they are) into an MCAP rosbag2 with rosbags; log time = arrival."""

    def __init__(self, path: Path) -> None:
        """``path`` must not exist (it lies in the staging directory of ``core.outputs``)."""
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = path
        self._writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._conns: dict[str, Any] = {}
        self.count = 0

    def write(self, topic: str, msg: Any, log_time_ns: int) -> None:
        from rclpy.serialization import serialize_message

        from ros_mmfusion.core.bagio import typestore

        if topic not in self._conns:
            self._conns[topic] = self._writer.add_connection(topic, _msgtype(msg), typestore=typestore())
        self._writer.write(self._conns[topic], log_time_ns, serialize_message(msg))
        self.count += 1

    def close(self) -> None:
        self._writer.close()


@dataclass
class SegmentationAccumulator:
    """Pairs predictions with ground truth by (restamped) stamp and accumulates one confusion matrix."""

    num_classes: int
    ignore_index: int | None
    sample_after: int = 0  # the sample frame is the first matched frame at or after this many matched frames
    pending_limit: int = 100
    confusion: np.ndarray = field(init=False)
    matched: int = 0
    size_mismatch: int = 0
    evicted: int = 0
    sample: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    last: tuple[np.ndarray, np.ndarray, None] | None = None
    _gt: OrderedDict = field(default_factory=OrderedDict)
    _pred: OrderedDict = field(default_factory=OrderedDict)
    _rgb: OrderedDict = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def _keep(self, store: OrderedDict, stamp: int, value: Any) -> None:
        store[stamp] = value
        while len(store) > self.pending_limit:
            store.popitem(last=False)
            if store is not self._rgb:
                self.evicted += 1

    def add_rgb(self, stamp: int, rgb: np.ndarray) -> None:
        self._keep(self._rgb, stamp, rgb)

    def add(self, stamp: int, gt: np.ndarray | None = None, pred: np.ndarray | None = None) -> None:
        from ros_mmfusion.core.segmentation.metrics import confusion_matrix

        if gt is not None:
            self._keep(self._gt, stamp, gt)
        if pred is not None:
            self._keep(self._pred, stamp, pred)
        if stamp not in self._gt or stamp not in self._pred:
            return
        gt, pred = self._gt.pop(stamp), self._pred.pop(stamp)
        if gt.shape != pred.shape:
            self.size_mismatch += 1
            return
        self.confusion += confusion_matrix(gt, pred, self.num_classes, self.ignore_index)
        if self.sample is None and self.matched >= self.sample_after and stamp in self._rgb:
            self.sample = (gt, pred, self._rgb[stamp])
        self.last = (gt, pred, None)
        self.matched += 1

    def sample_frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """A frame from the second half with its camera image, else the last matched frame without one."""
        return self.sample or self.last


@dataclass
class DetectionAccumulator:
    """Pairs detections with ``/ground_truth/boxes`` by (restamped) stamp and feeds a DetectionEvaluator."""

    evaluator: Any
    pending_limit: int = 100
    matched: int = 0
    evicted: int = 0
    _gt: OrderedDict = field(default_factory=OrderedDict)
    _pred: OrderedDict = field(default_factory=OrderedDict)
    sample: dict | None = None  # the matched frame with the most ground-truth boxes, for the report's BEV picture

    def add(self, stamp: int, gt: Any = None, pred: Any = None) -> None:
        for store, value in ((self._gt, gt), (self._pred, pred)):
            if value is not None:
                store[stamp] = value
                while len(store) > self.pending_limit:
                    store.popitem(last=False)
                    self.evicted += 1
        if stamp in self._gt and stamp in self._pred:
            (gb, gl, _), (db, dl, ds) = self._gt.pop(stamp), self._pred.pop(stamp)
            self.evaluator.add_frame(gb, gl, db, dl, ds)
            self.matched += 1
            if self.sample is None or len(gl) > len(self.sample["gt_labels"]):
                self.sample = {"stamp_ns": stamp, "gt_boxes": np.asarray(gb).round(3).tolist(),
                               "gt_labels": list(gl), "det_boxes": np.asarray(db).round(3).tolist(),
                               "det_labels": list(dl), "det_scores": np.asarray(ds).round(3).tolist()}


def _detector_bev_range(preset: Any) -> tuple[float, float, float, float] | None:
    """The BEV range (x_min, y_min, x_max, y_max) of the preset's detector: boxes outside it are not evaluated.

    A ``point_cloud_range`` override is checked as the node will check it (ConfigError), before anything runs."""
    from ros_mmfusion.core.detection3d.pipeline import with_range
    from ros_mmfusion.core.models.registry import detectors

    for launch in preset.nodes:
        if launch.key != "detection3d":
            continue
        config = detectors(aliases=False).get(str(launch.parameters.get("model", "pointpillars_synthetic")))
        values = [float(v) for v in launch.parameters.get("point_cloud_range") or []]
        if len(values) == 6 and any(values) and config is not None:
            values = list(with_range(config, values).point_cloud_range)
        elif len(values) != 6 or not any(values):
            values = list(config.point_cloud_range) if config is not None else []
        if len(values) == 6:
            return values[0], values[1], values[3], values[4]
    return None


def _detection_classes(text: str, preset: Any) -> tuple[str, ...]:
    """The class names of ``--detection-classes``; each must be one of the label set's object classes (the names of
    the ground-truth boxes) or of the preset's detector's classes, else UserError naming the known ones."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.labels import LABELS

    classes = tuple(c.strip() for c in text.split(",") if c.strip())
    known = [label.name for label in LABELS if label.is_thing]
    for launch in preset.nodes:
        if launch.key == "detection3d":
            from ros_mmfusion.core.models.registry import detectors

            config = detectors(aliases=False).get(str(launch.parameters.get("model", "pointpillars_synthetic")))
            known += [c for c in (config.class_names if config is not None else ()) if c not in known]
    unknown = [c for c in classes if c not in known]
    if not classes or unknown:
        raise UserError(f"--detection-classes {text!r}: unknown class name(s) {', '.join(unknown) or '(none given)'}"
                        f"; known: {', '.join(known)}")
    return classes


def _floats(text: str, option: str) -> tuple[float, ...]:
    from ros_mmfusion.cli.main import UserError

    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{option} expects comma-separated numbers, got {text!r}") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise UserError(f"{option} expects numbers in (0, 1], got {text!r}")
    return values


@dataclass
class NavigationOutputs:
    """The topics eval reads for navigation and the run's record of what arrived on them (the record and its metrics:
    ``core/navigation/metrics.py``). The ground truth is the replayed ``/odom``, restamped by the player like the
    outputs, so both share one clock."""

    path_topic: str
    closest_topic: str
    odom_topic: str
    record: NavigationRecord


def _navigation_setup(preset: Any, facts: BagFacts, notes: list[str]) -> NavigationOutputs | None:
    """The navigation outputs of the preset's ViNT node, or None (with a note) when it cannot be evaluated."""
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.navigation.topomap import load_topomap

    for launch in preset.nodes:
        ev = EVALUATED.get(launch.key)
        if ev is None or ev.path is None:
            continue
        odom_topic = _resolve(ev.odom, launch.remappings)
        if odom_topic not in facts.topics:
            notes.append(f"navigation metrics skipped: the bag has no {odom_topic}")
            return None
        try:
            topomap = load_topomap(str(launch.parameters.get("topomap_dir", "")))
            node_xy = topomap.poses_xy_yaw()[:, :2]
        except ConfigError as exc:
            notes.append(f"navigation metrics skipped: {exc}")
            return None
        rate = float(launch.parameters.get("frame_rate") or 0.0)
        if rate <= 0:
            from ros_mmfusion.core.models.vint import VINT_VARIANTS

            variant = VINT_VARIANTS.get(str(launch.parameters.get("variant", "vint_default")))
            rate = variant.frame_rate_hz if variant is not None else 4.0
        return NavigationOutputs(_resolve(ev.path, launch.remappings), _resolve(ev.closest_node, launch.remappings),
                                 odom_topic, NavigationRecord(node_xy, 1.0 / rate))
    return None


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError

    if not 0.01 <= args.rate <= 100:
        raise UserError(f"--rate must be in [0.01, 100], got {args.rate}")
    from ros_mmfusion import presets
    from ros_mmfusion.core import labels as label_set
    from ros_mmfusion.core.outputs import OutputDirectory

    iou_thresholds = _floats(args.iou_thresholds, "--iou-thresholds")
    bag = Path(args.bag)
    writes = REPORT_FILES if args.no_record else (*REPORT_FILES, OUTPUTS_BAG)
    output = OutputDirectory(args.out, "eval", overwrite=args.overwrite, writes=writes, inputs=[bag],
                             what="report directory")
    preset_args = presets.parse_arguments(args.arg)
    preset_args["bag"] = str(bag)
    overrides: dict[str, dict[str, Any]] = presets.parse_set(args.set)
    overrides.setdefault("bag_player", {}).update({"rate": args.rate, "restamp": True})
    if args.processes:
        overrides["bag_player"]["start_delay"] = float(args.startup)
    preset = presets.load(args.preset, preset_args, overrides)
    if "bag_player" not in [n.key for n in preset.nodes]:
        raise UserError(f"preset {args.preset!r} has no bag_player node; eval needs one to replay the bag")
    det_classes = _detection_classes(args.detection_classes, preset)
    _detector_bev_range(preset)  # a bad point_cloud_range override is an error before the replay starts
    facts = scan_bag(bag)
    evaluated = [(n, EVALUATED[n.key]) for n in preset.nodes if n.key in EVALUATED]
    missing = []
    for launch, ev in evaluated:
        for name in ev.required_inputs:
            topic = _resolve(name, launch.remappings)
            if topic not in facts.topics:
                missing.append(f"{topic} (input {name} of {launch.name})")
    if missing:
        raise UserError(f"bag {bag} lacks the topic(s) the preset needs: {', '.join(missing)}; "
                        f"it has {', '.join(sorted(facts.topics))}")
    names = label_set.label_names()
    ignore = label_set.UNLABELED if args.ignore_index is None else args.ignore_index
    ignore = None if ignore < 0 else ignore
    if ignore is not None and ignore >= len(names):
        raise UserError(f"--ignore-index must be below {len(names)} (or -1 for none), got {ignore}")
    with output as stage:
        paths = _evaluate(args, bag, facts, preset, stage, output.path, names=names, ignore=ignore,
                          det_classes=det_classes, iou_thresholds=iou_thresholds)
    print(f"report: {output.path / paths['html'].name} ({paths['markdown'].name}, {paths['metrics'].name})")
    return 0


def _evaluate(args: argparse.Namespace, bag: Path, facts: BagFacts, preset: Any, out: Path, final: Path, *,
              names: list[str], ignore: int | None, det_classes: tuple[str, ...],
              iou_thresholds: tuple[float, ...]) -> dict[str, Path]:
    """Replay, collect and write the report into ``out`` (the staging directory of ``final``); the report's paths."""
    import rclpy
    from nav_msgs.msg import Odometry
    from nav_msgs.msg import Path as PathMsg
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float64, Int32
    from vision_msgs.msg import Detection3DArray

    import ros_mmfusion.ros  # noqa: F401  (DDS profile)
    from ros_mmfusion.core import labels as label_set
    from ros_mmfusion.core.evaluation.latency import latency_stats
    from ros_mmfusion.core.evaluation.report import LatencySeries, SampleFrame, write_report
    from ros_mmfusion.core.geometry import quaternion_to_yaw
    from ros_mmfusion.core.segmentation.metrics import scores
    from ros_mmfusion.core.stamps import stamp_to_ns
    from ros_mmfusion.launcher import replay_in_process, run_processes
    from ros_mmfusion.ros.detections import detections_to_arrays
    from ros_mmfusion.ros.image import image_to_numpy
    from ros_mmfusion.ros.tap import TopicTap

    evaluated = [(n, EVALUATED[n.key]) for n in preset.nodes if n.key in EVALUATED]
    notes: list[str] = []
    outputs: dict[str, type] = {}
    expected: dict[str, int] = {}
    labels_topics: set[str] = set()
    detection_topics: set[str] = set()
    main_inputs: set[str] = set()
    for launch, ev in evaluated:
        main = _resolve(ev.main_input, launch.remappings)
        main_inputs.add(main)
        for name in ev.outputs:
            topic = _resolve(name, launch.remappings)
            outputs[topic] = Detection3DArray if name == ev.detections else PathMsg if name == ev.path else Image
            expected[topic] = facts.counts.get(main, 0)
        if ev.detections:
            detection_topics.add(_resolve(ev.detections, launch.remappings))
        if ev.labels:
            labels_topics.add(_resolve(ev.labels, launch.remappings))
    workers = [n.name for n in preset.nodes if n.key != "bag_player"]
    for name in workers:
        outputs[f"/{name}/debug/pipeline_latency_ms"] = Float64
    for launch in preset.nodes:
        if launch.key != "bag_player" and launch.key not in EVALUATED:
            notes.append(f"node {launch.name} ({launch.key}): no metrics in eval yet; only its debug latency is shown")
    has_gt = GT_SEMANTIC in facts.topics
    seg: SegmentationAccumulator | None = None
    rgb_topic = "/camera/color/image_raw"
    if labels_topics and has_gt:
        outputs[GT_SEMANTIC] = Image
        frames = facts.counts.get(GT_SEMANTIC, 0)
        seg = SegmentationAccumulator(len(names), ignore, sample_after=frames // 2)
        if rgb_topic in facts.topics:
            outputs[rgb_topic] = Image
    elif labels_topics:
        notes.append(f"segmentation metrics skipped: the bag has no {GT_SEMANTIC}")
    else:
        notes.append("segmentation metrics skipped: the preset has no segmentation node")

    det: DetectionAccumulator | None = None
    if detection_topics and GT_BOXES in facts.topics:
        from ros_mmfusion.core.detection3d.metrics import DetectionEvaluator

        outputs[GT_BOXES] = Detection3DArray
        det = DetectionAccumulator(DetectionEvaluator(classes=det_classes, iou_thresholds=iou_thresholds,
                                                      interpolation=args.ap_interpolation,
                                                      bev_range=_detector_bev_range(preset)))
    elif detection_topics:
        notes.append(f"3D detection metrics skipped: the bag has no {GT_BOXES}")

    nav = _navigation_setup(preset, facts, notes)
    if nav is not None:
        outputs[nav.closest_topic] = Int32
        outputs[nav.odom_topic] = Odometry

    recorder = None if args.no_record else OutputsBag(out / OUTPUTS_BAG)
    recorded = {t for t in outputs if t not in (GT_SEMANTIC, GT_BOXES, rgb_topic) and (nav is None or
                                                                                       t != nav.odom_topic)}
    last_output = [0.0]
    lock = threading.Lock()

    def on_message(topic: str, msg: Any, arrival_ns: int) -> None:
        with lock:
            if topic in recorded:
                last_output[0] = time.monotonic()
                if recorder is not None:
                    recorder.write(topic, msg, arrival_ns)
            if nav is not None and topic == nav.closest_topic:
                nav.record.add_closest_node(msg.data)
            if not hasattr(msg, "header"):
                return
            stamp = stamp_to_ns(msg.header.stamp)
            if nav is not None:
                if topic == nav.path_topic:
                    nav.record.add_path(stamp, [(p.pose.position.x, p.pose.position.y) for p in msg.poses])
                elif topic == nav.odom_topic:
                    pose = msg.pose.pose
                    q = pose.orientation
                    nav.record.add_odometry(stamp, pose.position.x, pose.position.y,
                                            float(quaternion_to_yaw((q.x, q.y, q.z, q.w))))
            if det is not None and topic == GT_BOXES:
                det.add(stamp, gt=detections_to_arrays(msg))
            elif det is not None and topic in detection_topics:
                det.add(stamp, pred=detections_to_arrays(msg))
            if seg is None:
                return
            if topic == GT_SEMANTIC:
                seg.add(stamp, gt=image_to_numpy(msg).copy())
            elif topic in labels_topics:
                seg.add(stamp, pred=image_to_numpy(msg).copy())
            elif topic == rgb_topic:
                seg.add_rgb(stamp, image_to_numpy(msg).copy())

    main_counts = {t: facts.counts.get(t, 0) for t in sorted(main_inputs)}
    total = sum(main_counts.values())

    def progress(published: dict[str, int], elapsed: float) -> None:
        done = sum(published.get(t, 0) for t in main_counts)
        print(f"  {elapsed:5.0f} s: replayed {done}/{total} input frames", flush=True)

    print(f"evaluating preset {args.preset!r} on {bag} ({facts.duration_s:.1f} s of data at x{args.rate}, "
          f"{'one process per node' if args.processes else 'one process'}): "
          + ", ".join(f"{t} {n} frames" for t, n in main_counts.items()), flush=True)
    rclpy.init()
    started = time.monotonic()
    try:
        tap = TopicTap(outputs, name="mmfusion_eval_tap", timing=True, on_message=on_message)
        if args.processes:
            _replay_processes(preset, tap, facts.duration_s / args.rate + args.startup, last_output, progress,
                              run_processes)
        else:
            replay_in_process(preset, extra_nodes=[tap], grace=3.0, last_activity=lambda: last_output[0],
                              progress=progress)
    finally:
        if recorder is not None:
            recorder.close()
        rclpy.try_shutdown()
    elapsed = time.monotonic() - started

    latency: dict[str, dict] = {}
    series: dict[str, LatencySeries] = {}
    for topic in outputs:
        if topic in expected:
            rec = tap.records[topic]
            latency[topic] = latency_stats(rec.stamps_ns, rec.arrivals_ns, expected[topic]).as_dict()
            series[topic] = LatencySeries(rec.stamps_ns, rec.arrivals_ns)
            if rec.count == 0:
                notes.append(f"{topic}: no output arrived")
    node_latency = {}
    for name in workers:
        values = np.asarray(tap.records[f"/{name}/debug/pipeline_latency_ms"].values)
        if values.size:
            node_latency[name] = {"messages": int(values.size), "p50_ms": float(np.median(values)),
                                  "p95_ms": float(np.percentile(values, 95))}
    metrics: dict[str, Any] = {
        "run": {"preset": args.preset, "bag": str(bag), "mode": "processes" if args.processes else "in-process",
                "rate": args.rate, "seconds": round(elapsed, 1), "input_frames": main_counts,
                "outputs_bag": None if recorder is None else str(final / OUTPUTS_BAG),
                "outputs_recorded": 0 if recorder is None else recorder.count},
        "latency": latency, "node_pipeline_latency": node_latency, "notes": notes,
    }
    sample = None
    if seg is not None:
        if seg.matched:
            s = scores(seg.confusion, ignore)
            metrics["segmentation"] = {**s.as_dict(names), "frames": seg.matched, "ignore_index": ignore,
                                       "ground_truth_frames": facts.counts.get(GT_SEMANTIC, 0),
                                       "class_names": names, "confusion": seg.confusion.tolist()}
            if seg.size_mismatch:
                notes.append(f"{seg.size_mismatch} predictions differ in size from their ground truth: skipped")
            if seg.sample_frame() is not None:
                gt, pred, rgb = seg.sample_frame()
                rgb = rgb if rgb is not None and rgb.shape[:2] == gt.shape else np.zeros((*gt.shape, 3), np.uint8)
                sample = SampleFrame(rgb[..., :3], gt, pred, label_set.palette())
        else:
            notes.append("segmentation metrics skipped: no prediction matched a ground-truth frame by stamp")
    if det is not None:
        if det.matched:
            metrics["detection"] = {**det.evaluator.results(), "ground_truth_frames": facts.counts.get(GT_BOXES, 0),
                                    "sample_bev": det.sample}
        else:
            notes.append("3D detection metrics skipped: no detection matched a ground-truth frame by stamp")
    if nav is not None:
        nav_metrics = nav.record.results(notes, nav.odom_topic)
        if nav_metrics is not None:
            metrics["navigation"] = nav_metrics
    paths = write_report(out, metrics, series, sample)
    if "segmentation" in metrics:
        m = metrics["segmentation"]
        print(f"segmentation: mIoU {m['mIoU']:.3f}, pixel accuracy {m['pixel_accuracy']:.3f} over {m['frames']} frames")
    if "detection" in metrics:
        m = metrics["detection"]
        first = f"{iou_thresholds[0]:g}"
        print(f"3D detection: BEV mAP@{first} {m['bev'][first]['mAP'] or 0:.3f}, 3D mAP@{first} "
              f"{m['3d'][first]['mAP'] or 0:.3f}, centre-distance mAP {m['center_distance_mAP']['mAP'] or 0:.3f} "
              f"over {m['frames']} frames")
    if "navigation" in metrics:
        loc, wp = metrics["navigation"]["localisation"], metrics["navigation"]["waypoints"]
        print(f"navigation: localisation accuracy {loc['accuracy'] if loc['accuracy'] is not None else '-'} over "
              f"{loc['frames']} frames, ADE {wp['ADE_m'] if wp['ADE_m'] is not None else '-'} m, "
              f"FDE {wp['FDE_m'] if wp['FDE_m'] is not None else '-'} m over {wp['frames']} frames")
    for topic, s in latency.items():
        p50 = "-" if s["p50_ms"] is None else f"{s['p50_ms']:.1f}"
        p95 = "-" if s["p95_ms"] is None else f"{s['p95_ms']:.1f}"
        print(f"{topic}: {s['count']} messages, dropped {s['dropped']}/{s['expected']}, latency p50 {p50} ms "
              f"p95 {p95} ms, {s['rate_hz'] or 0:.1f} Hz")
    for note in notes:
        print(f"note: {note}")
    return paths


def _replay_processes(preset, tap, expected_s: float, last_output: list[float], progress, run_processes) -> None:
    """Spin ``tap`` here while the preset runs one process per node; stop once outputs went quiet (or time ran out)."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(tap)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)

    spinner = threading.Thread(target=spin, name="eval_tap", daemon=True)
    spinner.start()
    started = time.monotonic()
    deadline = started + expected_s + 60.0
    state = {"next": started + 5.0}

    def until() -> bool:
        now = time.monotonic()
        if now >= state["next"]:
            state["next"] = now + 5.0
            print(f"  {now - started:5.0f} s: {sum(r.count for r in tap.records.values())} messages received",
                  flush=True)
        if now > deadline:
            return True
        return now - started > expected_s and last_output[0] > 0 and now - last_output[0] > 3.0

    try:
        run_processes(preset, until=until)
    finally:
        stop.set()
        spinner.join(timeout=5.0)
        executor.remove_node(tap)
        tap.destroy_node()
        executor.shutdown()
