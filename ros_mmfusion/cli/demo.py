"""``mmfusion demo``: generate the embedded default data (synthetic-world bags) and show every task of the suite on it.

Two evaluations (``launcher/evaluation.py``, the one ``mmfusion eval`` runs), each over real DDS:

1. an ``urban_night`` bag through the ``demo`` preset: LiDAR depth in the camera, RGB-thermal fusion segmentation and
   3D detection, scored against the bag's ground truth (segmentation mIoU, detection BEV AP per class);
2. the corridor: a mapping pass (``indoor_corridor``) becomes a topological map (``mmfusion topomap build``), and the
   second pass (``indoor_corridor_pass2``: other lighting, people) replays through the ``navigation`` preset, scored
   against its odometry (localisation within +-1 map node, waypoint ADE). The policy's own distances localise
   (``distance_source`` as the param file says, ``model``): no odometry oracle.

It prints one summary (which weights each network ran, trained or random; the metrics; latency), writes it to
``demo_summary.json`` and draws three pictures: ``demo_SCENARIO.png`` (camera + LiDAR depth | segmentation | 3D boxes
projected into the camera, ground truth green, detections red), ``demo_SCENARIO_bev.png`` (the same frame's boxes in
bird's-eye view) and ``demo_navigation.png`` (the second pass's trajectory against the map's nodes and where it
localised). ``make demo`` runs this.

``--out`` (default ``demo_out/``) follows :mod:`ros_mmfusion.core.outputs`, with one addition so that ``make demo``
can be rerun: a directory whose ``.mmfusion-output`` marker says ``mmfusion demo`` wrote into it is reused without
``--overwrite`` (its bags are replayed again, its map, pictures and summary replaced). Any other non-empty directory
needs ``--overwrite``, and even then only the demo's own entries (``demo_entries``) are written, never over a file
mmfusion did not write.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RGB_TOPIC = "/camera/color/image_raw"
DEPTH_TOPIC = "/lidar/depth_image"
SEGMENTATION_COLOUR_TOPIC = "/segmentation/color"
DETECTIONS_TOPIC = "/detections"
PICTURE_TOPICS = (RGB_TOPIC, DEPTH_TOPIC, SEGMENTATION_COLOUR_TOPIC, DETECTIONS_TOPIC)
"""The demo preset's outputs (and the camera image) drawn in the picture; every one is tapped by the evaluation."""
RATE = 0.1
"""Default playback speed of the camera/LiDAR bag: x0.1 of its 10 Hz, one frame a second, which the default models
sustain on a 2-core CPU without losing a frame (detection3d's lite PointPillars takes about 0.4 s a frame and blocks
the one executor meanwhile; fusion_segmentation's network runs beside it on its worker thread; docs/benchmarks.md)."""
NAV_PLAYBACK_RATE = 1.0
"""The corridor replays in real time: the player restamps with ``1 / rate`` spacing and ViNT samples its context by
stamp at 4 Hz, so a slower replay would look like a camera gap and empty the context every frame."""
KEEP_FRAMES = 16
"""Messages kept per tapped topic (the last ones, by stamp) to choose the picture's frame from."""

CORRIDOR, CORRIDOR_PASS2 = "indoor_corridor", "indoor_corridor_pass2"
NAV_SIZE = (160, 120)
"""Camera size of the corridor bags: ViNT sees 85x64, so a small camera keeps the recording quick."""
NAV_RATE_HZ = 4.0
"""Frame rate of the corridor bags: ViNT's context rate, so every frame is a context frame."""
NAV_BEAMS = 16
MAP_DT_S = 1.0
"""Seconds of the mapping pass between topomap nodes (the robot drives 1 m/s: a node a metre)."""
MAP_EXTRA_FRAMES = 16
"""The mapping pass runs this many frames (4 s) longer than the second pass, so the map covers its whole route."""
TOPOMAP = f"{CORRIDOR}_topomap"
NAVIGATION_PICTURE = "demo_navigation.png"
SUMMARY = "demo_summary.json"
IMAGE_TOPIC, ODOM_TOPIC = "/camera/color/image_raw", "/odom"
TARGET_IOU = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
"""The BEV IoU at which each class's AP is quoted (KITTI's: 0.7 for cars, 0.5 for the others)."""
NETWORK_TASKS = {"fusion_segmentation": "segmentation", "detection3d": "detection3d", "vint_navigation": "navigation"}
"""Node key -> model-package task, for the nodes that run a network."""

