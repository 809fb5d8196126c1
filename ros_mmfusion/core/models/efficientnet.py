"""EfficientNet (Tan & Le, 2019) with the conventions of the ``efficientnet_pytorch`` package that ViNT builds on.

What decides checkpoint compatibility, and is reproduced here on purpose:

* Module and parameter names (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ... ``_conv_head``, ``_bn1``,
  ``_fc``).
* "Static same" padding: every convolution pads with zeros by an amount computed ONCE, at construction, for the
  variant's nominal square resolution (224 for B0), and that padding is applied unchanged whatever the real input
  size. For B0 a stride-2 3x3 conv pads (left 0, right 1, top 0, bottom 1), a stride-2 5x5 conv (1, 2, 1, 2), a
  stride-1 kxk conv (k-1)/2 on all sides. On a 64x85 ViNT frame this gives a final 2x2 map, not the 2x3 that
  TensorFlow's input-dependent SAME padding would give.
* BatchNorm eps 1e-3 and momentum 0.01 (PyTorch convention; TensorFlow's 0.99), swish ``x * sigmoid(x)``,
  squeeze-excitation on the block input width times 0.25 with swish inside, a residual where stride is 1 and the
  widths agree, drop-connect (stochastic depth) only in training.

The network reads top-down: stem -> MBConv stages -> 1x1 head conv -> global average pool -> dropout -> classifier.
``forward_features`` returns the head feature map, ``forward_head(..., pre_logits=True)`` the pooled 1280-d vector
that ViNT feeds to its compression layers (the ImageNet classifier ``_fc`` exists for key compatibility only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ros_mmfusion.core.errors import ConfigError

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch's convention: 1 - TensorFlow's 0.99


@dataclass(frozen=True)
class MBConvStage:
    """One stage of MBConv blocks as in the paper's table: the first block has ``stride``, the rest stride 1."""

    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    in_channels: int
    out_channels: int
    se_ratio: float = 0.25


