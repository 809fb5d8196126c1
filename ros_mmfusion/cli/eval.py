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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ros_mmfusion.core.bagio import BagFacts, scan_bag
from ros_mmfusion.core.evaluation.session import DIAGNOSTICS, GT_BOXES, GT_SEMANTIC, EvaluationSession
from ros_mmfusion.core.evaluation.topics import EvaluationTopics, resolve_topic

HELP = "replay a bag through a preset and report accuracy and latency (metrics.json, report.md/html)"

DEFAULT_DETECTION_CLASSES = ("car", "pedestrian", "cyclist")
OUTPUTS_BAG = "outputs"
RGB_TOPIC = "/camera/color/image_raw"
"""The camera image shown beside the segmentation sample frame (when the bag has it)."""
#: every entry ``eval`` may write into its report directory (core.evaluation.report names the figures)
REPORT_FILES = ("metrics.json", "report.md", "report.html", "iou_per_class.png", "latency_histogram.png",
                "latency_timeline.png", "pr_curves.png", "detection_sample_bev.png", "trajectory.png",
                "sample_frame.png")


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
    parser.add_argument("--detection-min-points", type=int, default=0, metavar="N",
                        help="3D detection: also score a level where ground truth with fewer than N LiDAR returns of "
                             "the detector's input cloud is ignored (neither a miss nor a false positive when "
                             "detected; KITTI's difficulty / Waymo's LEVEL_1 idea); 0: every box counts, only")
    parser.add_argument("--no-record", action="store_true", help="do not write the outputs bag")
    parser.add_argument("--startup", type=float, default=10.0,
                        help="with --processes: seconds the player waits for the other processes to load")


def _node_params(launch: Any) -> dict[str, Any]:
    """Every parameter of a preset's node launch as the node will see it: its declared defaults, then the params file,
    inline and ``--set`` values (checked: ConfigError for a bad one)."""
    from ros_mmfusion.launcher import node_class, typed_parameters

    return {**{spec.name: spec.default for spec in node_class(launch).PARAMS}, **typed_parameters(launch)}


def _detector_config(preset: Any) -> Any:
    """The detector configuration (``PointPillarsConfig``) the preset's detection3d node will run, read as the node
    reads it (``detection3d.artifacts.detector_spec``: model package or model, range override), or None."""
    from ros_mmfusion.core.detection3d.artifacts import detector_spec

    for launch in preset.nodes:
        if launch.key == "detection3d":
            return detector_spec(_node_params(launch), launch.name).config
    return None


def _detector_bev_range(preset: Any) -> tuple[float, float, float, float] | None:
    """The BEV range (x_min, y_min, x_max, y_max) of the preset's detector: boxes outside it are not evaluated.

    A bad ``point_cloud_range`` override or model package is a ConfigError, before anything runs."""
    config = _detector_config(preset)
    if config is None:
        return None
    values = list(config.point_cloud_range)
    return values[0], values[1], values[3], values[4]


def _detection_classes(text: str, preset: Any) -> tuple[str, ...]:
    """The class names of ``--detection-classes``; each must be one of the label set's object classes (the names of
    the ground-truth boxes) or of the preset's detector's classes, else UserError naming the known ones."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.labels import LABELS

    classes = tuple(c.strip() for c in text.split(",") if c.strip())
    known = [label.name for label in LABELS if label.is_thing]
    config = _detector_config(preset)
    known += [c for c in (config.class_names if config is not None else ()) if c not in known]
    unknown = [c for c in classes if c not in known]
    if not classes or unknown:
        raise UserError(f"--detection-classes {text!r}: unknown class name(s) {', '.join(unknown) or '(none given)'}"
                        f"; known: {', '.join(known)}")
    return classes


Evaluated = tuple[Any, EvaluationTopics]
"""A preset's node launch with the topics its node class declares for evaluation (``EVALUATION``)."""


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
    record: Any  # core.navigation.metrics.NavigationRecord


