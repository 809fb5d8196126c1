"""CenterPoint-PointPillar with dynamic pillars, as released for nuScenes (Yin et al., CVPR 2021), as in OpenPCDet.

Source: OpenPCDet ``tools/cfgs/nuscenes_models/cbgs_dyn_pp_centerpoint.yaml`` (the model-zoo row of the released
``cbgs_pp_centerpoint_nds6070.pth``, NDS 60.70), detector ``CenterPoint``. Its stages, each chosen by configuration:

1. ``vfe`` (``DynamicPillarVFE``, config name ``DynPillarVFE``): *dynamic* pillars, built inside the network from the
   raw points (``dynamic_pillars``): no per-pillar point cap and no pillar limit. A point's cell is
   ``floor((p - range_min) / voxel_size)`` in float32 for x and y; points whose cell lies outside the grid are
   dropped (so a point at exactly ``x = x_max`` or ``y = y_max``, which the dataset's inclusive range mask keeps, is
   dropped here); z is never checked. Pillars are the sorted unique keys ``cx * ny + cy`` (ordered by ``(cx, cy)``).
   Each point is decorated (``decorate_dynamic_pillars``) with its offsets from the mean of its pillar's points
   (``f_cluster``, a scatter-mean) and from its pillar's column centre (``f_center``), then passed through
   ``PFNLayerV2`` layers: ``Linear -> BatchNorm1d -> ReLU`` per point, a scatter-max over the pillar's points (only
   real points: there are no padded slots), concatenated back to every point except after the last layer.
   Scatter-mean and scatter-max are plain torch (``index_add_`` / ``scatter_reduce_``), bitwise equal to
   ``torch_scatter``'s.
2. ``map_to_bev`` (``PointPillarScatter``), 3. ``backbone_2d`` (``BaseBEVBackbone``) and 4. ``dense_head``
   (``CenterHead``, one ``SeparateHead`` per class group, with velocity) are the blocks of
   :mod:`ros_mmfusion.core.models.pointpillars`, shared with the static-pillar detectors.

Input points are ``(N, 5)`` float32 ``x, y, z, intensity, time lag`` in the LiDAR frame (metres; intensity raw 0..255
as nuScenes stores it; time lag in seconds of the sweep a point came from, 0 for the current one, see
``core/detection3d/sweeps.py``). Module and parameter names are OpenPCDet's, so an OpenPCDet checkpoint of this
structure loads without renaming (``convert_upstream_checkpoint``). Box decoding (up to the NMS input, then rotated-BEV
NMS per head) is ``core/detection3d/centerpoint.py``'s ``CenterHeadDecoder`` (``decoder``).

Deployment: the dense part (BEV canvas -> head maps) is ``BackboneHead`` (``export_dense``, one ONNX graph); the
pillarization, pillar feature net and scatter stay in torch, whose scatter ops have no portable dense form.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ros_mmfusion.core.detection3d.centerpoint import CenterHeadDecoder
from ros_mmfusion.core.detection3d.pillarize import PillarGrid, num_decorated_features
from ros_mmfusion.core.detection3d.postprocess import NmsConfig, PostProcessConfig
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.models import pointpillars
from ros_mmfusion.core.models.checkpoints import LoadReport, load_state
from ros_mmfusion.core.models.pointpillars import (
    BN_EPS,
    BN_MOMENTUM,
    BackboneHead,
    BaseBEVBackbone,
    BEVBackboneConfig,
    CenterHead,
    CenterHeadConfig,
    PillarVFEConfig,
    PointPillarScatter,
)

DYNAMIC_VFE_NAMES = ("DynPillarVFE", "DynamicPillarVFE")
"""OpenPCDet's names of the dynamic pillar VFE (the config name and the class name)."""


