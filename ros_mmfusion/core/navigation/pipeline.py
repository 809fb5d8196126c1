"""The ViNT navigation pipeline over an inference backend: camera frames in, localisation and waypoints out.

``NavigationPolicy(topomap, backend, ...)`` receives its backend (built by
:func:`ros_mmfusion.core.navigation.artifacts.build_backend`) and owns no model files. Its stages, in the vocabulary
of the ViNT deployment (``deployment/src/navigate.py``):

1. **context queue** (:meth:`~NavigationPolicy.add_frame`): the last ``context_size + 1`` camera frames sampled at
   the model's frame rate (4 Hz for the released model), each transformed as the deployment's ``transform_images``
   does (:mod:`ros_mmfusion.core.navigation.preprocess`);
2. **observation and goal images** (:meth:`~NavigationPolicy.network_inputs`): the context repeated once per
   candidate goal image of the localisation window, in one batch (which is why the ONNX export has a dynamic
   batch); the method INT8 quantization feeds through (:mod:`ros_mmfusion.core.navigation.quantize`);
3. **temporal distances and waypoints** (:meth:`~NavigationPolicy.predict`): the network's ``dist`` and ``action``.
   With a :class:`SplitViNTBackend` (what the node runs) each context frame is encoded once, when it enters the
   context, and its observation token is reused at the following steps; every step then runs the frame encoder on
   the newest frame only and the goal encoder + transformer once over the window's goals (one batch), the same
   outputs as the whole network on the repeated context (:meth:`~NavigationPolicy.split_inputs`);
4. **localisation and subgoal** (:class:`~ros_mmfusion.core.navigation.localization.TopomapLocalizer`): the closest
   node and the subgoal whose waypoints are followed;
5. **metric waypoints** (:meth:`~NavigationPolicy.to_metric`): scaled to metres, with the one to follow.

Waypoints are ``(x, y, cos yaw, sin yaw)`` in ``base_link`` at the newest frame (x forward, y left; metres after
scaling by ``waypoint_spacing``, the deployment's ``MAX_V / frame_rate``); see docs/navigation.md.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.inference.base import Backend, BackendInfo
from ros_mmfusion.core.models.vint import VINT_VARIANTS, ViNTVariant, waypoints_to_metric
from ros_mmfusion.core.navigation.localization import LocalizationStep, OdometryFilterLocalizer, TopomapLocalizer
from ros_mmfusion.core.navigation.preprocess import preprocess_frame
from ros_mmfusion.core.navigation.sampling import PeriodicSampler
from ros_mmfusion.core.navigation.topomap import Topomap

MAX_CONTEXT_GAP_PERIODS = 3.0
"""A camera gap longer than this many frame periods empties the context: its frames would no longer be evenly spaced."""

DistanceFunction = Callable[[int, int], np.ndarray]
"""``(start, end) -> distances`` of topomap nodes ``start..end`` (inclusive), overriding the model's (tests, oracle)."""


def vint_variant(name: str | ViNTVariant) -> ViNTVariant:
    """The ViNT variant ``name`` (its network configuration, input size and frame rate); ConfigError if unknown.
    A :class:`ViNTVariant` (a model package's, ``artifacts.NavigationModel``) is returned as it is."""
    if isinstance(name, ViNTVariant):
        return name
    if name not in VINT_VARIANTS:
        raise ConfigError(f"unknown ViNT variant {name!r}; known: {sorted(VINT_VARIANTS)}")
    return VINT_VARIANTS[name]


@dataclass(frozen=True)
class SplitViNTBackend:
    """ViNT as its two streaming graphs (``models.vint.ViNTFrameEncoder`` / ``ViNTGoalDecoder``, built by
    ``artifacts.build_split_backend``): ``frame_encoder`` (``frame_img`` [B, 3, H, W] -> ``frame_token`` [B, E]) and
    ``goal_decoder`` (``context_tokens`` [B, C+1, E], ``current_img``, ``goal_img`` -> ``dist``, ``action``)."""

    frame_encoder: Backend
    goal_decoder: Backend

    @property
    def info(self) -> BackendInfo:
        """The goal decoder's description (kind, device, precision), marked as the split network."""
        info = self.goal_decoder.info
        return replace(info, detail=f"{info.detail}, split (context frames encoded once)")