def _navigation_setup(evaluated: list[Evaluated], facts: BagFacts, notes: list[str]) -> NavigationOutputs | None:
    """The navigation outputs of the preset's ViNT node, or None (with a note) when it cannot be evaluated."""
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.navigation.artifacts import navigation_model
    from ros_mmfusion.core.navigation.metrics import NavigationRecord

    for launch, ev in evaluated:
        if ev.path is None:
            continue
        odom_topic = resolve_topic(ev.odom, launch.remappings)
        if odom_topic not in facts.topics:
            notes.append(f"navigation metrics skipped: the bag has no {odom_topic}")
            return None
        try:
            params = _node_params(launch)
            rate = float(params.get("frame_rate") or 0.0) or navigation_model(params, launch.name).variant.frame_rate_hz
            record = NavigationRecord.for_node(str(params.get("topomap_dir", "")), rate)
        except ConfigError as exc:
            notes.append(f"navigation metrics skipped: {exc}")
            return None
        return NavigationOutputs(resolve_topic(ev.path, launch.remappings),
                                 resolve_topic(ev.closest_node, launch.remappings), odom_topic, record)
    return None


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError

    if not 0.01 <= args.rate <= 100:
        raise UserError(f"--rate must be in [0.01, 100], got {args.rate}")
    from ros_mmfusion.core import labels as label_set
    from ros_mmfusion.core.outputs import OutputDirectory

    iou_thresholds = _floats(args.iou_thresholds, "--iou-thresholds")
    bag = Path(args.bag)
    writes = REPORT_FILES if args.no_record else (*REPORT_FILES, OUTPUTS_BAG)
    output = OutputDirectory(args.out, "eval", overwrite=args.overwrite, writes=writes, inputs=[bag],
                             what="report directory")
    preset = _load_preset(args, bag)
    det_classes = _detection_classes(args.detection_classes, preset)
    _detector_bev_range(preset)  # a bad point_cloud_range override is an error before the replay starts
    facts = scan_bag(bag)
    evaluated = _evaluated_nodes(preset, facts, bag)
    names = label_set.label_names()
    ignore = label_set.UNLABELED if args.ignore_index is None else args.ignore_index
    ignore = None if ignore < 0 else ignore
    if ignore is not None and ignore >= len(names):
        raise UserError(f"--ignore-index must be below {len(names)} (or -1 for none), got {ignore}")
    with output as stage:
        paths = _evaluate(args, bag, facts, preset, evaluated, stage, output.path, names=names, ignore=ignore,
                          det_classes=det_classes, iou_thresholds=iou_thresholds)
    print(f"report: {output.path / paths['html'].name} ({paths['markdown'].name}, {paths['metrics'].name})")
    return 0


def _load_preset(args: argparse.Namespace, bag: Path) -> Any:
    """The preset with ``--arg``, ``--set`` and the player's replay settings (restamped, ``--rate``) applied."""
    from ros_mmfusion import presets
    from ros_mmfusion.cli.main import UserError

    preset_args = presets.parse_arguments(args.arg)
    preset_args["bag"] = str(bag)
    overrides: dict[str, dict[str, Any]] = presets.parse_set(args.set)
    overrides.setdefault("bag_player", {}).update({"rate": args.rate, "restamp": True})
    if args.processes:
        overrides["bag_player"]["start_delay"] = float(args.startup)
    preset = presets.load(args.preset, preset_args, overrides)
    if "bag_player" not in [n.key for n in preset.nodes]:
        raise UserError(f"preset {args.preset!r} has no bag_player node; eval needs one to replay the bag")
    return preset


