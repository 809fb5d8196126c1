"""``mmfusion eval``: replay a bag through a preset's nodes, record their outputs, and report accuracy and latency.

The evaluation itself (how predictions meet ground truth, latency, the outputs bag) is
:mod:`ros_mmfusion.launcher.evaluation`, which ``mmfusion demo`` runs too; this command parses the options, writes
the report (``core/evaluation/report.py``) and prints its summary.

``REPORT_DIR`` follows :mod:`ros_mmfusion.core.outputs`: a non-empty directory is refused unless ``--overwrite``,
which replaces only the report files (``REPORT_FILES``) an earlier mmfusion run wrote there; the report is assembled
in a staging directory and moved into place when the run succeeded, and a bag under ``REPORT_DIR/outputs`` that
mmfusion did not write (``ros2 bag record -o outputs``) is never replaced, let alone the bag being evaluated.

Many bags (``--bags DIR_OR_GLOB``, repeatable): :mod:`ros_mmfusion.launcher.fleet` evaluates each bag in its own
process and DDS domain on the ``local`` engine or on Ray (``--engine ray``, ``--address``), keeps one result per bag
in ``REPORT_DIR/bags/`` (a rerun evaluates only the bags not yet scored with the same settings and models; ``--force``
all), and writes the merged report (``fleet_metrics.json``, ``fleet_report.md``). The exit status is 1 when a bag
failed (the report lists it and scores the others).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ros_mmfusion.launcher.evaluation import DEFAULT_DETECTION_CLASSES, OUTPUTS_BAG

HELP = "replay a bag through a preset and report accuracy and latency (metrics.json, report.md/html)"

#: every entry ``eval`` may write into its report directory (core.evaluation.report names the figures)
REPORT_FILES = ("metrics.json", "report.md", "report.html", "iou_per_class.png", "latency_histogram.png",
                "latency_timeline.png", "pr_curves.png", "detection_sample_bev.png", "trajectory.png",
                "sample_frame.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--closed-loop", action="store_true",
                        help="closed-loop navigation instead: `mmfusion eval --closed-loop ...` runs "
                             "`mmfusion closed-loop ...` with the other options (see its --help)")
    parser.add_argument("--bag", help="rosbag2 directory to replay (e.g. from `mmfusion sim record`)")
    fleet = parser.add_argument_group("many bags (fleet evaluation; docs/evaluation.md)")
    fleet.add_argument("--bags", action="append", default=[], metavar="DIR_OR_GLOB",
                       help="evaluate every rosbag2 directory in or under DIR (or matching the glob; repeatable), "
                            "each in its own process and DDS domain, and write one merged report "
                            "(fleet_metrics.json, fleet_report.md; bags already scored with the same settings and "
                            "models are taken from OUT/bags/)")
    fleet.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: processes on this machine; ray: one Ray task per bag (pip install "
                            "'ros_mmfusion[fleet]')")
    fleet.add_argument("--address", default=None, metavar="HOST:PORT",
                       help="with --engine ray: the Ray cluster to use (`ray start --head` prints it; 'auto' finds a "
                            "local one); without it a local Ray is started and stopped by the command")
    fleet.add_argument("--num-cpus", type=int, default=None, metavar="N",
                       help="bags evaluated at a time: the local engine's processes, or the CPUs of the local Ray "
                            "(default: this machine's CPU count)")
    fleet.add_argument("--force", action="store_true", help="evaluate every bag again, cached results or not")
    fleet.add_argument("--bag-timeout", type=float, default=None, metavar="S",
                       help="stop a bag's evaluation after S seconds and report it failed (default: no limit)")
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
    parser.add_argument("--ground-truth-semantic", default=None, metavar="TOPIC",
                        help="segmentation ground-truth image topic (default: /ground_truth/semantic, mono8 class ids; "
                             "with --label-map, that label set's semantic camera)")
    parser.add_argument("--label-map", default=None, metavar="NAME",
                        help="read the ground-truth topic as this label set's palette image, mapped onto the suite's "
                             "classes (carla: CARLA 0.9.14+ CityScapes-palette semantic camera, default topic "
                             "/carla/ego_vehicle/semantic_segmentation_front/image; docs/simulators.md)")
    parser.add_argument("--iou-thresholds", default="0.5,0.7",
                        help="3D detection: comma-separated IoU thresholds for BEV and 3D AP")
    parser.add_argument("--ap-interpolation", choices=("r40", "all"), default="r40",
                        help="3D detection AP: KITTI 40 recall points (r40) or the all-point VOC area (all)")
    parser.add_argument("--protocol", choices=("generic", "kitti", "nuscenes"), default="generic",
                        help="3D detection evaluation procedure: generic (--iou-thresholds, --ap-interpolation, "
                             "centre-distance AP), kitti (the official KITTI procedure: AP40/AP11, per-class IoU, "
                             "easy/moderate/hard, DontCare) or nuscenes (nuscenes-devkit's: mAP over 10 classes, TP "
                             "errors, NDS); docs/evaluation.md")
    parser.add_argument("--miou-convention", choices=("present", "all"), default="present",
                        help="segmentation mIoU: average the classes present in ground truth or predictions "
                             "(Cityscapes/mmseg) or all classes, absent ones as 0 (SemanticKITTI)")
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


def _floats(text: str, option: str) -> tuple[float, ...]:
    from ros_mmfusion.cli.main import UserError

    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{option} expects comma-separated numbers, got {text!r}") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise UserError(f"{option} expects numbers in (0, 1], got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion import presets
    from ros_mmfusion.cli.main import UserError

    if not 0.01 <= args.rate <= 100:
        raise UserError(f"--rate must be in [0.01, 100], got {args.rate}")
    if bool(args.bag) == bool(args.bags):
        raise UserError("give one bag (--bag DIR) or many (--bags DIR_OR_GLOB, repeatable)")
    if not args.bags:
        given = [o for o, v in (("--engine", args.engine != "local"), ("--address", args.address),
                                ("--num-cpus", args.num_cpus is not None), ("--force", args.force),
                                ("--bag-timeout", args.bag_timeout is not None)) if v]
        if given:
            raise UserError(f"{', '.join(given)} only apply to many bags (--bags)")
    from ros_mmfusion.core.evaluation.report import write_report
    from ros_mmfusion.core.outputs import OutputDirectory
    from ros_mmfusion.launcher.evaluation import EvaluationSettings, evaluate, prepare

    settings = EvaluationSettings(
        preset=args.preset, rate=args.rate, processes=args.processes, startup=args.startup,
        ignore_index=args.ignore_index, iou_thresholds=_floats(args.iou_thresholds, "--iou-thresholds"),
        ap_interpolation=args.ap_interpolation, detection_classes=args.detection_classes, protocol=args.protocol,
        miou_convention=args.miou_convention,
        detection_min_points=args.detection_min_points, no_record=args.no_record,
        ground_truth_semantic=args.ground_truth_semantic, label_map=args.label_map,
        arguments=presets.parse_arguments(args.arg), overrides=presets.parse_set(args.set))
    if args.bags:
        return _run_fleet(args, settings)
    bag = Path(args.bag)
    writes = REPORT_FILES if args.no_record else (*REPORT_FILES, OUTPUTS_BAG)
    output = OutputDirectory(args.out, "eval", overwrite=args.overwrite, writes=writes, inputs=[bag],
                             what="report directory")
    evaluation = prepare(settings, bag)
    with output as stage:
        result = evaluate(evaluation, stage, output.path)
        paths = write_report(stage, result.metrics, result.series, result.sample)
        _print_summary(result.metrics, settings.iou_thresholds)
    print(f"report: {output.path / paths['html'].name} ({paths['markdown'].name}, {paths['metrics'].name})")
    return 0


def _run_fleet(args: argparse.Namespace, settings: Any) -> int:
    """``--bags``: evaluate every bag on the chosen engine and write the merged report; exit 1 when a bag failed."""
    import os

    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.evaluation.fleet import find_bags, format_duration
    from ros_mmfusion.launcher.fleet import RAY_INSTALL_HINT, FleetOptions, import_ray, run_fleet

    if args.num_cpus is not None and args.num_cpus < 1:
        raise UserError(f"--num-cpus must be at least 1, got {args.num_cpus}")
    if args.bag_timeout is not None and args.bag_timeout <= 0:
        raise UserError(f"--bag-timeout must be positive, got {args.bag_timeout}")
    if args.address and args.engine != "ray":
        raise UserError("--address names a Ray cluster: it needs --engine ray")
    if args.engine == "ray":
        try:
            import_ray()
        except Exception:  # noqa: BLE001 - ConfigError with the install line
            raise UserError(RAY_INSTALL_HINT) from None
    bags = find_bags(args.bags)
    options = FleetOptions(engine=args.engine, address=args.address, num_cpus=args.num_cpus or os.cpu_count() or 1,
                           force=args.force, timeout_s=args.bag_timeout, overwrite=args.overwrite)
    report, out = run_fleet(settings, bags, Path(args.out), options)
    progress, tp = report["progress"], report["throughput"]
    print(f"fleet: {progress['scored']}/{progress['total']} bags scored ({progress['cached']} from the cache), "
          f"{progress['failed']} failed; {tp['bags_evaluated']} evaluated in {format_duration(tp['wall_s'])} on "
          f"{tp['cores']:g} cores: {tp['bags_per_hour'] or 0:.0f} bags/hour, "
          f"{tp['bags_per_hour_per_core'] or 0:.1f} bags/hour/core")
    overall = report["overall_headline"]
    if overall:
        print("overall (merged statistics): " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in overall.items() if v is not None))
    for failure in report["failed"]:
        print(f"failed: {failure['bag']}: {failure['error']}")
    print(f"report: {out / 'fleet_report.md'} (fleet_metrics.json; per-bag results in {out / 'bags'})")
    return 1 if report["failed"] else 0


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


def _ap(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def protocol_line(det: dict[str, Any]) -> str:
    """One line of the KITTI (moderate AP40 per class, BEV and 3D) or nuScenes (mAP, NDS) figures."""
    if det["protocol"] == "kitti":
        parts = [f"{kind} " + ", ".join(f"{c} {_ap(v)}" for c, v in det[kind]["moderate"]["AP40"].items())
                 for kind in ("bev", "3d")]
        return f"3D detection (KITTI, moderate AP40 over {det['frames']} frames): " + "; ".join(parts)
    return (f"3D detection (nuScenes over {det['frames']} frames): mAP {_ap(det['mAP'])}, NDS {_ap(det['NDS'])} "
            f"(without AVE/AAE {_ap(det['NDS_without_velocity_attribute'])}), ATE "
            f"{_ap(det['mean_tp_errors']['trans_err'])} m")


def _print_summary(metrics: dict[str, Any], iou_thresholds: tuple[float, ...]) -> None:
    """One line per network that ran, per evaluated task and per output topic, then the notes."""
    from ros_mmfusion.core.evaluation.report import model_line

    for node, record in metrics.get("models", {}).items():
        print(f"model of {node}: {model_line(record)}")
    if "segmentation" in metrics:
        m = metrics["segmentation"]
        print(f"segmentation: mIoU {m['mIoU']:.3f} ({m.get('miou_convention', 'present')} classes), pixel accuracy "
              f"{m['pixel_accuracy']:.3f} over {m['frames']} frames")
    if metrics.get("detection", {}).get("protocol") in ("kitti", "nuscenes"):
        print(protocol_line(metrics["detection"]))
    elif "detection" in metrics:
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
        within = loc.get("accuracy_within_1")
        print(f"navigation: localisation accuracy {loc['accuracy'] if loc['accuracy'] is not None else '-'} "
              f"(within +-1 node {within if within is not None else '-'}) over {loc['frames']} frames, "
              f"ADE {wp['ADE_m'] if wp['ADE_m'] is not None else '-'} m, "
              f"FDE {wp['FDE_m'] if wp['FDE_m'] is not None else '-'} m over {wp['frames']} frames")
    for topic, s in metrics["latency"].items():
        p50 = "-" if s["p50_ms"] is None else f"{s['p50_ms']:.1f}"
        p95 = "-" if s["p95_ms"] is None else f"{s['p95_ms']:.1f}"
        print(f"{topic}: {s['count']} messages, dropped {s['dropped']}/{s['expected']}, latency p50 {p50} ms "
              f"p95 {p95} ms, {s['rate_hz'] or 0:.1f} Hz")
    for note in metrics["notes"]:
        print(f"note: {note}")