@dataclass(frozen=True)
class NavigationResult:
    """One navigation step. Waypoints are metric ``(x, y, cos, sin)`` rows in ``base_link`` at ``stamp_ns``."""

    stamp_ns: int
    localization: LocalizationStep
    model_distances: np.ndarray  # (n,) the model's temporal distances for the window's nodes
    waypoints: np.ndarray  # (len_traj_pred, 4) towards the subgoal
    chosen_waypoint: np.ndarray  # (4,) the row to follow

    @property
    def closest_node(self) -> int:
        return self.localization.closest_node

    @property
    def subgoal_node(self) -> int:
        return self.localization.subgoal_node

    @property
    def goal_reached(self) -> bool:
        return self.localization.goal_reached

    @property
    def distances(self) -> np.ndarray:
        """The distances localisation used (the model's, or the injected distance function's)."""
        return self.localization.distances


LOCALIZATIONS = ("window", "odometry_filter")
"""``window``: the ViNT deployment's (argmin of the window each step); ``odometry_filter``:
:class:`~ros_mmfusion.core.navigation.localization.OdometryFilterLocalizer` (needs a topomap with poses and the
robot's odometry)."""


def make_localizer(topomap: Topomap, localization: str, goal_node: int, radius: int, close_threshold: float,
                   start_node: int, motion_noise: float) -> TopomapLocalizer:
    """The localiser ``localization`` names over ``topomap``. The filter's edge lengths are the metres between
    consecutive nodes' poses; ConfigError for a topomap without poses, or nodes recorded at one place."""
    if localization not in LOCALIZATIONS:
        raise ConfigError(f"localization must be one of {', '.join(LOCALIZATIONS)}, got {localization!r}")
    if localization == "window" or len(topomap) == 1:
        return TopomapLocalizer(len(topomap), goal_node, radius, close_threshold, start_node)
    try:
        poses = topomap.poses_xy_yaw()
    except ConfigError as exc:
        raise ConfigError(f"localization odometry_filter: {exc}; rebuild it with an odometry topic or use "
                          "localization window") from None
    edges = np.hypot(*np.diff(poses[:, :2], axis=0).T)
    if not np.all(edges > 1e-3):
        raise ConfigError(f"localization odometry_filter: topomap {topomap.directory} has consecutive nodes "
                          f"{int(np.argmin(edges))} and {int(np.argmin(edges)) + 1} at one place (the robot stood "
                          "still while mapping); rebuild it from a moving pass or use localization window")
    return OdometryFilterLocalizer(len(topomap), goal_node, radius, close_threshold, start_node, edge_lengths=edges,
                                   motion_noise=motion_noise)