#: The B0 baseline (paper table 1); other variants scale widths and repeats.
B0_STAGES: tuple[MBConvStage, ...] = (
    MBConvStage(1, 3, 1, 1, 32, 16),
    MBConvStage(2, 3, 2, 6, 16, 24),
    MBConvStage(2, 5, 2, 6, 24, 40),
    MBConvStage(3, 3, 2, 6, 40, 80),
    MBConvStage(3, 5, 1, 6, 80, 112),
    MBConvStage(4, 5, 2, 6, 112, 192),
    MBConvStage(1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class EfficientNetVariant:
    """Compound-scaling coefficients of one variant; ``resolution`` is also the size the static padding is built for."""

    width: float
    depth: float
    resolution: int
    dropout: float
    drop_connect: float = 0.2


EFFICIENTNET_VARIANTS: dict[str, EfficientNetVariant] = {
    "efficientnet-b0": EfficientNetVariant(1.0, 1.0, 224, 0.2),
    "efficientnet-b1": EfficientNetVariant(1.0, 1.1, 240, 0.2),
    "efficientnet-b2": EfficientNetVariant(1.1, 1.2, 260, 0.3),
    "efficientnet-b3": EfficientNetVariant(1.2, 1.4, 300, 0.3),
    "efficientnet-b4": EfficientNetVariant(1.4, 1.8, 380, 0.4),
    "efficientnet-b5": EfficientNetVariant(1.6, 2.2, 456, 0.4),
    "efficientnet-b6": EfficientNetVariant(1.8, 2.6, 528, 0.5),
    "efficientnet-b7": EfficientNetVariant(2.0, 3.1, 600, 0.5),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round to a multiple of ``divisor``, never dropping below 90 %."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def static_same_padding(size: tuple[int, int], kernel: int, stride: int) -> tuple[int, int, int, int]:
    """Zero padding (left, right, top, bottom) that makes a conv 'same' for an input of ``size`` = (height, width).

    The total is ``max((ceil(n / s) - 1) * s + k - n, 0)`` per axis, the smaller half before, the larger after.
    """
    pads = []
    for n in size:
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


def _downsampled(size: tuple[int, int], stride: int) -> tuple[int, int]:
    return math.ceil(size[0] / stride), math.ceil(size[1] / stride)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class StaticSameConv2d(nn.Conv2d):
    """``nn.Conv2d`` preceded by a fixed zero padding computed for ``design_size``, not for the actual input."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 bias: bool = False, design_size: tuple[int, int] = (1, 1)) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=bias)
        self.static_padding = static_same_padding(design_size, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.static_padding):
            x = F.pad(x, self.static_padding)
        return super().forward(x)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def drop_connect(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth on a residual branch: drop whole samples with probability ``rate`` (training only)."""
    if not training or rate <= 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.floor(keep + torch.rand((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device))
    return x / keep * mask


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand -> kxk depthwise -> squeeze-excitation -> 1x1 project (+ residual)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int,
                 se_ratio: float, design_size: tuple[int, int]) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = expand_ratio != 1
        if self.expand:
            self._expand_conv = StaticSameConv2d(in_channels, hidden, 1, design_size=design_size)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = StaticSameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden,
                                                design_size=design_size)
        self._bn1 = _batch_norm(hidden)
        self.has_se = 0.0 < se_ratio <= 1.0
        if self.has_se:
            squeezed = max(1, int(in_channels * se_ratio))
            self._se_reduce = StaticSameConv2d(hidden, squeezed, 1, bias=True)
            self._se_expand = StaticSameConv2d(squeezed, hidden, 1, bias=True)
        self._project_conv = StaticSameConv2d(hidden, out_channels, 1, design_size=_downsampled(design_size, stride))
        self._bn2 = _batch_norm(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs: torch.Tensor, drop_connect_rate: float = 0.0) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = swish(self._bn0(self._expand_conv(x)))
        x = swish(self._bn1(self._depthwise_conv(x)))
        if self.has_se:
            squeezed = F.adaptive_avg_pool2d(x, 1)
            squeezed = self._se_expand(swish(self._se_reduce(squeezed)))
            x = torch.sigmoid(squeezed) * x
        x = self._bn2(self._project_conv(x))
        if self.residual:
            x = drop_connect(x, drop_connect_rate, self.training) + inputs
        return x


class EfficientNet(nn.Module):
    """EfficientNet with ``efficientnet_pytorch``-compatible parameter names and static-same padding.

    Args:
        variant: scaling coefficients (see ``EFFICIENTNET_VARIANTS``).
        in_channels: 3 for an RGB frame; ViNT's goal encoder takes 6 (current frame and goal image stacked).
        num_classes: width of the ``_fc`` classifier (1000, ImageNet, in every upstream checkpoint).
        stages: the baseline stage table that ``variant`` scales.
    """

    def __init__(self, variant: EfficientNetVariant, in_channels: int = 3, num_classes: int = 1000,
                 stages: tuple[MBConvStage, ...] = B0_STAGES) -> None:
        super().__init__()
        self.variant = variant
        size = (variant.resolution, variant.resolution)
        stem = round_filters(STEM_CHANNELS, variant.width)
        self._conv_stem = StaticSameConv2d(in_channels, stem, 3, stride=2, design_size=size)
        self._bn0 = _batch_norm(stem)
        size = _downsampled(size, 2)

        blocks = []
        for stage in stages:
            cin = round_filters(stage.in_channels, variant.width)
            cout = round_filters(stage.out_channels, variant.width)
            for i in range(round_repeats(stage.repeats, variant.depth)):
                stride = stage.stride if i == 0 else 1
                blocks.append(MBConvBlock(cin if i == 0 else cout, cout, stage.kernel, stride, stage.expand_ratio,
                                          stage.se_ratio, size))
                size = _downsampled(size, stride)
        self._blocks = nn.ModuleList(blocks)

        head_in = round_filters(stages[-1].out_channels, variant.width)
        self.num_features = round_filters(HEAD_CHANNELS, variant.width)
        self._conv_head = StaticSameConv2d(head_in, self.num_features, 1, design_size=size)
        self._bn1 = _batch_norm(self.num_features)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(variant.dropout)
        self._fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W] -> head feature map [B, num_features, h, w] (after the head conv, BN and swish)."""
        x = swish(self._bn0(self._conv_stem(x)))
        for index, block in enumerate(self._blocks):
            x = block(x, self.variant.drop_connect * index / len(self._blocks))
        return swish(self._bn1(self._conv_head(x)))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool + dropout (+ the ``_fc`` classifier unless ``pre_logits``)."""
        x = self._dropout(self._avg_pooling(features).flatten(start_dim=1))
        return x if pre_logits else self._fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def efficientnet(name: str = "efficientnet-b0", in_channels: int = 3, num_classes: int = 1000) -> EfficientNet:
    """A named variant ("efficientnet-b0" ... "efficientnet-b7"), randomly initialised."""
    if name not in EFFICIENTNET_VARIANTS:
        raise ConfigError(f"unknown EfficientNet variant {name!r}; known: {sorted(EFFICIENTNET_VARIANTS)}")
    return EfficientNet(EFFICIENTNET_VARIANTS[name], in_channels=in_channels, num_classes=num_classes)
