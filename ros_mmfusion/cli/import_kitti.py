"""``mmfusion import kitti``: a KITTI object-benchmark folder or raw drive as a rosbag2 (MCAP) with calibration and
ground truth.

Example: ``mmfusion import kitti data/kitti/training --out bags/kitti`` writes ``bags/kitti/`` (a rosbag2 directory
``ros2 bag play`` and ``rosbags`` read) with ``calibration.yaml`` and ``dataset.yaml``; run it with
``mmfusion run detection --bag bags/kitti``. See docs/datasets.md ("KITTI") for the topics, frames and label mapping.
"""
from __future__ import annotations

import argparse
import sys
import time

HELP = "import a KITTI object-benchmark folder or raw drive as a rosbag2 (see docs/datasets.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="DIR",
                        help="object layout: the folder with image_2/ velodyne/ calib/ [label_2/] (or its parent with "
                             "training/); raw layout: a drive folder YYYY_MM_DD_drive_NNNN_sync (calibration files in "
                             "it or its parent)")
    parser.add_argument("--out", metavar="DIR", required=True, help="bag directory to create (must not exist or be "
                                                                    "empty)")
    parser.add_argument("--layout", choices=("auto", "object", "raw"), default="auto",
                        help="folder layout (default: auto, from velodyne/ or velodyne_points/)")
    parser.add_argument("--rate", type=float, default=10.0, metavar="HZ",
                        help="object layout: the synthesized frame rate (default 10; the frames have no time)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="import the first N frames only")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it holds a bag written by mmfusion import kitti (nothing else is ever "
                             "deleted)")


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.datasets.kitti import import_kitti, is_imported_bag
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.outputs import OutputDirectory

    if args.max_frames is not None and args.max_frames <= 0:
        raise UserError(f"--max-frames must be a positive number of frames, got {args.max_frames}")
    if not 0.1 <= args.rate <= 100.0:
        raise UserError(f"--rate must be between 0.1 and 100 Hz, got {args.rate}")
    try:
        output = OutputDirectory(args.out, "import kitti", overwrite=args.overwrite, exclusive=True, marker=False,
                                 recognise=is_imported_bag, inputs=[args.path], what="bag")
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    started = time.perf_counter()
    step = 1

    def progress(done: int, total: int) -> None:
        nonlocal step
        step = max(1, total // 20)
        if done % step == 0 or done == total:
            print(f"  frame {done}/{total}  {time.perf_counter() - started:6.1f} s", flush=True)

    print(f"mmfusion import kitti: {args.path} -> {output.path}", flush=True)
    try:
        with output as stage:
            summary = import_kitti(args.path, stage, layout=args.layout, rate=args.rate, max_frames=args.max_frames,
                                   progress=progress)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {summary.frames} frames ({summary.layout} layout), {sum(summary.messages.values())} messages, "
          f"{summary.bytes / 1e6:.1f} MB in {summary.seconds:.1f} s")
    for topic, count in summary.messages.items():
        print(f"  {topic:32s} {count}")
    if summary.calibrations > 1:
        print(f"note: the frames come from {summary.calibrations} calibrations; /tf_static is written again at each "
              "change, calibration.yaml holds the first frame's (see dataset.yaml calibration_changes)")
    if summary.layout == "object":
        print("note: the object layout has no time; stamps are synthesized at "
              f"{args.rate:g} Hz")
    print(f"bag: {output.path}\ncalibration: {output.path / 'calibration.yaml'}\n"
          f"run it: mmfusion run detection --bag {output.path}")
    sys.stdout.flush()
    return 0
