"""CMX's two deployed ONNX graphs (``segmentation.artifacts.onnx_path_for``): the ONNX Runtime graph (fused
``com.microsoft.MultiHeadAttention``, channels-last decoder) and the portable one (TensorRT, INT8), both with Mix-FFN
on the feature map. Each gives the reference module's logits; only the portable one is for TensorRT's parser.

A tiny random-weight model (5 classes, decoder width 32) at 64x96, so that the exports take seconds.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_mmfusion.core.inference.tensorrt_ops import parser_problems
from ros_mmfusion.core.models import mit
from ros_mmfusion.core.models.cmx import cmx_mit_b0
from ros_mmfusion.core.onnx_export import op_types, ort_session
from ros_mmfusion.core.segmentation.artifacts import onnx_path_for
from ros_mmfusion.core.segmentation.pipeline import SegmentationModelSpec

SIZE = (64, 96)
ATOL = RTOL = 1e-4


@pytest.fixture(scope="module")
def model(torch_single_thread):
    torch.manual_seed(3)
    return cmx_mit_b0(num_classes=5, decoder_embed_dim=32).eval()


@pytest.fixture(scope="module")
def graphs(model, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cmx_graphs")
    torch.save(model.state_dict(), folder / "weights.pt")
    spec = SegmentationModelSpec(num_classes=5, decoder_embed_dim=32, input_size=SIZE,
                                 weights=str(folder / "weights.pt"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMFUSION_CACHE_DIR", str(folder / "cache"))
        return {"onnxruntime": onnx_path_for(spec, "onnxruntime"), "portable": onnx_path_for(spec, "tensorrt")}


def _node_names(path: Path) -> list[tuple[str, str]]:
    import onnx

    return [(n.op_type, n.name) for n in onnx.load(str(path)).graph.node]


def test_onnxruntime_graph_fuses_attention_and_decoder_sum_portable_graph_stays_standard(graphs):
    ort_ops, portable_ops = op_types(graphs["onnxruntime"]), op_types(graphs["portable"])
    fused = [name for op, name in _node_names(graphs["onnxruntime"]) if op == "MultiHeadAttention"]
    assert len(fused) == 16  # 2 branches x 4 stages x 2 blocks of mit_b0
    assert "Sum" in ort_ops and not {"MultiHeadAttention", "Sum"} & portable_ops
    assert parser_problems(graphs["portable"]) == []
    assert any(f"{mit.ORT_DOMAIN}::MultiHeadAttention" in p for p in parser_problems(graphs["onnxruntime"]))
    assert graphs["onnxruntime"] != graphs["portable"]


def test_mix_ffn_linears_export_as_1x1_convolutions(graphs):
    for path in graphs.values():
        mlp = [(op, name) for op, name in _node_names(path) if re.search(r"block\d\.\d+/mlp/", name)]
        assert [n for op, n in mlp if op in ("MatMul", "Gemm")] == [], path.name
        assert sum(op == "Conv" for op, _ in mlp) == 3 * 16  # fc1, depthwise, fc2 per block


@pytest.mark.parametrize("which", ["onnxruntime", "portable"])
def test_graph_matches_reference_module_at_another_batch_and_size(model, graphs, which):
    rng = np.random.default_rng(7)
    rgb, x = (rng.standard_normal((2, 3, 72, 104), dtype=np.float32) for _ in range(2))
    with torch.no_grad():
        expected = model(torch.from_numpy(rgb), torch.from_numpy(x)).numpy()
    got = ort_session(graphs[which], threads=1).run(None, {"rgb": rgb, "x": x})[0]
    assert got.shape == expected.shape == (2, 5, 72, 104)
    err = np.abs(got - expected)
    assert np.all(err <= ATOL + RTOL * np.abs(expected)), f"max abs diff {err.max():.3g}"


def test_mix_ffn_on_the_map_equals_the_token_form():
    torch.manual_seed(0)
    ffn = mit.MixFFN(8, 32).eval()
    tokens = torch.randn(2, 5 * 7, 8)
    with torch.no_grad():
        reference = ffn.fc2(ffn.act(ffn.dwconv(ffn.fc1(tokens), 5, 7)))
        torch.testing.assert_close(ffn(tokens, 5, 7), reference, atol=1e-6, rtol=1e-5)