def _evaluated_nodes(preset: Any, facts: BagFacts, bag: Path) -> list[Evaluated]:
    """The preset's evaluated nodes; UserError naming every required input topic the bag lacks."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.launcher import evaluated_nodes

    evaluated = evaluated_nodes(preset)
    missing = []
    for launch, ev in evaluated:
        for name in ev.required_inputs:
            topic = resolve_topic(name, launch.remappings)
            if topic not in facts.topics:
                missing.append(f"{topic} (input {name} of {launch.name})")
    if missing:
        raise UserError(f"bag {bag} lacks the topic(s) the preset needs: {', '.join(missing)}; "
                        f"it has {', '.join(sorted(facts.topics))}")
    return evaluated


@dataclass
class _Plan:
    """What one run taps and evaluates, decided from the preset and the bag before the replay."""

    outputs: dict[str, type]  # topic -> message class, every topic tapped
    expected: dict[str, int]  # evaluated output topic -> frames expected (its node's main input frames)
    main_counts: dict[str, int]  # main input topic -> frames in the bag
    workers: list[str]  # names of the nodes other than the player (their debug latency is tapped)
    recorded: set[str]  # tapped topics written to the outputs bag (not the replayed ground truth and inputs)
    session: EvaluationSession
    feed: Any  # ros.evaluation.EvaluationFeed
    notes: list[str]


def _plan(args: argparse.Namespace, facts: BagFacts, preset: Any, evaluated: list[Evaluated], *, names: list[str],
          ignore: int | None, det_classes: tuple[str, ...], iou_thresholds: tuple[float, ...]) -> _Plan:
    """The topics to tap with their types and the accumulators fed from them (``_add_accumulators``); notes on what
    cannot be evaluated."""
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Path as PathMsg
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float64
    from vision_msgs.msg import Detection3DArray

    from ros_mmfusion.ros.evaluation import EvaluationFeed

    notes: list[str] = []
    outputs: dict[str, type] = {}
    expected: dict[str, int] = {}
    session = EvaluationSession()
    feed = EvaluationFeed(session)
    main_inputs: set[str] = set()
    for launch, ev in evaluated:
        main = resolve_topic(ev.main_input, launch.remappings)
        main_inputs.add(main)
        for name in ev.outputs:
            topic = resolve_topic(name, launch.remappings)
            outputs[topic] = Detection3DArray if name == ev.detections else PathMsg if name == ev.path else Image
            expected[topic] = facts.counts.get(main, 0)
        if ev.detections:
            feed.detection_topics.add(resolve_topic(ev.detections, launch.remappings))
        if ev.labels:
            feed.labels_topics.add(resolve_topic(ev.labels, launch.remappings))
    workers = [n.name for n in preset.nodes if n.key != "bag_player"]
    for name in workers:
        outputs[f"/{name}/debug/pipeline_latency_ms"] = Float64
    outputs[DIAGNOSTICS] = DiagnosticArray  # each node's network record (model.* keys), for the report
    evaluated_names = {launch.name for launch, _ in evaluated}
    for launch in preset.nodes:
        if launch.key != "bag_player" and launch.name not in evaluated_names:
            notes.append(f"node {launch.name} ({launch.key}): no metrics in eval yet; only its debug latency is shown")

    odom_topic = _add_accumulators(args, facts, preset, evaluated, outputs, feed, notes, names=names, ignore=ignore,
                                   det_classes=det_classes, iou_thresholds=iou_thresholds)
    ground_truth = {GT_SEMANTIC, GT_BOXES, RGB_TOPIC, DIAGNOSTICS} | ({odom_topic} if odom_topic is not None else set())
    ground_truth |= {feed.cloud_topic} if feed.cloud_topic else set()  # a replayed input, not an output
    return _Plan(outputs, expected, {t: facts.counts.get(t, 0) for t in sorted(main_inputs)}, workers,
                 {t for t in outputs if t not in ground_truth}, session, feed, notes)


def _add_accumulators(args: argparse.Namespace, facts: BagFacts, preset: Any, evaluated: list[Evaluated],
                      outputs: dict[str, type], feed: Any, notes: list[str], *, names: list[str], ignore: int | None,
                      det_classes: tuple[str, ...], iou_thresholds: tuple[float, ...]) -> str | None:
    """Give ``feed.session`` an accumulator for every task whose outputs and ground truth are both there, add the
    ground-truth topics to ``outputs``, and note the others; the ground-truth odometry topic, if navigation is."""
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Image
    from std_msgs.msg import Int32
    from vision_msgs.msg import Detection3DArray

    if feed.labels_topics and GT_SEMANTIC in facts.topics:
        from ros_mmfusion.core.segmentation.metrics import SegmentationAccumulator

        outputs[GT_SEMANTIC] = Image
        feed.session.segmentation = SegmentationAccumulator(len(names), ignore,
                                                            sample_after=facts.counts.get(GT_SEMANTIC, 0) // 2)
        if RGB_TOPIC in facts.topics:
            outputs[RGB_TOPIC] = Image
            feed.rgb_topic = RGB_TOPIC
    elif feed.labels_topics:
        notes.append(f"segmentation metrics skipped: the bag has no {GT_SEMANTIC}")
    else:
        notes.append("segmentation metrics skipped: the preset has no segmentation node")

    if feed.detection_topics and GT_BOXES in facts.topics:
        from ros_mmfusion.core.detection3d.metrics import DetectionAccumulator, DetectionEvaluator

        outputs[GT_BOXES] = Detection3DArray
        feed.session.detection = DetectionAccumulator(DetectionEvaluator(
            classes=det_classes, iou_thresholds=iou_thresholds, interpolation=args.ap_interpolation,
            bev_range=_detector_bev_range(preset)), min_points=max(0, args.detection_min_points))
        if args.detection_min_points > 0:
            from sensor_msgs.msg import PointCloud2

            feed.cloud_topic = next(resolve_topic(ev.main_input, launch.remappings) for launch, ev in evaluated
                                    if ev.detections)
            outputs[feed.cloud_topic] = PointCloud2
    elif feed.detection_topics:
        notes.append(f"3D detection metrics skipped: the bag has no {GT_BOXES}")

    nav = _navigation_setup(evaluated, facts, notes)
    if nav is not None:
        outputs[nav.closest_topic] = Int32
        outputs[nav.odom_topic] = Odometry
        feed.session.navigation, feed.session.odom_topic = nav.record, nav.odom_topic
        feed.path_topic, feed.closest_topic, feed.odom_topic = nav.path_topic, nav.closest_topic, nav.odom_topic
    return None if nav is None else nav.odom_topic


def _evaluate(args: argparse.Namespace, bag: Path, facts: BagFacts, preset: Any, evaluated: list[Evaluated],
              out: Path, final: Path, *, names: list[str], ignore: int | None, det_classes: tuple[str, ...],
              iou_thresholds: tuple[float, ...]) -> dict[str, Path]:
    """Replay, collect and write the report into ``out`` (the staging directory of ``final``); the report's paths."""
    import ros_mmfusion.ros  # noqa: F401  (DDS profile)
    from ros_mmfusion.core.evaluation.report import write_report
    from ros_mmfusion.ros.recording import OutputsBag

    plan = _plan(args, facts, preset, evaluated, names=names, ignore=ignore, det_classes=det_classes,
                 iou_thresholds=iou_thresholds)
    recorder = None if args.no_record else OutputsBag(out / OUTPUTS_BAG)
    tap, elapsed = _replay(args, bag, facts, preset, plan, recorder)
    metrics, series = _latency_metrics(plan, tap)
    metrics = {"run": {"preset": args.preset, "bag": str(bag), "mode": "processes" if args.processes else "in-process",
                       "rate": args.rate, "seconds": round(elapsed, 1), "input_frames": plan.main_counts,
                       "outputs_bag": None if recorder is None else str(final / OUTPUTS_BAG),
                       "outputs_recorded": 0 if recorder is None else recorder.count},
               "models": plan.session.model_section([f"/{name}" for name in plan.workers], plan.notes),
               **metrics, "notes": plan.notes}
    metrics.update(plan.session.results(names, facts.counts, plan.notes))
    paths = write_report(out, metrics, series, _sample_frame(plan.session))
    _print_summary(metrics, iou_thresholds)
    return paths


