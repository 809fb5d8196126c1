"""``mmfusion topomap build``: a topological map for ViNT navigation from a recorded rosbag2.

Example: ``mmfusion topomap build --bag bags/pass1 --image-topic /camera/color/image_raw --dt 1.0 --out maps/loop``
writes ``maps/loop/`` (``0.png``, ``1.png``, ... and ``topomap.yaml`` with stamps and odometry poses), one node every
``--dt`` seconds of bag time. See docs/navigation.md.
"""
from __future__ import annotations

import argparse
import math

HELP = "build a topological map (images + topomap.yaml) for ViNT navigation from a rosbag2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("build",), help="build: write a topomap from a bag")
    parser.add_argument("--bag", metavar="DIR", help="rosbag2 directory (MCAP or sqlite3) of the route")
    parser.add_argument("--image-topic", metavar="TOPIC", help="sensor_msgs/Image or CompressedImage topic")
    parser.add_argument("--dt", type=float, default=1.0, metavar="S",
                        help="seconds of bag time between nodes (default 1.0)")
    parser.add_argument("--out", metavar="DIR", help="topomap directory to create (must not exist or be empty, "
                        "unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a topomap an earlier `mmfusion topomap build` wrote into --out (a directory "
                             "holding anything else is never touched)")
    parser.add_argument("--odom-topic", metavar="TOPIC", default=None,
                        help="nav_msgs/Odometry topic for the nodes' poses (default: the bag's only Odometry topic, "
                             "if it has exactly one; 'none' for no poses)")


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.bagio import ODOMETRY_TYPE, open_bag
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.navigation.topomap import build_topomap
    from ros_mmfusion.core.outputs import OutputDirectory

    for name in ("bag", "image_topic", "out"):
        if not getattr(args, name):
            raise UserError(f"--{name.replace('_', '-')} is required")
    if not (math.isfinite(args.dt) and args.dt > 0):
        raise UserError(f"--dt must be a positive number of seconds, got {args.dt}")
    # a topomap directory holds nothing but the map: --overwrite replaces only a map this command wrote
    output = OutputDirectory(args.out, "topomap", overwrite=args.overwrite, exclusive=True, inputs=[args.bag],
                             what="topomap")
    odom = args.odom_topic
    if odom is None:
        try:
            with open_bag(args.bag) as source:
                candidates = [t for t, m in source.topics.items() if m == ODOMETRY_TYPE]
        except ConfigError as exc:
            raise UserError(str(exc)) from None
        odom = candidates[0] if len(candidates) == 1 else None
    elif odom.lower() == "none":
        odom = None
    try:
        with output as stage:
            summary = build_topomap(args.bag, args.image_topic, args.dt, stage, odom)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    topomap = summary.topomap
    poses = "no poses" if odom is None else \
        f"poses from {odom}" + (f" ({summary.nodes_without_pose} nodes without one)" if summary.nodes_without_pose
                                else "")
    print(f"wrote {len(topomap)} nodes from {summary.images_seen} images on {args.image_topic} (one every "
          f"{args.dt:g} s), {poses} -> {output.path}")
    return 0
