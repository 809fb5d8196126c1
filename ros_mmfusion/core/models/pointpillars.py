"""PointPillars (Lang et al., CVPR 2019) with an anchor head or a CenterPoint-style centre head, as in OpenPCDet.

The detector is four named stages, each chosen by configuration as in OpenPCDet's ``Detector3DTemplate``:

1. ``vfe`` (``PillarVFE``): a pillar feature net. Each point of a pillar is decorated (offsets from the pillar's point
   mean and from its column centre; see ``ros_mmfusion.core.detection3d.pillarize.decorate_pillars``, which runs
   outside the network), passed through ``Linear -> BatchNorm -> ReLU`` (the ``PFNLayer``) and max-pooled over the
   pillar's point slots (padded slots included, as in the reference) into one embedding per pillar.
2. ``map_to_bev`` (``PointPillarScatter``): pillar embeddings written into a dense bird's-eye-view canvas
   ``(1, C, ny, nx)`` at their cells (``scatter_to_bev``); empty cells are zero. No parameters.
3. ``backbone_2d`` (``BaseBEVBackbone``): strided convolution blocks, each upsampled back by a transposed convolution
   and concatenated.
4. ``dense_head``: ``AnchorHeadSingle`` (1x1 convolutions giving class logits, box residuals and direction logits for
   every anchor) or ``CenterHead`` (a shared 3x3 convolution, then per class group a heatmap and box regression maps).

Module and parameter names are OpenPCDet's, so ``{'model_state': ...}`` checkpoints load without renaming
(``convert_upstream_checkpoint``, ``load_checkpoint``). Deployment follows Autoware's two-graph split:
``PillarEncoder`` (decorated pillar points -> embeddings, dynamic pillar count) and ``BackboneHead`` (BEV canvas ->
head maps), with the scatter between them outside any network. Everything exported is dense (no in-place slice
assignment, no data-dependent control flow). Post-processing lives in ``ros_mmfusion.core.detection3d``;
``decoder_for`` builds the matching decoder from a variant's configuration.

Named variants are data (``VARIANTS``): ``pointpillars_kitti`` is OpenPCDet's ``kitti_models/pointpillar.yaml``;
``centerpoint_pillar`` is the same trunk with a centre head (one head for the three KITTI classes, circle NMS);
``pointpillars_synthetic`` is ``pointpillars_kitti`` over a quarter of its area with the synthetic world's classes and
anchors (``core/sim``).
"""
from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ros_mmfusion.core.detection3d.anchors import AnchorClassConfig, anchors_per_location
from ros_mmfusion.core.detection3d.box_coder import DirectionClassifier, ResidualCoder
from ros_mmfusion.core.detection3d.centerpoint import CenterHeadDecoder
from ros_mmfusion.core.detection3d.pillarize import PillarGrid, num_decorated_features
from ros_mmfusion.core.detection3d.postprocess import AnchorHeadDecoder, NmsConfig, PostProcessConfig
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.models.checkpoints import LoadReport, load_state

BN_EPS = 1e-3
"""BatchNorm epsilon of the pillar feature net and the BEV backbone (OpenPCDet); the centre head uses PyTorch's 1e-5."""
BN_MOMENTUM = 0.01


# ----------------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class PillarVFEConfig:
    """OpenPCDet ``VFE`` (``PillarVFE``)."""

    num_filters: tuple[int, ...] = (64,)
    use_norm: bool = True
    with_distance: bool = False
    use_absolute_xyz: bool = True

    @classmethod
    def from_openpcdet(cls, vfe: Mapping) -> PillarVFEConfig:
        """From an OpenPCDet ``MODEL.VFE`` mapping (``PillarVFE`` or ``DynPillarVFE``: the same keys)."""
        return cls(num_filters=tuple(int(v) for v in vfe["NUM_FILTERS"]), use_norm=bool(vfe.get("USE_NORM", True)),
                   with_distance=bool(vfe.get("WITH_DISTANCE", False)),
                   use_absolute_xyz=bool(vfe.get("USE_ABSLOTE_XYZ", True)))


@dataclass(frozen=True)
class BEVBackboneConfig:
    """OpenPCDet ``BACKBONE_2D`` (``BaseBEVBackbone``); upsample strides below 1 use a strided convolution."""

    layer_nums: tuple[int, ...] = (3, 5, 5)
    layer_strides: tuple[int, ...] = (2, 2, 2)
    num_filters: tuple[int, ...] = (64, 128, 256)
    upsample_strides: tuple[float, ...] = (1, 2, 4)
    num_upsample_filters: tuple[int, ...] = (128, 128, 128)
    use_conv_for_no_stride: bool = False

    @classmethod
    def from_openpcdet(cls, bb: Mapping) -> BEVBackboneConfig:
        """From an OpenPCDet ``MODEL.BACKBONE_2D`` mapping."""
        return cls(layer_nums=tuple(int(v) for v in bb["LAYER_NUMS"]),
                   layer_strides=tuple(int(v) for v in bb["LAYER_STRIDES"]),
                   num_filters=tuple(int(v) for v in bb["NUM_FILTERS"]),
                   upsample_strides=tuple(float(v) if float(v) < 1 else int(v) for v in bb.get("UPSAMPLE_STRIDES", [])),
                   num_upsample_filters=tuple(int(v) for v in bb.get("NUM_UPSAMPLE_FILTERS", [])),
                   use_conv_for_no_stride=bool(bb.get("USE_CONV_FOR_NO_STRIDE", False)))


