"""ViNT exports to ONNX with a dynamic batch (one context scored against several topomap goals) and ONNX Runtime
reproduces PyTorch; the graph stays free of ops TensorRT handles badly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ros_mmfusion.core.models.vint import ONNX_INPUT_NAMES, create_vint, load_checkpoint, vint_onnx_spec
from ros_mmfusion.core.onnx_export import export_onnx, op_types, ort_session, run_ort
from test.fixtures import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "vint"
pytestmark = pytest.mark.skipif(not (FIXTURES / "io.npz").exists(), reason="ViNT fixtures not available")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with np.load(FIXTURES / "state_vint_reduced_fp16.npz") as npz:
        state = dict(npz)
    model = create_vint("vint_reduced")
    load_checkpoint(model, state, allow_missing=model.unused_state_keys())
    path = export_onnx(model, path=tmp_path_factory.mktemp("vint") / "vint_reduced.onnx", **vint_onnx_spec(model))
    yield model, path, ort_session(path, threads=1)
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def topo_inputs() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "io.npz") as io:
        return {k: io[k] for k in ("topo_obs_ctx", "topo_goal", "topo_dist", "topo_action")}


def test_export_restores_the_transformer_fast_path_setting(exported):
    assert torch.backends.mha.get_fastpath_enabled()


def test_inputs_and_outputs_have_a_dynamic_batch(exported):
    _, _, session = exported
    assert [i.name for i in session.get_inputs()] == list(ONNX_INPUT_NAMES)
    for arg in [*session.get_inputs(), *session.get_outputs()]:
        assert arg.shape[0] == "batch", arg


@pytest.mark.parametrize("batch", [1, 4])
def test_onnx_runtime_matches_pytorch(exported, topo_inputs, batch):
    model, _, session = exported
    obs = np.repeat(topo_inputs["topo_obs_ctx"], batch, axis=0).astype(np.float32)
    goal = topo_inputs["topo_goal"][:batch].astype(np.float32)
    got = run_ort(session, {"obs_img": obs, "goal_img": goal})
    with torch.no_grad():
        dist, action = model(torch.from_numpy(obs), torch.from_numpy(goal))
    assert got["dist"].shape == (batch, 1) and got["action"].shape == (batch, 5, 4)
    np.testing.assert_allclose(got["dist"], dist.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["action"], action.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["dist"], topo_inputs["topo_dist"][:batch], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["action"], topo_inputs["topo_action"][:batch], rtol=1e-4, atol=1e-4)


def test_graph_has_no_scatter_or_control_flow(exported):
    ops = op_types(exported[1])
    assert not ops & {"ScatterND", "ScatterElements", "Loop", "If"}, sorted(ops)
    assert {"Conv", "CumSum", "LayerNormalization", "Softmax"} <= ops
