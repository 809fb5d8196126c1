"""PointPainting (Vora et al., CVPR 2020): LiDAR points decorated with the camera's semantic segmentation scores.

Each point is projected into the camera (``camera_from_lidar`` maps the LiDAR frame into the camera *optical* frame,
x right, y down, z forward; the pinhole model and distortion of ``PinholeCamera``) and takes the scores of the pixel
it lands on (the nearest pixel centre, as ``rasterize_depth`` rounds). The scores are either per-pixel class
probabilities ``(H, W, K)`` of the K painted classes, or a class-id mask ``(H, W)`` read as one-hot over the ids of
the K painted classes (what ``fusion_segmentation_node`` publishes on ``segmentation/labels``). The K values are
appended to the point's features: ``x, y, z, intensity`` becomes ``x, y, z, intensity, s_1 .. s_K``.
Several cameras around one LiDAR paint together (``MultiCameraScores``): each point from the first camera, in a
given order, that sees it.

Points the camera does not see (behind it, outside the image, or with a non-finite coordinate) get
``OUTSIDE_SCORE`` (0: no evidence for any painted class) in every channel, as in the paper. When the segmentation is
missing altogether every point gets it; a painted network whose extra weights are zero (below) then gives exactly
the unpainted network's output.

The painted network differs from the unpainted one only in its first pillar-feature-net layer, which takes K more
input channels. ``painted_state_dict`` widens an unpainted checkpoint for it by inserting K zero columns where the
decorated point features carry the scores (right after the raw point features: see ``decorate_pillars``), so the
painted model reproduces the checkpoint exactly until it is fine-tuned on painted points.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.geometry import PinholeCamera, Transform
from ros_mmfusion.core.models.pointpillars import PointPillarsConfig

OUTSIDE_SCORE = 0.0
"""The score every painted channel of a point gets when the camera does not see it, or without a segmentation."""

FIRST_PFN_WEIGHT = "vfe.pfn_layers.0.linear.weight"
"""The only parameter whose shape painting changes: ``(out, C_in)`` -> ``(out, C_in + K)``."""


@dataclass(frozen=True, eq=False)
class SegmentationScores:
    """One camera's segmentation, ready to paint points with.

    ``camera``: the calibration of the image the scores belong to (rescaled to the scores' size when they differ, so a
    mask computed at another resolution still lines up); ``camera_from_lidar``: camera optical frame <- LiDAR frame.
    Exactly one of ``probabilities`` ``(H, W, K)`` (floats, e.g. softmax scores of the K painted classes) and
    ``labels`` ``(H, W)`` integer class ids with ``class_ids`` (the K ids painted, one channel each; a pixel of any
    other id scores 0 in every channel).
    """

    camera: PinholeCamera
    camera_from_lidar: Transform
    probabilities: np.ndarray | None = None
    labels: np.ndarray | None = None
    class_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if (self.probabilities is None) == (self.labels is None):
            raise ConfigError("SegmentationScores needs exactly one of probabilities and labels")
        if self.labels is not None:
            if self.labels.ndim != 2 or not np.issubdtype(self.labels.dtype, np.integer):
                raise MessageFormatError(f"a class-id mask must be (H, W) integers, got {self.labels.shape} "
                                         f"{self.labels.dtype}")
            if not self.class_ids:
                raise ConfigError("painting from a class-id mask needs the class ids to paint")
        elif self.image.ndim != 3:
            raise MessageFormatError(f"class probabilities must be (H, W, K), got {self.image.shape}")

    @property
    def image(self) -> np.ndarray:
        """The class-id mask or the probabilities, whichever was given."""
        image = self.labels if self.labels is not None else self.probabilities
        assert image is not None  # __post_init__ checked that one was given
        return image

    @property
    def num_channels(self) -> int:
        return len(self.class_ids) if self.labels is not None else int(self.image.shape[2])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the scores."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    def pixels(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, seen)``: the pixel each of the ``(N, 3)`` LiDAR points lands on and whether it does."""
        h, w = self.image_size
        camera = self.camera if (self.camera.height, self.camera.width) == (h, w) else self.camera.scaled(w, h)
        uv, _, seen = camera.project(self.camera_from_lidar.apply(np.asarray(xyz, dtype=np.float64)))
        cols = np.where(seen, np.rint(uv[:, 0]), 0).astype(np.int64)
        rows = np.where(seen, np.rint(uv[:, 1]), 0).astype(np.int64)
        return rows, cols, seen

    def sample(self, xyz: np.ndarray, outside: float = OUTSIDE_SCORE) -> np.ndarray:
        """``(N, K)`` float32 scores of the ``(N, 3)`` points (LiDAR frame, metres); ``outside`` where unseen."""
        rows, cols, seen = self.pixels(xyz)
        picked = self.image[rows, cols]
        if self.labels is not None:
            ids = np.asarray(self.class_ids, dtype=np.int64)
            scores = (picked.astype(np.int64)[:, None] == ids[None, :]).astype(np.float32)
        else:
            scores = np.asarray(picked, dtype=np.float32)
        scores[~seen] = np.float32(outside)
        return scores