@dataclass(frozen=True)
class AnchorHeadConfig:
    """OpenPCDet ``DENSE_HEAD`` ``AnchorHeadSingle``: anchors per class and the direction classifier."""

    anchor_generator: tuple[AnchorClassConfig, ...]
    use_direction_classifier: bool = True
    dir_offset: float = 0.78539
    dir_limit_offset: float = 0.0
    num_dir_bins: int = 2
    encode_angle_by_sincos: bool = False
    class_agnostic: bool = False

    @property
    def coder(self) -> ResidualCoder:
        return ResidualCoder(code_size=8 if self.encode_angle_by_sincos else 7,
                             encode_angle_by_sincos=self.encode_angle_by_sincos)


@dataclass(frozen=True)
class CenterHeadConfig:
    """OpenPCDet ``DENSE_HEAD`` ``CenterHead`` (``SEPARATE_HEAD_CFG``, target-assigner stride, post-processing)."""

    class_names_each_head: tuple[tuple[str, ...], ...]
    shared_conv_channel: int = 64
    use_bias_before_norm: bool = True
    num_hm_conv: int = 2
    head_dict: tuple[tuple[str, int, int], ...] = (("center", 2, 2), ("center_z", 1, 2), ("dim", 3, 2),
                                                   ("rot", 2, 2))
    """``(name, out_channels, num_conv)`` in ``HEAD_ORDER``."""
    feature_map_stride: int = 2
    max_obj_per_sample: int = 500
    post_center_limit_range: tuple[float, ...] = (-75.2, -75.2, -2.0, 75.2, 75.2, 4.0)
    peak_kernel: int = 0

    @classmethod
    def from_openpcdet(cls, head: Mapping, class_names: Sequence[str]) -> CenterHeadConfig:
        """From an OpenPCDet ``MODEL.DENSE_HEAD`` mapping of a ``CenterHead``; ``class_names`` the model's."""
        sep = head["SEPARATE_HEAD_CFG"]
        post = head.get("POST_PROCESSING", {})
        return cls(
            class_names_each_head=tuple(tuple(n for n in g if n in class_names) for g in head["CLASS_NAMES_EACH_HEAD"]),
            shared_conv_channel=int(head.get("SHARED_CONV_CHANNEL", 64)),
            use_bias_before_norm=bool(head.get("USE_BIAS_BEFORE_NORM", False)),
            num_hm_conv=int(head.get("NUM_HM_CONV", 2)),
            head_dict=tuple((n, int(sep["HEAD_DICT"][n]["out_channels"]), int(sep["HEAD_DICT"][n]["num_conv"]))
                            for n in sep["HEAD_ORDER"]),
            feature_map_stride=int(head["TARGET_ASSIGNER_CONFIG"]["FEATURE_MAP_STRIDE"]),
            max_obj_per_sample=int(post.get("MAX_OBJ_PER_SAMPLE", 500)),
            post_center_limit_range=tuple(float(v) for v in post.get("POST_CENTER_LIMIT_RANGE",
                                                                     cls.post_center_limit_range)),
            peak_kernel=3 if post.get("NMS_CONFIG", {}).get("NMS_TYPE") == "circle_nms" else 0)


