"""The ViNT navigation pipeline over an inference backend: camera frames in, localisation and waypoints out.

``NavigationPolicy(topomap, ...)`` keeps a context of the last ``context_size + 1`` camera frames sampled at the
model's frame rate (4 Hz for the released model), and on every :meth:`~NavigationPolicy.step` scores that context
against every node of the localisation window in one batch (the context repeated once per candidate goal image,
which is why the ONNX export has a dynamic batch). The predicted temporal distances localise the robot
(:class:`~ros_mmfusion.core.navigation.localization.TopomapLocalizer`); the waypoints predicted towards the chosen
subgoal are scaled to metres and returned with the one to follow.

Waypoints are ``(x, y, cos yaw, sin yaw)`` in ``base_link`` at the newest frame (x forward, y left; metres after
scaling by ``waypoint_spacing``, the deployment's ``MAX_V / frame_rate``); see docs/navigation.md.
"""
from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.inference import Backend, create_backend
from ros_mmfusion.core.navigation.localization import LocalizationStep, TopomapLocalizer
from ros_mmfusion.core.navigation.sampling import PeriodicSampler
from ros_mmfusion.core.navigation.topomap import Topomap

UNTRAINED_SEED = 0
"""Seed of the random weights used when no weights file is given (so every process builds the same network)."""
MAX_CONTEXT_GAP_PERIODS = 3.0
"""A camera gap longer than this many frame periods empties the context: its frames would no longer be evenly spaced."""

DistanceFunction = Callable[[int, int], np.ndarray]
"""``(start, end) -> distances`` of topomap nodes ``start..end`` (inclusive), overriding the model's (tests, oracle)."""


def build_vint(variant: str = "vint_default", weights: str = ""):
    """The ViNT network of ``variant`` in eval mode with ``weights`` loaded, or seeded random weights when empty.

    ``weights`` may be our plain state_dict or a released ``vint.pth`` training checkpoint (read without the
    upstream package, see ``models.vint.load_released_checkpoint``). ConfigError for a missing or unfit file.
    """
    import torch

    from ros_mmfusion.core.models.vint import create_vint, load_checkpoint, load_released_checkpoint

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        model = create_vint(variant)
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"ViNT weights file not found: {path}")
        try:
            state = load_released_checkpoint(path)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
            raise ConfigError(f"cannot read ViNT weights {path}: {exc}") from None
        load_checkpoint(model, state, allow_missing=model.unused_state_keys())
    return model.eval()


def vint_onnx(variant: str = "vint_default", weights: str = "", onnx: str = "") -> Path:
    """The ONNX file of ``variant`` + ``weights``: ``onnx`` when given (exported there when missing), else one in the
    cache directory named after the variant and a hash of the weights file (or of the untrained seed)."""
    from ros_mmfusion.core.models.vint import vint_onnx_spec
    from ros_mmfusion.core.onnx_export import cache_dir, export_once, export_onnx

    if onnx:
        path = Path(onnx)
    else:
        digest = hashlib.sha256(f"{variant}/dynamic-batch/untrained-seed{UNTRAINED_SEED}".encode())
        if weights:
            if not Path(weights).is_file():
                raise ConfigError(f"ViNT weights file not found: {weights}")
            digest.update(Path(weights).read_bytes())
        path = cache_dir() / "onnx" / f"{variant}-{digest.hexdigest()[:16]}.onnx"

    def export(tmp: Path) -> None:
        model = build_vint(variant, weights)
        export_onnx(model, path=tmp, **vint_onnx_spec(model))

    return export_once(path, export)


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