# ----------------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DynamicPillarsConfig:
    """A dynamic-pillar CenterPoint: data range and pillar size (metres), the four stages, and post-processing.

    ``num_point_features``: channels per input point (5: x, y, z, intensity, time lag).
    """

    name: str
    class_names: tuple[str, ...]
    point_cloud_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float]
    head: CenterHeadConfig
    num_point_features: int = 5
    vfe: PillarVFEConfig = field(default_factory=lambda: PillarVFEConfig(num_filters=(64, 64)))
    num_bev_features: int = 64
    backbone: BEVBackboneConfig = field(default_factory=BEVBackboneConfig)
    post_processing: PostProcessConfig = field(default_factory=PostProcessConfig)

    @property
    def grid(self) -> PillarGrid:
        """The pillar grid (its point and pillar caps are not used: pillars are dynamic)."""
        return PillarGrid(self.point_cloud_range, self.voxel_size)

    @property
    def num_input_features(self) -> int:
        """Channels of a decorated point (11 for x, y, z, intensity, time lag with absolute xyz)."""
        return num_decorated_features(self.num_point_features, self.vfe.use_absolute_xyz, self.vfe.with_distance)

    @classmethod
    def from_openpcdet(cls, cfg: Mapping, name: str = "openpcdet") -> DynamicPillarsConfig:
        """From an OpenPCDet config mapping (``CLASS_NAMES``, ``DATA_CONFIG``, ``MODEL``; ``_BASE_CONFIG_`` merged) of
        a ``CenterPoint`` with ``DynPillarVFE``; ConfigError naming the key for anything else."""
        try:
            model, data = cfg["MODEL"], cfg["DATA_CONFIG"]
            class_names = tuple(cfg["CLASS_NAMES"])
            voxel_step = next(p for p in data["DATA_PROCESSOR"] if p["NAME"].startswith("transform_points_to_voxels"))
            vfe_cfg, bev, bb, head = model["VFE"], model["MAP_TO_BEV"], model["BACKBONE_2D"], model["DENSE_HEAD"]
        except (KeyError, StopIteration) as exc:
            raise ConfigError(f"OpenPCDet config lacks {exc!s} needed for a dynamic-pillar CenterPoint") from None
        for key, value, expected in (("MODEL.VFE.NAME", vfe_cfg["NAME"], DYNAMIC_VFE_NAMES),
                                     ("MODEL.MAP_TO_BEV.NAME", bev["NAME"], ("PointPillarScatter",)),
                                     ("MODEL.BACKBONE_2D.NAME", bb["NAME"], ("BaseBEVBackbone",)),
                                     ("MODEL.DENSE_HEAD.NAME", head["NAME"], ("CenterHead",))):
            if value not in expected:
                raise ConfigError(f"{key} is {value!r}; only {' or '.join(map(repr, expected))} is supported")
        used = data.get("POINT_FEATURE_ENCODING", {}).get("used_feature_list", ["x", "y", "z", "intensity"])
        return cls(name=name, class_names=class_names,
                   point_cloud_range=tuple(float(v) for v in data["POINT_CLOUD_RANGE"]),
                   voxel_size=tuple(float(v) for v in voxel_step["VOXEL_SIZE"]),
                   head=CenterHeadConfig.from_openpcdet(head, class_names), num_point_features=len(used),
                   vfe=PillarVFEConfig.from_openpcdet(vfe_cfg), num_bev_features=int(bev["NUM_BEV_FEATURES"]),
                   backbone=BEVBackboneConfig.from_openpcdet(bb),
                   post_processing=PostProcessConfig.from_openpcdet(head.get("POST_PROCESSING", {})))


NUSCENES_CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
                    "pedestrian", "traffic_cone")
"""nuScenes detection classes in the order of OpenPCDet's nuScenes configs (label ``i + 1``)."""

VARIANTS: dict[str, DynamicPillarsConfig] = {
    # OpenPCDet cbgs_dyn_pp_centerpoint.yaml: 102.4 m square at 0.2 m (512 x 512 pillars), 6 heads over 10 classes
    # with velocity, feature-map stride 4 (128 x 128 head maps), rotated-BEV NMS per head (IoU 0.2, 1000 in, 83 out).
    "centerpoint_pillar_nuscenes": DynamicPillarsConfig(
        name="centerpoint_pillar_nuscenes", class_names=NUSCENES_CLASSES,
        point_cloud_range=(-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), voxel_size=(0.2, 0.2, 8.0),
        head=CenterHeadConfig(
            class_names_each_head=(("car",), ("truck", "construction_vehicle"), ("bus", "trailer"), ("barrier",),
                                   ("motorcycle", "bicycle"), ("pedestrian", "traffic_cone")),
            shared_conv_channel=64, use_bias_before_norm=True, num_hm_conv=2,
            head_dict=(("center", 2, 2), ("center_z", 1, 2), ("dim", 3, 2), ("rot", 2, 2), ("vel", 2, 2)),
            feature_map_stride=4, max_obj_per_sample=500,
            post_center_limit_range=(-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)),
        num_point_features=5, vfe=PillarVFEConfig(num_filters=(64, 64)),
        backbone=BEVBackboneConfig(layer_nums=(3, 5, 5), layer_strides=(2, 2, 2), num_filters=(64, 128, 256),
                                   upsample_strides=(0.5, 1, 2), num_upsample_filters=(128, 128, 128)),
        post_processing=PostProcessConfig(score_thresh=0.1, nms=NmsConfig("rotated", 0.2, 1000, 83))),
}
"""Named dynamic-pillar CenterPoint configurations; ``build_model(name)`` makes the network."""