@dataclass(frozen=True)
class PointPillarsConfig:
    """A whole detector: data range and pillars, the four stages, and post-processing."""

    name: str
    class_names: tuple[str, ...]
    point_cloud_range: tuple[float, float, float, float, float, float]
    voxel_size: tuple[float, float, float]
    head: AnchorHeadConfig | CenterHeadConfig
    max_points_per_pillar: int = 32
    max_pillars: int = 40000
    num_point_features: int = 4
    vfe: PillarVFEConfig = field(default_factory=PillarVFEConfig)
    num_bev_features: int = 64
    backbone: BEVBackboneConfig = field(default_factory=BEVBackboneConfig)
    post_processing: PostProcessConfig = field(default_factory=PostProcessConfig)
    anchor_range: tuple[float, float, float, float, float, float] | None = None
    """Anchor heads: the range whose anchor layout the weights were trained with, kept when ``pipeline.with_range``
    moves the detector (None: ``point_cloud_range``'s own layout)."""

    @property
    def grid(self) -> PillarGrid:
        return PillarGrid(self.point_cloud_range, self.voxel_size, self.max_points_per_pillar, self.max_pillars)

    @property
    def num_input_features(self) -> int:
        """Channels of the decorated pillar points the encoder takes (10 for x, y, z, intensity)."""
        return num_decorated_features(self.num_point_features, self.vfe.use_absolute_xyz, self.vfe.with_distance)

    @classmethod
    def from_openpcdet(cls, cfg: Mapping, name: str = "openpcdet") -> PointPillarsConfig:
        """From an OpenPCDet config mapping (``CLASS_NAMES``, ``DATA_CONFIG``, ``MODEL``; ``_BASE_CONFIG_`` merged).

        Only the pillar detector family is understood; anything else raises ``ConfigError`` naming the key.
        """
        try:
            model, data = cfg["MODEL"], cfg["DATA_CONFIG"]
            class_names = tuple(cfg["CLASS_NAMES"])
            voxel_step = next(p for p in data["DATA_PROCESSOR"] if p["NAME"] == "transform_points_to_voxels")
            max_voxels = voxel_step["MAX_NUMBER_OF_VOXELS"]
            vfe_cfg, bev, bb, head = model["VFE"], model["MAP_TO_BEV"], model["BACKBONE_2D"], model["DENSE_HEAD"]
        except (KeyError, StopIteration) as exc:
            raise ConfigError(f"OpenPCDet config lacks {exc!s} needed for a pillar detector") from None
        for key, value, expected in (("MODEL.VFE.NAME", vfe_cfg["NAME"], "PillarVFE"),
                                     ("MODEL.MAP_TO_BEV.NAME", bev["NAME"], "PointPillarScatter"),
                                     ("MODEL.BACKBONE_2D.NAME", bb["NAME"], "BaseBEVBackbone")):
            if value != expected:
                raise ConfigError(f"{key} is {value!r}; only {expected!r} is supported")
        used = data.get("POINT_FEATURE_ENCODING", {}).get("used_feature_list", ["x", "y", "z", "intensity"])
        if head["NAME"] == "AnchorHeadSingle":
            head_cfg: AnchorHeadConfig | CenterHeadConfig = AnchorHeadConfig(
                anchor_generator=tuple(AnchorClassConfig.from_openpcdet(e) for e in head["ANCHOR_GENERATOR_CONFIG"]),
                use_direction_classifier=bool(head.get("USE_DIRECTION_CLASSIFIER", False)),
                dir_offset=float(head.get("DIR_OFFSET", 0.0)),
                dir_limit_offset=float(head.get("DIR_LIMIT_OFFSET", 0.0)),
                num_dir_bins=int(head.get("NUM_DIR_BINS", 2)),
                encode_angle_by_sincos=bool(head.get("TARGET_ASSIGNER_CONFIG", {}).get("BOX_CODER_CONFIG", {})
                                            .get("encode_angle_by_sincos", False)),
                class_agnostic=bool(head.get("CLASS_AGNOSTIC", False)))
            post = PostProcessConfig.from_openpcdet(model.get("POST_PROCESSING", {}))
        elif head["NAME"] == "CenterHead":
            head_cfg = CenterHeadConfig.from_openpcdet(head, class_names)
            post = PostProcessConfig.from_openpcdet(head.get("POST_PROCESSING", {}))
        else:
            raise ConfigError(f"MODEL.DENSE_HEAD.NAME {head['NAME']!r} is not AnchorHeadSingle or CenterHead")
        return cls(
            name=name, class_names=class_names,
            point_cloud_range=tuple(float(v) for v in data["POINT_CLOUD_RANGE"]),
            voxel_size=tuple(float(v) for v in voxel_step["VOXEL_SIZE"]),
            head=head_cfg,
            max_points_per_pillar=int(voxel_step["MAX_POINTS_PER_VOXEL"]),
            max_pillars=int(max_voxels["test"] if isinstance(max_voxels, Mapping) else max_voxels),
            num_point_features=len(used),
            vfe=PillarVFEConfig.from_openpcdet(vfe_cfg),
            num_bev_features=int(bev["NUM_BEV_FEATURES"]),
            backbone=BEVBackboneConfig.from_openpcdet(bb),
            post_processing=post)


_KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")
_KITTI_RANGE = (0.0, -39.68, -3.0, 69.12, 39.68, 1.0)
_KITTI_ANCHORS = (
    AnchorClassConfig("Car", ((3.9, 1.6, 1.56),), (0.0, 1.57), (-1.78,), False, 2, 0.6, 0.45),
    AnchorClassConfig("Pedestrian", ((0.8, 0.6, 1.73),), (0.0, 1.57), (-0.6,), False, 2, 0.5, 0.35),
    AnchorClassConfig("Cyclist", ((1.76, 0.6, 1.73),), (0.0, 1.57), (-0.6,), False, 2, 0.5, 0.35),
)