class NavigationPolicy:
    """ViNT over a topomap (or one goal image) with the backend ``backend`` ("onnxruntime", "onnxruntime-int8" or
    "torch").

    ``goal_node`` (-1 = last), ``radius`` and ``close_threshold`` are the deployment's localisation settings (defaults
    -1, 4, 3 as there); ``waypoint_index`` selects the waypoint to follow (default 2, the third of five);
    ``waypoint_spacing`` (metres) scales the normalised waypoints; ``frame_rate_hz`` 0 takes the variant's (4 Hz).
    """

    def __init__(self, topomap: Topomap, *, variant: str = "vint_default", weights: str = "",
                 backend: str = "onnxruntime", device: str = "cpu", threads: int = 0, onnx: str = "",
                 goal_node: int = -1, radius: int = 4, close_threshold: float = 3.0, waypoint_index: int = 2,
                 waypoint_spacing: float = 0.05, frame_rate_hz: float = 0.0, center_crop: bool = False,
                 start_node: int = 0) -> None:
        from ros_mmfusion.core.models.vint import ONNX_INPUT_NAMES, ONNX_OUTPUT_NAMES, VINT_VARIANTS

        if variant not in VINT_VARIANTS:
            raise ConfigError(f"unknown ViNT variant {variant!r}; known: {sorted(VINT_VARIANTS)}")
        self.variant = VINT_VARIANTS[variant]
        config = self.variant.config
        if not 0 <= waypoint_index < config.len_traj_pred:
            raise ConfigError(f"waypoint_index {waypoint_index} must be in 0..{config.len_traj_pred - 1}")
        if not waypoint_spacing > 0:
            raise ConfigError(f"waypoint_spacing must be positive metres, got {waypoint_spacing}")
        self.topomap = topomap
        self.localizer = TopomapLocalizer(len(topomap), goal_node, radius, close_threshold, start_node)
        self.waypoint_index, self.waypoint_spacing = waypoint_index, float(waypoint_spacing)
        self.context_size = config.context_size
        self.frame_rate_hz = float(frame_rate_hz) or self.variant.frame_rate_hz
        self.center_crop = center_crop
        self.untrained = not weights
        self.sampler = PeriodicSampler(1.0 / self.frame_rate_hz)
        self.context: deque[np.ndarray] = deque(maxlen=self.context_size + 1)
        self.context_stamp_ns: int | None = None
        self._goals: dict[int, np.ndarray] = {}
        self.backend: Backend = create_backend(
            backend, input_names=ONNX_INPUT_NAMES, output_names=ONNX_OUTPUT_NAMES,
            module_factory=lambda: build_vint(variant, weights),
            onnx_path=self._onnx_path(backend, variant, weights, onnx), device=device, threads=threads)

    @staticmethod
    def _onnx_path(backend: str, variant: str, weights: str, onnx: str) -> Path | None:
        """The file the backend runs: the fp32 export for ``onnxruntime``, its INT8 (QDQ) model for
        ``onnxruntime-int8`` (calibrated on ``indoor_corridor`` contexts on first use, then cached beside it)."""
        if backend == "onnxruntime":
            return vint_onnx(variant, weights, onnx)
        if backend == "onnxruntime-int8":
            from ros_mmfusion.core.inference.navigation_calibration import vint_int8_onnx

            return vint_int8_onnx(variant, weights, onnx)
        return None

    # -- context ------------------------------------------------------------------------------------------------------
    def add_frame(self, stamp_ns: int, rgb: np.ndarray) -> bool:
        """Offer a camera frame (``(H, W, 3)`` uint8 R,G,B); True when the context took it (one per frame period).

        A stamp earlier than the newest context frame or a gap of more than ``MAX_CONTEXT_GAP_PERIODS`` periods
        empties the context first.
        """
        last = self.sampler.last_ns
        if last is not None and (stamp_ns < last or
                                 stamp_ns - last > MAX_CONTEXT_GAP_PERIODS * self.sampler.period_ns):
            self.context.clear()
            self.sampler.reset()
        if not self.sampler.offer(stamp_ns):
            return False
        self.context.append(self._preprocess(rgb))
        self.context_stamp_ns = stamp_ns
        return True

    @property
    def ready(self) -> bool:
        """True once the context holds ``context_size + 1`` frames."""
        return len(self.context) == self.context.maxlen

    def _preprocess(self, rgb: np.ndarray) -> np.ndarray:
        from ros_mmfusion.core.preprocess.navigation import preprocess_frame

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
    def predict(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Temporal distances ``(n,)`` and normalised waypoints ``(n, T, 4)`` of the context towards nodes
        ``start..end``, in one batch."""
        if not self.ready:
            raise RuntimeError(f"the context holds {len(self.context)} of {self.context.maxlen} frames")
        n = end - start + 1
        obs = np.concatenate(list(self.context), axis=0)[None]
        goals = np.stack([self.goal_tensor(i) for i in range(start, end + 1)])
        out = self.backend.run({"obs_img": np.repeat(obs, n, axis=0), "goal_img": goals})
        return out["dist"].reshape(n), out["action"].reshape(n, -1, out["action"].shape[-1])

    def step(self, distance_fn: DistanceFunction | None = None) -> NavigationResult:
        """Localise and choose the waypoint for the current context (call when :attr:`ready`).

        ``distance_fn`` replaces the model's temporal distances for localisation (the model still predicts the
        waypoints): the hook for known-answer tests and the odometry oracle.
        """
        start, end = self.localizer.window()
        model_distances, waypoints = self.predict(start, end)
        distances = model_distances if distance_fn is None else np.asarray(distance_fn(start, end), np.float64)
        step = self.localizer.update(distances)
        metric = self.to_metric(waypoints[step.subgoal_offset])
        return NavigationResult(int(self.context_stamp_ns), step, model_distances, metric,
                                metric[self.waypoint_index].copy())

    def to_metric(self, waypoints: np.ndarray) -> np.ndarray:
        """Normalised waypoints ``(..., 4)`` -> x, y in metres (``waypoint_spacing`` per unit); cos, sin as they are."""
        from ros_mmfusion.core.models.vint import waypoints_to_metric

        return np.asarray(waypoints_to_metric(np.asarray(waypoints, np.float64), self.waypoint_spacing))

    def reset(self) -> None:
        """Forget the context and start localising at the start node again (a time jump, a new run)."""
        self.context.clear()
        self.context_stamp_ns = None
        self.sampler.reset()
        self.localizer.reset()
