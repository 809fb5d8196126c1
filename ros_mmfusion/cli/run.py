"""``mmfusion run PRESET``: start the nodes of a preset from config/presets/ without ``ros2 launch``.

On a terminal a live line shows, per node, frames in/out, pipeline latency p50 and the diagnostic level (from
``/diagnostics``); at the end a summary table is printed on any stdout (ros_mmfusion/ros/progress.py). SIGINT and
SIGTERM stop every node; a node that cannot start is one error line and a non-zero exit, and the bag never plays.
``--use-sim-time`` runs every node on the bag's time (``presets.add_sim_time``: the player publishes /clock);
``--no-use-sim-time`` runs every node on the wall clock (the player restamps), for presets that replay on sim time
(``carla``, ``gazebo``). A preset's optional node (``if_arg``, e.g. the convention presets' ViNT navigation without
``--arg topomap=DIR``) that is left out is one note on stderr; the rest runs.

With ``--lifecycle`` the nodes run as managed (lifecycle) nodes in this process, brought up by a lifecycle manager
through their lifecycle services (configure every node, then activate every node, in the preset's order, bag players
last) and down on SIGINT/SIGTERM or at the end (deactivate, cleanup, shutdown, in reverse order); a node that fails
to configure is one error line and exit code 2, after the others were brought down (launcher.run_managed_in_process).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

HELP = "start the nodes of a preset (config/presets/NAME.yaml) without ros2 launch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", help="preset name (see --list)", nargs="?")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--bag", help="bag directory, for presets that replay one ($(arg bag))")
    parser.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="other preset arguments")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="override a node parameter (YAML value)")
    parser.add_argument("--use-sim-time", action=argparse.BooleanOptionalAction, default=None,
                        help="every node on sim time (use_sim_time); the bag player publishes /clock from the bag "
                             "and keeps its stamps. --no-use-sim-time: every node on the wall clock, the player "
                             "restamping (for presets that replay on sim time: carla, gazebo). Default: the preset's")
    parser.add_argument("--processes", action="store_true", help="one OS process per node (DDS between them)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    parser.add_argument("--lifecycle", action="store_true",
                        help="run the nodes as managed (lifecycle) nodes, brought up and down through their lifecycle "
                             "services in the preset's order (in this process)")


@contextmanager
def _listening(board) -> Iterator[None]:
    """With a live board: a /diagnostics listener spun in a thread of this process (the nodes run elsewhere)."""
    if not board.live:
        yield
        return
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from ros_mmfusion.ros.progress import diagnostics_listener
    from ros_mmfusion.ros.runtime import spinning_in_background

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # the launcher handles SIGINT/SIGTERM itself
    try:
        with spinning_in_background(diagnostics_listener(board), "mmfusion_run_progress"):
            yield
    finally:
        rclpy.try_shutdown()


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion import presets
    from ros_mmfusion.cli.main import UserError

    if args.list or not args.preset:
        for name in presets.available():
            print(f"{name:20s} {presets.load_description(name)}")
        return 0 if args.list else 2
    preset_args = presets.parse_arguments(args.arg)
    if args.bag:
        preset_args["bag"] = args.bag
    if args.duration < 0:
        raise UserError("--duration must be >= 0")
    if args.lifecycle and args.processes:
        raise UserError("--lifecycle runs the nodes in this process: it does not combine with --processes")
    overrides = presets.parse_set(args.set)
    if args.use_sim_time is not None:
        plain = presets.load(args.preset, preset_args, overrides)
        presets.add_sim_time(plain.nodes, overrides, args.use_sim_time)
    preset = presets.load(args.preset, preset_args, overrides)
    for skipped in preset.left_out:  # an optional node without its argument: say what it needs, run the rest
        print(f"mmfusion run: note: {skipped.note(args.preset)}", file=sys.stderr)
    import rclpy

    import ros_mmfusion.ros  # noqa: F401  (DDS profile)
    from ros_mmfusion import launcher
    from ros_mmfusion.ros.progress import RunBoard, diagnostics_listener
    from ros_mmfusion.ros.runtime import health_snapshot

    board = RunBoard([launch.name for launch in preset.nodes])

    def until(*_nodes: list) -> bool:
        board.tick()
        return False

    if args.processes:
        with _listening(board):
            code = launcher.run_processes(preset, args.duration, until=until, on_final=board.update_snapshot)
        if code == 0:
            board.finish()
        return code

    def summarise(nodes: list) -> None:
        for launch, node in zip(preset.nodes, nodes, strict=True):
            board.update_snapshot(launch.name, health_snapshot(node))

    if args.lifecycle:  # the manager handles SIGINT/SIGTERM: the ROS context must outlive them for the bring-down
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    else:
        rclpy.init()
    try:
        extra = [diagnostics_listener(board)] if board.live else []
        runner = launcher.run_managed_in_process if args.lifecycle else launcher.run_in_process
        runner(preset, until=until, duration=args.duration, extra_nodes=extra, before_destroy=summarise)
    finally:
        rclpy.try_shutdown()
    board.finish()
    return 0