_SYNTHETIC_CLASSES = ("car", "pedestrian", "cyclist")
_SYNTHETIC_ANCHORS = (
    AnchorClassConfig("car", ((4.4, 1.8, 1.55),), (0.0, 1.57), (-1.88,), False, 2, 0.6, 0.45),
    AnchorClassConfig("pedestrian", ((0.35, 0.6, 1.75),), (0.0, 1.57), (-1.88,), False, 2, 0.5, 0.35),
    AnchorClassConfig("cyclist", ((1.75, 0.62, 1.75),), (0.0, 1.57), (-1.88,), False, 2, 0.5, 0.35),
)

VARIANTS: dict[str, PointPillarsConfig] = {
    "pointpillars_kitti": PointPillarsConfig(
        name="pointpillars_kitti", class_names=_KITTI_CLASSES, point_cloud_range=_KITTI_RANGE,
        voxel_size=(0.16, 0.16, 4.0), head=AnchorHeadConfig(anchor_generator=_KITTI_ANCHORS),
        post_processing=PostProcessConfig(score_thresh=0.1, nms=NmsConfig("rotated", 0.01, 4096, 500))),
    "centerpoint_pillar": PointPillarsConfig(
        name="centerpoint_pillar", class_names=_KITTI_CLASSES, point_cloud_range=_KITTI_RANGE,
        voxel_size=(0.16, 0.16, 4.0),
        head=CenterHeadConfig(class_names_each_head=(_KITTI_CLASSES,), feature_map_stride=2, peak_kernel=3),
        # CenterPoint's circle-NMS radii (squared centre distances, m^2) for car, pedestrian and bicycle.
        post_processing=PostProcessConfig(score_thresh=0.1, nms=NmsConfig("circle", (4.0, 0.175, 0.85), 4096, 500,
                                                                          multi_classes_nms=True))),
    # OpenPCDet's KITTI PointPillars over the synthetic world's nearer area (0..39.68 m ahead, +-19.84 m to the side,
    # 248 x 248 pillars), with its class names and anchors sized and placed for its objects: the world's roof LiDAR is
    # 1.9 m above the road and its objects stand 2 cm above it, so every anchor's bottom is at -1.88 m; anchor sizes
    # are the world's typical car (4.4 x 1.8 x 1.55 m), pedestrian (0.35 x 0.6 x 1.75 m) and cyclist
    # (1.75 x 0.62 x 1.75 m).
    "pointpillars_synthetic": PointPillarsConfig(
        name="pointpillars_synthetic", class_names=_SYNTHETIC_CLASSES, point_cloud_range=(0.0, -19.84, -3.0, 39.68,
                                                                                           19.84, 1.0),
        voxel_size=(0.16, 0.16, 4.0), head=AnchorHeadConfig(anchor_generator=_SYNTHETIC_ANCHORS),
        post_processing=PostProcessConfig(score_thresh=0.1, nms=NmsConfig("rotated", 0.01, 4096, 500))),
}
# The same detector with a half-width BEV backbone (32/64/128 filters, 64 per upsampled map): a quarter of the
# weights and about a third of the compute, so it trains on CPUs; the default trained package (models/) uses it.
VARIANTS["pointpillars_synthetic_lite"] = dataclasses.replace(
    VARIANTS["pointpillars_synthetic"], name="pointpillars_synthetic_lite",
    backbone=BEVBackboneConfig(num_filters=(32, 64, 128), num_upsample_filters=(64, 64, 64)))
"""Named detector configurations (the one list: ``core/models/registry.py``'s ``detectors()`` adds the command-line
aliases); ``build_model(name)`` makes the network."""


# ---------------------------------------------------------------------------------------------------------- stages


