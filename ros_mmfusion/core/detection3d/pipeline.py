"""The LiDAR 3D detection pipeline (ROS-free): a point cloud in, boxes out, every stage timed.

Stages, in order (``STAGES``)::

    points (structured x, y, z, intensity or (N, 4+))
      -> crop        finite points, intensity scaled, kept where x and y lie in the range (``crop_to_range``)
      -> paint       PointPainting scores appended (painted detectors only; ``painting.py``)
      -> pillarize   pillars with the reference voxelizer's semantics (``pillarize``)
      -> decorate    the 10 (+K painted) pillar point features (``decorate_pillars``)
      -> encoder     graph 1, ``PillarEncoder``: (P, M, C) -> (P, 64) pillar embeddings        [backend]
      -> scatter     embeddings onto the (1, 64, ny, nx) BEV canvas (``scatter_to_bev``, numpy)
      -> backbone_head  graph 2, ``BackboneHead``: canvas -> head maps                       [backend]
      -> decode      anchor residuals + direction bins, or centre-head peaks -> candidate boxes
      -> nms         per-class score thresholds, top-k, rotated BEV or circle NMS -> ``Detections``

The two graphs run on ``torch``, ``onnxruntime`` or ``onnxruntime-int8`` (``core/inference``); the ONNX files are
exported on first use into the cache (``core/onnx_export.cache_dir``), named by the configuration and the weights'
content, as the segmentation pipeline does. Weights are an OpenPCDet checkpoint (``{'model_state': ...}``), our
state_dict or an ``.npz`` of one; without weights the network is randomly initialised from ``seed`` (tests and timing
only).

Named detectors (``DETECTORS``): ``pointpillars_kitti`` and ``centerpoint_pillar`` (OpenPCDet's KITTI range,
0..69.12 m ahead, +-39.68 m to the side, 432 x 496 pillars of 0.16 m) and ``pointpillars_synthetic``, the same
network over a quarter of that area (0..39.68 m ahead, +-19.84 m, 248 x 248 pillars) with the synthetic world's
class names and anchors sized and placed for its objects and its roof LiDAR 1.9 m above the road.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ros_mmfusion.core.codec.pointcloud import field_values, xyz_array
from ros_mmfusion.core.detection3d.centerpoint import CenterHeadDecoder
from ros_mmfusion.core.detection3d.nms import score_order
from ros_mmfusion.core.detection3d.painting import (
    OUTSIDE_SCORE,
    SegmentationScores,
    paint_points,
    painted_config,
    painted_state_dict,
)
from ros_mmfusion.core.detection3d.pillarize import (
    PillarGrid,
    Pillars,
    crop_to_range,
    decorate_pillars,
    pillarize,
)
from ros_mmfusion.core.detection3d.postprocess import (
    AnchorHeadDecoder,
    Detections,
    nms_keep,
    select_detections,
)
from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.inference import Backend, create_backend
from ros_mmfusion.core.limits import check_range
from ros_mmfusion.core.models.pointpillars import (
    VARIANTS,
    AnchorHeadConfig,
    BackboneHead,
    PillarEncoder,
    PointPillarsConfig,
    decoder_for,
    group_head_outputs,
    scatter_to_bev,
)
from ros_mmfusion.core.onnx_export import cache_dir, export_once

STAGES = ("crop", "paint", "pillarize", "decorate", "encoder", "scatter", "backbone_head", "decode", "nms")
PREPROCESS = ("crop", "paint", "pillarize", "decorate", "scatter")
"""Stages outside the networks before the head maps (the scatter between the two graphs included)."""
POSTPROCESS = ("decode", "nms")
PIPELINE_BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")
"""Backends both graphs run on here (``onnxruntime-int8``: both graphs quantized, calibrated on synthetic ``urban_day``
clouds on first use, see ``core/inference/detection3d_calibration.py``; TensorRT needs a pillar-count profile: not
yet)."""
ENCODER_ONNX = "pillar_encoder.onnx"
BACKBONE_HEAD_ONNX = "backbone_head.onnx"
_ONNX_CACHE_VERSION = "pillars-v1"


def _synthetic_variant() -> PointPillarsConfig:
    """OpenPCDet's KITTI PointPillars over the synthetic world's nearer area, with its classes and objects.

    The world's roof LiDAR is 1.9 m above the road and its objects stand 2 cm above it, so every anchor's bottom is at
    -1.88 m; anchor sizes are the world's typical car (4.4 x 1.8 x 1.55 m), pedestrian (0.35 x 0.6 x 1.75 m) and
    cyclist (1.75 x 0.62 x 1.75 m).
    """
    kitti = VARIANTS["pointpillars_kitti"]
    head = kitti.head
    assert isinstance(head, AnchorHeadConfig)
    anchors = tuple(dataclasses.replace(a, class_name=name, anchor_sizes=(size,), anchor_bottom_heights=(-1.88,))
                    for a, name, size in zip(head.anchor_generator, ("car", "pedestrian", "cyclist"),
                                             ((4.4, 1.8, 1.55), (0.35, 0.6, 1.75), (1.75, 0.62, 1.75)), strict=True))
    return dataclasses.replace(kitti, name="pointpillars_synthetic", class_names=("car", "pedestrian", "cyclist"),
                               point_cloud_range=(0.0, -19.84, -3.0, 39.68, 19.84, 1.0),
                               head=dataclasses.replace(head, anchor_generator=anchors))


DETECTORS: dict[str, PointPillarsConfig] = {**VARIANTS, "pointpillars_synthetic": _synthetic_variant()}
"""Named detector configurations the pipeline (and ``detection3d_node``'s ``model`` parameter) knows."""


def detector_config(name: str) -> PointPillarsConfig:
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    return DETECTORS[name]


def with_range(config: PointPillarsConfig, point_cloud_range: Sequence[float]) -> PointPillarsConfig:
    """``config`` over another ``(x_min, y_min, z_min, x_max, y_max, z_max)`` range (metres, LiDAR frame).

    The grid follows (same pillar size); anchors and head cells are laid out over the new range, so the same weights
    apply. Each horizontal extent must hold a multiple of 8 pillars (the backbone's strides 2 x 2 x 2), e.g. multiples
    of 1.28 m with 0.16 m pillars. Every value must lie within +-500 m (:data:`~ros_mmfusion.core.limits.MAX_RANGE_M`).
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
    return dataclasses.replace(config, point_cloud_range=values)


@dataclass(frozen=True)
class DetectorSpec:
    """Which detector, its weights and its deployment files.

    ``config``: the unpainted detector. ``weights``: a checkpoint file (OpenPCDet ``.pth`` with ``model_state``, our
    state_dict ``.pt``/``.pth``, or an ``.npz`` of key -> array); painted or unpainted (an unpainted one is widened
    with zero weights for the painted channels, see ``painting.py``); empty means random weights drawn from ``seed``.
    ``paint_channels``: number of PointPainting score channels (0: unpainted). ``onnx_dir``: a directory holding, or
    to receive on first use, ``pillar_encoder.onnx`` and ``backbone_head.onnx``; empty means the cache.
    """

    config: PointPillarsConfig
    weights: str = ""
    seed: int = 0
    paint_channels: int = 0
    onnx_dir: str = ""

    @classmethod
    def named(cls, name: str, **kwargs) -> DetectorSpec:
        return cls(detector_config(name), **kwargs)

    @property
    def model_config(self) -> PointPillarsConfig:
        """The configuration of the network that runs (painted when ``paint_channels`` > 0)."""
        return painted_config(self.config, self.paint_channels)


def read_checkpoint(path: str | Path) -> Mapping:
    """The mapping stored in a checkpoint file: ``.npz`` through numpy (key -> array), anything else with
    :func:`~ros_mmfusion.core.models.checkpoints.load_weights_file` (``torch.load``, weights only)."""
    from ros_mmfusion.core.models.checkpoints import load_weights_file

    path = Path(path)
    if path.suffix != ".npz":
        return load_weights_file(path)
    if not path.is_file():
        raise ConfigError(f"weights file not found: {path}")
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - numpy raises many types for a bad file
        raise ConfigError(f"cannot read weights {path}: {exc}") from None


def build_module(spec: DetectorSpec):
    """The eval-mode ``PointPillars`` of ``spec`` with its weights loaded (strict)."""
    import torch

    from ros_mmfusion.core.models.pointpillars import build_model, convert_upstream_checkpoint, load_checkpoint

    state: Mapping[str, torch.Tensor]
    if spec.weights:
        state = convert_upstream_checkpoint(read_checkpoint(spec.weights))
    else:
        with torch.random.fork_rng(devices=[]):  # reproducible weights without touching the caller's generator
            torch.manual_seed(spec.seed)
            state = build_model(spec.config).state_dict()
    if spec.paint_channels:
        state = painted_state_dict(state, spec.config, spec.paint_channels)
    model = build_model(spec.model_config)
    load_checkpoint(model, state, strict=True)
    return model.eval()


def onnx_files(spec: DetectorSpec) -> tuple[Path, Path]:
    """``(pillar_encoder.onnx, backbone_head.onnx)`` of ``spec``, exported on first use.

    Without ``onnx_dir`` they live in ``<cache>/onnx/<name>-<hash>/``, the hash covering the configuration and the
    weights' content (or the seed of random weights).
    """
    from ros_mmfusion.core.models.pointpillars import export_split

    if spec.onnx_dir:
        directory = Path(spec.onnx_dir)
    else:
        digest = hashlib.sha256(f"{_ONNX_CACHE_VERSION}/{spec.model_config!r}".encode())
        digest.update(Path(spec.weights).read_bytes() if spec.weights else f"seed={spec.seed}".encode())
        directory = cache_dir() / "onnx" / f"{spec.model_config.name}-{digest.hexdigest()[:16]}"
    files = (directory / ENCODER_ONNX, directory / BACKBONE_HEAD_ONNX)
    if directory.exists() and not all(f.is_file() for f in files):
        raise ConfigError(f"ONNX directory {directory} lacks {ENCODER_ONNX} or {BACKBONE_HEAD_ONNX}")
    export_once(directory, lambda tmp: export_split(build_module(spec), tmp))
    return files


# ------------------------------------------------------------------------------------------------------ the cloud


def point_features(points: np.ndarray, intensity_scale: float = 1.0) -> np.ndarray:
    """``(N, 4)`` float32 ``x, y, z, intensity`` of the finite points of a cloud; intensity times ``intensity_scale``.

    ``points`` is a structured cloud (as decoded from a PointCloud2, any field layout, organized or not) with ``x``,
    ``y``, ``z`` and ``intensity`` fields, or a numeric ``(N, 4+)`` array whose first four columns are those. Points
    with a non-finite value among the four are dropped. MessageFormatError when intensity (or x, y, z) is missing.
    """
    if not isinstance(points, np.ndarray):
        raise MessageFormatError(f"points: expected a numpy array, got {type(points).__name__}")
    if points.dtype.names is not None:
        intensity = field_values(points, "intensity")
        if intensity.ndim != 1:
            raise MessageFormatError(f"cloud field 'intensity' has count {intensity.shape[1]}, expected 1")
        out = np.empty((intensity.shape[0], 4), np.float32)
        out[:, :3] = xyz_array(points, remove_nans=False)
        out[:, 3] = intensity
    elif points.ndim == 2 and points.shape[1] >= 4 and np.issubdtype(points.dtype, np.number):
        out = np.array(points[:, :4], dtype=np.float32)
    else:
        raise MessageFormatError(f"points: expected a structured cloud with x, y, z, intensity or an (N, 4+) numeric "
                                 f"array, got shape {points.shape} {points.dtype}")
    if intensity_scale != 1.0:
        out[:, 3] *= np.float32(intensity_scale)
    finite = np.isfinite(out).all(axis=1)
    return out if finite.all() else out[finite]


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
    """Detects objects in LiDAR clouds with a pillar detector (PointPillars or CenterPoint-pillar) on ``backend``.

    ``intensity_scale`` maps the cloud's intensity into the model's units (KITTI-trained checkpoints expect 0..1;
    the synthetic world and many drivers publish 0..255, scale 1/255). ``score_thresholds``: one value or one per
    class in ``class_names`` order; None keeps the configuration's.
    """

    def __init__(self, spec: DetectorSpec, backend: str = "onnxruntime", device: str = "cpu", precision: str = "fp32",
                 threads: int = 0, intensity_scale: float = 1.0,
                 score_thresholds: float | Sequence[float] | None = None) -> None:
        if backend not in PIPELINE_BACKENDS:
            raise ConfigError(f"the detection pipeline runs on {' or '.join(PIPELINE_BACKENDS)}, not {backend!r}")
        self.spec = spec
        self.config = spec.model_config
        self.grid = self.config.grid
        self.intensity_scale = float(intensity_scale)
        self._decoder = decoder_for(self.config)
        module = build_module(spec) if backend == "torch" else None
        encoder, backbone_head = module.split() if module is not None else (None, None)
        encoder_path, head_path = self._onnx_paths(spec, backend)
        self.encoder: Backend = create_backend(
            backend, input_names=PillarEncoder.input_names, output_names=PillarEncoder.output_names,
            module_factory=lambda: encoder, onnx_path=encoder_path, device=device, precision=precision,
            threads=threads)
        self.backbone_head: Backend = create_backend(
            backend, input_names=BackboneHead.input_names,
            output_names=backbone_head.output_names if backbone_head is not None else (),
            module_factory=lambda: backbone_head, onnx_path=head_path, device=device, precision=precision,
            threads=threads)
        self.head_outputs = self.backbone_head.info.outputs  # the ONNX file's own names with onnxruntime
        self._check_graph_inputs()
        self.set_score_thresholds(self.config.post_processing.score_thresh if score_thresholds is None
                                  else score_thresholds)

    def _onnx_paths(self, spec: DetectorSpec, backend: str) -> tuple[Path | None, Path | None]:
        """The fp32 exports for ``onnxruntime``, their INT8 (QDQ) models for ``onnxruntime-int8``."""
        if backend == "onnxruntime":
            return onnx_files(spec)
        if backend == "onnxruntime-int8":
            from ros_mmfusion.core.inference.detection3d_calibration import int8_onnx_files

            return int8_onnx_files(spec, self.intensity_scale)
        return None, None

    def _check_graph_inputs(self) -> None:
        """ConfigError when exported graphs do not fit this configuration (an ``onnx_dir`` of another range, or of
        the unpainted detector), instead of a runtime error on every frame."""
        c = self.config
        expected = {"input_features": (None, c.max_points_per_pillar, c.num_input_features),
                    "spatial_features": (1, c.num_bev_features, *self.grid.bev_shape)}
        for backend in (self.encoder, self.backbone_head):
            session = getattr(backend, "session", None)  # ONNX Runtime
            for given in session.get_inputs() if session is not None else ():
                want = expected.get(given.name)
                if want and (len(given.shape) != len(want)
                             or any(w is not None and g != w for g, w in zip(given.shape, want, strict=True))):
                    raise ConfigError(f"the ONNX graph's {given.name} is {given.shape} but {c.name} over "
                                      f"{list(c.point_cloud_range)} needs {list(want)}: exported for another "
                                      "configuration?")

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names

    @property
    def paint_channels(self) -> int:
        return self.spec.paint_channels

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

    def pillars(self, points: np.ndarray) -> tuple[Pillars, int]:
        """The cropped (painted) ``(N, C)`` points as pillars, and how many cells they occupy before truncation."""
        pillars = pillarize(points, self.grid)
        occupied = len(pillars)
        if occupied == self.grid.max_pillars:  # maybe truncated: count the cells (cheap: one slot per pillar)
            everything = dataclasses.replace(self.grid, max_points_per_pillar=1, max_pillars=np.iinfo(np.int32).max)
            occupied = len(pillarize(points[:, :3], everything))
        return pillars, occupied

    def __call__(self, points: np.ndarray, scores: SegmentationScores | None = None) -> DetectionResult:
        """Detections in ``points`` (structured or ``(N, 4+)``; see ``point_features``), painted with ``scores``
        when the detector is painted (without them every point gets the outside score: unpainted-equivalent)."""
        laps = _Laps()
        features = point_features(points, self.intensity_scale)
        cropped = crop_to_range(features, self.config.point_cloud_range)
        laps.lap("crop")
        if self.paint_channels:
            cropped = paint_points(cropped, scores, self.paint_channels, OUTSIDE_SCORE)
            laps.lap("paint")
        pillars, occupied = self.pillars(cropped)
        laps.lap("pillarize")
        if len(pillars):
            decorated = decorate_pillars(pillars, self.grid, self.config.vfe.use_absolute_xyz,
                                         self.config.vfe.with_distance)
            laps.lap("decorate")
            embedded = self.encoder.run({"input_features": decorated})["pillar_features"]
        else:  # nothing in range: an empty canvas (an encoder run over zero pillars is not every runtime's friend)
            embedded = np.zeros((0, self.config.num_bev_features), np.float32)
        laps.lap("encoder")
        canvas = scatter_to_bev(embedded, pillars.coords, self.grid.bev_shape)
        laps.lap("scatter")
        maps = self.backbone_head.run({"spatial_features": canvas})
        laps.lap("backbone_head")
        detections = self._postprocess(maps, laps)
        return DetectionResult(detections, self.class_names, laps.times, len(features), len(cropped), len(pillars),
                               occupied, None if not self.paint_channels else scores is not None)

    def _postprocess(self, maps: Mapping[str, np.ndarray], laps: _Laps) -> Detections:
        decoder = self._decoder
        if isinstance(decoder, AnchorHeadDecoder):
            candidates = decoder.candidates(maps["cls_preds"], maps["box_preds"], maps.get("dir_cls_preds"))
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

