"""Navigation metrics (ROS-free): topological localisation accuracy and waypoint ADE/FDE, in accumulators that merge
(:class:`LocalisationAccumulator`, :class:`WaypointAccumulator`; one run's record: :class:`NavigationRecord`).

* **Localisation**: at each evaluated frame the node published a closest-node index (``navigation/closest_node``);
  the reference is the topomap node whose pose is nearest (BEV Euclidean distance) to the ground-truth pose of the
  robot at that frame's stamp (``/odom`` interpolated to the stamp). Accuracy is the fraction of frames whose
  published index is within ``tolerance`` nodes of the reference (0: exact), and ``accuracy_within_1`` the fraction
  within +-1 node (the navigation target of issue 13); the mean and max absolute index error and the mean BEV
  distance between the published node's pose and the ground-truth position are reported too.
* **Waypoints**: the K predicted waypoints published at stamp ``t`` are ``(x, y)`` in ``base_link`` at ``t``.
  Waypoint ``k`` (0-based) is compared with the ground-truth position at ``t + (k + 1) * dt`` (``dt``: the waypoint
  spacing in time, the policy's context frame period), taken from ``/odom`` by linear interpolation and transformed
  into ``base_link`` at ``t`` (the odometry pose interpolated to ``t``; yaw unwrapped before interpolating).
  ADE = mean over waypoints of the Euclidean error, FDE = the error of the last one; both are averaged over the
  frames whose whole future lies inside the odometry (other frames are counted as ``skipped``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Trajectory:
    """Ground-truth poses over time: ``times`` (s, increasing), ``xy`` ``(N, 2)`` and ``yaw`` ``(N,)`` in one frame."""

    times: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray

    @classmethod
    def build(cls, times, xy, yaw) -> Trajectory:
        t = np.asarray(times, np.float64).reshape(-1)
        order = np.argsort(t, kind="stable")
        xy = np.asarray(xy, np.float64).reshape(-1, 2)[order]
        yaw = np.unwrap(np.asarray(yaw, np.float64).reshape(-1)[order])
        if not t.size == xy.shape[0] == yaw.size:
            raise ValueError("times, positions and yaws disagree in number")
        return cls(t[order], xy, yaw)

    def covers(self, t: float) -> bool:
        return self.times.size > 0 and self.times[0] - 1e-9 <= t <= self.times[-1] + 1e-9

    def at(self, t) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``(M, 2)`` and yaws ``(M,)`` interpolated linearly at times ``t`` (clamped at the ends)."""
        t = np.atleast_1d(np.asarray(t, np.float64))
        x = np.interp(t, self.times, self.xy[:, 0])
        y = np.interp(t, self.times, self.xy[:, 1])
        return np.stack([x, y], axis=1), np.interp(t, self.times, self.yaw)