class PFNLayer(nn.Module):
    """``Linear -> BatchNorm1d -> ReLU`` per point, then max over the point slots.

    The last layer returns the pooled ``(P, C)`` embedding; earlier ones concatenate it to every point (half the
    channels each), as in the paper.
    """

    def __init__(self, in_channels: int, out_channels: int, use_norm: bool = True, last_layer: bool = False) -> None:
        super().__init__()
        self.last_vfe = last_layer
        self.use_norm = use_norm
        if not last_layer:
            out_channels = out_channels // 2
        self.linear = nn.Linear(in_channels, out_channels, bias=not use_norm)
        if use_norm:
            self.norm = nn.BatchNorm1d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, points: Tensor) -> Tensor:
        x = self.linear(points)  # (P, M, C)
        if self.use_norm:
            x = self.norm(x.permute(0, 2, 1)).permute(0, 2, 1)
        x = torch.relu(x)
        pooled = x.max(dim=1, keepdim=True)[0]
        if self.last_vfe:
            return pooled.squeeze(1)
        return torch.cat([x, pooled.expand(-1, x.shape[1], -1)], dim=2)

    def pool_first(self, points: Tensor) -> Tensor:
        """The last layer's ``(P, C)`` embedding (``forward``'s, in eval mode) with the max taken before the norm:
        ``ReLU(BN(.))`` is monotonic in each channel (non-decreasing where the BN scale ``gamma / sqrt(var + eps)`` is
        >= 0, non-increasing elsewhere), so the max over the slots of ``ReLU(BN(x))`` is ``ReLU(BN(max x))``, or
        ``ReLU(BN(min x))`` for a negative scale; the rounding of each step is monotonic too, so the values are the
        same while the norm and ReLU run on ``P x C`` values instead of ``P x M x C``."""
        x = self.linear(points)  # (P, M, C)
        if self.use_norm:
            scale = self.norm.weight / torch.sqrt(self.norm.running_var + self.norm.eps)
            x = self.norm(torch.where(scale >= 0, x.max(dim=1)[0], x.min(dim=1)[0]))
        else:
            x = x.max(dim=1)[0]
        return torch.relu(x)


class PillarVFE(nn.Module):
    """Pillar feature net over decorated pillar points ``(P, M, C_in)`` -> ``(P, C_out)`` embeddings."""

    def __init__(self, num_input_features: int, num_filters: Sequence[int] = (64,), use_norm: bool = True) -> None:
        super().__init__()
        widths = [num_input_features, *num_filters]
        self.pfn_layers = nn.ModuleList(
            PFNLayer(widths[i], widths[i + 1], use_norm, last_layer=i == len(num_filters) - 1)
            for i in range(len(num_filters)))
        self.num_output_features = widths[-1]

    def forward(self, points: Tensor) -> Tensor:
        x = points
        for layer in self.pfn_layers:
            x = layer(x)
        return x


def scatter_to_bev(pillar_features, coords, bev_shape: tuple[int, int]):
    """``(1, C, ny, nx)`` canvas holding each pillar's ``(C,)`` feature at its cell; empty cells are 0.

    ``pillar_features`` ``(P, C)`` and ``coords`` ``(P, 3)`` ``(z, y, x)`` or ``(P, 4)`` ``(batch, z, y, x)`` (one
    batch), both numpy arrays or both torch tensors; the canvas is of the same kind. The flat cell index is
    ``z + y * nx + x`` as in the reference (z is 0 for pillars).
    """
    ny, nx = bev_shape
    cols = coords[:, -3:]
    if isinstance(pillar_features, Tensor):
        index = (cols[:, 0] + cols[:, 1] * nx + cols[:, 2]).long()
        canvas = pillar_features.new_zeros((pillar_features.shape[1], ny * nx))
        canvas = canvas.index_copy(1, index, pillar_features.t())
    else:
        index = (cols[:, 0] + cols[:, 1] * nx + cols[:, 2]).astype(np.int64)
        canvas = np.zeros((pillar_features.shape[1], ny * nx), dtype=pillar_features.dtype)
        canvas[:, index] = pillar_features.T
    return canvas.reshape(1, -1, ny, nx)


class PointPillarScatter(nn.Module):
    """OpenPCDet's ``map_to_bev`` stage: ``scatter_to_bev`` as a module (no parameters)."""

    def __init__(self, num_bev_features: int, bev_shape: tuple[int, int]) -> None:
        super().__init__()
        self.num_bev_features = num_bev_features
        self.bev_shape = tuple(bev_shape)

    def forward(self, pillar_features: Tensor, coords: Tensor) -> Tensor:
        return scatter_to_bev(pillar_features, coords, self.bev_shape)


def _conv_bn_relu(conv: nn.Module, channels: int, eps: float = BN_EPS) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels, eps=eps, momentum=BN_MOMENTUM), nn.ReLU()]


