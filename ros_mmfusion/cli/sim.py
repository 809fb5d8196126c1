"""``mmfusion sim``: record a synthetic multi-sensor scenario with ground truth as a rosbag2.

Example: ``mmfusion sim --scenario urban_night --frames 100 --out bags/night`` writes ``bags/night/`` (a rosbag2
directory ``ros2 bag play`` and ``rosbags`` read) with ``calibration.yaml`` and ``scenario.yaml`` in it.
See docs/world.md for the topics, frames, label set and scenarios.
"""
from __future__ import annotations

import argparse
import sys
import time

HELP = "record a synthetic multi-sensor scenario with ground truth as a rosbag2 (see docs/world.md)"
MAX_FRAMES = 100_000
"""Upper bound of ``--frames`` (10 000 s of data at 10 Hz; about 100 GB at 640x480)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ros_mmfusion.core.sim.scenarios import SCENARIOS

    names = ", ".join(SCENARIOS)
    parser.add_argument("--scenario", metavar="NAME", help=f"one of: {names}")
    parser.add_argument("--frames", type=int, default=100, help=f"frames to record, 1..{MAX_FRAMES} (default 100)")
    parser.add_argument("--out", metavar="DIR", help="bag directory to create (must not exist or be empty)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default mcap)")
    parser.add_argument("--seed", type=int, default=0, help="world and noise seed: same seed, same data (default 0)")
    parser.add_argument("--size", default="640x480", metavar="WxH", help="camera image size (default 640x480)")
    parser.add_argument("--beams", type=int, choices=(32, 64), default=32, help="LiDAR beams (default 32)")
    parser.add_argument("--rate", type=float, default=10.0, metavar="HZ", help="frames per second (default 10)")
    parser.add_argument("--depth-encoding", choices=("32FC1", "16UC1"), default=None,
                        help="depth image: 32FC1 metres, NaN invalid (default) or 16UC1 millimetres, 0 invalid "
                             "(the default with --compressed)")
    parser.add_argument("--compressed", nargs="?", const="jpeg", choices=("jpeg", "png"), metavar="CODEC",
                        help="write the camera images as sensor_msgs/CompressedImage on <topic>/compressed, as "
                             "image_transport does: colour as jpeg (default) or png, depth (16UC1) and thermal as "
                             "16-bit png; ground truth stays raw")
    parser.add_argument("--convention", metavar="NAME",
                        help="record the topics, frames and image encodings as a simulator or driver publishes them "
                             "(carla, gazebo, realsense, ...; see --list-conventions); run the bag with the "
                             "convention's preset")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it holds a bag written by mmfusion sim (nothing else is ever deleted), "
                             "and an existing --preview file")
    parser.add_argument("--preview", metavar="PNG", help="also write a side-by-side preview of the middle frame")
    parser.add_argument("--list", action="store_true", help="list the scenarios and the conventions and exit")
    parser.add_argument("--list-conventions", action="store_true",
                        help="list the conventions (name, preset, description) and exit")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.outputs import OutputDirectory, OutputFile
    from ros_mmfusion.core.sim.conventions import all_conventions, get_convention
    from ros_mmfusion.core.sim.recorder import is_simulated_bag
    from ros_mmfusion.core.sim.scenarios import SCENARIOS, get_scenario
    from ros_mmfusion.core.sim.simulator import parse_size

    if args.list or args.list_conventions:
        if args.list:
            print("scenarios:")
            for scenario in SCENARIOS.values():
                alias = f" (alias: {', '.join(scenario.aliases)})" if scenario.aliases else ""
                print(f"  {scenario.name}{alias}: {scenario.description}")
            print("conventions (--convention NAME; run the bag with the named preset):")
        for convention in all_conventions():
            print(f"  {convention.name} (preset {convention.preset}): {convention.description}")
        return 0
    if not args.scenario:
        raise UserError(f"--scenario is required; choose one of: {', '.join(SCENARIOS)}")
    if not args.out:
        raise UserError("--out DIR is required (the bag directory to create)")
    if not 0 < args.frames <= MAX_FRAMES:
        raise UserError(f"--frames must be a positive number of frames up to {MAX_FRAMES}, got {args.frames}")
    if not 0.1 <= args.rate <= 100.0:
        raise UserError(f"--rate must be between 0.1 and 100 Hz, got {args.rate}")
    try:
        scenario = get_scenario(args.scenario)
        size = parse_size(args.size)
        convention = get_convention(args.convention) if args.convention else None
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if convention is not None and args.compressed:
        raise UserError(f"--convention {convention.name} sets the image encodings; it cannot be combined with "
                        "--compressed")
    convention_depth = convention.encodings.get("/camera/depth/image_rect_raw") if convention is not None else None
    if convention_depth and args.depth_encoding and args.depth_encoding != convention_depth:
        raise UserError(f"--convention {convention.name} writes depth as {convention_depth}, not "
                        f"--depth-encoding {args.depth_encoding}")
    if args.preview and Path(args.preview).suffix.lower() != ".png":
        raise UserError(f"--preview should name a .png file, got {args.preview}")
    depth_encoding = convention_depth or args.depth_encoding or ("16UC1" if args.compressed else "32FC1")
    if args.compressed and depth_encoding != "16UC1":
        raise UserError(f"--compressed writes depth as a 16-bit PNG of millimetres: --depth-encoding must be 16UC1, "
                        f"got {depth_encoding}")
    # a bag directory holds nothing but the bag: --overwrite replaces only a directory that is all a bag we wrote
    output = OutputDirectory(args.out, "sim", overwrite=args.overwrite, exclusive=True, marker=False,
                             recognise=is_simulated_bag, what="bag")
    preview = OutputFile(args.preview, overwrite=args.overwrite, option="--preview") if args.preview else None

    from ros_mmfusion.core.sim.recorder import record

    out = output.path
    started = time.perf_counter()
    step = max(1, args.frames // 10)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            elapsed = time.perf_counter() - started
            print(f"  frame {done}/{total}  {elapsed:6.1f} s", flush=True)

    print(f"mmfusion sim: {scenario.name} seed {args.seed}, {args.frames} frames at {args.rate:g} Hz, "
          f"{size[0]}x{size[1]}, {args.beams} beams -> {out} ({args.storage}"
          f"{f', {args.compressed} compressed camera images' if args.compressed else ''}"
          f"{f', {convention.name} convention' if convention is not None else ''})", flush=True)
    try:
        with output as stage:
            summary = record(scenario.name, stage, args.frames, seed=args.seed, size=size, beams=args.beams,
                             rate=args.rate, storage=args.storage, depth_encoding=depth_encoding,
                             progress=progress, compressed=args.compressed, convention=convention)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    except ImportError as exc:  # a broken install (open3d without libusb, say): one line, not a traceback
        raise UserError(str(exc), code=1) from None
    print(f"wrote {summary.frames} frames, {sum(summary.messages.values())} messages on {len(summary.messages)} "
          f"topics, {summary.bytes / 1e6:.1f} MB in {summary.seconds:.1f} s "
          f"({summary.seconds / summary.frames * 1000:.0f} ms/frame)")
    for topic, count in summary.messages.items():
        print(f"  {topic:32s} {count}")
    print(f"bag: {out}\ncalibration: {out / summary.calibration.name}")
    if convention is not None:
        print(f"run it: mmfusion run {convention.preset} --bag {out}")
    if preview is not None:
        from ros_mmfusion.core.sim.preview import render_preview
        from ros_mmfusion.core.sim.simulator import Simulation

        sim = Simulation(scenario, seed=args.seed, size=size, beams=args.beams, rate=args.rate)
        with preview as tmp:
            render_preview(sim.frame(args.frames // 2), tmp, title=f"{scenario.name} seed {args.seed}",
                           bev_range=40.0 if sim.world.outdoor else 15.0)
        print(f"preview: {preview.path}")
    sys.stdout.flush()
    return 0
