"""``mmfusion import nuscenes DIR --out BAG``: nuScenes samples (mmdetection3d info JSON) -> rosbag2 (MCAP).

Example: ``mmfusion import nuscenes ../shared/real/nuscenes_sample --out bags/nuscenes`` writes the six cameras,
LIDAR_TOP, TF and the annotated boxes of every sample in ``DIR/sample.json`` (or ``--info FILE``) as one bag.
See docs/datasets.md (## nuScenes) for the topics and frames.
"""
from __future__ import annotations

import argparse
import sys

HELP = "nuScenes samples (six cameras, LIDAR_TOP, boxes, TF; mmdetection3d info as JSON) -> rosbag2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DIR", help="folder holding sample.json and the files it names (also "
                                                       "looked up under samples/<CHANNEL>/)")
    parser.add_argument("--info", metavar="FILE", help="the info JSON (default DIR/sample.json); its data_list may "
                                                       "hold several samples of one scene (a sequence)")
    parser.add_argument("--out", metavar="DIR", help="bag directory to create (must not exist or be empty)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default mcap)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it holds a bag written by mmfusion import nuscenes (nothing else is "
                             "ever deleted)")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.datasets.nuscenes import is_imported_bag, read_samples, write_bag
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.outputs import OutputDirectory

    if not args.out:
        raise UserError("--out DIR is required (the bag directory to create)")
    source = Path(args.info) if args.info else Path(args.dataset)
    if args.info and not Path(args.dataset).is_dir():
        raise UserError(f"{args.dataset}: no such dataset folder")
    try:
        samples = read_samples(source)
        output = OutputDirectory(args.out, "import nuscenes", overwrite=args.overwrite, exclusive=True, marker=False,
                                 recognise=is_imported_bag, what="bag", inputs=[source])
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            print(f"  sample {done}/{total}  {time.perf_counter() - started:6.1f} s", flush=True)

    print(f"mmfusion import nuscenes: {len(samples)} sample(s) of {source} -> {output.path} ({args.storage})",
          flush=True)
    try:
        with output as stage:
            summary = write_bag(samples, stage, storage=args.storage, source=source.resolve(), progress=progress)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {summary.samples} sample(s), {sum(summary.messages.values())} messages on "
          f"{len(summary.messages)} topics, {summary.bytes / 1e6:.1f} MB in {summary.seconds:.1f} s")
    for topic, count in summary.messages.items():
        print(f"  {topic:36s} {count}")
    print(f"bag: {output.path}\nrun it: mmfusion run nuscenes --bag {output.path}")
    sys.stdout.flush()
    return 0
