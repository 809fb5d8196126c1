"""TensorRT graph hygiene: every registered network, exported the way the suite exports it, uses only operators
that TensorRT's ONNX parser documents as supported, within the documented restrictions that apply to our graphs, and
none of the constructs that signal an export bug (ScatterND from in-place slice assignment, data-dependent control
flow or shapes).

``TENSORRT_ONNX_OPS`` is the TensorRT 10.x row of ``core/inference/tensorrt_ops.py`` (written from the operator support
matrix of the ONNX-TensorRT parser, ``docs/operators.md`` of onnx/onnx-tensorrt: opsets 9 to 24); only rows marked
supported are listed. The pillar graphs and the version table are checked in ``test_tensorrt_graphs.py``. TensorRT
itself cannot run here, so this is the check that the same ONNX file ONNX Runtime runs would parse on a GPU machine.

The four large CMX variants (mit_b2..b5) take 10-25 s each to trace on the 2-core development VM although their graphs
are the b0/b1 graph with other depths and widths; they run when ``MMFUSION_SLOW_TESTS=1``.
"""
from __future__ import annotations

import os

import onnx
import pytest

from ros_mmfusion.core.inference.tensorrt_ops import SUPPORT
from ros_mmfusion.core.models.registry import NETWORKS
from ros_mmfusion.core.onnx_export import OPSET, op_types

TENSORRT_ONNX_OPS = SUPPORT["10"].ops  # the documented table, core/inference/tensorrt_ops.py

#: supported by the parser, but in our graphs a sign of an export bug: in-place slice writes, data-dependent loops,
#: branches or shapes
FORBIDDEN = frozenset({"ScatterND", "ScatterElements", "Scatter", "Loop", "If", "Scan", "NonZero"})
#: Resize: the parser's supported modes and coordinate transformations
RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
HEAVY = {"cmx_mit_b2", "cmx_mit_b3", "cmx_mit_b4", "cmx_mit_b5"}
SMALL = (64, 96)


def _params():
    slow = os.environ.get("MMFUSION_SLOW_TESTS") == "1"
    for name in NETWORKS:
        marks = [pytest.mark.slow]
        if name in HEAVY and not slow:
            marks.append(pytest.mark.skip(reason="large CMX variant: same graph as b0/b1 with other depths; "
                                                 "MMFUSION_SLOW_TESTS=1 runs it"))
        yield pytest.param(name, marks=marks if name in HEAVY else [], id=name)


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


@pytest.mark.parametrize("name", list(_params()))
def test_exported_network_uses_only_operators_tensorrt_parses(name, network_onnx):
    path = network_onnx(name, SMALL)
    model = onnx.load(str(path), load_external_data=False)
    assert any(o.domain in ("", "ai.onnx") and o.version == OPSET for o in model.opset_import)
    assert all(o.domain in ("", "ai.onnx") for o in model.opset_import), "custom domains need TensorRT plugins"
    ops = op_types(path)
    print(f"{name}: {' '.join(sorted(ops))}")
    assert not ops - TENSORRT_ONNX_OPS, f"not parsed by TensorRT: {sorted(ops - TENSORRT_ONNX_OPS)}"
    assert not ops & FORBIDDEN, f"export bug constructs: {sorted(ops & FORBIDDEN)}"
    constants = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant"
                                                             for o in n.output}
    for node in model.graph.node:
        if node.op_type == "CumSum":
            assert node.input[1] in constants, f"{node.name}: axis must be a build-time constant"
        if node.op_type == "Resize":
            assert _attr(node, "mode", "nearest") in RESIZE_MODES, node.name
            assert _attr(node, "coordinate_transformation_mode", "half_pixel") in RESIZE_COORDINATES, node.name
            assert _attr(node, "antialias", 0) == 0, node.name
        if node.op_type in ("MaxPool", "AveragePool", "LpPool"):
            assert all(d == 1 for d in _attr(node, "dilations", [1])), node.name
        if node.op_type == "LayerNormalization":
            assert len([o for o in node.output if o]) == 1, f"{node.name}: only output Y is supported"


def test_the_supported_list_rejects_what_the_parser_documents_as_unsupported():
    """Guards the hand-written list against typos that would let unsupported operators through."""
    for op in ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLinear", "Det",
               "SequenceAt", "Unique", "StringNormalizer", "MaxUnpool", "Bernoulli", "BitShift", "Compress"):
        assert op not in TENSORRT_ONNX_OPS