class BaseBEVBackbone(nn.Module):
    """Blocks of 3x3 convolutions (the first strided) with a transposed-convolution upsampling of every block's output;
    the upsampled maps are concatenated in block order.

    A block's leading ``ZeroPad2d(1)`` + unpadded strided convolution of the reference is written as an ``Identity``
    + the same convolution with ``padding=1`` (identical output, one ONNX node fewer); module indices, and so
    checkpoint keys, are unchanged.
    """

    def __init__(self, input_channels: int, config: BEVBackboneConfig) -> None:
        super().__init__()
        c = config
        if not len(c.layer_nums) == len(c.layer_strides) == len(c.num_filters):
            raise ConfigError("BACKBONE_2D LAYER_NUMS, LAYER_STRIDES and NUM_FILTERS must have equal lengths")
        if len(c.upsample_strides) != len(c.num_upsample_filters):
            raise ConfigError("BACKBONE_2D UPSAMPLE_STRIDES and NUM_UPSAMPLE_FILTERS must have equal lengths")
        c_in = [input_channels, *c.num_filters[:-1]]
        self.blocks = nn.ModuleList()
        self.deblocks = nn.ModuleList()
        for idx, (layers, stride, width) in enumerate(zip(c.layer_nums, c.layer_strides, c.num_filters, strict=True)):
            modules: list[nn.Module] = [nn.Identity(), *_conv_bn_relu(
                nn.Conv2d(c_in[idx], width, 3, stride=stride, padding=1, bias=False), width)]
            for _ in range(layers):
                modules += _conv_bn_relu(nn.Conv2d(width, width, 3, padding=1, bias=False), width)
            self.blocks.append(nn.Sequential(*modules))
            if idx < len(c.upsample_strides):
                up, up_width = c.upsample_strides[idx], c.num_upsample_filters[idx]
                if up > 1 or (up == 1 and not c.use_conv_for_no_stride):
                    conv: nn.Module = nn.ConvTranspose2d(width, up_width, int(up), stride=int(up), bias=False)
                else:
                    down = int(round(1 / up))
                    conv = nn.Conv2d(width, up_width, down, stride=down, bias=False)
                self.deblocks.append(nn.Sequential(*_conv_bn_relu(conv, up_width)))
        total = sum(c.num_upsample_filters)
        if len(c.upsample_strides) > len(c.layer_nums):
            last = int(c.upsample_strides[-1])
            self.deblocks.append(nn.Sequential(*_conv_bn_relu(
                nn.ConvTranspose2d(total, total, last, stride=last, bias=False), total)))
        self.num_bev_features = total if c.upsample_strides else c.num_filters[-1]

    def forward(self, spatial_features: Tensor) -> Tensor:
        x = spatial_features
        ups = []
        for idx, block in enumerate(self.blocks):
            x = block(x)
            ups.append(self.deblocks[idx](x) if idx < len(self.deblocks) else x)
        x = torch.cat(ups, dim=1) if len(ups) > 1 else ups[0]
        if len(self.deblocks) > len(self.blocks):
            x = self.deblocks[-1](x)
        return x


class AnchorHeadSingle(nn.Module):
    """1x1 convolutions: ``conv_cls`` ``(A*classes)``, ``conv_box`` ``(A*code_size)``, ``conv_dir_cls``
    ``(A*bins)``; outputs stay NCHW (channel ``a*K + k``)."""

    def __init__(self, input_channels: int, num_class: int, num_anchors_per_location: int, code_size: int = 7,
                 num_dir_bins: int | None = 2) -> None:
        super().__init__()
        a = num_anchors_per_location
        self.conv_cls = nn.Conv2d(input_channels, a * num_class, 1)
        self.conv_box = nn.Conv2d(input_channels, a * code_size, 1)
        self.conv_dir_cls = nn.Conv2d(input_channels, a * num_dir_bins, 1) if num_dir_bins else None
        prior = 0.01
        nn.init.constant_(self.conv_cls.bias, -math.log((1 - prior) / prior))
        nn.init.normal_(self.conv_box.weight, mean=0.0, std=0.001)
        self.output_names = ("cls_preds", "box_preds") + (("dir_cls_preds",) if num_dir_bins else ())

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        out = (self.conv_cls(x), self.conv_box(x))
        return out + (self.conv_dir_cls(x),) if self.conv_dir_cls is not None else out


class SeparateHead(nn.Module):
    """One class group's maps of a centre head: per map ``num_conv - 1`` x (3x3 conv, BN, ReLU) then a 3x3 conv."""

    def __init__(self, input_channels: int, head_dict: Sequence[tuple[str, int, int]], use_bias: bool,
                 init_bias: float = -2.19) -> None:
        super().__init__()
        self.names = tuple(name for name, _, _ in head_dict)
        for name, out_channels, num_conv in head_dict:
            layers: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(
                nn.Conv2d(input_channels, input_channels, 3, padding=1, bias=use_bias), input_channels, eps=1e-5))
                for _ in range(num_conv - 1)]
            final = nn.Conv2d(input_channels, out_channels, 3, padding=1, bias=True)
            if name == "hm":
                nn.init.constant_(final.bias, init_bias)
            layers.append(final)
            self.add_module(name, nn.Sequential(*layers))

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(getattr(self, name)(x) for name in self.names)


