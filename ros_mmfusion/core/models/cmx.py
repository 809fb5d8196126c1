"""CMX: cross-modal fusion for RGB-X semantic segmentation (Zhang, Liu et al., IEEE T-ITS 2023), and its checkpoints.

Two Mix Transformer branches with separate weights encode the RGB image and the X image (depth, thermal, LiDAR
depth, ... replicated to three channels). After every stage:

- the **FRM** (feature rectification module) re-weights each branch with the other: channel weights from an MLP on
  the global average- and max-pooled concatenation, spatial weights from two 1x1 convolutions, each applied with
  factor 0.5 (``x1 + 0.5 * cw * x2 + 0.5 * sw * x2`` and symmetrically); the rectified maps feed the next stage;
- the **FFM** (feature fusion module) fuses the two into one map: a cross path (linear projection split in a residual
  half and an attention half; the attention halves exchange global context through an efficient cross attention whose
  context matrix ``softmax(k^T v * scale)`` is normalised over the *key-channel* axis, dim -2), then a channel
  embedding (1x1 conv residual + conv/depthwise-conv/conv/BatchNorm branch, BatchNorm).

The MLP decoder (SegFormer's head) projects the four fused maps to a common width (512 upstream; narrower is cheaper),
upsamples them to 1/4 resolution, concatenates (deepest first), fuses with 1x1 conv + BatchNorm + ReLU and predicts
class logits; ``CMX.forward`` upsamples those to the input resolution (bilinear, align_corners=False) as upstream does.

Module names are those of the upstream ``EncoderDecoder`` (``backbone.extra_block1.0.attn.kv``, ``backbone.FRMs.0``,
``decode_head.linear_fuse.1``...), so ``convert_upstream_checkpoint`` only unwraps and normalises a checkpoint and
``load_checkpoint`` loads released weights strictly. BatchNorm epsilon is PyTorch's 1e-5 everywhere: upstream
evaluation builds the model without a criterion and never applies the training-time 1e-3 (eps is not saved).
Input channel order and normalisation are in ``ros_mmfusion.core.segmentation.preprocess`` (the released weights
expect B,G,R order).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.models.checkpoints import LoadReport, load_state
from ros_mmfusion.core.models.mit import (
    EMBED_NORM_EPS,
    MIT_VARIANTS,
    MiTVariant,
    build_stage,
    head_dim_and_scale,
    map_to_tokens,
    merge_heads,
    run_stage,
    split_heads,
    split_kv,
    tokens_to_map,
)

BN_EPS = 1e-5
"""BatchNorm epsilon at evaluation (upstream eval.py; the 1e-3 of the training config is never in effect there)."""


# ---------------------------------------------------------------------------------------------------------------------
# FRM: feature rectification


class ChannelWeights(nn.Module):
    """Per-channel gates for both branches from global average and max pooling of their concatenation.

    Returns ``(B, 2, C, 1, 1)``: index 0 gates branch 1, index 1 gates branch 2.
    """

    def __init__(self, dim: int, reduction: int = 1) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim * 4, dim * 4 // reduction), nn.ReLU(),
                                 nn.Linear(dim * 4 // reduction, dim * 2), nn.Sigmoid())

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        x = torch.cat((x1, x2), dim=1)
        pooled = torch.cat((F.adaptive_avg_pool2d(x, 1).flatten(1), F.adaptive_max_pool2d(x, 1).flatten(1)), dim=1)
        return self.mlp(pooled).reshape(-1, 2, self.dim, 1, 1)


class SpatialWeights(nn.Module):
    """Per-pixel gates for both branches: ``(B, 2, H, W)``, channel 0 gates branch 1, channel 1 branch 2."""

    def __init__(self, dim: int, reduction: int = 1) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(dim * 2, dim // reduction, 1), nn.ReLU(),
                                 nn.Conv2d(dim // reduction, 2, 1), nn.Sigmoid())

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.mlp(torch.cat((x1, x2), dim=1))


class FeatureRectifyModule(nn.Module):
    """FRM: each branch gains the other, gated by channel and spatial weights (``lambda_c``, ``lambda_s`` = 0.5)."""

    def __init__(self, dim: int, reduction: int = 1, lambda_c: float = 0.5, lambda_s: float = 0.5) -> None:
        super().__init__()
        self.lambda_c = lambda_c
        self.lambda_s = lambda_s
        self.channel_weights = ChannelWeights(dim, reduction)
        self.spatial_weights = SpatialWeights(dim, reduction)

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        cw = self.channel_weights(x1, x2)
        sw = self.spatial_weights(x1, x2)
        out1 = x1 + self.lambda_c * cw[:, 1] * x2 + self.lambda_s * sw[:, 1:2] * x2
        out2 = x2 + self.lambda_c * cw[:, 0] * x1 + self.lambda_s * sw[:, 0:1] * x1
        return out1, out2


# ---------------------------------------------------------------------------------------------------------------------
# FFM: feature fusion


class CrossAttention(nn.Module):
    """Efficient cross attention: each branch's queries read the *other* branch's global context matrix.

    Per head, context = ``softmax_over_key_channels(k^T v * scale)`` (d x d, so cost is linear in the token count);
    queries are the input tokens themselves (no query projection); ``kv1``/``kv2`` have no bias.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim, self.scale = head_dim_and_scale(dim, num_heads)
        self.kv1 = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.kv2 = nn.Linear(dim, dim * 2, bias=qkv_bias)

    def _context(self, kv: Tensor) -> Tensor:
        k, v = split_kv(kv, self.num_heads, self.head_dim)
        return ((k.transpose(-2, -1) @ v) * self.scale).softmax(dim=-2)  # B heads d d, normalised over k's channels

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        ctx1 = self._context(self.kv1(x1))
        ctx2 = self._context(self.kv2(x2))
        out1 = merge_heads(split_heads(x1, self.num_heads, self.head_dim) @ ctx2)
        out2 = merge_heads(split_heads(x2, self.num_heads, self.head_dim) @ ctx1)
        return out1, out2