HELP = ("generate synthetic bags and show every task on them: segmentation, 3D detection and navigation, with their "
        "metrics and pictures")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output directory (bags, map, pictures, summary)")
    parser.add_argument("--scenario", default="urban_night", help="synthetic-world scenario of the camera/LiDAR bag")
    parser.add_argument("--frames", type=int, default=40, help="frames of the camera/LiDAR bag (10 Hz)")
    parser.add_argument("--size", default="640x480", help="camera size WxH of the camera/LiDAR bag")
    parser.add_argument("--nav-frames", type=int, default=32,
                        help=f"frames of the corridor's second pass ({NAV_RATE_HZ:g} Hz; the mapping pass has "
                             f"{MAP_EXTRA_FRAMES} more)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=RATE,
                        help=f"playback speed factor of the camera/LiDAR bag (default {RATE:g}, 1 Hz: what the default "
                             "models sustain on a 2-core CPU without losing a frame; the corridor always replays in "
                             "real time)")
    parser.add_argument("--regenerate", action="store_true", help="generate the bags even if they exist")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out that no earlier `mmfusion demo` wrote into (only the "
                             "demo's bags, map, pictures and summary; a file mmfusion did not write is never "
                             "replaced)")


def demo_entries(scenario: str) -> tuple[str, ...]:
    """Every entry ``mmfusion demo --scenario SCENARIO`` writes into ``--out``."""
    return (f"{scenario}_bag", f"{CORRIDOR}_bag", f"{CORRIDOR_PASS2}_bag", TOPOMAP, f"demo_{scenario}.png",
            f"demo_{scenario}_bev.png", NAVIGATION_PICTURE, SUMMARY)


def _is_old_demo_dir(directory: Path) -> bool:
    """A demo directory written before output markers existed: only demo bags and demo pictures."""
    from ros_mmfusion.core.sim.recorder import is_simulated_bag

    entries = list(directory.iterdir())
    return bool(entries) and all((p.is_dir() and p.name.endswith("_bag") and is_simulated_bag(p))
                                 or (p.is_file() and p.name.startswith("demo_") and p.suffix == ".png")
                                 for p in entries)


def ensure_bag(output, scenario: str, frames: int, size: tuple[int, int], seed: int, regenerate: bool,
               **options: Any) -> Path:
    """The bag of ``scenario``: the one in ``output`` (an ``OutputDirectory``) if complete, else generated into its
    stage (``options``: more arguments of ``core.sim.recorder.record``, e.g. ``rate``, ``beams``)."""
    from ros_mmfusion.core.sim.recorder import is_simulated_bag, record

    name = f"{scenario}_bag"
    existing = output.path / name
    if is_simulated_bag(existing) and (existing / "calibration.yaml").is_file() and not regenerate:
        print(f"using existing bag {existing} (--regenerate to make it again)")
        output.keep(name)
        return existing
    bag = output.stage / name
    print(f"generating {frames} frames of '{scenario}' at {size[0]}x{size[1]} into {output.path / name} ...",
          flush=True)

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            print(f"  {done}/{total} frames", flush=True)

    summary = record(scenario, bag, frames, seed=seed, size=size, progress=progress, **options)
    print(f"  wrote {sum(summary.messages.values())} messages on {len(summary.messages)} topics, "
          f"{summary.bytes / 1e6:.0f} MB in {summary.seconds:.1f} s")
    return bag


