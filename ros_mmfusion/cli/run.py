"""``mmfusion run PRESET``: start the nodes of a preset from config/presets/ without ``ros2 launch``."""
from __future__ import annotations

import argparse

HELP = "start the nodes of a preset (config/presets/NAME.yaml) without ros2 launch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", help="preset name (see --list)", nargs="?")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--bag", help="bag directory, for presets that replay one ($(arg bag))")
    parser.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="other preset arguments")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="override a node parameter (YAML value)")
    parser.add_argument("--processes", action="store_true", help="one OS process per node (DDS between them)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion import presets
    from ros_mmfusion.cli.main import UserError

    if args.list or not args.preset:
        for name in presets.available():
            print(f"{name:20s} {presets.load_description(name)}")
        return 0 if args.list else 2
    preset_args = {}
    for item in args.arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--arg expects NAME=VALUE, got {item!r}")
        preset_args[key] = value
    if args.bag:
        preset_args["bag"] = args.bag
    if args.duration < 0:
        raise UserError("--duration must be >= 0")
    preset = presets.load(args.preset, preset_args, presets.parse_set(args.set))
    import rclpy

    import ros_mmfusion.ros  # noqa: F401  (DDS profile)
    from ros_mmfusion.ros import launcher

    if args.processes:
        return launcher.run_processes(preset, args.duration)
    rclpy.init()
    try:
        launcher.run_in_process(preset, duration=args.duration)
    finally:
        rclpy.try_shutdown()
    return 0
