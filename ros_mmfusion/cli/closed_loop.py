"""``mmfusion closed-loop``: the navigation graph drives the simulated robot along held-out routes; success rate, SPL,
collisions, cross-track distance and time to goal per policy (trained ViNT, random weights, odometry oracle).

Example: ``mmfusion closed-loop --scenario indoor_corridor --routes 5 --out runs/closed_loop`` writes
``report.json``, ``trajectories.png`` and each route's mapping bag and topological map into ``runs/closed_loop``.
See docs/navigation.md "Closed loop".
"""
from __future__ import annotations

import argparse

HELP = "closed-loop navigation in the synthetic world: the robot drives; success rate, SPL, collisions per policy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ros_mmfusion.cli.args import add_overwrite
    from ros_mmfusion.launcher.closed_loop import PASS_PAIRS, POLICIES, ClosedLoopSettings

    d = ClosedLoopSettings()
    parser.add_argument("--scenario", default=d.scenario, choices=list(PASS_PAIRS),
                        help="mapping pass; the robot drives the other pass of the same route")
    parser.add_argument("--routes", type=int, default=d.routes, help="routes (world seeds) to drive")
    parser.add_argument("--first-seed", type=int, default=d.first_seed,
                        help=f"seed of the first route (default {d.first_seed}: held out from training)")
    parser.add_argument("--route-seconds", type=float, default=d.route_seconds,
                        help="length of each mapped route in seconds of the mapping pass")
    parser.add_argument("--policy", action="append", choices=list(POLICIES), default=None,
                        help="policy to compare (repeatable; default: all)")
    parser.add_argument("--size", default=f"{d.size[0]}x{d.size[1]}", help="camera WxH")
    parser.add_argument("--real-time-factor", type=float, default=d.real_time_factor,
                        help="simulated seconds per wall second (0: as fast as possible)")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="override a node parameter of the closed_loop preset (repeatable)")
    parser.add_argument("--out", required=True, help="report directory to create (refused if it holds other files)")
    add_overwrite(parser, "the files an earlier `mmfusion closed-loop` wrote into --out")


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.core.outputs import OutputDirectory
    from ros_mmfusion.core.sim import parse_size
    from ros_mmfusion.launcher.closed_loop import ClosedLoopSettings, run_closed_loop, table_lines
    from ros_mmfusion.presets import parse_set

    settings = ClosedLoopSettings(
        scenario=args.scenario, routes=args.routes, first_seed=args.first_seed, route_seconds=args.route_seconds,
        policies=tuple(dict.fromkeys(args.policy)) if args.policy else ClosedLoopSettings().policies,
        size=parse_size(args.size), real_time_factor=args.real_time_factor, overrides=parse_set(args.set))
    settings.check()
    seeds = range(settings.first_seed, settings.first_seed + settings.routes)
    writes = ["report.json", "trajectories.png", *(f"map_seed{s}" for s in seeds), *(f"topomap_seed{s}" for s in seeds)]
    output = OutputDirectory(args.out, "closed-loop", overwrite=args.overwrite, writes=writes,
                             what="report directory")
    with output as stage:
        report = run_closed_loop(settings, stage)
    print("\n".join(table_lines(report)))
    print(f"report: {output.path / 'report.json'}, trajectories: {output.path / 'trajectories.png'}")
    return 0
