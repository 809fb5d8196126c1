"""Closed-loop navigation trials: the deployment's navigation graph drives the simulated robot, and we score whether it
arrives (``mmfusion closed-loop``; docs/navigation.md "Closed loop").

Per route (a seed of the synthetic world: its own layout, actors and appearance):

1. a **mapping pass** of the route's scenario (e.g. ``indoor_corridor``: lights on, nobody about) is recorded at
   4 Hz and turned into a topological map (``build_topomap``, one node a second, with odometry poses);
2. the robot starts at the route's start, perturbed (up to ``start_jitter`` m sideways and ``yaw_jitter`` rad), in
   the **other pass** of the scenario (other lighting, people walking: conditions the map never saw), and the
   ``closed_loop`` preset's nodes run in this process on simulated time: ``sim_robot`` + ``vint_navigation`` +
   ``waypoint_controller``, the latter two exactly as the ``navigation`` preset deploys them;
3. the trial ends when the policy reports the goal node reached, at the first collision, or at the time limit;
   :func:`~ros_mmfusion.core.navigation.metrics.closed_loop_metrics` scores it against the mapped route.

Policies compared: ``default`` (the param file's trained ViNT package), ``random`` (the same network with random
weights: what untrained weights are worth), ``oracle`` (localisation and waypoints from odometry and the map's
poses: an upper bound on the controller and the loop).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion.core.errors import ConfigError

PASS_PAIRS = {"indoor_corridor": "indoor_corridor_pass2", "urban_sidewalk": "urban_sidewalk_pass2"}
"""Mapping scenario -> the scenario the robot drives in (same map, other appearance and people)."""
POLICIES = {
    "default": {},
    "random": {"model_package": "", "weights": ""},
    "oracle": {"distance_source": "odometry", "waypoint_source": "odometry"},
}
"""vint_navigation parameters of each compared policy (over the preset's)."""
IMAGE_TOPIC, ODOM_TOPIC = "/camera/color/image_raw", "/odom"
MAP_RATE_HZ = 4.0
MAP_DT_S = 1.0


@dataclass
class ClosedLoopSettings:
    scenario: str = "indoor_corridor"
    """The mapping pass; the robot drives in ``PASS_PAIRS[scenario]``."""
    routes: int = 3
    first_seed: int = 201
    """Route k uses world seed ``first_seed + k`` (training used seeds 1-10: these are held out)."""
    route_seconds: float = 30.0
    """Length of the mapped route in seconds of the mapping pass (1 m/s indoors)."""
    policies: tuple[str, ...] = ("default", "random", "oracle")
    size: tuple[int, int] = (160, 120)
    start_jitter: float = 0.2
    yaw_jitter: float = 0.1
    goal_radius: float = 1.0
    time_factor: float = 2.5
    """Time limit: this many times the mapping pass's duration."""
    real_time_factor: float = 1.0
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra ``--set`` values, {node name: {parameter: value}}."""

    def check(self) -> None:
        from ros_mmfusion.core.sim.scenarios import get_scenario

        if self.scenario not in PASS_PAIRS:
            raise ConfigError(f"scenario {self.scenario!r} has no closed-loop pair; choose one of "
                              f"{', '.join(PASS_PAIRS)}")
        get_scenario(self.scenario)
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown or not self.policies:
            raise ConfigError(f"policies must be among {', '.join(POLICIES)}, got {list(self.policies)}")
        if not (1 <= self.routes <= 1000 and 0 <= self.first_seed and 5.0 <= self.route_seconds <= 3600.0):
            raise ConfigError(f"routes must be 1..1000, seeds >= 0 and route_seconds 5..3600, got {self.routes}, "
                              f"{self.first_seed}, {self.route_seconds}")
        if not (0 <= self.start_jitter <= 2 and 0 <= self.yaw_jitter <= 1 and 0 < self.goal_radius <= 10
                and 1 <= self.time_factor <= 20 and 0 <= self.real_time_factor <= 100):
            raise ConfigError("start_jitter 0..2 m, yaw_jitter 0..1 rad, goal_radius 0..10 m, time_factor 1..20 and "
                              "real_time_factor 0..100 (0: as fast as possible)")
        from ros_mmfusion.core.model_package import check_package_params
        from ros_mmfusion.launcher import typed_parameters

        for policy in self.policies:  # every --set value, with every policy's, checked before any work
            for launch in closed_loop_preset(self, policy, "MAP").nodes:
                values = typed_parameters(launch)
                if launch.key == "vint_navigation":
                    check_package_params(values, ("weights", "variant"), f"policy {policy}")


@dataclass(frozen=True)
class MappedRoute:
    seed: int
    topomap: Path
    route_xy: np.ndarray
    """World x, y of the mapping pass (the mapped route)."""
    goal_xy: tuple[float, float]
    """World x, y of the goal (the map's last node)."""


def map_route(settings: ClosedLoopSettings, seed: int, workdir: Path) -> MappedRoute:
    """Record the mapping pass of route ``seed`` into ``workdir`` and build its topological map."""
    from ros_mmfusion.core.navigation.topomap import build_topomap
    from ros_mmfusion.core.sim import Simulation
    from ros_mmfusion.core.sim.recorder import record

    frames = int(settings.route_seconds * MAP_RATE_HZ) + 1
    bag, topomap = workdir / f"map_seed{seed}", workdir / f"topomap_seed{seed}"
    record(settings.scenario, bag, frames, seed=seed, size=settings.size, beams=16, rate=MAP_RATE_HZ)
    summary = build_topomap(bag, IMAGE_TOPIC, MAP_DT_S, topomap, ODOM_TOPIC)
    sim = Simulation(settings.scenario, seed=seed, size=(16, 16), beams=16)
    times = np.linspace(0.0, (frames - 1) / MAP_RATE_HZ, 4 * frames)
    route_xy = np.array([sim.ego.route.pose(float(t))[:2] for t in times])
    last = summary.topomap.poses_xy_yaw()[-1]
    goal = sim.ego.T_world_odom.apply(np.array([[last[0], last[1], 0.0]]))[0]
    return MappedRoute(seed, topomap, route_xy, (float(goal[0]), float(goal[1])))


def closed_loop_preset(settings: ClosedLoopSettings, policy: str, topomap: str, node_overrides=None):
    """The ``closed_loop`` preset for ``policy``: the user's ``--set`` values, then the policy's own (``random`` runs
    the variant of the package the default policy would run, with random weights)."""
    from ros_mmfusion import presets

    overrides: dict[str, dict[str, Any]] = {node: dict(values) for node, values in settings.overrides.items()}
    for node, values in (node_overrides or {}).items():
        overrides.setdefault(node, {}).update(values)
    vint = overrides.setdefault("vint_navigation", {})
    if policy == "random":
        from ros_mmfusion.core.model_package import read_package, resolve_package_dir

        default = presets.load("closed_loop", {"topomap": topomap}, overrides).nodes[1].parameters
        package = default.get("model_package") or ""
        variant = read_package(resolve_package_dir(package), "navigation").variant if package else \
            (default.get("variant") or "vint_reduced")
        vint.update(POLICIES["random"], variant=variant)
    else:
        vint.update(POLICIES[policy])
    return presets.load("closed_loop", {"topomap": topomap}, overrides)


def run_trial(settings: ClosedLoopSettings, route: MappedRoute, policy: str) -> dict[str, Any]:
    """One closed-loop trial of ``policy`` on ``route`` (rclpy must be initialised); its metrics and trajectory."""
    from ros_mmfusion.core.navigation.metrics import ClosedLoopRun, SuccessCriteria, closed_loop_metrics
    from ros_mmfusion.launcher import run_in_process

    rng = np.random.default_rng(route.seed)
    offset = [0.0, float(rng.uniform(-1, 1) * settings.start_jitter), float(rng.uniform(-1, 1) * settings.yaw_jitter)]
    time_limit = settings.route_seconds * settings.time_factor
    sim = {"scenario": PASS_PAIRS[settings.scenario], "seed": route.seed, "start_offset": offset,
           "width": settings.size[0], "height": settings.size[1], "real_time_factor": settings.real_time_factor}
    preset = closed_loop_preset(settings, policy, str(route.topomap), {"sim_robot": sim})
    state: dict[str, Any] = {}

    def until(nodes: list) -> bool:
        sim_node, vint = nodes[0], nodes[1]
        state["sim"] = sim_node
        result = vint.last_result
        if result is not None and result.goal_reached:
            state["ended"] = "goal"
        elif sim_node.sim.robot.collisions:
            state["ended"] = "collision"
        elif sim_node.sim.t >= time_limit:
            state["ended"] = "timeout"
        return "ended" in state

    def keep(nodes: list) -> None:
        sim_node = nodes[0]
        state["history"] = np.array(sim_node.history or [(0.0, *([np.nan] * 3))])
        state["commands"] = np.array(sim_node.command_log or np.zeros((0, 3))).reshape(-1, 3)
        state["collisions"] = sim_node.sim.robot.collisions
        state["rtf"] = sim_node.real_time_factor
        state["rejected"] = sim_node.commands_rejected
        state["hit"] = sim_node.sim.last_hit

    started = time.monotonic()
    run_in_process(preset, until=until, before_destroy=keep)
    history, commands = state["history"], state["commands"]
    run = ClosedLoopRun(f"{PASS_PAIRS[settings.scenario]} seed {route.seed}", history[:, 0], history[:, 1:3],
                        commands[:, 0], commands[:, 1:3], route.route_xy, route.goal_xy, int(state["collisions"]),
                        state.get("ended", "stopped"))
    metrics = closed_loop_metrics(run, SuccessCriteria(settings.goal_radius, time_limit))
    return {**metrics, "policy": policy, "seed": route.seed, "start_offset": offset,
            "real_time_factor": round(float(state["rtf"]), 3), "wall_s": round(time.monotonic() - started, 1),
            "commands_rejected": int(state["rejected"]), "collided_with": state["hit"],
            "trajectory_xy": history[::5, 1:3].round(3).tolist()}


def run_closed_loop(settings: ClosedLoopSettings, out: Path, log=print) -> dict[str, Any]:
    """Every policy on every route; writes ``report.json`` and ``trajectories.png`` into ``out`` (an existing,
    writable directory the caller owns) and returns the report."""
    import rclpy

    from ros_mmfusion.core.navigation.metrics import summarize_closed_loop

    settings.check()
    rows: list[dict[str, Any]] = []
    routes: list[MappedRoute] = []
    owned = not rclpy.ok()
    if owned:
        rclpy.init()
    try:
        for k in range(settings.routes):
            seed = settings.first_seed + k
            log(f"route {k + 1}/{settings.routes}: mapping pass {settings.scenario} seed {seed} "
                f"({settings.route_seconds:g} s)")
            route = map_route(settings, seed, out)
            routes.append(route)
            for policy in settings.policies:
                row = run_trial(settings, route, policy)
                rows.append(row)
                log(f"  {policy:8s} {row['ended']:9s} success {row['success']!s:5s} SPL {row['spl']:.2f} "
                    f"to goal {row['distance_to_goal_m']:.2f} m, cross-track {row['cross_track_mean_m']:.2f} m, "
                    f"{row['time_s']:.1f} s sim in {row['wall_s']:.0f} s wall (x{row['real_time_factor']:.2f})")
    finally:
        if owned:
            rclpy.try_shutdown()
    summary = {p: summarize_closed_loop([r for r in rows if r["policy"] == p]) for p in settings.policies}
    report = {"written_by": "mmfusion closed-loop", "settings": {**asdict(settings), "size": list(settings.size)},
              "driven_scenario": PASS_PAIRS[settings.scenario], "summary": summary, "trials": rows}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    plot_trials(routes, rows, out / "trajectories.png")
    return report


def table_lines(report: dict[str, Any]) -> list[str]:
    """The comparison table: one row per policy."""
    lines = [f"{'policy':8s} {'routes':>6s} {'success':>8s} {'SPL':>5s} {'collisions':>10s} {'cross-track':>11s} "
             f"{'time to goal':>12s}"]
    for policy, s in report["summary"].items():
        goal_time = f"{s['time_to_goal_s']:.1f} s" if s.get("time_to_goal_s") is not None else "-"
        lines.append(f"{policy:8s} {s['routes']:6d} {s['success_rate']:8.0%} {s['spl']:5.2f} {s['collisions']:10d} "
                     f"{s['cross_track_mean_m']:9.2f} m {goal_time:>12s}")
    return lines


def plot_trials(routes: list[MappedRoute], rows: list[dict[str, Any]], path: Path) -> Path:
    """Every trial's trajectory over its mapped route, one panel per route."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"default": "tab:green", "random": "tab:red", "oracle": "tab:blue"}
    fig, axes = plt.subplots(1, len(routes), figsize=(5 * len(routes), 5), squeeze=False)
    for ax, route in zip(axes[0], routes, strict=True):
        ax.plot(route.route_xy[:, 0], route.route_xy[:, 1], "-", color="0.6", lw=4, label="mapped route")
        ax.scatter(*route.goal_xy, marker="*", s=200, color="k", label="goal", zorder=5)
        for row in (r for r in rows if r["seed"] == route.seed):
            xy = np.asarray(row["trajectory_xy"]).reshape(-1, 2)
            ax.plot(xy[:, 0], xy[:, 1], "-", color=colours.get(row["policy"], "k"),
                    label=f"{row['policy']} ({row['ended']})")
        ax.set_title(f"seed {route.seed}")
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
