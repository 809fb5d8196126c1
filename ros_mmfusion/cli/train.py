"""``mmfusion train TASK``: train a model on the synthetic world or on rosbag2 bags and write a model package.

Each task is one entry of :data:`TASKS`: its help line, a function adding its options to its own sub-parser, and a
function running it. The options every task shares are added by :func:`add_common` (a task picks those it
supports), so ``mmfusion train segmentation|detection|navigation`` have one shape.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

HELP = "train a model (synthetic world or your bags) and write a model package (model.yaml + weights.pt + metrics.json)"


@dataclass(frozen=True)
class Task:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def parse_seeds(text: str, option: str) -> tuple[int, ...]:
    """``"1,2,5-8"`` -> ``(1, 2, 5, 6, 7, 8)``; UserError (one line) otherwise; ``""`` -> ``()``."""
    from ros_mmfusion.cli.main import UserError

    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
            if first < 0 or last < first or last - first > 10_000:
                raise ValueError
            seeds.extend(range(first, last + 1))
    except ValueError:
        raise UserError(f"{option} expects seeds like 1,2,5-8 (non-negative integers), got {text!r}") from None
    return tuple(dict.fromkeys(seeds))


def add_common(parser: argparse.ArgumentParser, *, iterations: int, batch: int, lr: float | None = None,
               data: bool = False, validate_every: int | None = None, seeds: str = "", val_seeds: str = "") -> None:
    """The options every ``mmfusion train`` task has (``--out``, ``--iterations``, ``--batch``, ``--threads``,
    ``--device``, ``--overwrite``), and with ``data`` the data, initialisation and schedule options (``--scenario``,
    ``--seeds``, ``--val-seeds``, ``--bag``, ``--val-bag``, ``--init``, ``--lr``, ``--validate-every``,
    ``--resume``)."""
    from ros_mmfusion.cli.args import add_overwrite

    parser.add_argument("--out", required=True, help="model package directory to write (refused if it exists)")
    parser.add_argument("--iterations", type=int, default=iterations)
    parser.add_argument("--batch", type=int, default=batch)
    if data:
        parser.add_argument("--scenario", action="append", default=None, metavar="NAME",
                            help="synthetic scenario to train on (repeatable)")
        parser.add_argument("--seeds", default=seeds, help=f"training seeds of the synthetic world (default {seeds})")
        parser.add_argument("--val-seeds", default=val_seeds,
                            help=f"held-out validation seeds (default {val_seeds})")
        parser.add_argument("--bag", action="append", default=[], metavar="DIR",
                            help="rosbag2 directory to train on (repeatable); with --bag and no --scenario only "
                                 "bags are used")
        parser.add_argument("--val-bag", action="append", default=[], metavar="DIR",
                            help="rosbag2 directory to validate on (repeatable)")
        parser.add_argument("--init", default="", help="initial weights: a model package directory or a "
                                                       "checkpoint (ours, or a converted/released upstream one)")
        parser.add_argument("--lr", type=float, default=lr)
        parser.add_argument("--validate-every", type=int, default=validate_every, metavar="N",
                            help="validate every N iterations (and at the end)")
        parser.add_argument("--resume", action="store_true",
                            help="continue an interrupted run with the same settings from its checkpoint (kept in "
                                 "~/.cache/ros_mmfusion/train)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (>= 1)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda needs a CUDA GPU and torch")
    add_overwrite(parser, "the model package files (model.yaml, weights.pt, metrics.json) an earlier "
                          "`mmfusion train` wrote into --out; nothing else is ever touched")


def write_package(args: argparse.Namespace, files, check: Callable[[], None], run: Callable) -> int:
    """Check the settings, then run ``run(stage)`` into a staging directory that becomes ``--out`` on success."""
    from ros_mmfusion.core.outputs import OutputDirectory

    check()  # every setting and --out are checked before the (long) training starts
    output = OutputDirectory(args.out, "train", overwrite=args.overwrite, writes=files, what="model package")
    with output as stage:
        run(stage)
    print(f"model package: {output.path}")
    return 0


def log(line: str) -> None:
    print(line, flush=True)


# -- segmentation -----------------------------------------------------------------------------------------------------
def add_segmentation(parser: argparse.ArgumentParser) -> None:
    from ros_mmfusion.core.segmentation.training import TRAINABLE_X, SegTrainConfig

    d = SegTrainConfig()
    add_common(parser, iterations=d.loop.iterations, batch=d.batch, lr=d.loop.lr, data=True,
               validate_every=d.loop.validate_every, seeds=",".join(map(str, d.train_seeds)),
               val_seeds=",".join(map(str, d.val_seeds)))
    parser.add_argument("--variant", default=d.variant, help="CMX backbone (cmx_mit_b0 .. cmx_mit_b5)")
    parser.add_argument("--x-modality", default=d.x_modality, choices=list(TRAINABLE_X))
    parser.add_argument("--size", default=f"{d.width}x{d.height}",
                        help="training resolution WxH (each side 32..8192); bag frames are resized to it")
    parser.add_argument("--frames-per-seed", type=int, default=d.frames_per_seed,
                        help="frames rendered per scenario and training seed")
    parser.add_argument("--val-frames", type=int, default=d.val_frames_per_seed,
                        help="frames rendered per scenario and validation seed")
    parser.add_argument("--decoder-embed-dim", type=int, default=d.decoder_embed_dim)
    parser.add_argument("--image-topic", default=d.image_topic, help="colour topic of --bag (Image/CompressedImage)")
    parser.add_argument("--x-topic", default="", help="X image topic of --bag, registered to the colour camera "
                                                      "(default: the synthetic world's thermal or depth topic)")
    parser.add_argument("--labels-topic", default=d.labels_topic, help="mono8 class-id Image topic of --bag")
    parser.add_argument("--camera-info-topic", default=d.camera_info_topic,
                        help="colour CameraInfo of --bag (HHA needs it)")
    parser.add_argument("--modality-dropout", type=float, default=d.modality_dropout,
                        help="fraction of samples whose X is replaced by the neutral X")
    parser.add_argument("--no-scale-crop", action="store_true", help="train without the random scale and crop")


def run_segmentation(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ros_mmfusion.core.model_package import PACKAGE_FILES
    from ros_mmfusion.core.segmentation.training import SegTrainConfig, default_x_params, train
    from ros_mmfusion.core.sim import parse_size

    width, height = parse_size(args.size)
    d = SegTrainConfig()
    scenarios = tuple(args.scenario) if args.scenario else (() if args.bag else d.scenarios)
    loop = replace(d.loop, iterations=args.iterations, lr=args.lr, validate_every=args.validate_every,
                   threads=args.threads, device=args.device)
    cfg = SegTrainConfig(
        variant=args.variant, decoder_embed_dim=args.decoder_embed_dim, width=width, height=height,
        scenarios=scenarios, train_seeds=parse_seeds(args.seeds, "--seeds") if scenarios else (),
        val_seeds=parse_seeds(args.val_seeds, "--val-seeds") if scenarios else (),
        frames_per_seed=args.frames_per_seed, val_frames_per_seed=args.val_frames, bags=tuple(args.bag),
        val_bags=tuple(args.val_bag), image_topic=args.image_topic, x_topic=args.x_topic,
        labels_topic=args.labels_topic, camera_info_topic=args.camera_info_topic, x_modality=args.x_modality,
        x_params=default_x_params(args.x_modality), batch=args.batch, modality_dropout=args.modality_dropout,
        scale_crop=not args.no_scale_crop, init=args.init, loop=loop)
    return write_package(args, PACKAGE_FILES, cfg.check,
                         lambda stage: train(cfg, stage, log=log, resume=args.resume))


# -- detection --------------------------------------------------------------------------------------------------------
def add_detection(parser: argparse.ArgumentParser) -> None:
    from ros_mmfusion.core.detection3d.training import (
        CORRUPT_CHOICES,
        GROUND_TRUTH_LABELS_TOPIC,
        DetectionTrainConfig,
    )

    d = DetectionTrainConfig()
    add_common(parser, iterations=d.loop.iterations, batch=d.batch, lr=d.loop.lr, data=True,
               validate_every=d.loop.validate_every, seeds=",".join(map(str, d.train_seeds)),
               val_seeds=",".join(map(str, d.val_seeds)))
    parser.add_argument("--variant", default=d.variant,
                        help="anchor-head pillar detector (core/models/pointpillars.py)")
    parser.add_argument("--points-topic", default=d.points_topic, help="sensor_msgs/PointCloud2 topic of --bag")
    parser.add_argument("--boxes-topic", default=d.boxes_topic,
                        help="vision_msgs/Detection3DArray ground truth of --bag, in the cloud's frame")
    parser.add_argument("--frames-per-seed", type=int, default=d.frames_per_seed,
                        help="LiDAR scans rendered per scenario and training seed")
    parser.add_argument("--val-frames", type=int, default=d.val_frames_per_seed,
                        help="LiDAR scans rendered per scenario and validation seed")
    parser.add_argument("--frame-stride", type=int, default=d.frame_stride, help="render every N-th 10 Hz frame")
    parser.add_argument("--beams", type=int, default=d.beams, choices=[16, 32, 64, 128], help="synthetic LiDAR beams")
    parser.add_argument("--intensity-scale", type=float, default=d.intensity_scale,
                        help="factor from the cloud's intensity to the model's (default 1/255: 0..255 -> 0..1)")
    parser.add_argument("--paint", default="", metavar="CLASSES",
                        help="PointPainting: comma-separated label classes whose segmentation scores are appended "
                             "to every point (e.g. car,pedestrian,cyclist); empty: unpainted. From --bag: the "
                             "--labels-topic mask of the camera of --camera-info-topic, through the bag's /tf_static "
                             "(cloud frame -> label image frame)")
    parser.add_argument("--labels-topic", default=d.labels_topic,
                        help="painted training from --bag: mono8 class-id Image of the colour camera (the simulated "
                             "bags' ground truth; on a robot the segmentation node's /segmentation/labels recorded in "
                             "the bag)")
    parser.add_argument("--camera-info-topic", default=d.camera_info_topic,
                        help="painted training from --bag: CameraInfo of the --labels-topic camera")
    parser.add_argument("--sync-tolerance", type=float, default=d.sync_tolerance, metavar="S",
                        help="painted training from --bag: largest stamp difference (s) between a cloud and its "
                             "label image; clouds without one are skipped")
    parser.add_argument("--corrupt-labels", default=d.corrupt_labels, choices=list(CORRUPT_CHOICES),
                        help="painted training from --bag: make the labels look like a real segmentation's (grown "
                             "or shrunk edges, false and missing blobs); auto: only for the ground-truth topic "
                             f"{GROUND_TRUTH_LABELS_TOPIC}")
    parser.add_argument("--window", type=float, default=d.window,
                        help="side (m) of the BEV window each batch trains on; 0: the whole range")


def run_detection(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ros_mmfusion.core.detection3d.training import DetectionTrainConfig, train
    from ros_mmfusion.core.model_package import PACKAGE_FILES

    d = DetectionTrainConfig()
    scenarios = tuple(args.scenario) if args.scenario else (() if args.bag else d.scenarios)
    loop = replace(d.loop, iterations=args.iterations, lr=args.lr, validate_every=args.validate_every,
                   threads=args.threads, device=args.device)
    cfg = DetectionTrainConfig(
        variant=args.variant, scenarios=scenarios,
        train_seeds=parse_seeds(args.seeds, "--seeds") if scenarios else (),
        val_seeds=parse_seeds(args.val_seeds, "--val-seeds") if scenarios else (),
        frames_per_seed=args.frames_per_seed, val_frames_per_seed=args.val_frames, frame_stride=args.frame_stride,
        beams=args.beams, bags=tuple(args.bag), val_bags=tuple(args.val_bag), points_topic=args.points_topic,
        boxes_topic=args.boxes_topic, batch=args.batch, intensity_scale=args.intensity_scale, init=args.init,
        paint_classes=tuple(c.strip() for c in args.paint.split(",") if c.strip()), labels_topic=args.labels_topic,
        camera_info_topic=args.camera_info_topic, sync_tolerance=args.sync_tolerance,
        corrupt_labels=args.corrupt_labels, window=args.window, loop=loop)
    return write_package(args, PACKAGE_FILES, cfg.check,
                         lambda stage: train(cfg, stage, log=log, resume=args.resume))


# -- navigation -------------------------------------------------------------------------------------------------------
def add_navigation(parser: argparse.ArgumentParser) -> None:
    from ros_mmfusion.core.navigation.training import NavTrainConfig

    d = NavTrainConfig()
    add_common(parser, iterations=d.loop.iterations, batch=d.batch, lr=d.loop.lr, data=True,
               validate_every=d.loop.validate_every, seeds=",".join(map(str, d.train_seeds)),
               val_seeds=",".join(map(str, d.val_seeds)))
    parser.add_argument("--variant", default=d.variant, help="ViNT variant (default: the reduced architecture)")
    parser.add_argument("--image-topic", default=d.image_topic, help="camera topic of --bag (Image/CompressedImage)")
    parser.add_argument("--odom-topic", default=d.odom_topic, help="nav_msgs/Odometry topic of --bag")
    parser.add_argument("--size", default=f"{d.width}x{d.height}",
                        help="WxH the synthetic camera renders (bag frames are resized to it); the network input "
                             "is resized to 85x64 from it as the deployment does")
    parser.add_argument("--frames-per-seed", type=int, default=d.frames_per_seed,
                        help="frames (at 4 Hz) rendered per scenario and training seed")
    parser.add_argument("--val-frames", type=int, default=d.val_frames,
                        help="frames (at 4 Hz) rendered per scenario and validation seed")
    parser.add_argument("--goals-per-context", type=int, default=d.goals_per_context)
    parser.add_argument("--waypoint-spacing", type=float, default=d.waypoint_spacing,
                        help="metres per normalised waypoint unit (0: the training data's median metres per frame)")
    parser.add_argument("--alpha", type=float, default=d.alpha, help="distance vs waypoint loss weight (ViNT: 0.5)")
    parser.add_argument("--cross-pass", type=float, default=d.cross_pass,
                        help="fraction of goals taken from the other pass of the same synthetic route")
    parser.add_argument("--behind-negatives", type=float, default=d.behind_negatives,
                        help="fraction of goals drawn behind the robot, labelled far")
    parser.add_argument("--no-augment", action="store_true", help="train without the light image augmentation")
    parser.add_argument("--static-contexts", type=float, default=d.static_contexts,
                        help="fraction of contexts of one repeated frame (a robot at rest) with moving labels")
    parser.add_argument("--recovery", type=float, default=d.recovery, metavar="M",
                        help="add a recovery pass per rendered recording, up to M metres beside the route, whose "
                             "waypoints lead back onto it (0: none)")
    parser.add_argument("--recovery-yaw", type=float, default=d.recovery_yaw, metavar="RAD",
                        help="largest heading error of the recovery passes")
    parser.add_argument("--recovery-fraction", type=float, default=d.recovery_fraction,
                        help="fraction of contexts drawn from the recovery passes (0: in proportion to frames)")


def run_navigation(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ros_mmfusion.core.model_package import PACKAGE_FILES
    from ros_mmfusion.core.navigation.training import DEFAULT_SCENARIOS, NavTrainConfig, train
    from ros_mmfusion.core.sim import parse_size

    width, height = parse_size(args.size)
    scenarios = tuple(args.scenario) if args.scenario else (() if args.bag else DEFAULT_SCENARIOS)
    d = NavTrainConfig()
    loop = replace(d.loop, iterations=args.iterations, lr=args.lr, validate_every=args.validate_every,
                   threads=args.threads, device=args.device)
    cfg = NavTrainConfig(
        variant=args.variant, scenarios=scenarios,
        train_seeds=parse_seeds(args.seeds, "--seeds") if scenarios else (),
        val_seeds=parse_seeds(args.val_seeds, "--val-seeds") if scenarios else (), width=width, height=height,
        frames_per_seed=args.frames_per_seed, val_frames=args.val_frames, bags=tuple(args.bag),
        val_bags=tuple(args.val_bag), image_topic=args.image_topic, odom_topic=args.odom_topic, batch=args.batch,
        goals_per_context=args.goals_per_context, alpha=args.alpha, cross_pass=args.cross_pass,
        behind_negatives=args.behind_negatives, augment=not args.no_augment,
        waypoint_spacing=args.waypoint_spacing, recovery=args.recovery, recovery_yaw=args.recovery_yaw,
        static_contexts=args.static_contexts, recovery_fraction=args.recovery_fraction,
        init=args.init, loop=loop)
    return write_package(args, PACKAGE_FILES, cfg.check,
                         lambda stage: train(cfg, stage, log=log, resume=args.resume))


TASKS: dict[str, Task] = {
    "segmentation": Task("RGB-X CMX segmentation from synthetic frames or bags with mono8 labels",
                         add_segmentation, run_segmentation),
    "detection": Task("PointPillars 3D detection (optionally painted) from synthetic scans or bags with boxes",
                      add_detection, run_detection),
    "navigation": Task("ViNT navigation, self-supervised from synthetic routes or bags with odometry",
                       add_navigation, run_navigation),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, task in TASKS.items():
        p = sub.add_parser(name, help=task.help, description=task.help)
        task.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    return TASKS[args.task].run(args)
