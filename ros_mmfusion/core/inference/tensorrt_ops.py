"""Which ONNX operators TensorRT's ONNX parser takes, per TensorRT version, and the check of an ONNX file against it.

TensorRT cannot run on the project's machines, so this table is how an exported graph is known to parse on a GPU
machine before one is lent: every graph the suite exports (segmentation, pillar encoder, backbone+head, ViNT) is
checked against it in ``test/core/test_tensorrt_graph_hygiene.py``, and ``mmfusion build-engine`` checks a file
before handing it to TensorRT (naming the operator rather than failing inside the parser).

Sources, per version (``SUPPORT``; the table is also in docs/backends.md, "TensorRT's ONNX operators"):

- **10.x** (TensorRT 10.0-10.13, ONNX opsets 9-24): the operator support matrix ``docs/operators.md`` of
  onnx/onnx-tensorrt, release/10.x branch; only the rows marked supported are listed.
- **8.6** (TensorRT 8.6, JetPack 6.0's and many desktop installs; ONNX opsets 7-17): the same list without the
  operators ONNX introduced after opset 17 (``NEWER_THAN_OPSET_17``), which no 8.6 parser can know.

The check covers operator types and the opset; restrictions on attributes (Resize modes, pooling dilations, ...)
are checked per graph by the hygiene test.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ros_mmfusion.core.errors import ConfigError

_TENSORRT_10_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization BlackmanWindow Cast
CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu
Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow
HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization
LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu
QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RMSNormalization RNN RoiAlign RotaryEmbedding Round ScaledTanh Scan Scatter ScatterElements ScatterND
Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze STFT Sub
Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

NEWER_THAN_OPSET_17 = {"DeformConv": 19, "GroupNormalization": 18, "Gelu": 20, "Mish": 18, "Attention": 23,
                       "RMSNormalization": 23, "RotaryEmbedding": 23}
"""Operators (and the ONNX opset that introduced them) a parser of opsets up to 17 cannot know."""


@dataclass(frozen=True)
class ParserSupport:
    """What TensorRT ``version``'s ONNX parser takes: default-domain operators ``ops`` at opsets
    ``min_opset``..``max_opset``; ``source`` says where the list comes from."""

    version: str
    min_opset: int
    max_opset: int
    ops: frozenset[str]
    source: str


SUPPORT = {
    "10": ParserSupport("10", 9, 24, _TENSORRT_10_OPS,
                        "onnx/onnx-tensorrt docs/operators.md, release/10.x (TensorRT 10.0-10.13)"),
    "8.6": ParserSupport("8.6", 7, 17, _TENSORRT_10_OPS - frozenset(NEWER_THAN_OPSET_17),
                         "the 10.x list without operators introduced after ONNX opset 17 (8.6 parses opsets 7-17)"),
}
"""Per TensorRT version (major, or major.minor where the major's releases differ): its parser's support."""
DEFAULT_VERSION = "10"


def support_for(version: str = DEFAULT_VERSION) -> ParserSupport:
    """The table row of TensorRT ``version`` ("10", "10.13.0", "8.6", "8.6.2" ...): the longest matching key."""
    for key in sorted(SUPPORT, key=len, reverse=True):
        if version == key or version.startswith(key + "."):
            return SUPPORT[key]
    raise ConfigError(f"no ONNX operator table for TensorRT {version}; known: {', '.join(SUPPORT)}")


def parser_problems(onnx: str | Path, version: str = DEFAULT_VERSION) -> list[str]:
    """What in ``onnx`` TensorRT ``version``'s parser would reject: unsupported default-domain operators, operators of
    other domains (they need TensorRT plugins) and an opset outside the parser's range; empty when none."""
    import onnx as onnx_lib

    support = support_for(version)
    model = onnx_lib.load(str(onnx), load_external_data=False)
    problems = []
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not support.min_opset <= opset.version <= support.max_opset:
            problems.append(f"opset {opset.version} (TensorRT {support.version} parses "
                            f"{support.min_opset}-{support.max_opset})")
    found: set[tuple[str, str]] = set()

    def walk(graph) -> None:
        for node in graph.node:
            found.add((node.domain, node.op_type))
            for attr in node.attribute:
                if attr.type == onnx_lib.AttributeProto.GRAPH:
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(model.graph)
    for domain, op in sorted(found):
        if domain not in ("", "ai.onnx"):
            problems.append(f"{domain}::{op} (custom domain: needs a TensorRT plugin)")
        elif op not in support.ops:
            problems.append(f"{op} (not supported by TensorRT {support.version}'s ONNX parser)")
    return problems


def check_parser_support(onnx: str | Path, version: str = DEFAULT_VERSION) -> None:
    """ConfigError naming everything in ``onnx`` TensorRT ``version``'s ONNX parser would reject."""
    problems = parser_problems(onnx, version)
    if problems:
        raise ConfigError(f"{onnx}: TensorRT {support_for(version).version} cannot parse it: {'; '.join(problems)}")