class CrossPath(nn.Module):
    """Stage 1 of the FFM: project, exchange context through cross attention in one half, project back, LayerNorm."""

    def __init__(self, dim: int, num_heads: int, reduction: int = 1) -> None:
        super().__init__()
        inner = dim // reduction
        self.channel_proj1 = nn.Linear(dim, inner * 2)
        self.channel_proj2 = nn.Linear(dim, inner * 2)
        self.act1 = nn.ReLU()
        self.act2 = nn.ReLU()
        self.cross_attn = CrossAttention(inner, num_heads=num_heads)
        self.end_proj1 = nn.Linear(inner * 2, dim)
        self.end_proj2 = nn.Linear(inner * 2, dim)
        self.norm1 = nn.LayerNorm(dim, eps=EMBED_NORM_EPS)
        self.norm2 = nn.LayerNorm(dim, eps=EMBED_NORM_EPS)

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        y1, u1 = self.act1(self.channel_proj1(x1)).chunk(2, dim=-1)
        y2, u2 = self.act2(self.channel_proj2(x2)).chunk(2, dim=-1)
        v1, v2 = self.cross_attn(u1, u2)
        out1 = self.norm1(x1 + self.end_proj1(torch.cat((y1, v1), dim=-1)))
        out2 = self.norm2(x2 + self.end_proj2(torch.cat((y2, v2), dim=-1)))
        return out1, out2


class ChannelEmbed(nn.Module):
    """Stage 2 of the FFM: the concatenated tokens as a map, ``BN(residual_1x1(x) + conv-dwconv-conv-BN(x))``."""

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 1, bn_eps: float = BN_EPS) -> None:
        super().__init__()
        inner = out_channels // reduction
        self.residual = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.channel_embed = nn.Sequential(
            nn.Conv2d(in_channels, inner, 1),
            nn.Conv2d(inner, inner, 3, padding=1, groups=inner),
            nn.ReLU(),
            nn.Conv2d(inner, out_channels, 1),
            nn.BatchNorm2d(out_channels, eps=bn_eps),
        )
        self.norm = nn.BatchNorm2d(out_channels, eps=bn_eps)

    def forward(self, tokens: Tensor, height: int, width: int) -> Tensor:
        x = tokens_to_map(tokens, height, width)
        return self.norm(self.residual(x) + self.channel_embed(x))


class FeatureFusionModule(nn.Module):
    """FFM: two ``(B, C, H, W)`` maps in, one fused ``(B, C, H, W)`` map out."""

    def __init__(self, dim: int, num_heads: int, reduction: int = 1, bn_eps: float = BN_EPS) -> None:
        super().__init__()
        self.cross = CrossPath(dim, num_heads=num_heads, reduction=reduction)
        self.channel_emb = ChannelEmbed(dim * 2, dim, reduction=reduction, bn_eps=bn_eps)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        height, width = x1.shape[2], x1.shape[3]
        t1, t2 = self.cross(map_to_tokens(x1), map_to_tokens(x2))
        return self.channel_emb(torch.cat((t1, t2), dim=-1), height, width)


