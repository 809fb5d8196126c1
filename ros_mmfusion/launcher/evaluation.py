"""Evaluate a preset over a bag: replay it, feed the outputs and the replayed ground truth to the accumulators, and
give the ``metrics.json`` sections (the one evaluation that ``mmfusion eval`` and ``mmfusion demo`` both run).

How predictions meet ground truth: the bag player restamps every header stamp onto the wall clock with one formula
(``stamp = wall_start + (stamp_in_bag - bag_start) / rate``), and it replays the bag's ground-truth topics too. A
ground-truth image and the camera image of the same frame share a stamp in the bag, so they share the restamped stamp;
a node stamps its output with its input's header, so a prediction's stamp equals its frame's ground-truth stamp
exactly, with no offset to recover. This works the same in one process and with ``processes``.

Latency per output topic is the arrival time (wall clock, in this process) minus the output's header stamp (the
restamped input stamp, i.e. when the input was published); dropped frames are input frames whose stamp never came
out. With recording, outputs are written with their input stamps into ``OUT/outputs`` (MCAP; the log time is the
arrival).

Use: :func:`prepare` (loads the preset and checks it against the bag, before anything runs: ConfigError naming the
problem), then :func:`evaluate` (replays; the metrics, latency series and accumulators). Writing and printing the
report is the caller's (``cli/eval.py``, ``cli/demo.py``).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ros_mmfusion.core.bagio import BagFacts, scan_bag
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.evaluation.session import DIAGNOSTICS, GT_BOXES, GT_BOXES_2D, GT_SEMANTIC, EvaluationSession
from ros_mmfusion.core.evaluation.topics import EvaluationTopics, resolve_topic

DEFAULT_DETECTION_CLASSES = ("car", "pedestrian", "cyclist")
OUTPUTS_BAG = "outputs"
RGB_TOPIC = "/camera/color/image_raw"
"""The camera image shown beside the segmentation sample frame (when the bag has it)."""


@dataclass
class EvaluationSettings:
    """How one evaluation runs (the options of ``mmfusion eval``): ``preset`` name, playback ``rate``, one process per
    node (``processes``, the player waiting ``startup`` seconds for them), ``ignore_index`` (None: the label set's
    ``unlabeled``; -1: none), detection IoU thresholds, AP interpolation (r40 | all) and ``detection_classes``
    (comma-separated names), ``no_record`` (no outputs bag), and where the segmentation ground truth is:
    ``ground_truth_semantic`` (topic; default ``/ground_truth/semantic``, or the label map's semantic camera) and
    ``label_map`` (a :mod:`ros_mmfusion.core.label_maps` name: the topic holds that set's palette colours, read as
    suite class ids; none: mono8 suite ids)."""

    preset: str = "segmentation"
    rate: float = 1.0
    processes: bool = False
    startup: float = 10.0
    ignore_index: int | None = None
    iou_thresholds: tuple[float, ...] = (0.5, 0.7)
    ap_interpolation: str = "r40"
    detection_classes: str = ",".join(DEFAULT_DETECTION_CLASSES)
    protocol: str = "generic"  # detection: generic | kitti | nuscenes (core.detection3d.metrics.PROTOCOLS)
    miou_convention: str = "present"  # segmentation mIoU: present (Cityscapes/mmseg) | all (SemanticKITTI)
    detection_min_points: int = 0  # > 0: also score ground truth with fewer LiDAR returns as ignored
    no_record: bool = False
    ground_truth_semantic: str | None = None  # the ground-truth semantic image topic; None: /ground_truth/semantic
    label_map: str | None = None  # core.label_maps name: the ground truth is that label set's palette image
    arguments: dict[str, str] = field(default_factory=dict)  # the preset's $(arg NAME) values, besides ``bag``
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # node name -> parameter overrides


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
    the ground-truth boxes) or of the preset's detector's classes, else ConfigError naming the known ones."""
    from ros_mmfusion.core.labels import LABELS

    classes = tuple(c.strip() for c in text.split(",") if c.strip())
    known = [label.name for label in LABELS if label.is_thing]
    config = _detector_config(preset)
    known += [c for c in (config.class_names if config is not None else ()) if c not in known]
    unknown = [c for c in classes if c not in known]
    if not classes or unknown:
        raise ConfigError(f"--detection-classes {text!r}: unknown class name(s) "
                          f"{', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
    return classes


Evaluated = tuple[Any, EvaluationTopics]
"""A preset's node launch with the topics its node class declares for evaluation (``EVALUATION``)."""


@dataclass
class NavigationOutputs:
    """The topics eval reads for navigation and the run's record of what arrived on them (the record and its metrics:
    ``core/navigation/metrics.py``). The ground truth is the replayed ``/odom``, restamped by the player like the
    outputs, so both share one clock."""

    path_topic: str
    closest_topic: str
    odom_topic: str
    record: Any  # core.navigation.metrics.NavigationRecord


def _navigation_timing(launch: Any) -> tuple[float, int]:
    """The ViNT node's context sampling rate (Hz of stamp time: ``frame_rate``, else its model's) and the frames
    before the current one its context holds (its model's ``context_size``); ConfigError for an unusable model."""
    from ros_mmfusion.core.navigation.artifacts import navigation_model

    params = _node_params(launch)
    model = navigation_model(params, launch.name)
    return float(params.get("frame_rate") or 0.0) or model.variant.frame_rate_hz, model.variant.config.context_size


def _navigation_setup(evaluated: list[Evaluated], facts: BagFacts, notes: list[str]) -> NavigationOutputs | None:
    """The navigation outputs of the preset's ViNT node, or None (with a note) when it cannot be evaluated."""
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.navigation.metrics import NavigationRecord

    for launch, ev in evaluated:
        if ev.path is None:
            continue
        odom_topic = resolve_topic(ev.odom, launch.remappings)
        if odom_topic not in facts.topics:
            notes.append(f"navigation metrics skipped: the bag has no {odom_topic}")
            return None
        try:
            rate, _ = _navigation_timing(launch)
            record = NavigationRecord.for_node(str(_node_params(launch).get("topomap_dir", "")), rate)
        except ConfigError as exc:
            notes.append(f"navigation metrics skipped: {exc}")
            return None
        return NavigationOutputs(resolve_topic(ev.path, launch.remappings),
                                 resolve_topic(ev.closest_node, launch.remappings), odom_topic, record)
    return None


def _load_preset(args: EvaluationSettings, bag: Path) -> Any:
    """The preset with the settings' arguments and overrides and the player's replay settings (restamped, rate)."""
    from ros_mmfusion import presets

    preset_args = dict(args.arguments)
    preset_args["bag"] = str(bag)
    overrides: dict[str, dict[str, Any]] = {name: dict(values) for name, values in args.overrides.items()}
    overrides.setdefault("bag_player", {}).update({"rate": args.rate, "restamp": True})
    if args.processes:
        overrides["bag_player"]["start_delay"] = float(args.startup)
    # on the wall clock even where the preset replays on sim time (carla, gazebo): latency is arrival minus stamp
    loaded = presets.load(args.preset, preset_args, overrides)
    presets.add_sim_time(loaded.nodes, overrides, False)
    _queue_every_frame(loaded, args.overrides, overrides)
    _scale_stamp_time(loaded, args.overrides, overrides, args.rate)
    preset = presets.load(args.preset, preset_args, overrides)
    if "bag_player" not in [n.key for n in preset.nodes]:
        raise ConfigError(f"preset {args.preset!r} has no bag_player node; eval needs one to replay the bag")
    return preset


# Offline scoring scores every frame: a node with a latest-frame worker (``max_waiting_frames`` 1 live) lets this many
# frames of a replayed burst wait for its network instead (bounded memory; a user's --set wins).
OFFLINE_WAITING_FRAMES = 64


def _queue_every_frame(preset: Any, user: dict[str, dict[str, Any]], overrides: dict[str, dict[str, Any]]) -> None:
    """Set ``max_waiting_frames`` to :data:`OFFLINE_WAITING_FRAMES` on every node of ``preset`` that declares it and
    whose value the user did not ``--set``: a loaded machine then delays frames rather than dropping them, so the
    accuracy covers the whole bag (the latency includes the queueing; ``--set NODE.max_waiting_frames=1`` measures
    the live latest-frame behaviour)."""
    from ros_mmfusion.launcher import node_class

    for launch in preset.nodes:
        declared = {spec.name for spec in node_class(launch).PARAMS}
        if "max_waiting_frames" in declared and "max_waiting_frames" not in user.get(launch.name, {}):
            overrides.setdefault(launch.name, {})["max_waiting_frames"] = OFFLINE_WAITING_FRAMES


def _scale_stamp_time(preset: Any, user: dict[str, dict[str, Any]], overrides: dict[str, dict[str, Any]],
                      rate: float) -> None:
    """Scale the parameters in seconds of stamp time (``ParamSpec.stamp_time``) of every node of ``preset`` by
    ``1 / rate`` (their value in the preset, else the declared default; within the declared maximum), except those
    the user ``--set``. The player restamps each message with the wall clock at its publication, so a replay at
    x``rate`` spaces the stamps 1 / rate times as far apart as the bag's: at x0.1 a 10 Hz thermal camera (1 s apart)
    would otherwise count as stopped after 0.5 s and every frame be segmented without X."""
    from ros_mmfusion.launcher import node_class

    if rate == 1.0:
        return
    for launch in preset.nodes:
        for spec in node_class(launch).declared_params():
            if spec.stamp_time and spec.name not in user.get(launch.name, {}):
                value = float(launch.parameters.get(spec.name, spec.default)) / rate
                scaled = min(value, spec.maximum) if spec.maximum is not None else value
                overrides.setdefault(launch.name, {})[spec.name] = scaled


def input_topic(name: str, remappings: dict[str, str], topics: Any) -> str:
    """The bag topic of a node's input ``name``: its remapped topic, or ``<topic>/compressed`` when the bag has only
    that (an image input on the compressed transport, image_transport's naming)."""
    topic = resolve_topic(name, remappings)
    return f"{topic}/compressed" if topic not in topics and f"{topic}/compressed" in topics else topic


def _evaluated_nodes(preset: Any, facts: BagFacts, bag: Path) -> list[Evaluated]:
    """The preset's evaluated nodes; ConfigError naming every required input topic the bag lacks."""
    from ros_mmfusion.launcher import evaluated_nodes

    evaluated = evaluated_nodes(preset)
    missing = []
    for launch, ev in evaluated:
        for name in ev.required_inputs:
            topic = input_topic(name, launch.remappings, facts.topics)
            if topic not in facts.topics:
                missing.append(f"{topic} (input {name} of {launch.name})")
    if missing:
        raise ConfigError(f"bag {bag} lacks the topic(s) the preset needs: {', '.join(missing)}; "
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


def _plan(args: EvaluationSettings, facts: BagFacts, preset: Any, evaluated: list[Evaluated], *, names: list[str],
          ignore: int | None, det_classes: tuple[str, ...], iou_thresholds: tuple[float, ...],
          semantic_topic: str = GT_SEMANTIC, label_map: Any = None) -> _Plan:
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
    session = EvaluationSession(semantic_topic=semantic_topic)
    feed = EvaluationFeed(session, label_map=label_map)
    main_inputs: set[str] = set()
    for launch, ev in evaluated:
        main = input_topic(ev.main_input, launch.remappings, facts.topics)
        main_inputs.add(main)
        for name in ev.outputs:
            topic = resolve_topic(name, launch.remappings)
            outputs[topic] = Detection3DArray if name == ev.detections else PathMsg if name == ev.path else Image
            expected[topic] = facts.counts.get(main, 0)
        if ev.path:
            try:
                hz, context = _navigation_timing(launch)
            except ConfigError:  # an unusable model: _navigation_setup notes it and skips the navigation metrics
                hz, context = 0.0, 0
            if hz and args.rate != 1.0:
                notes.append(f"{launch.name} at --rate {args.rate:g}: its {hz:g} Hz context sampling and the "
                             f"waypoints' {1.0 / hz:g} s steps run on the restamped (wall-clock) stamps, so "
                             "localisation and waypoint errors are not those of a live robot; evaluate navigation "
                             "at --rate 1")
            if hz:
                notes.append(f"{resolve_topic(ev.path, launch.remappings)}: {launch.name} publishes one path per "
                             f"frame its {hz:g} Hz sampler keeps, from the frame that fills its context ({context} "
                             f"frame{'s' if context != 1 else ''} before it) on: those frames count as 'dropped' "
                             "against every input frame of the bag")
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
    ground_truth = {feed.session.semantic_topic, GT_BOXES, DIAGNOSTICS}
    ground_truth |= {odom_topic} if odom_topic is not None else set()
    ground_truth |= {feed.rgb_topic} if feed.rgb_topic else set()
    ground_truth |= {feed.cloud_topic} if feed.cloud_topic else set()  # a replayed input, not an output
    ground_truth |= {feed.boxes_2d_topic} if feed.boxes_2d_topic else set()
    return _Plan(outputs, expected, {t: facts.counts.get(t, 0) for t in sorted(main_inputs)}, workers,
                 {t for t in outputs if t not in ground_truth}, session, feed, notes)


def _add_accumulators(args: EvaluationSettings, facts: BagFacts, preset: Any, evaluated: list[Evaluated],
                      outputs: dict[str, type], feed: Any, notes: list[str], *, names: list[str], ignore: int | None,
                      det_classes: tuple[str, ...], iou_thresholds: tuple[float, ...]) -> str | None:
    """Give ``feed.session`` an accumulator for every task whose outputs and ground truth are both there, add the
    ground-truth topics to ``outputs``, and note the others; the ground-truth odometry topic, if navigation is."""
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Image
    from std_msgs.msg import Int32
    from vision_msgs.msg import Detection3DArray

    gt_semantic = feed.session.semantic_topic
    if feed.labels_topics and gt_semantic in facts.topics:
        from ros_mmfusion.core.segmentation.metrics import SegmentationAccumulator

        outputs[gt_semantic] = Image
        feed.session.segmentation = SegmentationAccumulator(len(names), ignore,
                                                            sample_after=facts.counts.get(gt_semantic, 0) // 2,
                                                            miou_convention=args.miou_convention)
        # the camera image beside the sample frame: the synthetic bag's, else the segmentation node's RGB input
        rgb_inputs = [RGB_TOPIC] + [resolve_topic("rgb/image", launch.remappings) for launch, ev in evaluated
                                    if ev.labels and "rgb/image" in ev.inputs]
        feed.rgb_topic = next((t for t in rgb_inputs if t in facts.topics), None)
        if feed.rgb_topic is not None:
            outputs[feed.rgb_topic] = Image
    elif feed.labels_topics:
        notes.append(f"segmentation metrics skipped: the bag has no {gt_semantic}")
    else:
        notes.append("segmentation metrics skipped: the preset has no segmentation node")

    if feed.detection_topics and GT_BOXES in facts.topics:
        from ros_mmfusion.core.detection3d.metrics import DetectionAccumulator, make_evaluator

        outputs[GT_BOXES] = Detection3DArray
        evaluator = make_evaluator(args.protocol, classes=det_classes, iou_thresholds=iou_thresholds,
                                   interpolation=args.ap_interpolation, bev_range=_detector_bev_range(preset))
        feed.session.detection = DetectionAccumulator(
            evaluator, min_points=max(0, args.detection_min_points) if args.protocol == "generic" else 0,
            needs_2d=args.protocol == "kitti" and GT_BOXES_2D in facts.topics)
        if feed.session.detection.needs_2d:
            from vision_msgs.msg import Detection2DArray

            outputs[GT_BOXES_2D] = Detection2DArray
            feed.boxes_2d_topic = GT_BOXES_2D
        elif args.protocol == "kitti":
            notes.append(f"KITTI protocol: the bag has no {GT_BOXES_2D}: no difficulty levels from 2D boxes and no "
                         "DontCare regions")
        if feed.session.detection.needs_cloud:
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


@dataclass
class Evaluation:
    """An evaluation checked against its bag before anything runs (:func:`prepare`)."""

    settings: EvaluationSettings
    bag: Path
    facts: BagFacts
    preset: Any
    evaluated: list[Evaluated]
    names: list[str]  # the label set's class names
    ignore: int | None  # the ground-truth class left out of the segmentation metrics
    det_classes: tuple[str, ...]
    semantic_topic: str = GT_SEMANTIC  # the ground-truth semantic image topic
    label_map: Any = None  # core.label_maps.LabelMap of that topic's palette, or None (mono8 suite ids)


@dataclass
class EvaluationResult:
    """What :func:`evaluate` gives: the ``metrics.json`` mapping (``run``, ``latency``, ``node_pipeline_latency``,
    ``notes`` and the task sections), the latency series for the plots, the accumulators (``session``), the tap
    (its records of the extra topics) and the report's segmentation sample frame (or None)."""

    metrics: dict[str, Any]
    series: dict[str, Any]
    session: EvaluationSession
    tap: Any
    sample: Any


def prepare(settings: EvaluationSettings, bag: str | Path) -> Evaluation:
    """Load ``settings.preset`` for ``bag`` and check everything that can be checked before the replay: the detection
    classes, the detector's range, the topics the preset's nodes need, the ignore index. ConfigError (one line)."""
    from ros_mmfusion.core import labels as label_set

    bag = Path(bag)
    preset = _load_preset(settings, bag)
    det_classes = _detection_classes(settings.detection_classes, preset)
    _detector_bev_range(preset)  # a bad point_cloud_range override is an error before the replay starts
    facts = scan_bag(bag)
    evaluated = _evaluated_nodes(preset, facts, bag)
    names = label_set.label_names()
    ignore = label_set.UNLABELED if settings.ignore_index is None else settings.ignore_index
    ignore = None if ignore < 0 else ignore
    if ignore is not None and ignore >= len(names):
        raise ConfigError(f"--ignore-index must be below {len(names)} (or -1 for none), got {ignore}")
    label_map = None
    if settings.label_map:
        from ros_mmfusion.core.label_maps import get_label_map

        label_map = get_label_map(settings.label_map)
    semantic_topic = settings.ground_truth_semantic or (label_map.semantic_topic if label_map is not None
                                                         and label_map.semantic_topic else GT_SEMANTIC)
    if not semantic_topic.startswith("/"):
        raise ConfigError(f"--ground-truth-semantic must be an absolute topic name, got {semantic_topic!r}")
    return Evaluation(settings, bag, facts, preset, evaluated, names, ignore, det_classes, semantic_topic, label_map)


def evaluate(evaluation: Evaluation, out: Path | None = None, final: Path | None = None, *,
             extra_topics: dict[str, type] | None = None, keep: int = 0) -> EvaluationResult:
    """Replay the bag through the preset and compute the metrics. Unless ``settings.no_record``, the outputs are
    recorded into ``out/outputs`` (``out``: the staging directory of ``final``, the path the metrics name).
    ``extra_topics`` ({topic: message class}) are tapped too, and with ``keep`` > 0 the tap keeps their last ``keep``
    messages by header stamp (``result.tap.records[topic].history``), e.g. for pictures."""
    import ros_mmfusion.ros  # noqa: F401  (DDS profile)
    from ros_mmfusion.ros.recording import OutputsBag

    args, bag, facts, preset = evaluation.settings, evaluation.bag, evaluation.facts, evaluation.preset
    plan = _plan(args, facts, preset, evaluation.evaluated, names=evaluation.names, ignore=evaluation.ignore,
                 det_classes=evaluation.det_classes, iou_thresholds=args.iou_thresholds,
                 semantic_topic=evaluation.semantic_topic, label_map=evaluation.label_map)
    for topic, msg_type in (extra_topics or {}).items():
        plan.outputs.setdefault(topic, msg_type)
    if args.no_record:
        recorder = None
    elif out is None:
        raise ConfigError("evaluate: recording the outputs needs an output directory")
    else:
        recorder = OutputsBag(out / OUTPUTS_BAG)
    tap, elapsed = _replay(args, bag, facts, preset, plan, recorder, keep)
    metrics, series = _latency_metrics(plan, tap)
    metrics = {"run": {"preset": args.preset, "bag": str(bag), "mode": "processes" if args.processes else "in-process",
                       "rate": args.rate, "seconds": round(elapsed, 1), "input_frames": plan.main_counts,
                       "outputs_bag": None if recorder is None else str(Path(final or out) / OUTPUTS_BAG),
                       "outputs_recorded": 0 if recorder is None else recorder.count},
               "models": plan.session.model_section([f"/{name}" for name in plan.workers], plan.notes),
               **metrics, "notes": plan.notes}
    if plan.session.segmentation is not None:
        metrics["run"]["semantic_ground_truth"] = _ground_truth_record(evaluation, plan)
    metrics.update(plan.session.results(evaluation.names, facts.counts, plan.notes))
    return EvaluationResult(metrics, series, plan.session, tap, _sample_frame(plan.session))


def _ground_truth_record(evaluation: Evaluation, plan: _Plan) -> dict[str, Any]:
    """Where the segmentation ground truth came from (``metrics.json`` ``run.semantic_ground_truth``); with a label
    map, a note on the classes read as ignore and on pixels whose colour is none of the map's."""
    label_map = evaluation.label_map
    record: dict[str, Any] = {"topic": evaluation.semantic_topic,
                              "label_map": None if label_map is None else label_map.name}
    if label_map is not None:
        unknown = plan.feed.unknown_colour_pixels
        record.update(label_map_version=label_map.version, unknown_colour_pixels=unknown)
        plan.notes.append(f"segmentation ground truth: {evaluation.semantic_topic} read through the "
                          f"{label_map.name} label map ({label_map.version}); its classes "
                          f"{', '.join(label_map.ignored())} have no counterpart and are ignored; "
                          f"{unknown} pixel(s) of unknown colour read as ignore")
    return record


def _replay(args: EvaluationSettings, bag: Path, facts: BagFacts, preset: Any, plan: _Plan,
            recorder: Any, keep: int = 0) -> tuple[Any, float]:
    """Replay the bag through the preset with a tap that records and feeds the plan's topics; (tap, seconds)."""
    import rclpy

    from ros_mmfusion.launcher import replay_in_process, run_processes
    from ros_mmfusion.ros.tap import TopicTap

    last_output = [0.0]
    lock = threading.Lock()
    reported: set[str] = set()  # nodes whose /diagnostics status arrived

    def on_message(topic: str, msg: Any, arrival_ns: int) -> None:
        with lock:
            if topic in plan.recorded:
                last_output[0] = time.monotonic()
                if recorder is not None:
                    recorder.write(topic, msg, arrival_ns)
            if topic == DIAGNOSTICS:
                reported.update(status.name for status in msg.status)
            plan.feed(topic, msg)

    taps: list[Any] = []
    complete = _completion(plan, facts, reported, lock, lambda: taps[0] if taps else None)

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
        tap = TopicTap(plan.outputs, name="mmfusion_eval_tap", timing=True, on_message=on_message, keep=keep)
        taps.append(tap)
        if args.processes:
            _replay_processes(preset, tap, facts.duration_s / args.rate + args.startup, last_output, progress,
                              run_processes, complete)
        else:
            replay_in_process(preset, extra_nodes=[tap], grace=3.0, last_activity=lambda: last_output[0],
                              progress=progress, complete=complete)
    finally:
        if recorder is not None:
            recorder.close()
        rclpy.try_shutdown()
    return tap, time.monotonic() - started


SETTLE_S = 0.3
"""Seconds everything awaited must have been there before a replay stops early (a message published right after
the last awaited one, such as navigation's closest node after its path, still arrives)."""


def _completion(plan: _Plan, facts: BagFacts, reported: set[str], lock: threading.Lock,
                get_tap: Callable[[], Any]) -> Callable[[], bool]:
    """A predicate that is True once the replay has nothing left to wait for, held for :data:`SETTLE_S`: every
    evaluated output came out for every input frame (distinct stamps), every other tapped topic the bag holds
    (replayed ground truth and inputs) arrived as often as the bag has it, and every node of the preset reported on
    ``/diagnostics`` (its network record). Until then the replay ends as before, after outputs went quiet."""
    nodes = {f"/{name}" for name in plan.workers}
    replayed = {t: facts.counts[t] for t in plan.outputs
                if t in facts.counts and t not in plan.expected and t != DIAGNOSTICS}
    since: list[float | None] = [None]

    def arrived() -> bool:
        tap = get_tap()
        if tap is None or not nodes <= reported:
            return False
        if any(len(set(tap.records[t].stamps_ns)) < n for t, n in plan.expected.items()):
            return False
        return all(tap.records[t].count >= n for t, n in replayed.items())

    def complete() -> bool:
        with lock:
            done = arrived()
        now = time.monotonic()
        if not done:
            since[0] = None
            return False
        first = since[0] = now if since[0] is None else since[0]
        return now - first >= SETTLE_S

    return complete


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


def _replay_processes(preset, tap, expected_s: float, last_output: list[float], progress, run_processes,
                      complete: Callable[[], bool] | None = None) -> None:
    """Spin ``tap`` here while the preset runs one process per node; stop once everything awaited arrived
    (``complete()``), or outputs went quiet, or time ran out."""
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
        if now > deadline or (complete is not None and complete()):
            return True
        return now - started > expected_s and last_output[0] > 0 and now - last_output[0] > 3.0

    with spinning_in_background(tap, "eval_tap"):
        run_processes(preset, until=until)
