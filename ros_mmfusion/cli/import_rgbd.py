"""``mmfusion import rgbd``: RGB-D frames (TUM, NYU raw, SUN RGB-D, Kinect v2 millimetres), folders of timestamped
images and MFNet RGB-thermal frames to a rosbag2 (MCAP). The reading and writing is
:mod:`ros_mmfusion.core.datasets.rgbd`; see docs/datasets.md."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ros_mmfusion.core.modalities.depth_encodings import DEPTH_ENCODINGS

HELP = "RGB-D / image sequences (TUM folders, NYU/SUN/Kinect v2 pairs) and MFNet RGB-thermal frames to a rosbag2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", type=Path,
                        help="a TUM sequence folder (rgb.txt, depth.txt), a folder of images named by capture time, "
                             "or with --layout mfnet MFNet RGBA files / a folder of them")
    parser.add_argument("--rgb", type=Path, help="one colour image (a single pair with --depth)")
    parser.add_argument("--depth", type=Path, help="one depth image in --depth-encoding (a single pair)")
    parser.add_argument("--depth-encoding", default="tum", choices=list(DEPTH_ENCODINGS),
                        help="how the depth files store depth (default tum: uint16 / 5000 m)")
    parser.add_argument("--layout", default="rgbd", choices=["rgbd", "mfnet"],
                        help="mfnet: 4-channel PNGs, R,G,B colour + 8-bit thermal in A")
    parser.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                        help="camera intrinsics in pixels (default: the encoding's published camera)")
    parser.add_argument("--depth-output", default="32FC1", choices=["32FC1", "16UC1"],
                        help="depth in the bag: 32FC1 metres (default) or 16UC1 millimetres")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="frames per second for inputs without capture times (pairs, MFNet); default 1")
    parser.add_argument("--max-difference", type=float, default=0.02,
                        help="largest colour-depth stamp difference (s) when associating a TUM folder")
    parser.add_argument("--out", type=Path, required=True, help="the bag directory to create")
    parser.add_argument("--overwrite", action="store_true", help="replace a bag this command wrote before")


def _frames(args: argparse.Namespace):
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.datasets.rgbd import IMAGE_SUFFIXES, Frame, scan_folder

    period = int(1e9 / args.rate)
    if args.rgb is not None or args.depth is not None:
        if args.inputs or args.layout != "rgbd":
            raise UserError("--rgb/--depth import one pair; do not combine them with input folders or --layout")
        for option, path in (("--rgb", args.rgb), ("--depth", args.depth)):
            if path is not None and not path.is_file():
                raise UserError(f"{option} {path}: missing")
        return [Frame(0, args.rgb, args.depth)], None
    if not args.inputs:
        raise UserError("name a folder (or MFNet files), or a pair with --rgb/--depth")
    if args.layout == "mfnet":
        files = []
        for path in args.inputs:
            if path.is_dir():
                files += sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
            elif path.is_file():
                files.append(path)
            else:
                raise UserError(f"{path}: missing")
        if not files:
            raise UserError(f"{args.inputs[0]}: no MFNet .png files")
        return [Frame(i * period, f) for i, f in enumerate(files)], None
    if len(args.inputs) != 1:
        raise UserError("import one sequence folder at a time")
    folder = args.inputs[0]
    if folder.is_file() and folder.suffix.lower() in IMAGE_SUFFIXES:
        raise UserError(f"{folder} is a file: pass its folder, or --rgb/--depth for a single pair")
    frames = scan_folder(folder, args.max_difference)
    groundtruth = folder / "groundtruth.txt"
    return frames, groundtruth if groundtruth.is_file() else None


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.datasets.rgbd import is_rgbd_bag, write_bag
    from ros_mmfusion.core.errors import ConfigError, MessageFormatError
    from ros_mmfusion.core.outputs import OutputDirectory

    if not 0.01 <= args.rate <= 1000:
        raise UserError(f"--rate must be between 0.01 and 1000 Hz, got {args.rate}")
    try:
        frames, groundtruth = _frames(args)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    output = OutputDirectory(args.out, "import rgbd", overwrite=args.overwrite, exclusive=True, marker=False,
                             recognise=is_rgbd_bag, what="bag")
    started = time.perf_counter()
    step = max(1, len(frames) // 10)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            print(f"  frame {done}/{total}  {time.perf_counter() - started:6.1f} s", flush=True)

    print(f"mmfusion import rgbd: {len(frames)} frames ({args.layout}, depth {args.depth_encoding}) -> {args.out}",
          flush=True)
    try:
        with output as stage:
            summary = write_bag(stage, frames, depth_encoding=args.depth_encoding, layout=args.layout,
                                intrinsics=args.intrinsics, depth_output=args.depth_output, groundtruth=groundtruth,
                                rate=args.rate, progress=progress)
    except (ConfigError, MessageFormatError) as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {summary.frames} frames, {sum(summary.messages.values())} messages in {summary.seconds:.1f} s")
    for topic, count in summary.messages.items():
        print(f"  {topic:32s} {count}")
    print(f"bag: {args.out}")
    return 0