def to_body_frame(points_xy: np.ndarray, origin_xy: np.ndarray, yaw: float) -> np.ndarray:
    """World ``(M, 2)`` points into the frame at ``origin_xy`` rotated by ``yaw`` (x forward, y left)."""
    d = np.asarray(points_xy, np.float64) - np.asarray(origin_xy, np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


def future_in_body_frame(trajectory: Trajectory, t: float, num: int, dt: float) -> np.ndarray | None:
    """Ground-truth positions at ``t + dt, ..., t + num * dt`` in the body frame at ``t``; None if not covered."""
    horizons = t + dt * np.arange(1, num + 1)
    if not (trajectory.covers(t) and trajectory.covers(float(horizons[-1]))):
        return None
    origin, yaw = trajectory.at(t)
    future, _ = trajectory.at(horizons)
    return to_body_frame(future, origin[0], float(yaw[0]))


def displacement_errors(predicted, truth) -> tuple[float, float]:
    """(ADE, FDE) of ``(K, 2)`` predicted against ``(K, 2)`` true positions."""
    p, g = np.asarray(predicted, np.float64).reshape(-1, 2), np.asarray(truth, np.float64).reshape(-1, 2)
    if p.shape != g.shape or p.shape[0] == 0:
        raise ValueError(f"waypoints and ground truth differ in shape: {p.shape} vs {g.shape}")
    err = np.hypot(*(p - g).T)
    return float(err.mean()), float(err[-1])


def nearest_node(node_xy: np.ndarray, xy) -> np.ndarray:
    """Index of the topomap node nearest to each ``(M, 2)`` position (ties: the lower index)."""
    nodes = np.asarray(node_xy, np.float64).reshape(-1, 2)
    pts = np.asarray(xy, np.float64).reshape(-1, 2)
    d = np.hypot(pts[:, None, 0] - nodes[None, :, 0], pts[:, None, 1] - nodes[None, :, 1])
    return np.argmin(d, axis=1)


def localisation_accuracy(published, node_xy, truth_xy, tolerance: int = 0) -> dict:
    """Published closest-node indices against the node nearest the ground-truth positions (module docstring)."""
    accumulator = LocalisationAccumulator(tolerance)
    accumulator.add(published, node_xy, truth_xy)
    return accumulator.results()


@dataclass
class LocalisationAccumulator:
    """Per-frame localisation errors (module docstring) over any number of :meth:`add` calls and merged
    accumulators: the index error against the reference node, whether the published index is a node of the map,
    and the BEV distance (metres) of the published node's pose from the ground-truth position."""

    tolerance: int = 0
    index_error: list[np.ndarray] = field(default_factory=list)
    valid: list[np.ndarray] = field(default_factory=list)
    node_distance: list[np.ndarray] = field(default_factory=list)

    def add(self, published, node_xy, truth_xy) -> None:
        """Frames whose published indices ``(M,)`` are to be compared with ground-truth positions ``(M, 2)``,
        ``node_xy`` ``(N, 2)`` the map's node positions in the frame of the ground truth."""
        pub = np.asarray(published, np.int64).reshape(-1)
        truth = np.asarray(truth_xy, np.float64).reshape(-1, 2)
        if pub.size != truth.shape[0]:
            raise ValueError("published indices and ground-truth positions disagree in number")
        if pub.size == 0:
            return
        nodes = np.asarray(node_xy, np.float64).reshape(-1, 2)
        self.index_error.append(np.abs(pub - nearest_node(nodes, truth)))
        self.valid.append((pub >= 0) & (pub < nodes.shape[0]))
        self.node_distance.append(np.hypot(*(nodes[np.clip(pub, 0, nodes.shape[0] - 1)] - truth).T))

    def merge(self, other: LocalisationAccumulator) -> None:
        """Add the frames of ``other`` (the same tolerance), e.g. another run over another bag."""
        if other.tolerance != self.tolerance:
            raise ValueError(f"cannot merge localisation accuracy at tolerance {other.tolerance} into {self.tolerance}")
        self.index_error += other.index_error
        self.valid += other.valid
        self.node_distance += other.node_distance

    def results(self) -> dict:
        if not self.index_error:
            return {"frames": 0, "accuracy": None, "tolerance": self.tolerance, "accuracy_within_1": None,
                    "mean_index_error": None, "max_index_error": None, "mean_node_distance_m": None}
        err, valid = np.concatenate(self.index_error), np.concatenate(self.valid)
        dist = np.concatenate(self.node_distance)
        return {"frames": int(err.size), "accuracy": float(np.mean((err <= self.tolerance) & valid)),
                "tolerance": self.tolerance, "accuracy_within_1": float(np.mean((err <= 1) & valid)),
                "mean_index_error": float(err.mean()), "max_index_error": int(err.max()),
                "mean_node_distance_m": float(dist[valid].mean()) if valid.any() else None}


@dataclass
class WaypointAccumulator:
    """Per-frame ADE/FDE of predicted waypoints against the future ground-truth trajectory."""

    dt: float
    ade: list[float] = field(default_factory=list)
    fde: list[float] = field(default_factory=list)
    skipped: int = 0

    def add(self, trajectory: Trajectory, t: float, waypoints_xy) -> bool:
        wp = np.asarray(waypoints_xy, np.float64).reshape(-1, 2)
        truth = future_in_body_frame(trajectory, t, wp.shape[0], self.dt) if wp.shape[0] else None
        if truth is None:
            self.skipped += 1
            return False
        ade, fde = displacement_errors(wp, truth)
        self.ade.append(ade)
        self.fde.append(fde)
        return True

    def merge(self, other: WaypointAccumulator) -> None:
        """Add the frames of ``other`` (the same waypoint spacing ``dt``), e.g. another run over another bag."""
        if other.dt != self.dt:
            raise ValueError(f"cannot merge waypoint errors at dt {other.dt} s into dt {self.dt} s")
        self.ade += other.ade
        self.fde += other.fde
        self.skipped += other.skipped

    def results(self) -> dict:
        n = len(self.ade)
        return {"frames": n, "skipped": self.skipped, "dt_s": self.dt,
                "ADE_m": float(np.mean(self.ade)) if n else None, "FDE_m": float(np.mean(self.fde)) if n else None}


@dataclass
class NavigationRecord:
    """One evaluation run of the navigation node: the published paths ``(stamp ns, [(x, y) metres in base_link])``,
    closest-node indices and ground-truth odometry ``(stamp ns, x, y, yaw)`` (metres, radians, in the frame of the
    topomap's node positions ``node_xy`` ``(N, 2)``), all stamped on one clock. A path added ``in_odometry_frame``
    (the node's ``path_frame`` is the odometry's frame) is moved into the body frame at its stamp with the
    odometry pose there, so the waypoint errors stay body-frame errors whichever frame the node publishes in.

    ``navigation/closest_node`` (Int32) has no header: the node publishes one per path, after it, so the k-th index
    belongs to the k-th path. Waypoint k of a path at stamp t is compared with the odometry at t + (k + 1) * dt_s,
    dt_s = 1 / the pipeline's context frame rate (4 Hz for ViNT; ``core/navigation/pipeline.py``).
    """

    node_xy: np.ndarray
    dt_s: float
    tolerance: int = 0
    paths: list[tuple[int, list[tuple[float, float]]]] = field(default_factory=list)
    paths_in_odometry_frame: list[bool] = field(default_factory=list)
    closest: list[int] = field(default_factory=list)
    odom: list[tuple[int, float, float, float]] = field(default_factory=list)

    @classmethod
    def for_node(cls, topomap_dir: str, frame_rate_hz: float = 0.0, variant: str = "vint_default") -> NavigationRecord:
        """The record of a navigation node run with these parameters: the node poses of its topomap and the
        waypoint spacing in time (``frame_rate_hz`` 0: the variant's rate, 4 Hz when the variant is unknown).
        ConfigError (one line) when the topomap cannot be read or has no poses."""
        from ros_mmfusion.core.navigation.topomap import load_topomap

        node_xy = load_topomap(str(topomap_dir)).poses_xy_yaw()[:, :2]
        rate = float(frame_rate_hz or 0.0)
        if rate <= 0:
            from ros_mmfusion.core.models.vint import VINT_VARIANTS

            known = VINT_VARIANTS.get(str(variant))
            rate = known.frame_rate_hz if known is not None else 4.0
        return cls(node_xy, 1.0 / rate)

    def add_path(self, stamp_ns: int, waypoints_xy: list[tuple[float, float]], in_odometry_frame: bool = False
                 ) -> None:
        self.paths.append((stamp_ns, waypoints_xy))
        self.paths_in_odometry_frame.append(in_odometry_frame)

    def add_closest_node(self, index: int) -> None:
        self.closest.append(int(index))

    def add_odometry(self, stamp_ns: int, x: float, y: float, yaw: float) -> None:
        self.odom.append((stamp_ns, x, y, yaw))

    def accumulate(self, notes: list[str], odom_name: str = "odometry"
                   ) -> tuple[LocalisationAccumulator, WaypointAccumulator, np.ndarray, np.ndarray] | None:
        """The run's localisation and waypoint accumulators (mergeable with other runs'), the ground-truth positions
        ``(M, 2)`` of the localised frames that the odometry covers and their published nodes ``(M,)``; None, with a
        note naming ``odom_name``, when the run cannot be evaluated."""
        if not self.paths:
            notes.append("navigation metrics skipped: no navigation/path arrived")
            return None
        if len(self.odom) < 2:
            notes.append(f"navigation metrics skipped: fewer than 2 {odom_name} messages arrived")
            return None
        odom = np.asarray(self.odom, np.float64)
        trajectory = Trajectory.build(odom[:, 0] / 1e9, odom[:, 1:3], odom[:, 3])
        pairs = min(len(self.paths), len(self.closest))
        if len(self.paths) != len(self.closest):
            notes.append(f"navigation: {len(self.paths)} paths but {len(self.closest)} closest-node indices "
                         f"arrived; the first {pairs} were paired")
        times = np.array([stamp / 1e9 for stamp, _ in self.paths[:pairs]])
        covered = np.array([trajectory.covers(t) for t in times], bool)
        truth_xy, _ = trajectory.at(times[covered]) if covered.any() else (np.zeros((0, 2)), None)
        localisation = LocalisationAccumulator(self.tolerance)
        localisation.add(np.asarray(self.closest[:pairs])[covered], self.node_xy, truth_xy)
        waypoints = WaypointAccumulator(self.dt_s)
        for (stamp, xy), in_odom in zip(self.paths, self.paths_in_odometry_frame, strict=True):
            if in_odom and xy:
                if not trajectory.covers(stamp / 1e9):
                    waypoints.skipped += 1
                    continue
                origin, yaw = trajectory.at(stamp / 1e9)
                xy = to_body_frame(np.asarray(xy, np.float64).reshape(-1, 2), origin[0], float(yaw[0]))
            waypoints.add(trajectory, stamp / 1e9, xy)
        return localisation, waypoints, np.asarray(truth_xy), np.asarray(self.closest[:pairs], np.intp)[covered]

    def results(self, notes: list[str], odom_name: str = "odometry") -> dict | None:
        """The run's metrics (localisation, waypoints, the trajectories to plot), or None with a note."""
        accumulated = self.accumulate(notes, odom_name)
        if accumulated is None:
            return None
        localisation, waypoints, truth_xy, localised = accumulated
        odom_xy = np.asarray(self.odom, np.float64)[:, 1:3]
        return {"localisation": localisation.results(), "waypoints": waypoints.results(), "paths": len(self.paths),
                "topomap_nodes": int(self.node_xy.shape[0]),
                "trajectory": {"odom_xy": odom_xy.round(3).tolist(), "nodes_xy": self.node_xy.round(3).tolist(),
                               "truth_xy": truth_xy.round(3).tolist(), "localised_node": localised.tolist()}}


# ---------------------------------------------------------------------------------------------------- closed loop


def polyline_length(xy: np.ndarray) -> float:
    """Metres along a (N, 2) polyline."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    return float(np.hypot(*np.diff(xy, axis=0).T).sum()) if len(xy) > 1 else 0.0


def cross_track_distances(xy: np.ndarray, route_xy: np.ndarray) -> np.ndarray:
    """(N,) metres from each point of ``xy`` to the nearest segment of the polyline ``route_xy`` (M >= 1 points)."""
    p = np.asarray(xy, np.float64).reshape(-1, 1, 2)
    route = np.asarray(route_xy, np.float64).reshape(-1, 2)
    if len(route) == 1:
        return np.linalg.norm(p[:, 0] - route[0], axis=1)
    a, b = route[:-1][None], route[1:][None]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1).min(axis=1)


@dataclass(frozen=True)
class ClosedLoopRun:
    """One closed-loop route: the robot's trajectory (``times`` s, ``xy`` world metres), the commands it received
    (``command_times`` s, ``commands`` (K, 2) v and w), the mapped route (``route_xy``), the goal, and how it ended."""

    route: str
    times: np.ndarray
    xy: np.ndarray
    command_times: np.ndarray
    commands: np.ndarray
    route_xy: np.ndarray
    goal_xy: tuple[float, float]
    collisions: int
    ended: str
    """"goal" (goal_reached published), "collision", "timeout" or "stopped"."""


@dataclass(frozen=True)
class SuccessCriteria:
    goal_radius: float = 1.0
    """Metres from the goal within which the run succeeds."""
    time_limit: float = 120.0
    """Simulated seconds the run may take."""


def closed_loop_metrics(run: ClosedLoopRun, criteria: SuccessCriteria = SuccessCriteria()) -> dict:
    """Success (final position within ``goal_radius`` of the goal, within the time limit, no collision), SPL (success
    weighted by the mapped route's length over the driven length, Anderson et al. 2018), collisions, mean and max
    cross-track distance to the mapped route, time to goal (s, successes only), and smoothness: the RMS change of the
    commands per second (linear m/s^2, angular rad/s^2)."""
    xy = np.asarray(run.xy, np.float64).reshape(-1, 2)
    final = xy[-1] if len(xy) else np.array([np.inf, np.inf])
    to_goal = float(np.hypot(*(final - np.asarray(run.goal_xy))))
    duration = float(run.times[-1] - run.times[0]) if len(run.times) > 1 else 0.0
    success = bool(to_goal <= criteria.goal_radius and duration <= criteria.time_limit and run.collisions == 0)
    driven, shortest = polyline_length(xy), polyline_length(run.route_xy)
    spl = float(success) * shortest / max(driven, shortest, 1e-9)
    cross = cross_track_distances(xy, run.route_xy) if len(xy) else np.zeros(1)
    smooth = {"linear_rms_m_s2": None, "angular_rms_rad_s2": None}
    cmds, ct = np.asarray(run.commands, np.float64).reshape(-1, 2), np.asarray(run.command_times, np.float64)
    if len(cmds) > 2:
        dt = np.maximum(np.diff(ct), 1e-3)
        rate = np.diff(cmds, axis=0) / dt[:, None]
        smooth = {"linear_rms_m_s2": float(np.sqrt(np.mean(rate[:, 0] ** 2))),
                  "angular_rms_rad_s2": float(np.sqrt(np.mean(rate[:, 1] ** 2)))}
    return {"route": run.route, "success": success, "spl": spl, "ended": run.ended, "collisions": run.collisions,
            "distance_to_goal_m": to_goal, "time_s": duration, "time_to_goal_s": duration if success else None,
            "path_length_m": driven, "route_length_m": shortest, "cross_track_mean_m": float(cross.mean()),
            "cross_track_max_m": float(cross.max()), **smooth}


def summarize_closed_loop(rows: list[dict]) -> dict:
    """Success rate, mean SPL, total collisions, mean cross-track and time to goal (successes) over routes."""
    if not rows:
        return {"routes": 0}
    times = [r["time_to_goal_s"] for r in rows if r["time_to_goal_s"] is not None]
    smooth = [r["angular_rms_rad_s2"] for r in rows if r["angular_rms_rad_s2"] is not None]
    return {"routes": len(rows), "success_rate": float(np.mean([r["success"] for r in rows])),
            "spl": float(np.mean([r["spl"] for r in rows])), "collisions": int(sum(r["collisions"] for r in rows)),
            "cross_track_mean_m": float(np.mean([r["cross_track_mean_m"] for r in rows])),
            "time_to_goal_s": float(np.mean(times)) if times else None,
            "angular_rms_rad_s2": float(np.mean(smooth)) if smooth else None}
