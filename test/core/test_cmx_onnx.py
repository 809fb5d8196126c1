"""CMX exports to ONNX (opset 17, dynamic batch and image size) and ONNX Runtime agrees with PyTorch.

Uses the mit_b0 parity fixture weights (``../shared/fixtures/cmx``) so the graph is checked with realistic values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ros_mmfusion.core.models.cmx import cmx_mit_b0, load_checkpoint
from ros_mmfusion.core.onnx_export import OPSET, export_onnx, op_types, ort_session, run_ort
from test.fixtures import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES
CMX_DIR = FIXTURES / "cmx"
pytestmark = pytest.mark.skipif(not (CMX_DIR / "io.npz").exists(), reason=f"no CMX fixture in {CMX_DIR}")

ATOL = RTOL = 1e-4  # manifest recommended_tolerance for float32 logits
DYNAMIC = {0: "batch", 2: "height", 3: "width"}
FORBIDDEN_OPS = {"ScatterND", "Loop", "If"}  # in-place slice writes and data-dependent control flow


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    return dict(np.load(CMX_DIR / "io.npz"))


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    net = cmx_mit_b0(num_classes=9).eval()
    load_checkpoint(net, dict(np.load(CMX_DIR / "state_mit_b0_nc9_fp16.npz")))
    return net


@pytest.fixture(scope="module")
def onnx_path(model, io, tmp_path_factory) -> Path:
    example = (torch.from_numpy(io["b_rgb_in"]), torch.from_numpy(io["b_x_in"]))
    return export_onnx(model, example, tmp_path_factory.mktemp("cmx") / "cmx_mit_b0.onnx", ["rgb", "x"], ["logits"],
                       dynamic_axes={"rgb": DYNAMIC, "x": DYNAMIC, "logits": DYNAMIC}, opset=OPSET)


@pytest.fixture(scope="module")
def session(onnx_path):
    return ort_session(onnx_path, threads=1)


def _compare(model, session, rgb: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        expected = model(torch.from_numpy(rgb), torch.from_numpy(x)).numpy()
    got = run_ort(session, {"rgb": rgb, "x": x})["logits"]
    assert got.shape == expected.shape
    err = np.abs(got - expected)
    print(f"{tuple(rgb.shape)}: ONNX Runtime vs PyTorch max abs diff {err.max():.3g}")
    assert np.all(err <= ATOL + RTOL * np.abs(expected)), f"max abs diff {err.max():.3g}"
    return got, expected


def test_onnx_runtime_matches_pytorch_on_fixture_input(model, session, io):
    got, _ = _compare(model, session, io["b_rgb_in"], io["b_x_in"])
    agree = got[0].argmax(0) == io["b_pred"]
    decisive = io["b_pred_margin"].astype(np.float32) > 1e-3
    assert agree[decisive].all() and agree.mean() >= 0.9999


def test_onnx_runtime_matches_pytorch_at_another_batch_and_size(model, session, io):
    # batch 2 at 200x296 (neither a multiple of 32 nor the export size): two different crops of the 480x640 pair
    crops = [(slice(0, 200), slice(0, 296)), (slice(150, 350), slice(300, 596))]
    rgb = np.concatenate([io["a_rgb_in"][:, :, r, c] for r, c in crops])
    x = np.concatenate([io["a_x_in"][:, :, r, c] for r, c in crops])
    got, _ = _compare(model, session, np.ascontiguousarray(rgb), np.ascontiguousarray(x))
    assert got.shape == (2, 9, 200, 296)


def test_onnx_graph_is_opset_17_with_dynamic_shapes_and_no_control_flow(onnx_path):
    import onnx

    graph = onnx.load(str(onnx_path))
    assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in graph.opset_import)
    for value in (*graph.graph.input, *graph.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert [dims[i].dim_param for i in (0, 2, 3)] == ["batch", "height", "width"], value.name
    ops = op_types(onnx_path)
    print("ONNX op types:", " ".join(sorted(ops)))
    assert not ops & FORBIDDEN_OPS, sorted(ops & FORBIDDEN_OPS)