# ---------------------------------------------------------------------------------------------------------------------
# Encoder and decoder


class DualMiT(nn.Module):
    """The RGB-X encoder: MiT branches ``patch_embedN/blockN/normN`` (RGB) and ``extra_*`` (X), FRMs and FFMs.

    ``forward(rgb, x)`` returns the four fused maps at 1/4, 1/8, 1/16, 1/32 resolution.
    """

    def __init__(self, variant: MiTVariant | str = "mit_b0", rgb_chans: int = 3, x_chans: int = 3,
                 frm_reduction: int = 1, ffm_reduction: int = 1, bn_eps: float = BN_EPS) -> None:
        super().__init__()
        self.variant = MIT_VARIANTS[variant] if isinstance(variant, str) else variant
        stages = {prefix: [build_stage(self.variant, i, chans) for i in range(4)]
                  for prefix, chans in (("", rgb_chans), ("extra_", x_chans))}
        # registration order = upstream state_dict order: all patch embeddings, then blocks and norms stage by stage
        for prefix, parts in stages.items():
            for i, (embed, _, _) in enumerate(parts):
                setattr(self, f"{prefix}patch_embed{i + 1}", embed)
        for i in range(4):
            for prefix, parts in stages.items():
                setattr(self, f"{prefix}block{i + 1}", parts[i][1])
                setattr(self, f"{prefix}norm{i + 1}", parts[i][2])
        dims, heads = self.variant.embed_dims, self.variant.num_heads
        self.FRMs = nn.ModuleList(FeatureRectifyModule(d, reduction=frm_reduction) for d in dims)
        self.FFMs = nn.ModuleList(FeatureFusionModule(d, num_heads=h, reduction=ffm_reduction, bn_eps=bn_eps)
                                  for d, h in zip(dims, heads, strict=True))

    @property
    def channels(self) -> tuple[int, int, int, int]:
        return self.variant.embed_dims

    def _stage(self, prefix: str, n: int, x: Tensor) -> Tensor:
        return run_stage(getattr(self, f"{prefix}patch_embed{n}"), getattr(self, f"{prefix}block{n}"),
                         getattr(self, f"{prefix}norm{n}"), x)

    def forward(self, rgb: Tensor, x: Tensor) -> list[Tensor]:
        fused = []
        for i in range(4):
            rgb = self._stage("", i + 1, rgb)
            x = self._stage("extra_", i + 1, x)
            rgb, x = self.FRMs[i](rgb, x)
            fused.append(self.FFMs[i](rgb, x))
        return fused