# -- pictures -----------------------------------------------------------------------------------------------------
@dataclass
class FrameBoxes:
    """The 3D boxes of one frame (LiDAR frame; ``(N, 7)`` x y z dx dy dz yaw, metres and radians): ground truth and
    detections with class names and scores."""

    gt_boxes: np.ndarray
    gt_labels: list[str]
    det_boxes: np.ndarray
    det_labels: list[str]
    det_scores: np.ndarray

    def bev_sample(self) -> dict[str, Any]:
        """The frame as ``core.evaluation.report.plot_bev_sample`` draws it."""
        return {"gt_boxes": self.gt_boxes.tolist(), "gt_labels": list(self.gt_labels),
                "det_boxes": self.det_boxes.tolist(), "det_labels": list(self.det_labels),
                "det_scores": self.det_scores.tolist()}


GT_BGR, DETECTION_BGR = (60, 200, 60), (40, 40, 230)
"""Box colours in the camera picture (BGR): ground truth green, detections red, as in the BEV picture."""


def draw_boxes(bgr: np.ndarray, boxes: np.ndarray, camera: Any, camera_from_lidar: Any, colour: tuple[int, int, int],
               labels: list[str] | None = None, min_depth: float = 0.5) -> np.ndarray:
    """Draw ``(N, 7)`` boxes (LiDAR frame) into ``bgr`` (the camera ``camera``, a ``PinholeCamera``, whose optical
    frame ``camera_from_lidar`` maps the LiDAR frame into): their 12 edges, leaving out edges with an end less than
    ``min_depth`` metres in front of the camera; ``labels`` are written above each box. Returns ``bgr``."""
    import cv2

    from ros_mmfusion.core.codec.boxes import BOX_EDGES, box_corners

    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    if not boxes.size:
        return bgr
    corners = box_corners(boxes[:, :3], boxes[:, 3:6], boxes[:, 6])  # (N, 8, 3)
    optical = camera_from_lidar.apply(corners.reshape(-1, 3))
    uv, depth, _ = camera.project(optical)
    uv, depth = uv.reshape(-1, 8, 2), depth.reshape(-1, 8)
    limit = 4 * max(bgr.shape)  # far off-screen ends: cv2 clips, but the coordinates must stay small integers
    for i in range(len(boxes)):
        drawn = False
        for a, b in BOX_EDGES:
            if depth[i, a] < min_depth or depth[i, b] < min_depth:
                continue
            p, q = (tuple(int(round(c)) for c in np.clip(uv[i, k], -limit, limit)) for k in (a, b))
            cv2.line(bgr, p, q, colour, 1, cv2.LINE_AA)
            drawn = True
        if drawn and labels is not None:
            top = uv[i][depth[i] >= min_depth]
            x, y = int(np.clip(top[:, 0].min(), 0, bgr.shape[1] - 1)), int(np.clip(top[:, 1].min() - 3, 8, None))
            cv2.putText(bgr, labels[i], (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    return bgr


def _depth_colours(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BGR turbo colours of a sparse depth image (near = red) dilated to visible dots, and the dot mask."""
    import cv2

    valid = depth > 0
    scaled = np.zeros(depth.shape, np.uint8)
    if np.any(valid):
        near, far = np.percentile(depth[valid], [2, 98])
        scaled[valid] = np.clip(255 * (1 - (depth[valid] - near) / max(far - near, 1e-3)), 0, 255).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    colour = cv2.dilate(cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO), kernel)
    return colour, cv2.dilate(valid.astype(np.uint8), kernel).astype(bool)


def demo_picture(rgb: np.ndarray, path: Path, depth: np.ndarray | None = None,
                 segmentation: np.ndarray | None = None, boxes: FrameBoxes | None = None,
                 calibration: Any = None) -> Path:
    """One row: the camera image (brightened for night scenes) with LiDAR depth dots, the segmentation colours
    blended over the camera image, and the 3D boxes projected into it (ground truth green, detections red with
    class and score; needs ``calibration``, a ``core.calibration.Calibration`` with the ``color`` camera), whichever
    of the three were published."""
    import cv2

    bgr = cv2.convertScaleAbs(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), alpha=3.0, beta=20)
    panels = []
    if depth is not None:
        colour, dots = _depth_colours(depth)
        with_dots = bgr.copy()
        with_dots[dots] = colour[dots]
        panels.append(with_dots)
    if segmentation is not None:
        seg_bgr = cv2.cvtColor(np.ascontiguousarray(segmentation), cv2.COLOR_RGB2BGR)
        panels.append(cv2.addWeighted(bgr, 0.4, seg_bgr, 0.6, 0.0))
    if boxes is not None and calibration is not None:
        camera = calibration.cameras["color"].camera.scaled(bgr.shape[1], bgr.shape[0])
        transform = calibration.camera_from_lidar("color")
        with_boxes = draw_boxes(bgr.copy(), boxes.gt_boxes, camera, transform, GT_BGR)
        labels = [f"{n} {s:.2f}" for n, s in zip(boxes.det_labels, boxes.det_scores, strict=True)]
        panels.append(draw_boxes(with_boxes, boxes.det_boxes, camera, transform, DETECTION_BGR, labels))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate(panels or [bgr], axis=1))
    return path


def _picture_frame(records: dict[str, Any]) -> int | None:
    """The stamp (ns) of the frame to draw among the kept messages: one with the camera image and as many of the
    other outputs as were published, the most ground-truth boxes first, then the latest."""
    from ros_mmfusion.core.evaluation.session import GT_BOXES

    rgb = set(records[RGB_TOPIC].history)
    if not rgb:
        return None
    others = [set(records[t].history) for t in PICTURE_TOPICS[1:] if t in records and records[t].history]
    stamps = rgb.intersection(*others) if others else rgb
    while not stamps and others:  # an output that never matched a camera frame is left out
        others.pop()
        stamps = rgb.intersection(*others) if others else rgb
    gt = records[GT_BOXES].history if GT_BOXES in records else {}
    return max(stamps, key=lambda s: (len(gt[s].detections) if s in gt else -1, s))


def _frame_boxes(records: dict[str, Any], stamp: int) -> FrameBoxes | None:
    from ros_mmfusion.core.evaluation.session import GT_BOXES
    from ros_mmfusion.ros.detections import detections_to_arrays

    det = records[DETECTIONS_TOPIC].history.get(stamp) if DETECTIONS_TOPIC in records else None
    gt = records[GT_BOXES].history.get(stamp) if GT_BOXES in records else None
    if det is None and gt is None:
        return None
    empty = (np.zeros((0, 7)), [], np.zeros(0))
    (gb, gl, _), (db, dl, ds) = (detections_to_arrays(gt) if gt is not None else empty,
                                 detections_to_arrays(det) if det is not None else empty)
    return FrameBoxes(gb, gl, db, dl, ds)


def _urban_pictures(result: Any, bag: Path, stage: Path, scenario: str) -> list[str]:
    """The camera picture and the BEV picture of one frame of the urban run into ``stage``; their names."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.calibration import load_calibration
    from ros_mmfusion.core.evaluation.report import plot_bev_sample
    from ros_mmfusion.ros.image import image_to_numpy

    records = result.tap.records
    stamp = _picture_frame(records)
    if stamp is None:
        raise UserError("the demo published no output matching a camera frame")

    def image(topic: str) -> np.ndarray | None:
        msg = records[topic].history.get(stamp) if topic in records else None
        return image_to_numpy(msg) if msg is not None else None

    boxes = _frame_boxes(records, stamp)
    names = [f"demo_{scenario}.png"]
    demo_picture(image(RGB_TOPIC), stage / names[0], image(DEPTH_TOPIC), image(SEGMENTATION_COLOUR_TOPIC), boxes,
                 load_calibration(bag / "calibration.yaml"))
    if boxes is not None:
        names.append(f"demo_{scenario}_bev.png")
        plot_bev_sample(boxes.bev_sample(), stage / names[1], (result.metrics.get("detection") or {}).get("bev_range"))
    return names


# -- weights, metrics, summary ------------------------------------------------------------------------------------
def weights_from_parameters(launch: Any) -> dict[str, str] | None:
    """Which weights a preset node's network runs, as its parameters name them (``model_package``, else
    ``weights``, else random from ``seed``): ``{weights: trained | file | fixture | random, description, package,
    sha256}``; None for a node without a network. Used when the evaluation has no record from the node itself
    (``metrics["models"]``, from its ``/diagnostics``)."""
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.model_package import read_package, weights_origin
    from ros_mmfusion.launcher import node_class
    from ros_mmfusion.paths import share_dir

    task = NETWORK_TASKS.get(launch.key)
    if task is None:
        return None
    defaults = {spec.name: spec.default for spec in node_class(launch).PARAMS}
    params = {**defaults, **launch.parameters}
    try:
        if params.get("model_package"):
            directory = Path(str(params["model_package"]))
            origin = weights_origin(package=read_package(directory if directory.is_absolute()
                                                         else share_dir() / directory, task))
        else:
            origin = weights_origin(str(params.get("weights") or ""), seed=params.get("seed"))
    except ConfigError as exc:
        return {"weights": "unknown", "description": str(exc), "package": "", "sha256": ""}
    return {"weights": origin.kind, "description": origin.description, "package": origin.package,
            "sha256": origin.sha256}


def _models(result: Any, preset: Any) -> dict[str, dict[str, str]]:
    """Per node (``/name``) the weights its network ran: the nodes' own records when the evaluation has them, else
    what the node parameters say."""
    reported = dict(result.metrics.get("models") or {})
    for launch in preset.nodes:
        name = f"/{launch.name}"
        if name not in reported:
            record = weights_from_parameters(launch)
            if record is not None:
                reported[name] = {**record, "source": "node parameters"}
    return reported


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _weights_lines(models: dict[str, dict[str, str]]) -> list[str]:
    lines = []
    for node, record in models.items():
        kind = record.get("weights", "?")
        trained = kind in ("trained", "file")
        lines.append(f"  {node}: {kind if trained else kind.upper()} weights: {record.get('description', '')}"
                     + ("" if trained else " -> its metrics below mean nothing"))
    return lines


def _task_summary(urban: dict[str, Any], navigation: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of each task (``demo_summary.json`` ``tasks``)."""
    tasks: dict[str, Any] = {}
    seg = urban.get("segmentation")
    if seg:
        tasks["segmentation"] = {"mIoU": seg["mIoU"], "pixel_accuracy": seg["pixel_accuracy"], "frames": seg["frames"]}
    det = urban.get("detection")
    if det:
        per_class = {}
        for name in det["classes"]:
            iou = f"{TARGET_IOU.get(name, 0.5):g}"
            section = det["bev"].get(iou)
            per_class[name] = {"iou": float(iou), "AP": section["AP"].get(name) if section else None,
                               "ground_truth_boxes": det["num_gt"].get(name, 0)}
        tasks["detection"] = {"bev_AP": per_class, "interpolation": det["interpolation"], "frames": det["frames"],
                              "bev_mAP": {k: v["mAP"] for k, v in det["bev"].items()}}
    nav = navigation.get("navigation")
    if nav:
        loc, wp = nav["localisation"], nav["waypoints"]
        tasks["navigation"] = {"localisation_within_1_node": loc.get("accuracy_within_1"),
                               "localisation_exact": loc["accuracy"], "localised_frames": loc["frames"],
                               "waypoint_ADE_m": wp["ADE_m"], "waypoint_FDE_m": wp["FDE_m"],
                               "waypoint_frames": wp["frames"], "topomap_nodes": nav["topomap_nodes"]}
    return tasks


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The printed summary of ``demo_summary.json``'s content."""
    tasks, runs = summary["tasks"], summary["runs"]
    urban, nav_run = runs["urban"], runs["navigation"]
    lines = [f"== mmfusion demo: {summary['seconds']:.0f} s ==", "weights:"]
    lines += _weights_lines(summary["models"])
    seg = tasks.get("segmentation")
    lines.append(f"segmentation ({urban['scenario']}): mIoU {_fmt(seg['mIoU'])}, pixel accuracy "
                 f"{_fmt(seg['pixel_accuracy'])} over {seg['frames']} frames" if seg else
                 "segmentation: no metrics (see the notes)")
    det = tasks.get("detection")
    if det:
        per_class = ", ".join(f"{name} {_fmt(v['AP'])} (IoU {v['iou']:g}, {v['ground_truth_boxes']} boxes)"
                              for name, v in det["bev_AP"].items())
        lines.append(f"3D detection ({urban['scenario']}): BEV AP ({det['interpolation']}) {per_class} over "
                     f"{det['frames']} frames")
    else:
        lines.append("3D detection: no metrics (see the notes)")
    nav = tasks.get("navigation")
    if nav:
        lines.append(f"navigation ({CORRIDOR_PASS2} against a {nav['topomap_nodes']}-node map of {CORRIDOR}, "
                     f"distance_source {nav_run['distance_source']}): localisation within +-1 node "
                     f"{_fmt(nav['localisation_within_1_node'])} (exact {_fmt(nav['localisation_exact'])}) over "
                     f"{nav['localised_frames']} frames, waypoint ADE {_fmt(nav['waypoint_ADE_m'])} m "
                     f"(FDE {_fmt(nav['waypoint_FDE_m'])} m) over {nav['waypoint_frames']} frames")
    else:
        lines.append("navigation: no metrics (see the notes)")
    lines.append(f"{'output topic':32s} {'messages':>8s} {'dropped':>9s} {'p50 ms':>8s} {'p95 ms':>8s} {'Hz':>6s}")
    for run in (urban, nav_run):
        for topic, s in run["latency"].items():
            lines.append(f"{topic:32s} {s['count']:8d} {s['dropped']:4d}/{s['expected']:<4d} "
                         f"{_fmt(s['p50_ms'], 1):>8s} {_fmt(s['p95_ms'], 1):>8s} {s['rate_hz'] or 0:6.1f}")
    lines += [f"note ({run['preset']} run): {note}" for run in (urban, nav_run) for note in run["notes"]]
    return lines


def _run_summary(metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One evaluation's part of the summary file: what ran, latency and notes (the task figures are in ``tasks``;
    the full metrics are ``mmfusion eval``'s)."""
    return {**extra, "seconds": metrics["run"]["seconds"], "input_frames": metrics["run"]["input_frames"],
            "latency": metrics["latency"], "node_pipeline_latency": metrics["node_pipeline_latency"],
            "notes": metrics["notes"]}


# -- the two runs -------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError

    if not 0 < args.frames <= 10_000:
        raise UserError(f"--frames must be in 1..10000, got {args.frames}")
    if not 4 <= args.nav_frames <= 10_000:
        raise UserError(f"--nav-frames must be in 4..10000, got {args.nav_frames}")
    if not 0.01 <= args.rate <= 100:
        raise UserError(f"--rate must be in [0.01, 100], got {args.rate}")
    from ros_mmfusion.core.outputs import OutputDirectory
    from ros_mmfusion.core.sim import parse_size
    from ros_mmfusion.core.sim.scenarios import get_scenario

    size = parse_size(args.size)
    scenario = get_scenario(args.scenario).name
    output = OutputDirectory(args.out, "demo", overwrite=args.overwrite, reuse=True, prune=False,
                             writes=demo_entries(scenario), recognise=_is_old_demo_dir)
    started = time.monotonic()
    with output as stage:
        lines, pictures = _demo(args, output, stage, scenario, size, started)
    print("\n".join(lines))
    print("pictures: " + ", ".join(str(output.path / name) for name in pictures))
    print(f"summary: {output.path / SUMMARY}")
    return 0


def _demo(args: argparse.Namespace, output, stage: Path, scenario: str, size: tuple[int, int],
          started: float) -> tuple[list[str], list[str]]:
    """Both runs into ``stage``: the summary lines and the pictures' names."""
    from datetime import datetime, timezone

    from ros_mmfusion.core.evaluation.report import metrics_json, plot_trajectory
    from ros_mmfusion.launcher.evaluation import EvaluationSettings, evaluate, prepare

    bag = ensure_bag(output, scenario, args.frames, size, args.seed, args.regenerate)
    pass1 = ensure_bag(output, CORRIDOR, args.nav_frames + MAP_EXTRA_FRAMES, NAV_SIZE, args.seed, args.regenerate,
                       rate=NAV_RATE_HZ, beams=NAV_BEAMS)
    pass2 = ensure_bag(output, CORRIDOR_PASS2, args.nav_frames, NAV_SIZE, args.seed, args.regenerate,
                       rate=NAV_RATE_HZ, beams=NAV_BEAMS)
    topomap = _build_topomap(pass1, stage / TOPOMAP)

    urban_eval = prepare(EvaluationSettings(preset="demo", rate=args.rate, no_record=True), bag)
    nav_eval = prepare(EvaluationSettings(preset="navigation", rate=NAV_PLAYBACK_RATE, no_record=True,
                                          arguments={"topomap": str(topomap)}), pass2)
    print(f"\n[1/2] segmentation and 3D detection on {bag.name}", flush=True)
    urban = evaluate(urban_eval, keep=KEEP_FRAMES)
    pictures = _urban_pictures(urban, bag, stage, scenario)
    print(f"\n[2/2] navigation: {pass2.name} against the map of {pass1.name}", flush=True)
    navigation = evaluate(nav_eval)
    trajectory = (navigation.metrics.get("navigation") or {}).get("trajectory")
    if trajectory:
        plot_trajectory(trajectory, stage / NAVIGATION_PICTURE)
        pictures.append(NAVIGATION_PICTURE)

    vint = next((launch for launch in nav_eval.preset.nodes if launch.key == "vint_navigation"), None)
    summary = {
        "written_by": "mmfusion demo", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "models": {**_models(urban, urban_eval.preset), **_models(navigation, nav_eval.preset)},
        "tasks": _task_summary(urban.metrics, navigation.metrics),
        "runs": {
            "urban": _run_summary(urban.metrics, preset="demo", scenario=scenario, bag=str(output.path / bag.name),
                                  size=list(size)),
            "navigation": _run_summary(
                navigation.metrics, preset="navigation", map_bag=str(output.path / pass1.name),
                bag=str(output.path / pass2.name), topomap=str(output.path / TOPOMAP), map_dt_s=MAP_DT_S,
                distance_source=str(vint.parameters.get("distance_source", "model")) if vint else None),
        },
        "pictures": pictures,
    }
    lines = summary_lines(summary)
    summary["printed"] = lines
    (stage / SUMMARY).write_text(metrics_json(summary))
    return lines, pictures


def _build_topomap(pass1: Path, out: Path) -> Path:
    """The corridor's topological map from its mapping pass (as ``mmfusion topomap build`` writes it) into ``out``."""
    from ros_mmfusion.core.navigation.topomap import build_topomap

    summary = build_topomap(pass1, IMAGE_TOPIC, MAP_DT_S, out, ODOM_TOPIC)
    print(f"topomap: {len(summary.topomap)} nodes from {summary.images_seen} images of {pass1.name} (one every "
          f"{MAP_DT_S:g} s) -> {out.name}", flush=True)
    return out
