"""Mix Transformer (MiT), the hierarchical encoder of SegFormer (Xie et al., NeurIPS 2021), as building blocks.

A MiT stage is an overlapping patch embedding (a strided convolution that downsamples and widens), a stack of
transformer blocks, and a final LayerNorm. A block is efficient self-attention (keys and values come from a copy of
the tokens shrunk by a strided convolution, ``sr_ratio``) followed by a Mix-FFN (a 3x3 depthwise convolution between
the two linear layers gives the tokens position information; there is no positional embedding). Four stages produce
features at 1/4, 1/8, 1/16 and 1/32 of the input resolution.

Module and attribute names follow the released SegFormer/CMX checkpoints (``patch_embed1.proj``, ``block1.0.attn.kv``,
``mlp.dwconv.dwconv``, ...) so their state_dicts load without renaming. The LayerNorm epsilons differ by place, as in
the released code: 1e-5 (PyTorch's default) in the patch embedding and the attention's spatial reduction, 1e-6 in the
blocks and after each stage.

Tokens are ``(B, N, C)`` with ``N = H * W`` in row-major order; feature maps are ``(B, C, H, W)``. Everything is written
for ONNX export: shapes are read from tensors, no in-place slice assignment, no data-dependent control flow.
Dropout and stochastic depth are left out (this code serves inference; both are identity at evaluation).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STAGE_NORM_EPS = 1e-6
"""LayerNorm epsilon inside the blocks (``norm1``, ``norm2``) and after each stage (``normN``)."""
EMBED_NORM_EPS = 1e-5
"""LayerNorm epsilon of the patch embeddings and of the attention's spatial reduction."""


@dataclass(frozen=True)
class MiTVariant:
    """The numbers that distinguish MiT-b0 ... b5; the blocks are the same for all."""

    embed_dims: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    mlp_ratios: tuple[int, int, int, int] = (4, 4, 4, 4)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    patch_sizes: tuple[int, int, int, int] = (7, 3, 3, 3)
    strides: tuple[int, int, int, int] = (4, 2, 2, 2)
    qkv_bias: bool = True


_WIDE = (64, 128, 320, 512)
_HEADS = (1, 2, 5, 8)

MIT_VARIANTS: dict[str, MiTVariant] = {
    "mit_b0": MiTVariant(embed_dims=(32, 64, 160, 256), num_heads=_HEADS, depths=(2, 2, 2, 2)),
    "mit_b1": MiTVariant(embed_dims=_WIDE, num_heads=_HEADS, depths=(2, 2, 2, 2)),
    "mit_b2": MiTVariant(embed_dims=_WIDE, num_heads=_HEADS, depths=(3, 4, 6, 3)),
    "mit_b3": MiTVariant(embed_dims=_WIDE, num_heads=_HEADS, depths=(3, 4, 18, 3)),
    "mit_b4": MiTVariant(embed_dims=_WIDE, num_heads=_HEADS, depths=(3, 8, 27, 3)),
    "mit_b5": MiTVariant(embed_dims=_WIDE, num_heads=_HEADS, depths=(3, 6, 40, 3)),
}