class CenterHead(nn.Module):
    """Shared 3x3 conv + BN + ReLU, then a ``SeparateHead`` per class group (``heads_list``).

    Outputs, flat: for each head ``i`` the maps of ``head_dict`` in order (``center_i``, ...), then ``hm_i`` (the
    order OpenPCDet registers them in).
    """

    def __init__(self, input_channels: int, config: CenterHeadConfig) -> None:
        super().__init__()
        ch = config.shared_conv_channel
        self.shared_conv = nn.Sequential(*_conv_bn_relu(
            nn.Conv2d(input_channels, ch, 3, padding=1, bias=config.use_bias_before_norm), ch, eps=1e-5))
        self.heads_list = nn.ModuleList()
        names = []
        for idx, group in enumerate(config.class_names_each_head):
            head_dict = (*config.head_dict, ("hm", len(group), config.num_hm_conv))
            self.heads_list.append(SeparateHead(ch, head_dict, config.use_bias_before_norm))
            names += [f"{name}_{idx}" for name, _, _ in head_dict]
        self.output_names = tuple(names)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self.shared_conv(x)
        return tuple(t for head in self.heads_list for t in head(x))


def group_head_outputs(output_names: Sequence[str], outputs: Sequence) -> list[dict]:
    """Centre-head outputs by head: ``[{'hm': ..., 'center': ..., ...}, ...]`` from flat names ``<map>_<head>``."""
    heads: dict[int, dict] = {}
    for name, value in zip(output_names, outputs, strict=True):
        key, _, idx = name.rpartition("_")
        heads.setdefault(int(idx), {})[key] = value
    return [heads[i] for i in sorted(heads)]


# ------------------------------------------------------------------------------------------------------------ model


class PointPillars(nn.Module):
    """The detector: ``vfe`` -> ``map_to_bev`` -> ``backbone_2d`` -> ``dense_head``.

    ``forward(points, coords)`` takes decorated pillar points ``(P, M, C_in)`` and cell indices ``(P, 3|4)`` and returns
    the head maps (``output_names``), all NCHW with one batch.
    """

    def __init__(self, config: PointPillarsConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("global_step", torch.zeros(1, dtype=torch.long))
        self.vfe = PillarVFE(config.num_input_features, config.vfe.num_filters, config.vfe.use_norm)
        if self.vfe.num_output_features != config.num_bev_features:
            raise ConfigError(f"MAP_TO_BEV NUM_BEV_FEATURES {config.num_bev_features} != VFE output "
                              f"{self.vfe.num_output_features}")
        self.map_to_bev = PointPillarScatter(config.num_bev_features, config.grid.bev_shape)
        self.backbone_2d = BaseBEVBackbone(config.num_bev_features, config.backbone)
        head = config.head
        if isinstance(head, AnchorHeadConfig):
            num_class = 1 if head.class_agnostic else len(config.class_names)
            self.dense_head: nn.Module = AnchorHeadSingle(
                self.backbone_2d.num_bev_features, num_class, anchors_per_location(head.anchor_generator),
                head.coder.code_size, head.num_dir_bins if head.use_direction_classifier else None)
        else:
            self.dense_head = CenterHead(self.backbone_2d.num_bev_features, head)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.dense_head.output_names

    def forward(self, points: Tensor, coords: Tensor) -> tuple[Tensor, ...]:
        spatial_features = self.map_to_bev(self.vfe(points), coords)
        return self.dense_head(self.backbone_2d(spatial_features))

    def split(self) -> tuple[PillarEncoder, BackboneHead]:
        """The two deployable graphs, sharing this model's parameters."""
        return PillarEncoder(self.vfe), BackboneHead(self.backbone_2d, self.dense_head)


class PillarEncoder(nn.Module):
    """Graph 1: decorated pillar points ``input_features`` ``(P, M, C_in)`` -> ``pillar_features`` ``(P, C)``.

    In eval mode a single-layer PFN pools before its norm and ReLU (``PFNLayer.pool_first``: the same embeddings, a
    32nd of the norm's work and memory traffic).
    """

    input_names = ("input_features",)
    output_names = ("pillar_features",)

    def __init__(self, vfe: PillarVFE) -> None:
        super().__init__()
        self.vfe = vfe

    def forward(self, input_features: Tensor) -> Tensor:
        layers = self.vfe.pfn_layers
        if not self.training and len(layers) == 1 and layers[0].last_vfe:  # the usual single-layer PFN
            return layers[0].pool_first(input_features)
        return self.vfe(input_features)


class BackboneHead(nn.Module):
    """Graph 2: BEV canvas ``spatial_features`` ``(1, C, ny, nx)`` -> the head maps (NCHW)."""

    input_names = ("spatial_features",)

    def __init__(self, backbone_2d: BaseBEVBackbone, dense_head: nn.Module) -> None:
        super().__init__()
        self.backbone_2d = backbone_2d
        self.dense_head = dense_head
        self.output_names = tuple(dense_head.output_names)

    def forward(self, spatial_features: Tensor) -> tuple[Tensor, ...]:
        return self.dense_head(self.backbone_2d(spatial_features))


def build_model(variant: str | PointPillarsConfig) -> PointPillars:
    """A randomly initialised detector for a named variant (``VARIANTS``) or a configuration."""
    if isinstance(variant, str):
        if variant not in VARIANTS:
            raise ConfigError(f"unknown PointPillars variant {variant!r}; known: {sorted(VARIANTS)}")
        variant = VARIANTS[variant]
    return PointPillars(variant)


def pointpillars_kitti() -> PointPillars:
    return build_model("pointpillars_kitti")


def centerpoint_pillar() -> PointPillars:
    return build_model("centerpoint_pillar")


def decoder_for(config: PointPillarsConfig) -> AnchorHeadDecoder | CenterHeadDecoder:
    """The post-processing that turns this configuration's head maps into ``Detections``."""
    head, post = config.head, config.post_processing
    if isinstance(head, AnchorHeadConfig):
        direction = (DirectionClassifier(head.dir_offset, head.dir_limit_offset, head.num_dir_bins)
                     if head.use_direction_classifier else None)
        return AnchorHeadDecoder(head.anchor_generator, config.point_cloud_range, config.grid.grid_size,
                                 head.coder, direction, post, config.anchor_range)
    return CenterHeadDecoder(
        class_names=config.class_names, class_names_each_head=head.class_names_each_head,
        point_cloud_range=config.point_cloud_range, voxel_size=config.voxel_size,
        feature_map_stride=head.feature_map_stride, max_obj_per_sample=head.max_obj_per_sample,
        score_thresh=post.score_thresh, post_center_limit_range=head.post_center_limit_range,
        peak_kernel=head.peak_kernel, nms=post.nms)


# ------------------------------------------------------------------------------------------------------ checkpoints


def convert_upstream_checkpoint(obj) -> OrderedDict[str, Tensor]:
    """An OpenPCDet checkpoint as this module's state_dict (pure: the input is not modified).

    Accepts ``{'model_state': state_dict, ...}`` (OpenPCDet's ``checkpoint_state``), a bare state_dict, or any mapping
    of key -> array (e.g. an ``np.load``-ed ``.npz``). Values become tensors; floating values become float32 (half
    precision is widened), integer buffers (``num_batches_tracked``, ``global_step``) int64. A ``module.`` prefix
    (DataParallel) is removed. Key names are OpenPCDet's own, so nothing is renamed.
    """
    if isinstance(obj, Mapping) and "model_state" in obj:
        obj = obj["model_state"]
    if not hasattr(obj, "keys"):
        raise ConfigError(f"a checkpoint must be a mapping of parameter names to arrays, got {type(obj).__name__}")
    out: OrderedDict[str, Tensor] = OrderedDict()
    for key in obj.keys():
        value = obj[key]
        tensor = value.detach().clone() if isinstance(value, Tensor) else torch.from_numpy(np.array(value))
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float32)
        elif tensor.dtype != torch.bool:
            tensor = tensor.to(torch.int64)
        out[key[len("module."):] if key.startswith("module.") else key] = tensor
    return out