class MLP(nn.Module):
    """Per-pixel linear projection of a ``(B, C, H, W)`` map, returned as a ``(B, E, H, W)`` map."""

    def __init__(self, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return tokens_to_map(self.proj(map_to_tokens(x)), x.shape[2], x.shape[3])


class MLPDecoder(nn.Module):
    """SegFormer's all-MLP head: logits at the resolution of the first (1/4) feature map."""

    def __init__(self, in_channels: tuple[int, ...], num_classes: int, embed_dim: int = 512,
                 bn_eps: float = BN_EPS) -> None:
        super().__init__()
        c1, c2, c3, c4 = in_channels
        self.linear_c4 = MLP(c4, embed_dim)
        self.linear_c3 = MLP(c3, embed_dim)
        self.linear_c2 = MLP(c2, embed_dim)
        self.linear_c1 = MLP(c1, embed_dim)
        self.linear_fuse = nn.Sequential(nn.Conv2d(embed_dim * 4, embed_dim, 1), nn.BatchNorm2d(embed_dim, eps=bn_eps),
                                         nn.ReLU())
        self.linear_pred = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        c1, c2, c3, c4 = features
        size = c1.shape[2:]
        up = [F.interpolate(proj(c), size=size, mode="bilinear", align_corners=False)
              for proj, c in ((self.linear_c4, c4), (self.linear_c3, c3), (self.linear_c2, c2))]
        return self.linear_pred(self.linear_fuse(torch.cat((*up, self.linear_c1(c1)), dim=1)))


class SumOf(torch.autograd.Function):
    """The elementwise sum of same-shaped tensors, exported as one ONNX ``Sum`` (one pass over memory, where a chain
    of ``Add`` writes and re-reads every partial sum)."""

    @staticmethod
    def forward(ctx, *tensors: Tensor) -> Tensor:
        total = tensors[0]
        for t in tensors[1:]:
            total = total + t
        return total

    @staticmethod
    def symbolic(g, *tensors):
        return g.op("Sum", *tensors)


class ResizeChannelsLast(torch.autograd.Function):
    """Bilinear resize (``align_corners=False``) of a channels-last ``(B, h, w, C)`` map to the height and width of
    ``like`` (a ``(B, C', H, W)`` map); returns ``(B, H, W, C)``.

    Exports as one standard ``Resize`` over axes 1 and 2, which ONNX Runtime's CPU provider runs with its
    channels-last kernel (contiguous channels per pixel): bit-identical to resizing the channels-first map, several
    times faster for wide maps (docs/benchmarks.md).
    """

    @staticmethod
    def forward(ctx, x: Tensor, like: Tensor) -> Tensor:
        resized = F.interpolate(x.permute(0, 3, 1, 2), size=like.shape[2:], mode="bilinear", align_corners=False)
        return resized.permute(0, 2, 3, 1)

    @staticmethod
    def symbolic(g, x, like):
        def part(shape, start: int, end: int):
            return g.op("Slice", shape, g.op("Constant", value_t=torch.tensor([start])),
                        g.op("Constant", value_t=torch.tensor([end])))

        shape_x, shape_like = g.op("Shape", x), g.op("Shape", like)
        sizes = g.op("Concat", part(shape_x, 0, 1), part(shape_like, 2, 4), part(shape_x, 3, 4), axis_i=0)
        empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        return g.op("Resize", x, empty, empty, sizes, mode_s="linear",
                    coordinate_transformation_mode_s="half_pixel")


class FoldedMLPDecoder(nn.Module):
    """The same function as a trained :class:`MLPDecoder`, rewritten for inference.

    Bilinear upsampling is linear and its weights sum to one, so it commutes with each stage's per-pixel linear
    projection; the ``linear_fuse`` 1x1 convolution (4E -> E at 1/4 resolution, most of the decoder's cost) is split
    by input block and multiplied into each stage's projection, and the evaluation BatchNorm is folded in too. Each
    stage is then one C_i -> E projection at its own resolution, upsampled and summed: exact up to float rounding.

    ``channels_last`` (a deployment switch for ONNX Runtime graphs): the E-wide maps are computed, upsampled
    (:class:`ResizeChannelsLast`) and summed channels-last, and only the class logits return to channels-first: the
    same values up to float rounding, the three upsamplings of E channels several times faster on ONNX Runtime.
    """

    channels_last: bool = False

    def __init__(self, decoder: MLPDecoder) -> None:
        super().__init__()
        fuse, bn = decoder.linear_fuse[0], decoder.linear_fuse[1]
        embed = fuse.out_channels
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w_fuse = fuse.weight[:, :, 0, 0]  # (E, 4E) over the concatenation [c4, c3, c2, c1]
        bias = fuse.bias if fuse.bias is not None else torch.zeros(embed)
        projs = (decoder.linear_c4.proj, decoder.linear_c3.proj, decoder.linear_c2.proj, decoder.linear_c1.proj)
        self.stages = nn.ModuleList()
        with torch.no_grad():
            for i, proj in enumerate(projs):
                block = w_fuse[:, i * embed:(i + 1) * embed]  # (E, E)
                conv = nn.Conv2d(proj.in_features, embed, 1, bias=False)
                conv.weight.copy_((scale[:, None] * (block @ proj.weight))[:, :, None, None])
                self.stages.append(conv)
                bias = bias + block @ proj.bias
            self.register_buffer("bias", (scale * (bias - bn.running_mean) + bn.bias).detach().clone())
        self.linear_pred = decoder.linear_pred

    def forward(self, features: list[Tensor]) -> Tensor:
        if self.channels_last:
            return self._forward_channels_last(features)
        c1, c2, c3, c4 = features
        size = c1.shape[2:]
        fused = self.stages[3](c1) + self.bias[None, :, None, None]
        for conv, c in ((self.stages[0], c4), (self.stages[1], c3), (self.stages[2], c2)):
            fused = fused + F.interpolate(conv(c), size=size, mode="bilinear", align_corners=False)
        return self.linear_pred(F.relu(fused))

    def _forward_channels_last(self, features: list[Tensor]) -> Tensor:
        c1, c2, c3, c4 = features

        def project(conv: nn.Conv2d, fmap: Tensor) -> Tensor:  # (B, C, h, w) -> (B, h, w, E)
            return fmap.permute(0, 2, 3, 1) @ conv.weight[:, :, 0, 0].t()

        # the bias joins the smallest map (resizing keeps constants: its weights sum to one); one Sum, not three Adds
        terms = [project(self.stages[3], c1), ResizeChannelsLast.apply(project(self.stages[0], c4) + self.bias, c1)]
        terms += [ResizeChannelsLast.apply(project(conv, c), c1) for conv, c in ((self.stages[1], c3),
                                                                                  (self.stages[2], c2))]
        logits = F.relu(SumOf.apply(*terms)) @ self.linear_pred.weight[:, :, 0, 0].t() + self.linear_pred.bias
        return logits.permute(0, 3, 1, 2)


def fold_for_inference(model: CMX, onnxruntime: bool = False) -> CMX:
    """A copy of ``model`` (weights loaded, eval mode) with the decoder folded; the same logits, far less compute.

    ``onnxruntime``: the copy exports its self-attention as ONNX Runtime's fused ``com.microsoft.MultiHeadAttention``
    (``mit.OrtMultiHeadAttention``) and runs its decoder channels-last (``FoldedMLPDecoder.channels_last``): the same
    logits up to float rounding, faster on ONNX Runtime's CPU provider - for graphs that only ONNX Runtime runs,
    never for TensorRT.
    """
    import copy

    from ros_mmfusion.core.models.mit import EfficientSelfAttention

    folded = copy.deepcopy(model).eval()
    folded.decode_head = FoldedMLPDecoder(model.decode_head.eval())
    folded.decode_head.channels_last = onnxruntime
    if onnxruntime:
        for module in folded.modules():
            if isinstance(module, EfficientSelfAttention):
                module.ort_fused = True
    return folded


@dataclass(frozen=True)
class CMXConfig:
    """What defines a CMX model; ``num_classes`` and ``decoder_embed_dim`` only change the decoder."""

    backbone: str = "mit_b0"
    num_classes: int = 40
    decoder_embed_dim: int = 512
    rgb_chans: int = 3
    x_chans: int = 3
    bn_eps: float = BN_EPS

    def __post_init__(self) -> None:
        if self.backbone not in MIT_VARIANTS:
            raise ConfigError(f"backbone {self.backbone!r}: expected one of {sorted(MIT_VARIANTS)}")
        if self.num_classes < 1 or self.decoder_embed_dim < 1:
            raise ConfigError(f"num_classes ({self.num_classes}) and decoder_embed_dim ({self.decoder_embed_dim}) "
                              "must be positive")


class CMX(nn.Module):
    """RGB-X segmentation: ``forward(rgb, x)`` -> ``(B, num_classes, H, W)`` logits at the input resolution.

    ``rgb`` and ``x`` are ``(B, 3, H, W)`` float tensors normalised as ``segmentation.preprocess`` does (for released
    weights: B,G,R order, ImageNet mean/std; X replicated to three channels, same mean/std). H and W need not be
    multiples of 32. ``forward_features`` and ``forward_head`` expose the fused maps and the 1/4-resolution logits.
    """

    def __init__(self, config: CMXConfig | None = None, **overrides) -> None:
        super().__init__()
        base = config or CMXConfig()
        self.config = CMXConfig(**{**base.__dict__, **overrides}) if overrides else base
        cfg = self.config
        self.backbone = DualMiT(cfg.backbone, rgb_chans=cfg.rgb_chans, x_chans=cfg.x_chans, bn_eps=cfg.bn_eps)
        self.decode_head = MLPDecoder(self.backbone.channels, cfg.num_classes, cfg.decoder_embed_dim, cfg.bn_eps)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward_features(self, rgb: Tensor, x: Tensor) -> list[Tensor]:
        return self.backbone(rgb, x)

    def forward_head(self, features: list[Tensor]) -> Tensor:
        return self.decode_head(features)

    def forward(self, rgb: Tensor, x: Tensor) -> Tensor:
        logits = self.forward_head(self.forward_features(rgb, x))
        return F.interpolate(logits, size=rgb.shape[2:], mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------------------------------
# Named variants


def _variant(backbone: str, num_classes: int, decoder_embed_dim: int, **kwargs) -> CMX:
    return CMX(CMXConfig(backbone=backbone, num_classes=num_classes, decoder_embed_dim=decoder_embed_dim, **kwargs))


def cmx_mit_b0(num_classes: int = 40, decoder_embed_dim: int = 512, **kwargs) -> CMX:
    return _variant("mit_b0", num_classes, decoder_embed_dim, **kwargs)


def cmx_mit_b1(num_classes: int = 40, decoder_embed_dim: int = 512, **kwargs) -> CMX:
    return _variant("mit_b1", num_classes, decoder_embed_dim, **kwargs)


def cmx_mit_b2(num_classes: int = 40, decoder_embed_dim: int = 512, **kwargs) -> CMX:
    """The configuration of the released NYUDepthv2 checkpoint (40 classes) with the defaults."""
    return _variant("mit_b2", num_classes, decoder_embed_dim, **kwargs)


def cmx_mit_b3(num_classes: int = 40, decoder_embed_dim: int = 512, **kwargs) -> CMX:
    return _variant("mit_b3", num_classes, decoder_embed_dim, **kwargs)


def cmx_mit_b4(num_classes: int = 40, decoder_embed_dim: int = 512, **kwargs) -> CMX:
    return _variant("mit_b4", num_classes, decoder_embed_dim, **kwargs)


def cmx_mit_b5(num_classes: int = 40, decoder_embed_dim: int = 512, **kwargs) -> CMX:
    return _variant("mit_b5", num_classes, decoder_embed_dim, **kwargs)


CMX_VARIANTS = {f"cmx_{name}": fn for name, fn in (
    ("mit_b0", cmx_mit_b0), ("mit_b1", cmx_mit_b1), ("mit_b2", cmx_mit_b2),
    ("mit_b3", cmx_mit_b3), ("mit_b4", cmx_mit_b4), ("mit_b5", cmx_mit_b5))}


def build_cmx(name: str, **kwargs) -> CMX:
    """A named variant (``cmx_mit_b0`` ... ``cmx_mit_b5``); kwargs are ``num_classes``, ``decoder_embed_dim``, ..."""
    try:
        factory = CMX_VARIANTS[name]
    except KeyError:
        raise ConfigError(f"model {name!r}: expected one of {sorted(CMX_VARIANTS)}") from None
    return factory(**kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints

_WRAPPER_KEYS = ("model", "state_dict")
_DATA_PARALLEL_PREFIX = "module."


def convert_upstream_checkpoint(obj: Mapping, dtype: torch.dtype | None = torch.float32) -> dict[str, Tensor]:
    """An upstream CMX checkpoint as a state_dict for ``CMX``.

    Accepts what ``torch.load`` returns for a released ``*.pth`` (``{'model': state_dict, 'optimizer': ...}``), a
    ``{'state_dict': ...}`` wrapper, or a bare state_dict; keys may carry ``module.`` prefixes (DataParallel /
    DistributedDataParallel). Values may be tensors or numpy arrays; floating values are cast to ``dtype`` (None keeps
    them). Key names are otherwise unchanged: ``CMX`` uses upstream's module names.
    """
    state = obj
    while isinstance(state, Mapping):
        inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping):
        raise ConfigError(f"checkpoint: expected a mapping of parameter names to tensors, got {type(obj).__name__}")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        name = str(key)
        while name.startswith(_DATA_PARALLEL_PREFIX):
            name = name[len(_DATA_PARALLEL_PREFIX):]
        if name in out:
            raise ConfigError(f"checkpoint: key {name!r} appears twice (with and without 'module.' prefix)")
        if isinstance(value, Tensor):
            tensor = value.detach()
        elif isinstance(value, np.ndarray | np.generic):
            tensor = torch.from_numpy(np.array(value))
        else:
            raise ConfigError(f"checkpoint: {key!r} is a {type(value).__name__}, not a tensor or array")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        out[name] = tensor
    return out


def load_checkpoint(model: nn.Module, obj: Mapping, strict: bool = True) -> LoadReport:
    """Load an upstream (or our own) checkpoint into ``model``; see ``convert_upstream_checkpoint`` for the formats
    and :func:`~ros_mmfusion.core.models.checkpoints.load_state` for ``strict``."""
    return load_state(model, convert_upstream_checkpoint(obj), strict)


__all__ = ["CMX", "CMXConfig", "CMX_VARIANTS", "DualMiT", "MLPDecoder", "FeatureRectifyModule", "FeatureFusionModule",
           "LoadReport", "build_cmx", "cmx_mit_b0", "cmx_mit_b1", "cmx_mit_b2", "cmx_mit_b3", "cmx_mit_b4",
           "cmx_mit_b5", "convert_upstream_checkpoint", "load_checkpoint"]