@dataclass(frozen=True, eq=False)
class MultiCameraScores:
    """Several cameras' segmentations painting one cloud (nuScenes' six cameras around one LiDAR, say).

    Each point takes the scores of the first camera in ``cameras`` that sees it (in front of it, inside its image):
    the order is the priority where the fields of view overlap (the node keeps its ``paint_cameras`` order). A
    point no camera sees gets ``outside`` in every channel, as with one camera. Every camera paints the same K
    channels (the same painted classes); each may have its own image size and calibration.
    """

    cameras: tuple[SegmentationScores, ...]

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ConfigError("multi-camera painting needs at least one camera's segmentation")
        channels = {c.num_channels for c in self.cameras}
        if len(channels) != 1:
            raise ConfigError(f"the cameras paint different numbers of channels: {sorted(channels)}")

    @property
    def num_channels(self) -> int:
        return self.cameras[0].num_channels

    def camera_index(self, xyz: np.ndarray) -> np.ndarray:
        """``(N,)`` int64: the index in ``cameras`` of the camera each ``(N, 3)`` LiDAR point is painted from, -1 for
        a point no camera sees."""
        index = np.full(len(xyz), -1, np.int64)
        for i, camera in enumerate(self.cameras):
            _, _, seen = camera.pixels(xyz)
            index[(index < 0) & seen] = i
        return index

    def sample(self, xyz: np.ndarray, outside: float = OUTSIDE_SCORE) -> np.ndarray:
        """``(N, K)`` float32 scores of the ``(N, 3)`` points (LiDAR frame, metres), each from its first camera that
        sees it; ``outside`` where none does."""
        xyz = np.asarray(xyz)
        out = np.full((len(xyz), self.num_channels), np.float32(outside), np.float32)
        index = self.camera_index(xyz)
        for i, camera in enumerate(self.cameras):
            mine = index == i
            if mine.any():
                out[mine] = camera.sample(xyz[mine], outside)
        return out


PaintingScores = SegmentationScores | MultiCameraScores
"""What paints a cloud: one camera's segmentation or several cameras' (both have ``num_channels`` and ``sample``)."""


def paint_points(points: np.ndarray, scores: PaintingScores | None, num_channels: int,
                 outside: float = OUTSIDE_SCORE) -> np.ndarray:
    """``(N, C + K)`` float32: the ``(N, C)`` points (x, y, z first) with ``K = num_channels`` scores appended.

    Without ``scores`` every point gets ``outside`` in every channel (the unpainted-equivalent input of a
    zero-initialised painted network).
    """
    pts = np.asarray(points, dtype=np.float32)
    if scores is None:
        extra = np.full((pts.shape[0], num_channels), outside, dtype=np.float32)
    else:
        if scores.num_channels != num_channels:
            raise ConfigError(f"the segmentation paints {scores.num_channels} channels, the detector takes "
                              f"{num_channels}")
        extra = scores.sample(pts[:, :3], outside)
    return np.concatenate([pts, extra], axis=1)


# ----------------------------------------------------------------------------------------------- the painted model


def painted_config(config: PointPillarsConfig, num_channels: int) -> PointPillarsConfig:
    """``config`` taking ``num_channels`` painted scores after each point's own features."""
    if num_channels < 0:
        raise ConfigError(f"the number of painted channels must be >= 0, got {num_channels}")
    if num_channels == 0:
        return config
    return dataclasses.replace(config, name=f"{config.name}_painted{num_channels}",
                               num_point_features=config.num_point_features + num_channels)


def score_columns(config: PointPillarsConfig, num_channels: int) -> slice:
    """The columns of the painted first PFN layer's input (the decorated point features of
    ``painted_config(config, num_channels)``, ``config`` unpainted) that carry the scores: right after the point's
    own features."""
    start = config.num_point_features - (0 if config.vfe.use_absolute_xyz else 3)
    return slice(start, start + num_channels)


def painted_state_dict(state: Mapping[str, torch.Tensor], config: PointPillarsConfig,
                       num_channels: int) -> dict[str, torch.Tensor]:
    """An unpainted checkpoint of ``config`` (this module's key names) widened for ``painted_config(config, K)``.

    Pure: the first PFN layer's weight gets ``K`` zero input columns at ``score_columns``; everything else is shared
    unchanged. A checkpoint that is already painted (the weight is already wide) is returned as it is.
    """
    out = dict(state)
    weight = out.get(FIRST_PFN_WEIGHT)
    if weight is None:
        raise ConfigError(f"the checkpoint has no {FIRST_PFN_WEIGHT}: not a pillar detector")
    unpainted, painted = config.num_input_features, painted_config(config, num_channels).num_input_features
    if weight.shape[1] == painted:
        return out
    if weight.shape[1] != unpainted:
        raise ConfigError(f"{FIRST_PFN_WEIGHT} takes {weight.shape[1]} channels; {config.name} takes {unpainted} "
                          f"unpainted and {painted} painted")
    cols = score_columns(config, num_channels)
    zeros = weight.new_zeros((weight.shape[0], num_channels))
    out[FIRST_PFN_WEIGHT] = torch.cat([weight[:, :cols.start], zeros, weight[:, cols.start:]], dim=1)
    return out


def paint_class_ids(names: Sequence[str]) -> tuple[int, ...]:
    """Segmentation class ids (the suite's label set, ``core/labels.py``) of the painted class ``names``."""
    from ros_mmfusion.core.labels import label_by_name

    return tuple(label_by_name(name).id for name in names)