def load_checkpoint(model: nn.Module, obj, strict: bool = True) -> LoadReport:
    """Load an OpenPCDet checkpoint (see ``convert_upstream_checkpoint``) into ``model``; ``strict`` as in
    :func:`~ros_mmfusion.core.models.checkpoints.load_state`."""
    return load_state(model, convert_upstream_checkpoint(obj), strict)


# ------------------------------------------------------------------------------------------------------------- ONNX


def export_split(model: PointPillars, directory: str | Path, num_pillars: int = 1000,
                 bev_shape: tuple[int, int] | None = None, opset: int | None = None) -> tuple[Path, Path]:
    """Export ``pillar_encoder.onnx`` (dynamic pillar count) and ``backbone_head.onnx`` into ``directory``.

    ``bev_shape`` defaults to the configured grid's ``(ny, nx)``; a smaller one gives a graph for a cropped canvas.
    """
    from ros_mmfusion.core.onnx_export import OPSET, export_onnx

    directory = Path(directory)
    encoder, backbone_head = model.split()
    cfg = model.config
    points = torch.zeros(num_pillars, cfg.max_points_per_pillar, cfg.num_input_features)
    enc_path = export_onnx(encoder, (points,), directory / "pillar_encoder.onnx", encoder.input_names,
                           encoder.output_names, {"input_features": {0: "num_pillars"},
                                                  "pillar_features": {0: "num_pillars"}}, opset or OPSET)
    ny, nx = bev_shape or cfg.grid.bev_shape
    canvas = torch.zeros(1, cfg.num_bev_features, ny, nx)
    head_path = export_onnx(backbone_head, (canvas,), directory / "backbone_head.onnx", backbone_head.input_names,
                            backbone_head.output_names, None, opset or OPSET)
    return enc_path, head_path