def _replay(args: argparse.Namespace, bag: Path, facts: BagFacts, preset: Any, plan: _Plan,
            recorder: Any) -> tuple[Any, float]:
    """Replay the bag through the preset with a tap that records and feeds the plan's topics; (tap, seconds)."""
    import rclpy

    from ros_mmfusion.launcher import replay_in_process, run_processes
    from ros_mmfusion.ros.tap import TopicTap

    last_output = [0.0]
    lock = threading.Lock()

    def on_message(topic: str, msg: Any, arrival_ns: int) -> None:
        with lock:
            if topic in plan.recorded:
                last_output[0] = time.monotonic()
                if recorder is not None:
                    recorder.write(topic, msg, arrival_ns)
            plan.feed(topic, msg)

    total = sum(plan.main_counts.values())

    def progress(published: dict[str, int], elapsed: float) -> None:
        done = sum(published.get(t, 0) for t in plan.main_counts)
        print(f"  {elapsed:5.0f} s: replayed {done}/{total} input frames", flush=True)

    print(f"evaluating preset {args.preset!r} on {bag} ({facts.duration_s:.1f} s of data at x{args.rate}, "
          f"{'one process per node' if args.processes else 'one process'}): "
          + ", ".join(f"{t} {n} frames" for t, n in plan.main_counts.items()), flush=True)
    rclpy.init()
    started = time.monotonic()
    try:
        tap = TopicTap(plan.outputs, name="mmfusion_eval_tap", timing=True, on_message=on_message)
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
    return tap, time.monotonic() - started


def _latency_metrics(plan: _Plan, tap: Any) -> tuple[dict[str, dict], dict[str, Any]]:
    """``latency`` per evaluated output and ``node_pipeline_latency`` per worker node (metrics.json sections), and
    the series plotted in the report; a note for every output on which nothing arrived."""
    from ros_mmfusion.core.evaluation.latency import latency_stats, pipeline_latency_summary
    from ros_mmfusion.core.evaluation.report import LatencySeries

    latency: dict[str, dict] = {}
    series: dict[str, LatencySeries] = {}
    for topic in plan.outputs:
        if topic in plan.expected:
            rec = tap.records[topic]
            latency[topic] = latency_stats(rec.stamps_ns, rec.arrivals_ns, plan.expected[topic]).as_dict()
            series[topic] = LatencySeries(rec.stamps_ns, rec.arrivals_ns)
            if rec.count == 0:
                plan.notes.append(f"{topic}: no output arrived")
    node_latency = {}
    for name in plan.workers:
        summary = pipeline_latency_summary(tap.records[f"/{name}/debug/pipeline_latency_ms"].values)
        if summary is not None:
            node_latency[name] = summary
    return {"latency": latency, "node_pipeline_latency": node_latency}, series


