"""ViNT split for streaming (each context frame encoded once, its token reused while it stays in the context): the
two halves compute what the whole network does, in PyTorch and in ONNX Runtime, and the navigation pipeline over the
split backend publishes the same closest nodes, subgoals and waypoints as over the whole network, frame by frame,
across a time jump, encoding only the newest frame at each step."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ros_mmfusion.core.models.vint import ViNTFrameEncoder, ViNTGoalDecoder
from ros_mmfusion.core.navigation.artifacts import (
    NavigationModel,
    build_backend,
    build_split_backend,
    build_vint,
    vint_onnx,
    vint_split_onnx,
)
from ros_mmfusion.core.navigation.pipeline import NavigationPolicy, SplitViNTBackend
from ros_mmfusion.core.navigation.topomap import topomap_from_images
from ros_mmfusion.paths import share_dir

S = 1_000_000_000
PERIOD = S // 4
TOL = 1e-4
pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def model():
    """The shipped trained package (distances that localise, so closest-node agreement means something)."""
    return NavigationModel.from_package(share_dir() / "models" / "vint_reduced_corridor")


@pytest.fixture(scope="module")
def onnx_files(model, tmp_path_factory):
    """The whole network's and the split network's ONNX files, exported into a fresh cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMFUSION_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        whole = vint_onnx(model.variant, model.weights)
        split = vint_split_onnx(model.variant, model.weights)
        yield whole, split


@pytest.fixture(scope="module")
def route():
    """Frames of a corridor route (the synthetic world at 4 Hz): camera frames and the topomap built from them."""
    from ros_mmfusion.core.sim import Simulation

    sim = Simulation("indoor_corridor", seed=901, size=(96, 72), beams=16, rate=4.0)
    frames = [sim.frame(k).camera.rgb for k in range(0, 36, 2)]
    return frames, topomap_from_images({i: f for i, f in enumerate(frames[::2])}, len(frames[::2]), "corridor")


class CountingBackend:
    """A real backend that records the batch size of every call (to see what the frame encoder is asked)."""

    def __init__(self, backend) -> None:
        self.backend, self.info, self.batches = backend, backend.info, []

    def run(self, feeds):
        self.batches.append(len(next(iter(feeds.values()))))
        return self.backend.run(feeds)


def random_inputs(context: int, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(batch, 3 * (context + 1), 64, 85, generator=g), torch.randn(batch, 3, 64, 85, generator=g)


def split_forward(vint, obs: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The split halves on inputs of the whole network: each frame alone through the encoder, then the decoder."""
    frames = torch.cat(torch.split(obs, 3, dim=1), dim=0)  # frame-major
    tokens = ViNTFrameEncoder(vint)(frames).reshape(vint.context_size + 1, obs.shape[0], -1).transpose(0, 1)
    return ViNTGoalDecoder(vint)(tokens, obs[:, -3:], goal)


def test_torch_halves_compute_the_whole_network(model):
    vint = build_vint(model.variant, model.weights)
    obs, goal = random_inputs(vint.context_size)
    with torch.no_grad():
        dist, action = vint(obs, goal)
        dist2, action2 = split_forward(vint, obs, goal)
    assert dist2.shape == dist.shape and action2.shape == action.shape
    assert (dist - dist2).abs().max() < TOL and (action - action2).abs().max() < TOL
    assert vint.state_dict().keys() == build_vint(model.variant).state_dict().keys()  # the file format is unchanged


def test_onnx_runtime_halves_compute_the_whole_network(model, onnx_files):
    from ros_mmfusion.core.onnx_export import ort_session

    (whole, (encoder, decoder)), context = onnx_files, model.variant.config.context_size
    obs, goal = (t.numpy() for t in random_inputs(context, batch=4))
    dist, action = ort_session(whole, threads=1).run(["dist", "action"], {"obs_img": obs, "goal_img": goal})
    frames = np.concatenate(np.split(obs, context + 1, axis=1))
    tokens = ort_session(encoder, threads=1).run(["frame_token"], {"frame_img": frames})[0]
    tokens = tokens.reshape(context + 1, 4, -1).transpose(1, 0, 2)
    dist2, action2 = ort_session(decoder, threads=1).run(
        ["dist", "action"], {"context_tokens": tokens, "current_img": obs[:, -3:], "goal_img": goal})
    assert np.abs(dist - dist2).max() < TOL and np.abs(action - action2).max() < TOL


def drive(policy: NavigationPolicy, frames: list[np.ndarray], stamps: list[int]) -> list:
    """The pipeline's steps over ``frames`` (one per context period), as the node runs them."""
    results = []
    for stamp, frame in zip(stamps, frames, strict=True):
        if policy.add_frame(stamp, frame) and policy.ready:
            results.append(policy.step())
    return results


def test_pipeline_over_the_split_network_publishes_what_the_whole_network_does(model, onnx_files, route):
    frames, topomap = route
    (whole, _), options = onnx_files, {"variant": model.variant, "radius": 2, "waypoint_spacing": 0.25}
    with pytest.MonkeyPatch.context() as mp:  # the split files of the fixture's cache
        mp.setenv("MMFUSION_CACHE_DIR", str(whole.parent.parent))
        split = build_split_backend("onnxruntime", model.variant, model.weights, threads=1)
    counted = SplitViNTBackend(CountingBackend(split.frame_encoder), split.goal_decoder)
    old = NavigationPolicy(topomap, build_backend("onnxruntime", model.variant, model.weights, str(whole), threads=1),
                           **options)
    new = NavigationPolicy(topomap, counted, **options)
    assert "split" in new.backend.info.detail
    # 12 frames, then a time jump back to 0 s (a replayed bag) with other frames: the context and its tokens restart
    stamps = [k * PERIOD for k in range(12)] + [k * PERIOD for k in range(6)]
    sequence = frames[:12] + frames[-6:]
    ticks_old, ticks_new = drive(old, sequence, stamps), drive(new, sequence, stamps)
    assert len(ticks_new) == len(ticks_old) == 7 + 1
    for a, b in zip(ticks_old, ticks_new, strict=True):
        assert (a.closest_node, a.subgoal_node, a.goal_reached) == (b.closest_node, b.subgoal_node, b.goal_reached)
        assert a.localization.window == b.localization.window
        np.testing.assert_allclose(b.model_distances, a.model_distances, atol=TOL)
        np.testing.assert_allclose(b.waypoints, a.waypoints, atol=TOL)
    assert len({t.closest_node for t in ticks_old}) > 1  # the route moves the localisation along
    # all six frames encoded once to fill the context, then only the newest one per step; again after the jump
    assert counted.frame_encoder.batches == [6] + [1] * 6 + [6]