# ---------------------------------------------------------------------------------------------- dynamic pillars


@dataclass(frozen=True)
class DynamicPillars:
    """Points grouped into dynamic pillars.

    ``points`` ``(M, C)`` float32: the input points whose cell lies in the grid, in input order; ``cells`` ``(M, 2)``
    int64 their ``(cx, cy)``; ``pillar_index`` ``(M,)`` int64 the pillar of each; ``coords`` ``(P, 4)`` int32
    ``(batch 0, z 0, cy, cx)`` of each pillar, pillars ordered by ascending ``(cx, cy)``.
    """

    points: Tensor
    cells: Tensor
    pillar_index: Tensor
    coords: Tensor

    @property
    def num_pillars(self) -> int:
        return int(self.coords.shape[0])


def as_points(points: np.ndarray | Tensor) -> Tensor:
    """``(N, C)`` float32 tensor of a numpy array or tensor of points (no copy where already one)."""
    tensor = torch.from_numpy(np.ascontiguousarray(points)) if isinstance(points, np.ndarray) else points
    if tensor.ndim != 2:
        raise ConfigError(f"points must be (N, C), got shape {tuple(tensor.shape)}")
    return tensor.to(torch.float32)


def dynamic_pillars(points: np.ndarray | Tensor, grid: PillarGrid) -> DynamicPillars:
    """The points ``(N, C)`` (x, y, z first; metres, LiDAR frame) grouped into the pillars of ``grid``.

    Cells are ``floor((xy - range_min) / voxel_size)`` in float32, as upstream; points with a cell outside
    ``[0, nx) x [0, ny)`` or a non-finite coordinate are dropped; z is not checked.
    """
    points = as_points(points)
    lo = torch.from_numpy(grid.range_min[:2].copy())
    size = torch.tensor(grid.voxel_size[:2], dtype=torch.float32)
    nx, ny, _ = grid.grid_size
    finite = torch.isfinite(points[:, :3]).all(dim=1)
    cells = torch.floor((torch.where(finite[:, None], points[:, :2], lo - 1) - lo) / size).long()
    inside = finite & (cells >= 0).all(dim=1) & (cells[:, 0] < nx) & (cells[:, 1] < ny)
    points, cells = points[inside], cells[inside]
    unique, inverse = torch.unique(cells[:, 0] * ny + cells[:, 1], sorted=True, return_inverse=True)
    zeros = torch.zeros_like(unique)
    coords = torch.stack([zeros, zeros, unique % ny, unique // ny], dim=1).to(torch.int32)
    return DynamicPillars(points, cells, inverse, coords)


def scatter_mean(values: Tensor, index: Tensor, size: int) -> Tensor:
    """``(size, C)`` mean of the rows of ``values`` ``(M, C)`` per ``index`` ``(M,)`` (0 where none)."""
    sums = values.new_zeros((size, values.shape[1])).index_add_(0, index, values)
    count = torch.bincount(index, minlength=size).clamp_(min=1).to(values.dtype)
    return sums / count[:, None]


def scatter_max(values: Tensor, index: Tensor, size: int) -> Tensor:
    """``(size, C)`` maximum of the rows of ``values`` ``(M, C)`` per ``index`` ``(M,)`` (0 where none)."""
    out = values.new_zeros((size, values.shape[1]))
    return out.scatter_reduce_(0, index[:, None].expand_as(values), values, "amax", include_self=False)


def decorate_dynamic_pillars(pillars: DynamicPillars, grid: PillarGrid, use_absolute_xyz: bool = True,
                             with_distance: bool = False) -> Tensor:
    """``(M, C')`` float32 input of the pillar feature net, one row per point of ``pillars``.

    Channels: the point features (without x, y, z unless ``use_absolute_xyz``), ``x - x_mean, y - y_mean, z - z_mean``
    over the pillar's points, ``x - x_c, y - y_c, z - z_c`` from the pillar's column centre, then ``|xyz|`` when
    ``with_distance``. The centre is ``c * voxel + (voxel / 2 + range_min)`` evaluated as upstream does: two float32
    operations with the offset computed in double from the float32 range.
    """
    xyz = pillars.points[:, :3]
    mean = scatter_mean(xyz, pillars.pillar_index, pillars.num_pillars)
    f_cluster = xyz - mean[pillars.pillar_index]
    voxel, low = grid.voxel_size, [float(v) for v in grid.range_min]
    cells = pillars.cells.to(xyz.dtype)
    f_center = torch.stack([xyz[:, 0] - (cells[:, 0] * voxel[0] + (voxel[0] / 2 + low[0])),
                            xyz[:, 1] - (cells[:, 1] * voxel[1] + (voxel[1] / 2 + low[1])),
                            xyz[:, 2] - (voxel[2] / 2 + low[2])], dim=1)
    parts = [pillars.points if use_absolute_xyz else pillars.points[:, 3:], f_cluster, f_center]
    if with_distance:
        parts.append(torch.linalg.vector_norm(xyz, dim=1, keepdim=True))
    return torch.cat(parts, dim=1)


# ----------------------------------------------------------------------------------------------------------- stages


class PFNLayerV2(nn.Module):
    """``Linear -> BatchNorm1d -> ReLU`` per point, then a scatter-max over each pillar's points.

    The last layer returns the ``(P, C)`` pillar embeddings; earlier ones concatenate the pillar maximum to every
    point (half the channels each).
    """

    def __init__(self, in_channels: int, out_channels: int, use_norm: bool = True, last_layer: bool = False) -> None:
        super().__init__()
        self.last_vfe = last_layer
        if not last_layer:
            out_channels = out_channels // 2
        self.linear = nn.Linear(in_channels, out_channels, bias=not use_norm)
        self.norm = nn.BatchNorm1d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM) if use_norm else nn.Identity()

    def forward(self, features: Tensor, pillar_index: Tensor, num_pillars: int) -> Tensor:
        x = torch.relu(self.norm(self.linear(features)))
        pooled = scatter_max(x, pillar_index, num_pillars)
        return pooled if self.last_vfe else torch.cat([x, pooled[pillar_index]], dim=1)


class DynamicPillarVFE(nn.Module):
    """Pillar feature net over decorated points ``(M, C_in)`` with their pillar index -> ``(P, C_out)`` embeddings."""

    def __init__(self, num_input_features: int, num_filters: Sequence[int] = (64, 64), use_norm: bool = True) -> None:
        super().__init__()
        widths = [num_input_features, *num_filters]
        self.pfn_layers = nn.ModuleList(
            PFNLayerV2(widths[i], widths[i + 1], use_norm, last_layer=i == len(num_filters) - 1)
            for i in range(len(num_filters)))
        self.num_output_features = widths[-1]

    def forward(self, features: Tensor, pillar_index: Tensor, num_pillars: int) -> Tensor:
        x = features
        for layer in self.pfn_layers:
            x = layer(x, pillar_index, num_pillars)
        return x


# ------------------------------------------------------------------------------------------------------------ model


class CenterPointPillar(nn.Module):
    """The detector: dynamic pillars -> ``vfe`` -> ``map_to_bev`` -> ``backbone_2d`` -> ``dense_head``.

    ``forward(points)`` takes ``(N, C)`` points (one sweep or accumulated sweeps, see the module docstring) and returns
    the head maps (``output_names``: ``<map>_<head>``), NCHW with one batch.
    """

    def __init__(self, config: DynamicPillarsConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("global_step", torch.zeros(1, dtype=torch.long))
        self.vfe = DynamicPillarVFE(config.num_input_features, config.vfe.num_filters, config.vfe.use_norm)
        if self.vfe.num_output_features != config.num_bev_features:
            raise ConfigError(f"MAP_TO_BEV NUM_BEV_FEATURES {config.num_bev_features} != VFE output "
                              f"{self.vfe.num_output_features}")
        self.map_to_bev = PointPillarScatter(config.num_bev_features, config.grid.bev_shape)
        self.backbone_2d = BaseBEVBackbone(config.num_bev_features, config.backbone)
        self.dense_head = CenterHead(self.backbone_2d.num_bev_features, config.head)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.dense_head.output_names

    def pillars(self, points: np.ndarray | Tensor) -> DynamicPillars:
        """The dynamic pillars of ``points`` ``(N, num_point_features)``."""
        points = as_points(points)
        if points.shape[1] != self.config.num_point_features:
            raise ConfigError(f"{self.config.name} takes {self.config.num_point_features} features per point, got "
                              f"{points.shape[1]}")
        return dynamic_pillars(points, self.config.grid)

    def encode(self, pillars: DynamicPillars) -> Tensor:
        """``(P, C)`` pillar embeddings of ``pillars`` (the ``vfe`` stage)."""
        vfe = self.config.vfe
        features = decorate_dynamic_pillars(pillars, self.config.grid, vfe.use_absolute_xyz, vfe.with_distance)
        return self.vfe(features, pillars.pillar_index, pillars.num_pillars)

    def forward(self, points: Tensor) -> tuple[Tensor, ...]:
        pillars = self.pillars(points)
        spatial_features = self.map_to_bev(self.encode(pillars), pillars.coords)
        return self.dense_head(self.backbone_2d(spatial_features))

    def dense(self) -> BackboneHead:
        """The dense part as one graph: BEV canvas ``(1, C, ny, nx)`` -> head maps (shares this model's weights)."""
        return BackboneHead(self.backbone_2d, self.dense_head)


def build_model(variant: str | DynamicPillarsConfig) -> CenterPointPillar:
    """A randomly initialised detector for a named variant (``VARIANTS``) or a configuration."""
    if isinstance(variant, str):
        if variant not in VARIANTS:
            raise ConfigError(f"unknown dynamic-pillar CenterPoint variant {variant!r}; known: {sorted(VARIANTS)}")
        variant = VARIANTS[variant]
    return CenterPointPillar(variant)


def decoder(config: DynamicPillarsConfig) -> CenterHeadDecoder:
    """The post-processing that turns this configuration's head maps into ``Detections`` (boxes ``(N, 9)``:
    ``x, y, z, dx, dy, dz, yaw, vx, vy``)."""
    return pointpillars.decoder_for(config)  # type: ignore[arg-type] - a centre head reads only shared fields


# ------------------------------------------------------------------------------------------------------ checkpoints


def convert_upstream_checkpoint(obj) -> OrderedDict[str, Tensor]:
    """An OpenPCDet checkpoint of this structure as this module's state_dict (pure: the input is not modified).

    OpenPCDet's ``CenterPoint`` with ``DynPillarVFE`` names its parameters as this module does (``vfe.pfn_layers.*``,
    ``backbone_2d.*``, ``dense_head.shared_conv.*``, ``dense_head.heads_list.<h>.<map>.*``, ``global_step``), so the
    mapping is the identity on names; the container and dtype handling are those of the pillar detectors
    (:func:`ros_mmfusion.core.models.pointpillars.convert_upstream_checkpoint`: ``{'model_state': ...}`` or a bare
    mapping, ``module.`` prefixes removed, half precision widened to float32, integer buffers int64).
    """
    return pointpillars.convert_upstream_checkpoint(obj)


def load_checkpoint(model: nn.Module, obj, strict: bool = True) -> LoadReport:
    """Load an OpenPCDet checkpoint (see ``convert_upstream_checkpoint``) into ``model``; ``strict`` as in
    :func:`~ros_mmfusion.core.models.checkpoints.load_state`."""
    return load_state(model, convert_upstream_checkpoint(obj), strict)


# ------------------------------------------------------------------------------------------------------------- ONNX


def export_dense(model: CenterPointPillar, path: str | Path, bev_shape: tuple[int, int] | None = None,
                 opset: int | None = None) -> Path:
    """Export the dense part (``dense()``: BEV canvas -> head maps) to ``path``; ``bev_shape`` defaults to the
    grid's ``(ny, nx)`` (a smaller one gives a graph for a cropped canvas)."""
    from ros_mmfusion.core.onnx_export import OPSET, export_onnx

    dense = model.dense()
    ny, nx = bev_shape or model.config.grid.bev_shape
    canvas = torch.zeros(1, model.config.num_bev_features, ny, nx)
    return export_onnx(dense, (canvas,), Path(path), dense.input_names, dense.output_names, None, opset or OPSET)
