"""Self-supervised ViNT training (ROS-free) from routes driven in the synthetic world or recorded in rosbag2 bags.

As ViNT is trained (Shah et al., 2023; the release's ``train/config/vint.yaml`` and dataset):

* **recordings**: camera frames at the model's frame rate (4 Hz) with the robot's pose from odometry;
* **samples**: a context of ``context_size`` = 5 past frames and the current one, and a goal frame drawn from the
  same recording ``o`` frames ahead, ``o`` uniform in ``0..max_dist`` (20, limited by the recording's end); ``o = 0``
  draws a *negative* instead: a frame of another recording (another route), labelled ``max_dist`` with no action;
* **labels**: the temporal distance ``o`` (context frames), and the ``len_traj_pred`` = 5 waypoints: the robot's own
  positions 1..5 frame periods later in ``base_link`` at the current frame (x forward, y left) divided by the
  ``waypoint_spacing`` (metres per frame), with the cosine and sine of its yaw change, exactly the quantities the
  deployment reads back (:func:`~ros_mmfusion.core.models.vint.waypoints_from_raw` sums the network's per-step
  output; :func:`~ros_mmfusion.core.models.vint.waypoints_to_metric` multiplies by the same spacing);
* **loss**: ``alpha * 1e-2 * MSE(distance) + (1 - alpha) * masked MSE(waypoints)``, ``alpha`` = 0.5; the
  waypoints are supervised only for positive goals closer than ``max_action_dist`` (10) frames.

Beyond the release (documented in docs/navigation.md, each can be switched off): goals on the other pass of the same
route (``cross_pass``: the synthetic world's passes of one route and seed, such as the corridor's or the urban
sidewalk's two, are at the same place at the same frame, so the goal may come from the pass with other lighting and
people; the deployment localises a second pass against a map of the first), negatives
*behind* the robot on its own route (``behind_negatives``: the deployment's localisation window
includes map nodes behind the robot, which must look far), light image augmentation (``augment``: the release
trains without; here a colour/contrast jitter drawn once per context and once per goal, and a small random resized
crop), and several goals per context (``goals_per_context``, the release's ``goals_per_obs``), whose frames are
encoded once.

Frames go through :func:`~ros_mmfusion.core.navigation.preprocess.preprocess_frame`, the deployment's own
preparation (PIL bicubic resize of the whole image to 85x64, ImageNet normalisation).

Validation (held-out seeds or bags): the deployment's localisation replayed on a map of the first pass of each
held-out route (one node every ``node_every`` frames: ``mmfusion topomap build --dt 1.0`` at 4 Hz) while the other
passes drive it: ``localisation_accuracy`` (closest node within +-1 of the node nearest the true pose, the
localiser starting at node 0 and tracking as the node does), ``window_accuracy`` (the same, the window centred on
the true node each frame), and ``waypoint_ADE_m`` of the waypoints towards the chosen subgoal, in metres, against
the odometry 1..5 frames later (as ``mmfusion eval`` scores the node).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.model_package import PACKAGE_FILES  # noqa: F401 - what train() writes (mmfusion train)
from ros_mmfusion.core.training import LoopConfig, check_data_sources, check_positive_ints

Log = Callable[[str], None]
MAX_DATASET_BYTES = 4 * 2**30
"""Upper bound (bytes) of the frames held in memory (training + validation)."""
DEFAULT_SCENARIOS = ("indoor_corridor", "indoor_corridor_pass2")


def default_loop() -> LoopConfig:
    return LoopConfig(iterations=2000, lr=3e-4, weight_decay=0.01, warmup=100, schedule="cosine",
                      validate_every=250, checkpoint_every=50, log_every=10)


@dataclass
class NavTrainConfig:
    """Everything a navigation training depends on (field names as ``mmfusion train navigation``'s options)."""

    variant: str = "vint_reduced"
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    train_seeds: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    val_seeds: tuple[int, ...] = (101,)
    frames_per_seed: int = 160
    val_frames: int = 120
    width: int = 160
    height: int = 120
    bags: tuple[str, ...] = ()
    val_bags: tuple[str, ...] = ()
    image_topic: str = "/camera/color/image_raw"
    odom_topic: str = "/odom"
    batch: int = 16
    goals_per_context: int = 4
    max_dist: int = 20
    max_action_dist: int = 10
    alpha: float = 0.5
    cross_pass: float = 0.5
    behind_negatives: float = 0.1
    static_contexts: float = 0.0
    """Fraction of contexts made of the current frame repeated (a robot at rest, as at the start of a closed-loop
    run), with the labels of the moving robot: the route still goes on (0: none; the release has none)."""
    augment: bool = True
    waypoint_spacing: float = 0.0
    node_every: int = 4
    radius: int = 4
    close_threshold: float = 3.0
    recovery: float = 0.0
    """Recovery passes: with ``recovery`` > 0 every rendered training recording gets a twin driven beside its route,
    displaced sideways by a smooth random offset of up to ``recovery`` metres and turned by up to ``recovery_yaw``
    radians, whose waypoint labels lead back onto the route (0: none; the release has none)."""
    recovery_yaw: float = 0.3
    recovery_fraction: float = 0.0
    """Fraction of contexts drawn from the recovery passes (0: in proportion to their frames, about half). Diluted
    among the route passes' contexts and their distance targets the sideways labels were not learned
    (2026-12-07, held-out recovery slope: 0.07 after 750 iterations at one half, both routes; 0.54 after 400 at
    three quarters, the corridor alone; docs/navigation.md)."""
    init: str = ""
    loop: LoopConfig = field(default_factory=default_loop)

    def check(self) -> None:
        """ConfigError naming the first unusable setting; cheap, so callers run it before any work."""
        from ros_mmfusion.core.limits import check_image_size
        from ros_mmfusion.core.models.vint import VINT_VARIANTS

        self.loop.check()
        if self.variant not in VINT_VARIANTS:
            raise ConfigError(f"variant {self.variant!r} is not one of {', '.join(VINT_VARIANTS)}")
        check_image_size(self.height, self.width, "training size", minimum=32)
        check_positive_ints(self, ("batch", "goals_per_context", "frames_per_seed", "val_frames", "max_dist",
                                   "max_action_dist", "node_every"))
        if self.batch % self.goals_per_context:
            raise ConfigError(f"batch {self.batch} must be a multiple of goals_per_context {self.goals_per_context}")
        if self.max_dist > 1000 or self.radius < 0 or self.radius > 100:
            raise ConfigError(f"max_dist must be <= 1000 and radius 0..100, got {self.max_dist}, {self.radius}")
        for name in ("alpha", "cross_pass", "behind_negatives", "static_contexts", "recovery_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
        if not (math.isfinite(self.waypoint_spacing) and self.waypoint_spacing >= 0):
            raise ConfigError(f"waypoint_spacing must be >= 0 metres (0: measured), got {self.waypoint_spacing}")
        check_data_sources(self.scenarios, self.train_seeds, self.val_seeds, self.bags, self.val_bags, self.init)
        if not (0.0 <= self.recovery <= 2.0 and 0.0 <= self.recovery_yaw <= 1.0):
            raise ConfigError(f"recovery must be 0..2 m and recovery_yaw 0..1 rad, got {self.recovery}, "
                              f"{self.recovery_yaw}")
        frames = (len(self.scenarios) * (len(self.train_seeds) * self.frames_per_seed
                                         + len(self.val_seeds) * self.val_frames))
        if frames * self.width * self.height * 3 > MAX_DATASET_BYTES:
            raise ConfigError(f"{frames} frames of {self.width}x{self.height} need "
                              f"{frames * self.width * self.height * 3 / 2**30:.1f} GiB in memory, more than "
                              f"{MAX_DATASET_BYTES / 2**30:.0f} GiB: lower frames_per_seed or the size")
        minimum = self.context_size + self.len_traj_pred + 2
        if self.scenarios and min(self.frames_per_seed, self.val_frames) < minimum:
            raise ConfigError(f"frames_per_seed and val_frames must be >= {minimum} (context + waypoints + 2)")

    @property
    def vint_config(self):
        from ros_mmfusion.core.models.vint import VINT_VARIANTS

        return VINT_VARIANTS[self.variant].config

    @property
    def context_size(self) -> int:
        return self.vint_config.context_size

    @property
    def len_traj_pred(self) -> int:
        return self.vint_config.len_traj_pred

    @property
    def frame_rate_hz(self) -> float:
        from ros_mmfusion.core.models.vint import VINT_VARIANTS

        return VINT_VARIANTS[self.variant].frame_rate_hz

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(scenarios=list(self.scenarios), train_seeds=list(self.train_seeds),
                   val_seeds=list(self.val_seeds), bags=[str(Path(b).resolve()) for b in self.bags],
                   val_bags=[str(Path(b).resolve()) for b in self.val_bags])
        return out


# --------------------------------------------------------------------------------------------------------------------
# Recordings


@dataclass
class Recording:
    """One drive at the model's frame rate: ``images`` ``(N, H, W, 3)`` uint8 R,G,B, poses ``xy`` ``(N, 2)`` metres
    and ``yaw`` ``(N,)`` radians (unwrapped) in the odometry frame, ``times`` ``(N,)`` seconds.

    Recordings of one ``group`` with ``aligned`` set are passes of one route at the same place in the same frame
    (the synthetic world's scenarios of one route and one seed); each bag is a group of its own."""

    name: str
    group: str
    images: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    times: np.ndarray
    aligned: bool = False
    route_xy: np.ndarray | None = None
    """Recovery passes: the route's poses at each frame (``xy`` and ``yaw`` are where the robot drifted), which the
    waypoint labels lead back to; None: the robot is on its route."""
    route_yaw: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def yaw_of(rotation: np.ndarray) -> float:
    """Yaw (radians) of a 3x3 rotation about +z."""
    return float(math.atan2(rotation[1, 0], rotation[0, 0]))


def drift_offsets(frames: int, rate_hz: float, lateral: float, yaw: float, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random sideways offsets (metres, left positive) and heading errors (radians) of ``frames`` frames: each
    a sum of two sinusoids of random period (4..20 s) and phase, scaled so its largest magnitude is a random
    fraction (0.5..1) of ``lateral`` / ``yaw``."""
    t = np.arange(frames) / rate_hz
    out = []
    for bound in (lateral, yaw):
        wave = sum(rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / rng.uniform(4.0, 20.0) + rng.uniform(0, 2 * np.pi))
                   for _ in range(2))
        peak = float(np.max(np.abs(wave))) or 1.0
        out.append(wave / peak * bound * rng.uniform(0.5, 1.0))
    return out[0], out[1]


RECOVERY_SUFFIX = "/recovery"


def route_pass_name(name: str) -> str:
    """The name of the route pass a recovery pass ``name`` was rendered beside (``name`` itself for a route pass)."""
    return name.removesuffix(RECOVERY_SUFFIX)


def render_recording(scenario: str, seed: int, frames: int, size: tuple[int, int], rate_hz: float,
                     drift: tuple[float, float] | None = None) -> Recording:
    """``frames`` frames of ``scenario`` / ``seed`` rendered at ``size`` (width, height), ``rate_hz`` apart, with the
    ego's odometry pose (``T_odom_base``); its group is the scenario's route and the seed, so the passes of one route
    (``indoor_corridor`` and ``indoor_corridor_pass2``, ``urban_sidewalk`` and ``urban_sidewalk_pass2``) pair up and
    other routes are strangers. ``drift`` (metres, radians): a recovery pass (:func:`drift_offsets`, seeded by the
    seed) rendered beside the route, carrying the route's poses for its labels."""
    from ros_mmfusion.core.geometry import Transform
    from ros_mmfusion.core.sim import Simulation
    from ros_mmfusion.core.sim.ego import EgoState
    from ros_mmfusion.core.sim.mesh import rotation_z

    sim = Simulation(scenario, seed=seed, size=size, beams=16, rate=rate_hz)
    offsets = drift_offsets(frames, rate_hz, *drift, np.random.default_rng([seed, 7919])) if drift else None
    images, xy, yaw, times, route_xy, route_yaw = [], [], [], [], [], []
    T_odom_world = sim.ego.T_world_odom.inverse()
    for k in range(frames):
        t = k / rate_hz
        ego = sim.ego.state(t)
        route_pose = ego.T_odom_base
        if offsets is not None:
            x, y, z, heading = sim.ego.route.pose(t)
            side, turn = float(offsets[0][k]), float(offsets[1][k])
            T = Transform(rotation_z(heading + turn),
                          np.array([x - side * math.sin(heading), y + side * math.cos(heading), z]))
            ego = EgoState(T, T_odom_world @ T, ego.linear, ego.angular)
        frame = sim.frame_at(k, t, ego, lidar=False)
        pose = ego.T_odom_base
        images.append(frame.camera.rgb)
        xy.append(pose.translation[:2])
        yaw.append(yaw_of(pose.rotation))
        times.append(t)
        route_xy.append(route_pose.translation[:2])
        route_yaw.append(yaw_of(route_pose.rotation))
    name = f"{scenario}/seed{seed}" + (RECOVERY_SUFFIX if drift else "")
    return Recording(name, f"{sim.scenario.route}/seed{seed}", np.stack(images), np.asarray(xy, np.float64),
                     np.unwrap(np.asarray(yaw, np.float64)), np.asarray(times, np.float64), aligned=True,
                     route_xy=np.asarray(route_xy, np.float64) if drift else None,
                     route_yaw=np.unwrap(np.asarray(route_yaw, np.float64)) if drift else None)


def read_bag_recording(bag: str | Path, image_topic: str, odom_topic: str, size: tuple[int, int],
                       rate_hz: float) -> Recording:
    """The camera frames of ``bag`` sampled at ``rate_hz`` by header stamp (the deployment's 4 Hz schedule), resized
    to ``size`` (width, height; PIL bicubic), each with the ``nav_msgs/Odometry`` pose interpolated to its stamp.
    Frames outside the odometry's time span are dropped. ConfigError naming the bag for missing topics and bags
    too short to train on."""
    from PIL import Image

    from ros_mmfusion.core.bagio import (
        IMAGE_TYPES,
        ODOMETRY_TYPE,
        open_bag,
        read_header_stamp,
        rgb_of_message,
        typestore,
    )
    from ros_mmfusion.core.errors import MessageFormatError
    from ros_mmfusion.core.geometry import quaternion_to_yaw
    from ros_mmfusion.core.navigation.metrics import Trajectory
    from ros_mmfusion.core.navigation.sampling import PeriodicSampler

    store = typestore()
    stamps: list[int] = []
    images: list[np.ndarray] = []
    odom: list[tuple[float, float, float, float]] = []
    sampler = PeriodicSampler(1.0 / rate_hz)
    with open_bag(bag) as source:
        topics = source.topics
        if topics.get(image_topic) not in IMAGE_TYPES:
            raise ConfigError(f"bag {bag} has no Image or CompressedImage topic {image_topic!r}; image topics: "
                              f"{sorted(t for t, m in topics.items() if m in IMAGE_TYPES) or 'none'}")
        if topics.get(odom_topic) != ODOMETRY_TYPE:
            raise ConfigError(f"bag {bag} has no nav_msgs/Odometry topic {odom_topic!r}; odometry topics: "
                              f"{sorted(t for t, m in topics.items() if m == ODOMETRY_TYPE) or 'none'}")
        for message in source.messages([image_topic, odom_topic]):
            if message.topic == odom_topic:
                msg = store.deserialize_cdr(message.data, message.msgtype)
                p, q = msg.pose.pose.position, msg.pose.pose.orientation
                odom.append((msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, p.x, p.y,
                             quaternion_to_yaw((q.x, q.y, q.z, q.w))))
                continue
            stamp = read_header_stamp(message.data)
            if not sampler.offer(stamp):
                continue
            try:
                rgb = rgb_of_message(store, message)
            except MessageFormatError as exc:
                raise ConfigError(f"bag {bag}: {image_topic}: {exc}") from None
            if rgb.shape[1::-1] != tuple(size):
                rgb = np.asarray(Image.fromarray(rgb).resize(tuple(size), Image.BICUBIC))
            images.append(rgb)
            stamps.append(stamp)
    if len(odom) < 2:
        raise ConfigError(f"bag {bag}: fewer than 2 messages on {odom_topic}")
    arr = np.asarray(odom, np.float64)
    trajectory = Trajectory.build(arr[:, 0], arr[:, 1:3], arr[:, 3])
    times = np.asarray(stamps, np.float64) / 1e9
    keep = np.array([trajectory.covers(t) for t in times], bool)
    minimum = 12
    if keep.sum() < minimum:
        raise ConfigError(f"bag {bag}: only {int(keep.sum())} frames at {rate_hz:g} Hz with odometry on "
                          f"{image_topic}; at least {minimum} are needed")
    xy, yaw = trajectory.at(times[keep])
    kept = np.stack([image for image, k in zip(images, keep, strict=True) if k])
    path = Path(bag).resolve()
    return Recording(f"bag:{path.name}", f"bag:{path}", kept, xy, np.unwrap(yaw), times[keep], aligned=False)


def load_recordings(cfg: NavTrainConfig, seeds: Sequence[int], frames: int, bags: Sequence[str],
                    log: Log = print, recovery: bool = False) -> list[Recording]:
    """Rendered recordings of every scenario for ``seeds`` (``frames`` each; with ``recovery`` and
    ``cfg.recovery`` > 0 each also as a recovery pass) and the recordings of ``bags``."""
    out: list[Recording] = []
    size = (cfg.width, cfg.height)
    for seed in seeds:
        for scenario in cfg.scenarios:
            t0 = time.time()
            out.append(render_recording(scenario, int(seed), frames, size, cfg.frame_rate_hz))
            log(f"  {out[-1].name}: {frames} frames ({time.time() - t0:.0f} s)")
            if recovery and cfg.recovery > 0:
                out.append(render_recording(scenario, int(seed), frames, size, cfg.frame_rate_hz,
                                            drift=(cfg.recovery, cfg.recovery_yaw)))
                log(f"  {out[-1].name}: {frames} frames beside the route (up to {cfg.recovery:g} m, "
                    f"{cfg.recovery_yaw:g} rad)")
    for bag in bags:
        out.append(read_bag_recording(bag, cfg.image_topic, cfg.odom_topic, size, cfg.frame_rate_hz))
        log(f"  {out[-1].name}: {len(out[-1])} frames at {cfg.frame_rate_hz:g} Hz")
    return out


def measured_waypoint_spacing(recordings: Sequence[Recording], dt: float) -> float:
    """Metres the robot moves in ``dt`` seconds (one context frame): the median speed over all recordings'
    frame-to-frame moves times ``dt``, rounded to millimetres."""
    speeds = np.concatenate([np.hypot(*np.diff(r.xy, axis=0).T) / np.maximum(np.diff(r.times), 1e-9)
                             for r in recordings if len(r) > 1])
    moving = speeds[speeds * dt > 1e-3]
    if moving.size == 0:
        raise ConfigError("the training data never moves: no waypoint spacing can be measured")
    return round(float(np.median(moving)) * dt, 3)


# --------------------------------------------------------------------------------------------------------------------
# Labels


def waypoint_labels(times: np.ndarray, xy: np.ndarray, yaw: np.ndarray, current: int, count: int, spacing: float,
                    dt: float, learn_angle: bool = True, target_xy: np.ndarray | None = None,
                    target_yaw: np.ndarray | None = None, target_times: np.ndarray | None = None) -> np.ndarray:
    """The ``count`` waypoints after frame ``current`` as ViNT learns them: the pose ``dt``, ``2 dt``, ... seconds
    later (interpolated in the recording's odometry, as ``mmfusion eval`` does; the last pose past the end), as
    ``(x, y)`` in ``base_link`` at ``current`` (x forward, y left) in units of ``spacing`` metres, then ``cos``,
    ``sin`` of the yaw change: ``(count, 4)`` (``(count, 2)`` without angles). ``yaw`` must be unwrapped.
    ``target_xy`` / ``target_yaw`` (a recovery pass's route poses): the future poses come from them, the current
    one from ``xy`` / ``yaw``, so the waypoints lead from where the robot drifted back onto the route;
    ``target_times`` (default ``times``): their stamps, for a target of another aligned pass."""
    from ros_mmfusion.core.navigation.metrics import to_body_frame

    future = times[current] + dt * np.arange(1, count + 1)
    goal_xy = xy if target_xy is None else target_xy
    goal_yaw = yaw if target_yaw is None else target_yaw
    goal_times = times if target_times is None else target_times
    fx, fy = np.interp(future, goal_times, goal_xy[:, 0]), np.interp(future, goal_times, goal_xy[:, 1])
    local = to_body_frame(np.stack([fx, fy], axis=1), xy[current], float(yaw[current])) / spacing
    if not learn_angle:
        return local.astype(np.float32)
    dyaw = np.interp(future, goal_times, goal_yaw) - yaw[current]
    return np.concatenate([local, np.cos(dyaw)[:, None], np.sin(dyaw)[:, None]], axis=1).astype(np.float32)


@dataclass(frozen=True)
class Goal:
    """A drawn goal: recording and frame, the temporal distance label (frames) and whether actions are supervised."""

    recording: int
    frame: int
    distance: float
    negative: bool
    action: bool


class GoalSampler:
    """Draws contexts and goals over ``recordings`` (module docstring)."""

    def __init__(self, recordings: Sequence[Recording], cfg: NavTrainConfig) -> None:
        self.recordings, self.cfg = list(recordings), cfg
        c, t = cfg.context_size, cfg.len_traj_pred
        self.index = [(r, k) for r, rec in enumerate(self.recordings) for k in range(c, len(rec) - t)]
        if not self.index:
            raise ConfigError(f"no recording is long enough ({c + t + 1} frames) to train on")
        self.recovery_index = [(r, k) for r, k in self.index if self.recordings[r].route_xy is not None]
        self.route_index = [(r, k) for r, k in self.index if self.recordings[r].route_xy is None]
        # Goals are what a map holds: views from the route. A recovery pass (``route_xy`` set) is a context only:
        # its goals come from its route pass (same scenario and seed, frame for frame at the same time), since its
        # action labels lead back onto the route, and a goal image taken beside the route would contradict them.
        on_route = [r for r, rec in enumerate(self.recordings) if rec.route_xy is None]
        by_name = {self.recordings[r].name: r for r in on_route}
        self.goal_source = {r: by_name.get(route_pass_name(rec.name), r) if rec.route_xy is not None else r
                            for r, rec in enumerate(self.recordings)}
        self.twins = {r: [o for o in on_route if o != self.goal_source[r] and rec.aligned
                          and self.recordings[o].aligned and self.recordings[o].group == rec.group]
                      for r, rec in enumerate(self.recordings)}
        self.strangers = {r: [o for o in on_route if self.recordings[o].group != rec.group]
                          for r, rec in enumerate(self.recordings)}

    def action_labels(self, rec: int, current: int, route: int, spacing: float) -> np.ndarray:
        """The waypoint labels of the context ending at frame ``current`` of recording ``rec``, leading onto the
        route driven in recording ``route``: ``rec`` itself (its own future, or its route pass's for a recovery
        pass) or one of its aligned twin passes, whose goal image was taken on that pass's line. The passes of
        one route weave apart (``route_sway``, up to 0.12 m): labels of the context's own line paired with a goal
        from a twin told the network that a sideways offset between the view and the goal means nothing - the
        cue that brings a robot back onto its route."""
        recording, cfg = self.recordings[rec], self.cfg
        if route == rec:
            target = (recording.route_xy, recording.route_yaw, None)
        else:
            twin = self.recordings[route]
            target = (twin.xy, twin.yaw, twin.times)
        return waypoint_labels(recording.times, recording.xy, recording.yaw, current, cfg.len_traj_pred, spacing,
                               1.0 / cfg.frame_rate_hz, cfg.vint_config.learn_angle, *target)

    def context(self, rng: np.random.Generator) -> tuple[int, int]:
        """A context (recording, current frame): from the recovery passes with probability
        ``cfg.recovery_fraction`` (when set and there are both kinds), else uniformly over every frame."""
        pool = self.index
        if self.cfg.recovery_fraction > 0 and self.recovery_index and self.route_index:
            pool = self.recovery_index if rng.random() < self.cfg.recovery_fraction else self.route_index
        return pool[int(rng.integers(len(pool)))]

    def goal(self, rng: np.random.Generator, rec: int, current: int) -> Goal:
        """A goal for the context ending at frame ``current`` of recording ``rec``: from ``rec`` itself (its route
        pass for a recovery pass), another pass of its route (``cross_pass``) or, as a negative, another route, a
        frame far away or behind."""
        cfg = self.cfg
        n = len(self.recordings[rec])
        source = self.goal_source[rec]
        if cfg.behind_negatives and rng.random() < cfg.behind_negatives and current >= 3:
            back = int(rng.integers(3, min(cfg.max_dist, current) + 1))
            target = source if not self.twins[rec] or rng.random() >= cfg.cross_pass else \
                self.twins[rec][int(rng.integers(len(self.twins[rec])))]
            frame = min(current - back, len(self.recordings[target]) - 1)
            return Goal(target, frame, float(cfg.max_dist), True, False)
        offset = int(rng.integers(0, min(cfg.max_dist, n - 1 - current) + 1))
        if offset == 0:  # a negative: a frame of another route, else one far (> max_dist frames) from the robot
            pool = self.strangers[rec]
            if pool:
                target = pool[int(rng.integers(len(pool)))]
                return Goal(target, int(rng.integers(len(self.recordings[target]))), float(cfg.max_dist), True,
                            False)
            far = [k for k in range(len(self.recordings[source])) if abs(k - current) > cfg.max_dist]
            if far:
                return Goal(source, far[int(rng.integers(len(far)))], float(cfg.max_dist), True, False)
            offset = int(rng.integers(1, min(cfg.max_dist, n - 1 - current) + 1))
        target = source if current + offset < len(self.recordings[source]) else rec
        if self.twins[rec] and rng.random() < cfg.cross_pass:
            twin = self.twins[rec][int(rng.integers(len(self.twins[rec])))]
            if current + offset < len(self.recordings[twin]):
                target = twin
        return Goal(target, current + offset, float(offset), False, offset < cfg.max_action_dist)


# --------------------------------------------------------------------------------------------------------------------
# Images


@dataclass(frozen=True)
class Jitter:
    """One draw of the light augmentation: crop box (top, left, height, width) in pixels, brightness gain,
    per-channel tint and contrast.

    The crop is centred horizontally, and a context and its goals share one crop (:meth:`recoloured`): a crop
    shifted sideways turns the view as a heading change of up to ~0.15 rad would, with no label following it. Drawn
    independently (before 2026-12-07) it told the network that the sideways shift between its context and the goal
    means nothing - the very cue that steers a robot back onto its route (``recovery_correlation`` stayed at 0)."""

    crop: tuple[int, int, int, int]
    gain: float
    tint: tuple[float, float, float]
    contrast: float

    @classmethod
    def draw(cls, rng: np.random.Generator, height: int, width: int) -> Jitter:
        scale = rng.uniform(0.85, 1.0)
        ratio = math.exp(rng.uniform(math.log(0.95), math.log(1.05)))
        h = min(height, max(8, round(height * math.sqrt(scale / ratio))))
        w = min(width, max(8, round(width * math.sqrt(scale * ratio))))
        top, left = int(rng.integers(0, height - h + 1)), (width - w) // 2
        return cls((top, left, h, w), *cls._photometric(rng))

    def recoloured(self, rng: np.random.Generator) -> Jitter:
        """The same crop with a new brightness, tint and contrast (a goal of this jitter's context)."""
        return Jitter(self.crop, *self._photometric(rng))

    @staticmethod
    def _photometric(rng: np.random.Generator) -> tuple[float, tuple[float, float, float], float]:
        return float(rng.uniform(0.6, 1.4)), tuple(rng.uniform(0.9, 1.1, 3).tolist()), float(rng.uniform(0.75, 1.25))

    def apply(self, image: np.ndarray) -> np.ndarray:
        top, left, h, w = self.crop
        x = image[top:top + h, left:left + w].astype(np.float32)
        mean = x.mean()
        x = ((x - mean) * self.contrast + mean) * (self.gain * np.asarray(self.tint, np.float32))
        return np.clip(x + 0.5, 0, 255).astype(np.uint8)


class FrameCache:
    """Preprocessed frames (the deployment's ``preprocess_frame``) of recordings, computed once (validation)."""

    def __init__(self, recordings: Sequence[Recording], image_size: tuple[int, int]) -> None:
        self.recordings, self.image_size = recordings, image_size
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, rec: int, frame: int) -> np.ndarray:
        from ros_mmfusion.core.navigation.preprocess import preprocess_frame

        key = (rec, frame)
        if key not in self._cache:
            self._cache[key] = preprocess_frame(self.recordings[rec].images[frame], self.image_size)
        return self._cache[key]


def draw_batch(sampler: GoalSampler, rng: np.random.Generator, cfg: NavTrainConfig, spacing: float,
               image_size: tuple[int, int]) -> dict[str, np.ndarray]:
    """One training batch: ``obs_img`` ``(B / g, 3 (C+1), H, W)``, ``goal_img`` ``(B, 3, H, W)``, ``context_index``
    ``(B,)``, ``distance`` ``(B,)``, ``action`` ``(B, T, 4)``, ``action_mask`` ``(B,)`` (``g`` goals per context)."""
    from ros_mmfusion.core.navigation.preprocess import preprocess_frame

    g = cfg.goals_per_context
    obs, goals, index, dist, actions, mask = [], [], [], [], [], []
    for ci in range(cfg.batch // g):
        rec, cur = sampler.context(rng)
        recording = sampler.recordings[rec]
        frames = [recording.images[k] for k in range(cur - cfg.context_size, cur + 1)]
        if cfg.static_contexts and rng.random() < cfg.static_contexts:
            frames = [frames[-1]] * len(frames)  # at rest: every context frame is the current one
        jitter = Jitter.draw(rng, *frames[0].shape[:2]) if cfg.augment else None
        if jitter is not None:
            frames = [jitter.apply(f) for f in frames]
        obs.append(np.concatenate([preprocess_frame(f, image_size) for f in frames], axis=0))
        labels: dict[int, np.ndarray] = {}
        for _ in range(g):
            goal = sampler.goal(rng, rec, cur)
            route = goal.recording if goal.action and goal.recording in sampler.twins[rec] else rec
            if route not in labels:
                labels[route] = sampler.action_labels(rec, cur, route, spacing)
            action = labels[route]
            image = sampler.recordings[goal.recording].images[goal.frame]
            if jitter is not None:  # the context's crop (see Jitter; every recording has cfg's size), own colours
                image = jitter.recoloured(rng).apply(image)
            goals.append(preprocess_frame(image, image_size))
            index.append(ci)
            dist.append(goal.distance)
            actions.append(action)
            mask.append(float(goal.action))
    return {"obs_img": np.stack(obs), "goal_img": np.stack(goals), "context_index": np.asarray(index, np.int64),
            "distance": np.asarray(dist, np.float32), "action": np.stack(actions),
            "action_mask": np.asarray(mask, np.float32)}


def vint_loss(dist, action, batch: dict, alpha: float) -> dict:
    """ViNT's objective: ``alpha * 1e-2 * MSE(distance) + (1 - alpha) * masked MSE(waypoints)`` (tensors)."""
    import torch
    import torch.nn.functional as F

    dist_label = torch.as_tensor(batch["distance"], device=dist.device)
    action_label = torch.as_tensor(batch["action"], device=action.device)
    mask = torch.as_tensor(batch["action_mask"], device=action.device)
    dist_loss = F.mse_loss(dist.squeeze(-1), dist_label)
    per_sample = F.mse_loss(action, action_label, reduction="none").mean(dim=(1, 2))
    action_loss = (per_sample * mask).sum() / mask.sum().clamp(min=1.0)
    loss = alpha * 1e-2 * dist_loss + (1.0 - alpha) * action_loss
    return {"loss": loss, "dist": dist_loss.detach(), "action": action_loss.detach()}


# --------------------------------------------------------------------------------------------------------------------
# Validation


@dataclass
class ValidationRoute:
    """A held-out route: the map recording (its frames every ``node_every`` are the nodes) and the passes driven
    against it (indices into the validation recordings); ``held_out`` False when it is training data."""

    map_recording: int
    queries: list[int]
    held_out: bool = True


def validation_routes(recordings: Sequence[Recording], held_out: bool = True) -> list[ValidationRoute]:
    """Group validation recordings by route: the first of a group is the map, the others drive it (a group of one
    drives its own map)."""
    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(recordings):
        groups.setdefault(rec.group, []).append(i)
    return [ValidationRoute(m[0], m[1:] or m[:1], held_out) for m in groups.values()]


def first_passes(scenarios: Sequence[str]) -> list[str]:
    """The first scenario named of each route among ``scenarios`` (its mapping pass)."""
    from ros_mmfusion.core.sim.scenarios import get_scenario

    seen: dict[str, str] = {}
    for name in scenarios:
        seen.setdefault(get_scenario(name).route, name)
    return list(seen.values())


def validate_recovery(model, recordings: Sequence[Recording], cfg: NavTrainConfig, spacing: float,
                      frames: FrameCache, device: str = "cpu", goal_ahead: int = 4, every: int = 2) -> dict:
    """How well the model steers back onto its route from beside it, on recovery passes (``route_xy`` set): for
    every ``every``-th context, the goal ``goal_ahead`` frames ahead on its route pass (as a map node is: the
    recording in ``recordings`` named :func:`route_pass_name`; the recovery pass itself where it is absent), the
    correlation and the
    least-squares slope between the predicted and the labelled sideways component of waypoint 3 (1 and 1 for a
    model that has learned to recover; about 0 or below for one that keeps going the way it points). The closed
    loop's failure mode, measured open loop (docs/navigation.md "Closed-loop results")."""
    import torch

    c, t = cfg.context_size, cfg.len_traj_pred
    predicted, labelled = [], []
    by_name = {rec.name: r for r, rec in enumerate(recordings) if rec.route_xy is None}
    for r, rec in enumerate(recordings):
        if rec.route_xy is None:
            continue
        source = by_name.get(route_pass_name(rec.name), r)
        for start in range(c, len(rec) - max(t, goal_ahead) - 1, every * 8):
            currents = list(range(start, min(start + every * 8, len(rec) - max(t, goal_ahead) - 1), every))
            obs = np.stack([np.concatenate([frames(r, k) for k in range(cur - c, cur + 1)], axis=0)
                            for cur in currents])
            goals = np.stack([frames(source, cur + goal_ahead) for cur in currents])
            out = model.forward_intermediates(torch.from_numpy(obs).to(device), torch.from_numpy(goals).to(device),
                                              torch.arange(len(currents), device=device))
            action = out["action"].float().cpu().numpy()
            for j, cur in enumerate(currents):
                label = waypoint_labels(rec.times, rec.xy, rec.yaw, cur, t, spacing, 1.0 / cfg.frame_rate_hz,
                                        cfg.vint_config.learn_angle, rec.route_xy, rec.route_yaw)
                predicted.append(float(action[j, 2, 1]))
                labelled.append(float(label[2, 1]))
    if len(predicted) < 3 or np.std(labelled) == 0 or np.std(predicted) == 0:
        return {"recovery_correlation": 0.0, "recovery_slope": 0.0, "recovery_contexts": len(predicted)}
    pred, lab = np.asarray(predicted), np.asarray(labelled)
    return {"recovery_correlation": float(np.corrcoef(pred, lab)[0, 1]),
            "recovery_slope": float(np.dot(pred - pred.mean(), lab - lab.mean()) / np.dot(lab - lab.mean(),
                                                                                          lab - lab.mean())),
            "recovery_contexts": len(predicted)}


def validate_localisation(model, recordings: Sequence[Recording], routes: Sequence[ValidationRoute],
                          cfg: NavTrainConfig, spacing: float, frames: FrameCache, device: str = "cpu") -> dict:
    """The deployment's localisation and waypoints replayed over the validation routes (module docstring)."""
    import torch

    from ros_mmfusion.core.navigation.localization import TopomapLocalizer, candidate_window
    from ros_mmfusion.core.navigation.metrics import Trajectory, WaypointAccumulator, nearest_node

    c, t = cfg.context_size, cfg.len_traj_pred
    tracked_ok, window_ok, total = 0, 0, 0
    dt = 1.0 / cfg.frame_rate_hz
    waypoints = WaypointAccumulator(dt)
    for route in routes:
        nodes = list(range(0, len(recordings[route.map_recording]), cfg.node_every))
        node_xy = recordings[route.map_recording].xy[nodes]
        for q in route.queries:
            rec = recordings[q]
            trajectory = Trajectory.build(rec.times, rec.xy, rec.yaw)
            localizer = TopomapLocalizer(len(nodes), -1, cfg.radius, cfg.close_threshold)
            truth = nearest_node(node_xy, rec.xy)
            for k in range(c, len(rec)):
                tracked = localizer.window()
                centred = candidate_window(int(truth[k]), cfg.radius, len(nodes) - 1)
                lo, hi = min(tracked[0], centred[0]), max(tracked[1], centred[1])
                obs = np.concatenate([frames(q, j) for j in range(k - c, k + 1)], axis=0)[None]
                goals = np.stack([frames(route.map_recording, nodes[i]) for i in range(lo, hi + 1)])
                index = torch.zeros(hi - lo + 1, dtype=torch.int64, device=device)
                out = model.forward_intermediates(torch.from_numpy(obs).to(device), torch.from_numpy(goals).to(device),
                                                  index)
                dist = out["dist"].reshape(-1).cpu().numpy()
                action = out["action"].cpu().numpy()
                step = localizer.update(dist[tracked[0] - lo:tracked[1] - lo + 1])
                tracked_ok += abs(step.closest_node - int(truth[k])) <= 1
                best = centred[0] + int(np.argmin(dist[centred[0] - lo:centred[1] - lo + 1]))
                window_ok += abs(best - int(truth[k])) <= 1
                total += 1
                if k + t < len(rec):
                    waypoints.add(trajectory, float(rec.times[k]), action[step.subgoal_node - lo, :, :2] * spacing)
    ade = waypoints.results()
    return {"localisation_accuracy": tracked_ok / max(total, 1), "window_accuracy": window_ok / max(total, 1),
            "waypoint_ADE_m": ade["ADE_m"], "waypoint_FDE_m": ade["FDE_m"], "frames": total}


# --------------------------------------------------------------------------------------------------------------------
# Initial weights and the run


def initial_model(cfg: NavTrainConfig):
    """The variant's network, seeded, with ``cfg.init`` loaded: a navigation model package (its weights; its
    ``config`` must equal the variant's), or a checkpoint file (our state_dict, a released ``vint.pth`` or a
    ``.npz`` of arrays, through ``vint.convert_upstream_checkpoint``). Returns ``(model, description)``."""
    import torch

    from ros_mmfusion.core.models.vint import ViNT, load_checkpoint, load_released_checkpoint
    from ros_mmfusion.core.training import init_source, read_init_weights

    torch.manual_seed(cfg.loop.seed)
    model = ViNT(cfg.vint_config)
    if not cfg.init:
        return model, "random initialisation"
    source = init_source(cfg.init, "navigation")
    if source.package is not None and source.package.data.get("config") not in (None, asdict(cfg.vint_config)):
        raise ConfigError(f"--init {cfg.init}: the package's ViNT config {source.package.data.get('config')} is not "
                          f"variant {cfg.variant}'s {asdict(cfg.vint_config)}")
    what = source.description
    try:
        state: Any = read_init_weights(source.path, load_released_checkpoint)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch and numpy raise many types for a bad file
        raise ConfigError(f"--init {cfg.init}: cannot read ViNT weights: {exc}") from None
    try:
        load_checkpoint(model, state, allow_missing=model.unused_state_keys())
    except ConfigError as exc:
        raise ConfigError(f"--init {cfg.init}: {exc}") from None
    return model, f"fine-tuned from {what}"


def package_state(model) -> dict:
    """The state_dict a package ships: without the keys ``forward`` never reads (ImageNet classifiers, the
    decoder's template layer), which loaders accept as missing."""
    unused = set(model.unused_state_keys())
    return {k: v for k, v in model.state_dict().items() if k not in unused}


def train(cfg: NavTrainConfig, out: Path, log: Log = print, resume: bool = False,
          checkpoint_dir: Path | None = None) -> dict:
    """Train, validate and write the navigation model package into ``out`` (``model.yaml``, fp16 ``weights.pt``,
    ``metrics.json``); returns the metrics. ``checkpoint_dir`` (default: the cache, named after ``out`` and the
    configuration) holds the resumable checkpoint; ``resume`` continues from it."""
    cfg.check()
    import torch

    from ros_mmfusion.core.model_package import write_package
    from ros_mmfusion.core.models.vint import VINT_VARIANTS
    from ros_mmfusion.core.training import Checkpoints, config_identity, default_checkpoint_dir, fit, run_record

    started = time.time()
    variant = VINT_VARIANTS[cfg.variant]
    image_size = variant.image_size
    log("loading the training data ...")
    train_recs = load_recordings(cfg, cfg.train_seeds, cfg.frames_per_seed, cfg.bags, log, recovery=True)
    log("loading the validation data ...")
    val_recs = load_recordings(cfg, cfg.val_seeds, cfg.val_frames, cfg.val_bags, log)
    held_out = bool(val_recs)
    if not val_recs:
        log("  no validation seeds or bags: validating on the training recordings (not held out)")
        val_recs = train_recs
    spacing = cfg.waypoint_spacing or measured_waypoint_spacing([r for r in train_recs if r.route_xy is None],
                                                                1.0 / cfg.frame_rate_hz)
    log(f"waypoint spacing {spacing:g} m per frame ({'given' if cfg.waypoint_spacing else 'measured'})")
    routes = validation_routes(val_recs, held_out)
    # recovery passes of the held-out seeds (the first scenario of each route), scored by validate_recovery
    recovery_recs = [render_recording(name, int(seed), cfg.val_frames, (cfg.width, cfg.height), cfg.frame_rate_hz,
                                      drift=(cfg.recovery, cfg.recovery_yaw))
                     for seed in cfg.val_seeds for name in first_passes(cfg.scenarios)] if cfg.recovery > 0 else []
    # their goals come from the route passes, already rendered among the validation recordings
    wanted = {route_pass_name(r.name) for r in recovery_recs}
    recovery_recs += [r for r in val_recs if r.name in wanted]
    recovery_frames = FrameCache(recovery_recs, image_size)
    sampler = GoalSampler(train_recs, cfg)
    frames = FrameCache(val_recs, image_size)
    model, init_description = initial_model(cfg)
    device = cfg.loop.device
    model.to(device)
    identity = config_identity({**cfg.as_dict(), "waypoint_spacing": spacing})
    checkpoints = Checkpoints(checkpoint_dir or default_checkpoint_dir(out, identity), identity)

    def loss_step(iteration: int, rng: np.random.Generator) -> dict:
        batch = draw_batch(sampler, rng, cfg, spacing, image_size)
        out_ = model.forward_intermediates(torch.from_numpy(batch["obs_img"]).to(device),
                                           torch.from_numpy(batch["goal_img"]).to(device),
                                           torch.from_numpy(batch["context_index"]).to(device))
        return vint_loss(out_["dist"], out_["action"], batch, cfg.alpha)

    def validate(m) -> dict:
        metrics = validate_localisation(m, val_recs, routes, cfg, spacing, frames, device)
        if recovery_recs:
            metrics.update(validate_recovery(m, recovery_recs, cfg, spacing, recovery_frames, device))
        return metrics

    used = sum(v.numel() for v in package_state(model).values())
    log(f"training {cfg.variant} ({used / 1e6:.1f} M parameters used, {init_description}) on "
        f"{sum(len(r) for r in train_recs)} frames of {len(train_recs)} recordings: {cfg.loop.iterations} "
        f"iterations of {cfg.batch} goals ({cfg.goals_per_context} per context) on {device}")
    history = fit(model, loss_step, validate, cfg.loop, checkpoints, resume=resume, log=log)
    final = history["validation"][-1]
    record = run_record(cfg.loop, started)
    data = {"train": [{"name": r.name, "frames": len(r)} for r in train_recs],
            "validation": [{"name": r.name, "frames": len(r)} for r in val_recs], "held_out": held_out,
            "frame_rate_hz": cfg.frame_rate_hz, "render_size": [cfg.width, cfg.height]}
    sources = ([f"synthetic {'+'.join(cfg.scenarios)} seeds {list(cfg.train_seeds)}"] if cfg.scenarios else []) + \
              ([f"{len(cfg.bags)} bag(s)"] if cfg.bags else [])
    trained_on = (f"{', '.join(sources)}; {cfg.loop.iterations} iterations of {cfg.batch}, {init_description}, "
                  f"{record['date']} on {record['hardware']}")
    validation = {k: v for k, v in final.items() if k != "iteration"}
    metrics = {**record, "variant": cfg.variant, "config": cfg.as_dict(), "waypoint_spacing": spacing,
               "init": init_description, "data": data, "seeds": {"train": list(cfg.train_seeds),
                                                                 "validation": list(cfg.val_seeds)},
               "iterations": cfg.loop.iterations, "validation": validation, "history": history}
    fields = {"config": asdict(cfg.vint_config), "image_size": list(image_size),
              "frame_rate_hz": cfg.frame_rate_hz, "waypoint_spacing": spacing, "trained_on": trained_on,
              "validation": validation}
    write_package(Path(out), "navigation", cfg.variant, fields, package_state(model), metrics)
    log(f"validation: localisation accuracy (+-1 node) {validation['localisation_accuracy']:.3f}, window accuracy "
        f"{validation['window_accuracy']:.3f}, waypoint ADE {validation['waypoint_ADE_m']} m")
    return metrics


__all__ = ["DEFAULT_SCENARIOS", "GoalSampler", "Jitter", "NavTrainConfig", "Recording", "draw_batch",
           "initial_model", "load_recordings", "measured_waypoint_spacing", "package_state", "read_bag_recording",
           "render_recording", "train", "validate_localisation", "validation_routes", "vint_loss",
           "waypoint_labels"]