def tokens_to_map(tokens: Tensor, height: Tensor | int, width: Tensor | int) -> Tensor:
    """``(B, H*W, C)`` tokens -> ``(B, C, H, W)`` feature map."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def map_to_tokens(fmap: Tensor) -> Tensor:
    """``(B, C, H, W)`` feature map -> ``(B, H*W, C)`` tokens."""
    return fmap.flatten(2).transpose(1, 2)


def head_dim_and_scale(dim: int, num_heads: int) -> tuple[int, float]:
    """Per-head width and the dot-product scale ``head_dim ** -0.5``."""
    if dim % num_heads:
        raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
    head_dim = dim // num_heads
    return head_dim, head_dim ** -0.5


def split_heads(x: Tensor, num_heads: int, head_dim: int) -> Tensor:
    """``(B, N, heads * d)`` -> ``(B, heads, N, d)``."""
    return x.reshape(x.shape[0], x.shape[1], num_heads, head_dim).transpose(1, 2)


def split_kv(kv: Tensor, num_heads: int, head_dim: int) -> tuple[Tensor, Tensor]:
    """``(B, M, 2 * heads * d)`` (keys then values) -> keys and values, each ``(B, heads, M, d)``."""
    kv = kv.reshape(kv.shape[0], kv.shape[1], 2, num_heads, head_dim).permute(2, 0, 3, 1, 4)
    return kv[0], kv[1]


def merge_heads(x: Tensor) -> Tensor:
    """``(B, heads, N, d)`` -> ``(B, N, heads * d)``."""
    return x.transpose(1, 2).flatten(2)


ORT_DOMAIN = "com.microsoft"
"""ONNX Runtime's operator domain (its contrib operators: not standard ONNX, TensorRT's parser rejects them)."""


class OrtMultiHeadAttention(torch.autograd.Function):
    """``softmax(q k^T * scale) v`` per head on ``(B, N, heads * d)`` queries and ``(B, M, heads * d)`` keys/values.

    Runs the standard operations in PyTorch; exports as ONNX Runtime's ``com.microsoft.MultiHeadAttention``, which
    its CPU provider runs as a fused flash attention (tiles of queries and keys in cache, no N x M score matrix in
    memory) instead of MatMul, Softmax and MatMul with the head transposes around them: the same values up to float
    rounding (online softmax), measured in docs/benchmarks.md.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, num_heads: int, scale: float) -> Tensor:
        head_dim = q.shape[-1] // num_heads
        q, k, v = (split_heads(t, num_heads, head_dim) for t in (q, k, v))
        return merge_heads(((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1) @ v)

    @staticmethod
    def symbolic(g, q, k, v, num_heads: int, scale: float):
        out = g.op(f"{ORT_DOMAIN}::MultiHeadAttention", q, k, v, num_heads_i=num_heads, scale_f=scale)
        out.setType(q.type())
        return out


class OverlapPatchEmbed(nn.Module):
    """Strided convolution with overlapping windows (kernel > stride), then LayerNorm over channels.

    Returns tokens and the output grid size; a 7x7/4 embedding maps H to ``(H + 2*3 - 7) // 4 + 1``.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim, eps=EMBED_NORM_EPS)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[2], x.shape[3]
        return self.norm(map_to_tokens(x)), height, width


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys/values come from tokens shrunk ``sr_ratio`` times per side.

    The reduction is a ``sr_ratio`` x ``sr_ratio`` convolution with the same stride, then LayerNorm; with
    ``sr_ratio == 1`` it is plain multi-head attention (and has no ``sr``/``norm`` parameters).

    ``ort_fused`` (a deployment switch, not a weight): export the attention core as ONNX Runtime's fused
    ``MultiHeadAttention`` (:class:`OrtMultiHeadAttention`) instead of standard ONNX operators; eager results are
    the same either way.
    """

    ort_fused: bool = False

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim, self.scale = head_dim_and_scale(dim, num_heads)
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=EMBED_NORM_EPS)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        q = self.q(x)
        source = x
        if self.sr_ratio > 1:  # a constructor choice, not data-dependent
            source = self.norm(map_to_tokens(self.sr(tokens_to_map(x, height, width))))
        kv = self.kv(source)
        if self.ort_fused:
            dim = self.num_heads * self.head_dim
            return self.proj(OrtMultiHeadAttention.apply(q, kv[..., :dim], kv[..., dim:], self.num_heads, self.scale))
        k, v = split_kv(kv, self.num_heads, self.head_dim)
        attn = ((split_heads(q, self.num_heads, self.head_dim) @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj(merge_heads(attn @ v))


class DWConv(nn.Module):
    """3x3 depthwise convolution applied to tokens laid back onto their grid."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        return map_to_tokens(self.dwconv(tokens_to_map(x, height, width)))


class MixFFN(nn.Module):
    """Linear -> depthwise 3x3 conv -> GELU (exact, erf) -> Linear.

    Computed on the feature map: the tokens are laid onto their grid once, before ``fc1``, and the two linear layers
    run as 1x1 convolutions with the same weights (``fc1``/``fc2`` stay ``nn.Linear``, so checkpoints load as they
    are). The same values up to float rounding as the token form, with two layout changes of ``dim`` channels per
    block instead of two of ``hidden`` (4x wider) around the depthwise convolution.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        fmap = F.conv2d(tokens_to_map(x, height, width), self.fc1.weight[:, :, None, None], self.fc1.bias)
        fmap = self.act(self.dwconv.dwconv(fmap))
        return map_to_tokens(F.conv2d(fmap, self.fc2.weight[:, :, None, None], self.fc2.bias))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=STAGE_NORM_EPS)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=STAGE_NORM_EPS)
        self.mlp = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        x = x + self.attn(self.norm1(x), height, width)
        return x + self.mlp(self.norm2(x), height, width)


def build_stage(variant: MiTVariant, index: int,
                in_chans: int) -> tuple[OverlapPatchEmbed, nn.ModuleList, nn.LayerNorm]:
    """The three parts of stage ``index`` (0-based): patch embedding, blocks, output norm.

    ``in_chans`` is the image channel count for stage 0 and ignored afterwards (the previous stage's width is used).
    """
    dims = variant.embed_dims
    dim = dims[index]
    embed = OverlapPatchEmbed(in_chans if index == 0 else dims[index - 1], dim, variant.patch_sizes[index],
                              variant.strides[index])
    blocks = nn.ModuleList(
        MiTBlock(dim, variant.num_heads[index], variant.mlp_ratios[index], variant.sr_ratios[index], variant.qkv_bias)
        for _ in range(variant.depths[index]))
    return embed, blocks, nn.LayerNorm(dim, eps=STAGE_NORM_EPS)


def run_stage(embed: OverlapPatchEmbed, blocks: nn.ModuleList, norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """One MiT stage on a ``(B, C_in, H, W)`` map; returns the ``(B, C, H', W')`` output map."""
    tokens, height, width = embed(x)
    for block in blocks:
        tokens = block(tokens, height, width)
    return tokens_to_map(norm(tokens), height, width)


class MixTransformer(nn.Module):
    """Single-branch MiT encoder (SegFormer's backbone): ``forward`` returns the four stage outputs.

    Attribute names are the released ones (``patch_embed1``, ``block1``, ``norm1``, ...).
    """

    def __init__(self, variant: MiTVariant | str = "mit_b0", in_chans: int = 3) -> None:
        super().__init__()
        self.variant = MIT_VARIANTS[variant] if isinstance(variant, str) else variant
        for i in range(4):
            embed, blocks, norm = build_stage(self.variant, i, in_chans)
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", norm)

    def stage(self, index: int, x: Tensor) -> Tensor:
        n = index + 1
        return run_stage(getattr(self, f"patch_embed{n}"), getattr(self, f"block{n}"), getattr(self, f"norm{n}"), x)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i in range(4):
            x = self.stage(i, x)
            outs.append(x)
        return outs


__all__ = ["MIT_VARIANTS", "MiTVariant", "MixTransformer", "MiTBlock", "EfficientSelfAttention", "MixFFN",
           "OverlapPatchEmbed", "OrtMultiHeadAttention", "ORT_DOMAIN", "build_stage", "run_stage", "tokens_to_map",
           "map_to_tokens", "head_dim_and_scale", "split_heads", "split_kv", "merge_heads"]
