"""The LiDAR 3D detection pipeline (ROS-free): a point cloud in, boxes out, every stage timed.

Stages, in order (``STAGES``), in the vocabulary of PointPillars (Lang et al., 2019) and OpenPCDet::

    points (structured x, y, z, intensity or (N, 4+))
      -> crop        finite points, intensity scaled, kept where x and y lie in the range (``preprocess.py``,
                     ``pillarize.crop_to_range``)
      -> paint       PointPainting scores appended (painted detectors only; ``painting.py``)
      -> pillarize   pillars with the reference voxelizer's semantics (``pillarize``)
      -> decorate    the 10 (+K painted) pillar point features (``decorate_pillars``)
      -> encoder     graph 1, the pillar feature net (PFN): (P, M, C) -> (P, 64) pillar embeddings   [backend]
      -> scatter     embeddings onto the (1, 64, ny, nx) BEV canvas (``scatter_to_bev``, numpy)
      -> backbone_head  graph 2, BEV backbone and detection head: canvas -> head maps             [backend]
      -> decode      anchor residuals + direction bins of the anchors whose score passes, or centre-head peaks
                     -> candidate boxes
      -> nms         per-class score thresholds, top-k, rotated BEV or circle NMS -> ``Detections``

``PillarDetector`` receives its two graphs as ``PillarBackends`` and owns no I/O: ``artifacts.py`` resolves the model
files (weights -> the two ONNX graphs -> INT8) and builds the backends (``artifacts.build_detector`` does both).
``network_inputs`` gives a cloud's feeds of both graphs through the same stages (``quantize.py`` calibrates on them).

Named detectors are the variants of ``core/models/pointpillars.py`` (``core/models/registry.py``'s ``detectors()``):
``pointpillars_kitti`` and ``centerpoint_pillar`` (OpenPCDet's KITTI range, 0..69.12 m ahead, +-39.68 m to the side,
432 x 496 pillars of 0.16 m) and ``pointpillars_synthetic``, the same network over a quarter of that area
(0..39.68 m ahead, +-19.84 m, 248 x 248 pillars) with the synthetic world's class names and anchors.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ros_mmfusion.core.detection3d.centerpoint import CenterHeadDecoder
from ros_mmfusion.core.detection3d.nms import score_order
from ros_mmfusion.core.detection3d.painting import (
    OUTSIDE_SCORE,
    SegmentationScores,
    paint_points,
    painted_config,
)
from ros_mmfusion.core.detection3d.pillarize import PillarGrid, Pillars, crop_to_range, decorate_pillars
from ros_mmfusion.core.detection3d.postprocess import (
    AnchorHeadDecoder,
    Detections,
    nms_keep,
    select_detections,
)
from ros_mmfusion.core.detection3d.preprocess import pillarize_counted, point_features
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference import Backend
from ros_mmfusion.core.limits import check_range
from ros_mmfusion.core.models.pointpillars import (
    PointPillarsConfig,
    decoder_for,
    group_head_outputs,
    scatter_to_bev,
)

STAGES = ("crop", "paint", "pillarize", "decorate", "encoder", "scatter", "backbone_head", "decode", "nms")
PREPROCESS = ("crop", "paint", "pillarize", "decorate", "scatter")
"""Stages outside the networks before the head maps (the scatter between the two graphs included)."""
POSTPROCESS = ("decode", "nms")


def with_range(config: PointPillarsConfig, point_cloud_range: Sequence[float],
               keep_anchors: bool = True) -> PointPillarsConfig:
    """``config`` over another ``(x_min, y_min, z_min, x_max, y_max, z_max)`` range (metres, LiDAR frame).

    The grid follows (same pillar size) and the head cells cover the new range, so the same weights apply. With
    ``keep_anchors`` an anchor head keeps the anchor layout of the range it came from (``anchor_range``: the
    same anchor centre for the same cell, the lattice extended over the new range), so that the moved detector
    decodes the boxes it was trained to; without it the anchors are laid out over the new extent as OpenPCDet does
    (stride ``extent / (cells - 1)``: anchors shift by up to half a cell against the trained ones; training windows
    use this). Each horizontal extent must hold a multiple of 8 pillars (the backbone's strides 2 x 2 x 2), e.g.
    multiples of 1.28 m with 0.16 m pillars. Every value must lie within +-500 m
    (:data:`~ros_mmfusion.core.limits.MAX_RANGE_M`).
    """
    if len(point_cloud_range) != 6:
        raise ConfigError(f"point_cloud_range needs 6 values, got {list(point_cloud_range)}")
    values = check_range(point_cloud_range, "point_cloud_range")
    grid = PillarGrid(values, config.voxel_size)  # validates the range
    stride = int(np.prod(config.backbone.layer_strides))
    nx, ny, _ = grid.grid_size
    if nx % stride or ny % stride:
        raise ConfigError(f"point_cloud_range {list(values)} gives {nx} x {ny} pillars; both must be multiples of "
                          f"{stride} (the backbone's total stride): extents in steps of "
                          f"{stride * config.voxel_size[0]:g} x {stride * config.voxel_size[1]:g} m")
    if not any(f.name == "anchor_range" for f in dataclasses.fields(config)):  # a centre head (dynamic pillars)
        return dataclasses.replace(config, point_cloud_range=values)
    anchor_range = (config.anchor_range or config.point_cloud_range) if keep_anchors else None
    return dataclasses.replace(config, point_cloud_range=values, anchor_range=anchor_range)


@dataclass(frozen=True)
class PillarBackends:
    """The two graphs of a pillar detector (``artifacts.build_backends`` makes them): ``encoder`` runs
    ``input_features`` ``(P, M, C)`` -> ``pillar_features`` ``(P, 64)``; ``backbone_head`` runs ``spatial_features``
    ``(1, 64, ny, nx)`` -> the head maps (named by the graph: ``cls_preds``, ``box_preds``, ... or per centre head)."""

    encoder: Backend
    backbone_head: Backend


# ---------------------------------------------------------------------------------------------------- the results


@dataclass(frozen=True)
class DetectionResult:
    """One frame's detections and what it took.

    ``detections``: boxes ``(N, 7)`` ``(x, y, z, dx, dy, dz, yaw)`` in the cloud's frame (metres, radians), scores,
    1-based labels into ``class_names``. ``timings_ms``: milliseconds per stage of ``STAGES`` (0 for a stage that did
    not run). ``num_points``: finite points given; ``num_points_in_range`` after cropping; ``num_pillars`` pillars
    encoded; ``num_occupied`` pillar cells the points occupied (more than ``num_pillars`` when ``max_pillars``
    truncated them). ``painted``: None for an unpainted detector, else whether segmentation scores were available.
    """

    detections: Detections
    class_names: tuple[str, ...]
    timings_ms: dict[str, float]
    num_points: int
    num_points_in_range: int
    num_pillars: int
    num_occupied: int
    painted: bool | None = None

    @property
    def truncated(self) -> bool:
        return self.num_occupied > self.num_pillars

    @property
    def names(self) -> list[str]:
        """Class name of every detection."""
        return [self.class_names[int(label) - 1] for label in self.detections.labels]

    @property
    def total_ms(self) -> float:
        return float(sum(self.timings_ms.values()))

    def stage_groups_ms(self) -> dict[str, float]:
        """``preprocess``, ``encoder``, ``backbone_head`` and ``postprocess`` milliseconds."""
        t = self.timings_ms
        return {"preprocess": sum(t[s] for s in PREPROCESS), "encoder": t["encoder"],
                "backbone_head": t["backbone_head"], "postprocess": sum(t[s] for s in POSTPROCESS)}


@dataclass(frozen=True)
class _Frame:
    """A cloud up to the BEV canvas: point counts (finite, in range), pillars, occupied cells, the encoder's input."""

    num_points: int
    num_points_in_range: int
    pillars: Pillars
    occupied: int
    decorated: np.ndarray
    canvas: np.ndarray


@dataclass
class _Laps:
    times: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    last: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.times[stage] += (now - self.last) * 1e3
        self.last = now


# --------------------------------------------------------------------------------------------------- the pipeline


class PillarDetector:
    """Detects objects in LiDAR clouds with a pillar detector (PointPillars or CenterPoint-pillar) on ``backends``.

    ``config``: the unpainted detector configuration; ``paint_channels``: PointPainting score channels appended to
    every point (0: unpainted; the network that runs is ``painted_config(config, paint_channels)``). ``backends``:
    the two graphs of that network (``artifacts.build_backends``; ConfigError when their inputs do not fit).
    ``intensity_scale`` maps the cloud's intensity into the model's units (KITTI-trained checkpoints expect 0..1;
    the synthetic world and many drivers publish 0..255, scale 1/255). ``score_thresholds``: one value or one per
    class in ``class_names`` order; None keeps the configuration's.
    """

    def __init__(self, config: PointPillarsConfig, backends: PillarBackends, *, paint_channels: int = 0,
                 intensity_scale: float = 1.0, score_thresholds: float | Sequence[float] | None = None) -> None:
        self.config = painted_config(config, paint_channels)
        self.paint_channels = paint_channels
        self.grid = self.config.grid
        self.intensity_scale = float(intensity_scale)
        self._decoder = decoder_for(self.config)
        self.encoder: Backend = backends.encoder
        self.backbone_head: Backend = backends.backbone_head
        self.head_outputs = self.backbone_head.info.outputs  # the ONNX file's own names with onnxruntime
        self._check_graph_inputs()
        self.set_score_thresholds(self.config.post_processing.score_thresh if score_thresholds is None
                                  else score_thresholds)

    def _check_graph_inputs(self) -> None:
        """ConfigError when exported graphs do not fit this configuration (an ``onnx_dir`` of another range, or of
        the unpainted detector), instead of a runtime error on every frame."""
        c = self.config
        expected = self._expected_inputs()
        for backend in (self.encoder, self.backbone_head):
            session = getattr(backend, "session", None)  # ONNX Runtime
            for given in session.get_inputs() if session is not None else ():
                want = expected.get(given.name)
                if want and (len(given.shape) != len(want)
                             or any(w is not None and g != w for g, w in zip(given.shape, want, strict=True))):
                    raise ConfigError(f"the ONNX graph's {given.name} is {given.shape} but {c.name} over "
                                      f"{list(c.point_cloud_range)} needs {list(want)}: exported for another "
                                      "configuration?")

    def _expected_inputs(self) -> dict[str, tuple]:
        """The ONNX input shapes this configuration needs (None: any size)."""
        c = self.config
        return {"input_features": (None, c.max_points_per_pillar, c.num_input_features),
                "spatial_features": (1, c.num_bev_features, *self.grid.bev_shape)}

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names

    def set_score_thresholds(self, values: float | Sequence[float]) -> None:
        """Per-class score thresholds (one value for all, or one per class in ``class_names`` order)."""
        thresholds: float | tuple[float, ...]
        if isinstance(values, (int, float, np.number)):
            thresholds = float(values)
        else:
            thresholds = tuple(float(v) for v in values)
            if len(thresholds) == 1:
                thresholds = thresholds[0]
            elif len(thresholds) != len(self.class_names):
                raise ConfigError(f"{len(thresholds)} score thresholds for {len(self.class_names)} classes "
                                  f"{list(self.class_names)}")
        self.score_thresholds = thresholds
        if isinstance(self._decoder, CenterHeadDecoder):
            self._decoder = dataclasses.replace(self._decoder, score_thresh=self.score_thresholds)
        else:
            self._post = dataclasses.replace(self._decoder.post, score_thresh=self.score_thresholds)

    def __call__(self, points: np.ndarray, scores: SegmentationScores | None = None) -> DetectionResult:
        """Detections in ``points`` (structured or ``(N, 4+)``; see ``point_features``), painted with ``scores``
        when the detector is painted (without them every point gets the outside score: unpainted-equivalent)."""
        laps = _Laps()
        frame = self._to_canvas(points, scores, laps)
        maps = self.backbone_head.run({"spatial_features": frame.canvas})
        laps.lap("backbone_head")
        detections = self._postprocess(maps, laps)
        return DetectionResult(detections, self.class_names, laps.times, frame.num_points, frame.num_points_in_range,
                               len(frame.pillars), frame.occupied,
                               None if not self.paint_channels else scores is not None)

    def network_inputs(self, points: np.ndarray, scores: SegmentationScores | None = None
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The feeds of the two graphs for one cloud, made by this pipeline's own stages: the encoder's
        ``{"input_features": (P, M, C)}`` (P may be 0) and the backbone/head's ``{"spatial_features": canvas}`` (the
        canvas of this pipeline's encoder's embeddings)."""
        frame = self._to_canvas(points, scores, _Laps())
        return {"input_features": frame.decorated}, {"spatial_features": frame.canvas}

    def _to_canvas(self, points: np.ndarray, scores: SegmentationScores | None, laps: _Laps) -> _Frame:
        """Stages ``crop`` to ``scatter``: the cloud as the BEV canvas graph 2 takes."""
        features = point_features(points, self.intensity_scale)
        cropped = crop_to_range(features, self.config.point_cloud_range)
        laps.lap("crop")
        if self.paint_channels:
            cropped = paint_points(cropped, scores, self.paint_channels, OUTSIDE_SCORE)
            laps.lap("paint")
        pillars, occupied = pillarize_counted(cropped, self.grid)
        laps.lap("pillarize")
        if len(pillars):
            decorated = decorate_pillars(pillars, self.grid, self.config.vfe.use_absolute_xyz,
                                         self.config.vfe.with_distance)
            laps.lap("decorate")
            embedded = self.encoder.run({"input_features": decorated})["pillar_features"]
        else:  # nothing in range: an empty canvas (an encoder run over zero pillars is not every runtime's friend)
            decorated = np.zeros((0, self.config.max_points_per_pillar, self.config.num_input_features), np.float32)
            embedded = np.zeros((0, self.config.num_bev_features), np.float32)
        laps.lap("encoder")
        canvas = scatter_to_bev(embedded, pillars.coords, self.grid.bev_shape)
        laps.lap("scatter")
        return _Frame(len(features), len(cropped), pillars, occupied, decorated, canvas)

    def _postprocess(self, maps: Mapping[str, np.ndarray], laps: _Laps) -> Detections:
        decoder = self._decoder
        if isinstance(decoder, AnchorHeadDecoder):
            candidates = decoder.passing_candidates(maps["cls_preds"], maps["box_preds"], maps.get("dir_cls_preds"),
                                                    self._post.score_thresh)
            laps.lap("decode")
            detections = select_detections(*candidates, self._post)
            laps.lap("nms")
            return detections
        heads = group_head_outputs(self.head_outputs, [maps[n] for n in self.head_outputs])
        decoded = [decoder.decode(head, i) for i, head in enumerate(heads)]
        laps.lap("decode")
        kept = []
        for boxes, scores, labels in decoded:  # NMS within each head, heads merged by score
            keep = nms_keep(boxes, scores, labels, decoder.nms)
            kept.append((boxes[keep], scores[keep], labels[keep]))
        boxes, scores, labels = (np.concatenate(arrays) for arrays in zip(*kept, strict=True))
        order = score_order(scores)
        laps.lap("nms")
        return Detections(boxes=boxes[order], scores=scores[order], labels=labels[order])