class NavigationPolicy:
    """ViNT over a topomap (or one goal image) with the network ``backend``, built for the same ``variant``: the whole
    network (inputs ``obs_img``, ``goal_img``; outputs ``dist``, ``action``; ``artifacts.build_backend``), or a
    :class:`SplitViNTBackend` (``artifacts.build_split_backend``) that encodes each context frame once; None only
    for a pipeline that produces network inputs and never predicts (INT8 calibration).

    ``goal_node`` (-1 = last), ``radius`` and ``close_threshold`` are the deployment's localisation settings (defaults
    -1, 4, 3 as there); ``waypoint_index`` selects the waypoint to follow (default 2, the third of five);
    ``waypoint_spacing`` (metres) scales the normalised waypoints; ``frame_rate_hz`` 0 takes the variant's (4 Hz).
    """

    def __init__(self, topomap: Topomap, backend: Backend | SplitViNTBackend | None, *,
                 variant: str | ViNTVariant = "vint_default",
                 goal_node: int = -1, radius: int = 4, close_threshold: float = 3.0, waypoint_index: int = 2,
                 waypoint_spacing: float = 0.05, frame_rate_hz: float = 0.0, center_crop: bool = False,
                 start_node: int = 0, localization: str = "window", motion_noise: float = 0.2) -> None:
        self.variant = vint_variant(variant)
        config = self.variant.config
        if not 0 <= waypoint_index < config.len_traj_pred:
            raise ConfigError(f"waypoint_index {waypoint_index} must be in 0..{config.len_traj_pred - 1}")
        if not waypoint_spacing > 0:
            raise ConfigError(f"waypoint_spacing must be positive metres, got {waypoint_spacing}")
        self.topomap = topomap
        self.localizer = make_localizer(topomap, localization, goal_node, radius, close_threshold, start_node,
                                        motion_noise)
        self.waypoint_index, self.waypoint_spacing = waypoint_index, float(waypoint_spacing)
        self.context_size = config.context_size
        self.frame_rate_hz = float(frame_rate_hz) or self.variant.frame_rate_hz
        self.center_crop = center_crop
        self.sampler = PeriodicSampler(1.0 / self.frame_rate_hz)
        self.context: deque[np.ndarray] = deque(maxlen=self.context_size + 1)
        self._frame_tokens: deque[np.ndarray | None] = deque(maxlen=self.context_size + 1)  # aligned with context
        self.context_stamp_ns: int | None = None
        self._goals: dict[int, np.ndarray] = {}
        self.backend = backend

    # -- context ------------------------------------------------------------------------------------------------------
    def add_frame(self, stamp_ns: int, rgb: np.ndarray) -> bool:
        """Offer a camera frame (``(H, W, 3)`` uint8 R,G,B); True when the context took it (one per frame period).

        A stamp earlier than the newest context frame or a gap of more than ``MAX_CONTEXT_GAP_PERIODS`` periods
        empties the context first.
        """
        last = self.sampler.last_ns
        if last is not None and (stamp_ns < last or
                                 stamp_ns - last > MAX_CONTEXT_GAP_PERIODS * self.sampler.period_ns):
            self._clear_context()
            self.sampler.reset()
        if not self.sampler.offer(stamp_ns):
            return False
        self.context.append(self._preprocess(rgb))
        self._frame_tokens.append(None)  # encoded when first needed (a split backend), then reused
        self.context_stamp_ns = stamp_ns
        return True

    @property
    def ready(self) -> bool:
        """True once the context holds ``context_size + 1`` frames."""
        return len(self.context) == self.context.maxlen

    def _preprocess(self, rgb: np.ndarray) -> np.ndarray:
        try:
            return preprocess_frame(rgb, self.variant.image_size, self.center_crop)
        except ValueError as exc:
            raise MessageFormatError(str(exc)) from None

    def goal_tensor(self, index: int) -> np.ndarray:
        """Node ``index``'s preprocessed image ``(3, H, W)`` (computed once)."""
        if index not in self._goals:
            self._goals[index] = self._preprocess(self.topomap.image(index))
        return self._goals[index]

    # -- inference ----------------------------------------------------------------------------------------------------
    def network_inputs(self, start: int, end: int) -> dict[str, np.ndarray]:
        """The network's feeds for the context towards nodes ``start..end``: ``obs_img`` ``(n, 3 (C+1), H, W)`` (the
        context, oldest frame first, repeated once per node) and ``goal_img`` ``(n, 3, H, W)``, float32."""
        if not self.ready:
            raise RuntimeError(f"the context holds {len(self.context)} of {self.context.maxlen} frames")
        n = end - start + 1
        obs = np.concatenate(list(self.context), axis=0)[None]
        goals = np.stack([self.goal_tensor(i) for i in range(start, end + 1)])
        return {"obs_img": np.repeat(obs, n, axis=0), "goal_img": goals}

    def split_inputs(self, start: int, end: int) -> dict[str, np.ndarray]:
        """The split network's feeds (:class:`SplitViNTBackend`) for the context towards nodes ``start..end``:
        ``context_tokens`` ``(n, C+1, E)`` (the context frames' tokens, oldest first, repeated once per node),
        ``current_img`` ``(n, 3, H, W)`` (the newest frame, repeated) and ``goal_img`` ``(n, 3, H, W)``. Frames whose
        token is not known yet (the newest, or all after a reset) go through the frame encoder, in one batch."""
        if not self.ready:
            raise RuntimeError(f"the context holds {len(self.context)} of {self.context.maxlen} frames")
        if not isinstance(self.backend, SplitViNTBackend):
            raise RuntimeError("split_inputs needs a SplitViNTBackend (artifacts.build_split_backend)")
        missing = [i for i, token in enumerate(self._frame_tokens) if token is None]
        if missing:
            frames = np.stack([self.context[i] for i in missing])
            tokens = self.backend.frame_encoder.run({"frame_img": frames})["frame_token"]
            for i, token in zip(missing, tokens, strict=True):
                self._frame_tokens[i] = token
        n = end - start + 1
        goals = np.stack([self.goal_tensor(i) for i in range(start, end + 1)])
        return {"context_tokens": np.repeat(np.stack(list(self._frame_tokens))[None], n, axis=0),
                "current_img": np.repeat(self.context[-1][None], n, axis=0), "goal_img": goals}

    def predict(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Temporal distances ``(n,)`` and normalised waypoints ``(n, T, 4)`` of the context towards nodes
        ``start..end``, in one batch."""
        if self.backend is None:
            raise RuntimeError("this navigation pipeline has no backend: it only produces network inputs")
        n = end - start + 1
        if isinstance(self.backend, SplitViNTBackend):
            out = self.backend.goal_decoder.run(self.split_inputs(start, end))
        else:
            out = self.backend.run(self.network_inputs(start, end))
        return out["dist"].reshape(n), out["action"].reshape(n, -1, out["action"].shape[-1])

    def step(self, distance_fn: DistanceFunction | None = None,
             waypoint_fn: Callable[[int], np.ndarray] | None = None) -> NavigationResult:
        """Localise and choose the waypoint for the current context (call when :attr:`ready`).

        ``distance_fn`` replaces the model's temporal distances for localisation, ``waypoint_fn(subgoal_node)`` the
        model's metric waypoints ``(len_traj_pred, 4)``: the hooks for known-answer tests and the odometry oracle.
        """
        start, end = self.localizer.window()
        model_distances, waypoints = self.predict(start, end)
        distances = model_distances if distance_fn is None else np.asarray(distance_fn(start, end), np.float64)
        step = self.localizer.update(distances)
        if waypoint_fn is None:
            metric = self.to_metric(waypoints[step.subgoal_offset])
        else:
            metric = np.asarray(waypoint_fn(step.subgoal_node), np.float64).reshape(waypoints.shape[1], 4)
        return NavigationResult(int(self.context_stamp_ns), step, model_distances, metric,
                                metric[self.waypoint_index].copy())

    def moved(self, metres: float) -> None:
        """The robot drove ``metres`` (odometry; negative backwards) since the last step: the odometry filter's
        motion update (nothing for the deployment's window localisation)."""
        if isinstance(self.localizer, OdometryFilterLocalizer):
            self.localizer.move(metres)

    def to_metric(self, waypoints: np.ndarray) -> np.ndarray:
        """Normalised waypoints ``(..., 4)`` -> x, y in metres (``waypoint_spacing`` per unit); cos, sin as they are."""
        return np.asarray(waypoints_to_metric(np.asarray(waypoints, np.float64), self.waypoint_spacing))

    def reset(self) -> None:
        """Forget the context and start localising at the start node again (a time jump, a new run)."""
        self._clear_context()
        self.context_stamp_ns = None
        self.sampler.reset()
        self.localizer.reset()

    def _clear_context(self) -> None:
        self.context.clear()
        self._frame_tokens.clear()