def _sample_frame(session: EvaluationSession) -> Any:
    """The report's segmentation sample frame (camera image, ground truth, prediction), or None."""
    from ros_mmfusion.core import labels as label_set
    from ros_mmfusion.core.evaluation.report import SampleFrame

    frame = session.segmentation.sample_frame() if session.segmentation is not None else None
    if frame is None:
        return None
    gt, pred, rgb = frame
    return SampleFrame(rgb, gt, pred, label_set.palette())


def kitti_threshold(class_name: str, section: dict) -> str | None:
    """The IoU threshold KITTI scores a class at (car 0.7, others 0.5) when the evaluation has it."""
    want = "0.7" if class_name.lower() == "car" else "0.5"
    return want if want in section else None


def kitti_aps(classes: list[str], bev: dict) -> str:
    """``car@0.7 0.912, pedestrian@0.5 0.634, ...``: each class's BEV AP at its KITTI threshold, where evaluated."""
    parts = []
    for c in classes:
        t = kitti_threshold(c, bev)
        if t is not None:
            ap = bev[t]["AP"].get(c)
            parts.append(f"{c}@{t} {'-' if ap is None else f'{ap:.3f}'}")
    return ", ".join(parts) or "-"


def _print_summary(metrics: dict[str, Any], iou_thresholds: tuple[float, ...]) -> None:
    """One line per network that ran, per evaluated task and per output topic, then the notes."""
    from ros_mmfusion.core.evaluation.report import model_line

    for node, record in metrics.get("models", {}).items():
        print(f"model of {node}: {model_line(record)}")
    if "segmentation" in metrics:
        m = metrics["segmentation"]
        print(f"segmentation: mIoU {m['mIoU']:.3f}, pixel accuracy {m['pixel_accuracy']:.3f} over {m['frames']} frames")
    if "detection" in metrics:
        m = metrics["detection"]
        first = f"{iou_thresholds[0]:g}"
        print(f"3D detection: BEV mAP@{first} {m['bev'][first]['mAP'] or 0:.3f}, 3D mAP@{first} "
              f"{m['3d'][first]['mAP'] or 0:.3f}, centre-distance mAP {m['center_distance_mAP']['mAP'] or 0:.3f} "
              f"over {m['frames']} frames")
        levels = [("every box", m)]
        if m.get("min_points_level"):
            levels.append((f">= {m['min_points_level']['min_points']} LiDAR points", m["min_points_level"]))
        for level, section in levels:
            print(f"3D detection BEV AP per class ({level}): {kitti_aps(m['classes'], section['bev'])}")
    if "navigation" in metrics:
        loc, wp = metrics["navigation"]["localisation"], metrics["navigation"]["waypoints"]
        print(f"navigation: localisation accuracy {loc['accuracy'] if loc['accuracy'] is not None else '-'} over "
              f"{loc['frames']} frames, ADE {wp['ADE_m'] if wp['ADE_m'] is not None else '-'} m, "
              f"FDE {wp['FDE_m'] if wp['FDE_m'] is not None else '-'} m over {wp['frames']} frames")
    for topic, s in metrics["latency"].items():
        p50 = "-" if s["p50_ms"] is None else f"{s['p50_ms']:.1f}"
        p95 = "-" if s["p95_ms"] is None else f"{s['p95_ms']:.1f}"
        print(f"{topic}: {s['count']} messages, dropped {s['dropped']}/{s['expected']}, latency p50 {p50} ms "
              f"p95 {p95} ms, {s['rate_hz'] or 0:.1f} Hz")
    for note in metrics["notes"]:
        print(f"note: {note}")


def _replay_processes(preset, tap, expected_s: float, last_output: list[float], progress, run_processes) -> None:
    """Spin ``tap`` here while the preset runs one process per node; stop once outputs went quiet (or time ran out)."""
    from ros_mmfusion.ros.runtime import spinning_in_background

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

    with spinning_in_background(tap, "eval_tap"):
        run_processes(preset, until=until)
