"""The navigation pipeline over a real (untrained, reduced) ViNT: the context at the model's frame rate, one batch per
localisation window that matches per-goal inference, distances injected through the documented hook, metric
waypoints, weights files (plain and released-checkpoint form) and the errors a user can cause."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.models.vint import create_vint
from ros_mmfusion.core.navigation import load_topomap
from ros_mmfusion.core.navigation.artifacts import build_backend
from ros_mmfusion.core.navigation.pipeline import NavigationPolicy

S = 1_000_000_000
NODES = 6
pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def topomap(tmp_path_factory):
    """An upstream-style topomap of distinct random images (48x64)."""
    root = tmp_path_factory.mktemp("topomap")
    rng = np.random.default_rng(0)
    for i in range(NODES):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return load_topomap(root)


def frames(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(n)]


def policy(topomap, backend: str = "torch", weights: str = "", **kwargs) -> NavigationPolicy:
    options = {"variant": "vint_reduced", "radius": 2, "waypoint_spacing": 0.25, **kwargs}
    return NavigationPolicy(topomap, build_backend(backend, options["variant"], weights), **options)


def fill(p: NavigationPolicy, rate_hz: float = 4.0, count: int = 6, t0: int = 0) -> list[bool]:
    return [p.add_frame(t0 + round(i * S / rate_hz), f) for i, f in enumerate(frames(count))]


def test_context_fills_at_the_model_frame_rate_from_a_faster_camera(topomap):
    p = policy(topomap)
    taken = fill(p, rate_hz=10.0, count=14)  # 1.4 s of 10 Hz frames -> 0, .3, .5, .8, 1.0, 1.3 s
    assert [i for i, t in enumerate(taken) if t] == [0, 3, 5, 8, 10, 13]
    assert p.ready and p.context_stamp_ns == 13 * S // 10
    p.add_frame(10 * S, frames(1)[0])  # a 8.7 s camera gap: the context no longer has even spacing
    assert not p.ready and len(p.context) == 1


def test_one_batch_over_the_window_equals_scoring_each_goal_alone(topomap):
    p = policy(topomap)
    fill(p)
    dist, action = p.predict(0, 3)
    assert dist.shape == (4,) and action.shape == (4, 5, 4)
    obs = np.concatenate(list(p.context))[None]
    for i in range(4):
        alone = p.backend.run({"obs_img": obs, "goal_img": p.goal_tensor(i)[None]})
        np.testing.assert_allclose(dist[i], alone["dist"][0, 0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(action[i], alone["action"][0], rtol=1e-5, atol=1e-5)


def test_injected_distances_localise_and_the_subgoals_waypoints_are_scaled_to_metres(topomap):
    p = policy(topomap, close_threshold=3.0, waypoint_index=2)
    fill(p)
    calls = []

    def known(start: int, end: int) -> np.ndarray:
        calls.append((start, end))
        return np.array([8.0, 6.0, 2.0, 5.0])[: end - start + 1]  # node 2 is close: head for node 3

    result = p.step(known)
    assert calls == [(0, 3)]
    assert (result.closest_node, result.subgoal_node, result.goal_reached) == (2, 3, False)
    _, action = p.predict(0, 3)
    np.testing.assert_allclose(result.waypoints[:, :2], action[3, :, :2] * 0.25, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.waypoints[:, 2:], action[3, :, 2:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.hypot(result.waypoints[:, 2], result.waypoints[:, 3]), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(result.chosen_waypoint, result.waypoints[2])
    assert result.model_distances.shape == (4,) and result.stamp_ns == p.context_stamp_ns
    # the next step scores the window around node 2 and can reach the goal (node 5)
    result = p.step(lambda start, end: np.arange(end - start + 1, 0, -1, dtype=float))
    assert calls[-1] == (0, 3) and result.localization.window == (0, 5) and result.closest_node == 5
    assert result.goal_reached


def test_without_a_hook_the_model_distances_localise(topomap):
    p = policy(topomap)
    fill(p)
    result = p.step()
    np.testing.assert_array_equal(result.distances, result.model_distances)
    assert result.closest_node == int(np.argmin(result.model_distances))


def test_weights_files_load_as_a_state_dict_or_a_released_style_checkpoint(topomap, tmp_path):
    untrained = policy(topomap)
    fill(untrained)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        state = create_vint("vint_reduced").state_dict()
    torch.save(state, tmp_path / "plain.pt")
    torch.save({"model": state, "epoch": 3, "optimizer": None}, tmp_path / "released_style.pth")
    results = []
    for name in ("plain.pt", "released_style.pth"):
        trained = policy(topomap, weights=str(tmp_path / name))
        fill(trained)
        results.append(trained.predict(0, 3))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert not np.allclose(results[0][0], untrained.predict(0, 3)[0]), "the weights were used"


def test_errors_a_user_can_cause(topomap, tmp_path):
    with pytest.raises(ConfigError, match="waypoint_index 5"):
        policy(topomap, waypoint_index=5)
    with pytest.raises(ConfigError, match="weights file not found"):
        policy(topomap, weights=str(tmp_path / "absent.pth"))
    with pytest.raises(ConfigError, match="unknown ViNT variant"):
        policy(topomap, variant="vint_huge")
    with pytest.raises(ConfigError, match="goal node 6 is outside"):
        policy(topomap, goal_node=6)
    p = policy(topomap)
    with pytest.raises(MessageFormatError, match="uint8 RGB frame"):
        p.add_frame(0, np.zeros((48, 64), np.uint8))
    with pytest.raises(RuntimeError, match="context holds 0 of 6"):
        p.step()


def test_network_inputs_are_the_context_repeated_per_goal_and_need_no_backend(topomap):
    p = NavigationPolicy(topomap, None, variant="vint_reduced")
    with pytest.raises(RuntimeError, match="context holds 0 of 6"):
        p.network_inputs(0, 1)
    fill(p)
    feeds = p.network_inputs(1, 3)
    obs = np.concatenate(list(p.context))[None]
    assert feeds["obs_img"].shape == (3, *obs.shape[1:]) and feeds["obs_img"].dtype == np.float32
    np.testing.assert_array_equal(feeds["obs_img"], np.repeat(obs, 3, axis=0))
    np.testing.assert_array_equal(feeds["goal_img"], np.stack([p.goal_tensor(i) for i in (1, 2, 3)]))
    with pytest.raises(RuntimeError, match="no backend"):
        p.predict(1, 3)


def test_calibration_samples_are_route_contexts_prepared_as_the_deployment_does():
    from ros_mmfusion.core.models.vint import VINT_VARIANTS
    from ros_mmfusion.core.navigation.preprocess import preprocess_frame
    from ros_mmfusion.core.navigation.quantize import GOAL_AHEAD, SIM_SEED, SIM_SIZE, vint_samples
    from ros_mmfusion.core.sim import Simulation

    v = VINT_VARIANTS["vint_reduced"]
    n = v.config.context_size + 1
    sim = Simulation("indoor_corridor", seed=SIM_SEED, size=SIM_SIZE, beams=16, rate=v.frame_rate_hz)
    samples = vint_samples("vint_reduced", count=2, start=3, stride=3)
    assert len(samples) == 2
    for i, feed in enumerate(samples):
        first = 3 + 3 * i
        frames = [preprocess_frame(sim.frame(first + j).camera.rgb, v.image_size) for j in range(n)]
        np.testing.assert_array_equal(feed["obs_img"], np.concatenate(frames)[None])
        goal = preprocess_frame(sim.frame(first + n - 1 + GOAL_AHEAD).camera.rgb, v.image_size)
        np.testing.assert_array_equal(feed["goal_img"], goal[None])


def test_odometry_filter_needs_poses_and_moves_with_the_distance_driven(topomap):
    from dataclasses import replace

    from ros_mmfusion.core.navigation.localization import OdometryFilterLocalizer

    with pytest.raises(ConfigError, match="no odometry poses.*localization window"):
        policy(topomap, localization="odometry_filter")
    with pytest.raises(ConfigError, match="localization must be one of"):
        policy(topomap, localization="gps")
    # nodes 2 m apart on a line (a mapping pass driven at 2 m per node)
    posed = replace(topomap, nodes=[replace(n, position=(2.0 * i, 0.0, 0.0), orientation_xyzw=(0.0, 0.0, 0.0, 1.0))
                                    for i, n in enumerate(topomap.nodes)])
    p = policy(posed, localization="odometry_filter", radius=1)
    assert isinstance(p.localizer, OdometryFilterLocalizer)
    np.testing.assert_allclose(p.localizer.edge_lengths, 2.0)
    fill(p)
    flat = lambda start, end: np.full(end - start + 1, 10.0)  # noqa: E731 - equal distances say nothing
    p.moved(2.0)  # one node
    assert p.step(flat).closest_node == 1
    p.moved(2.0)
    result = p.step(flat)
    assert result.closest_node == 2 and result.localization.window == (0, 3)
    window = policy(topomap)
    window.moved(3.0)  # the deployment's localisation has no motion update
    assert window.localizer.closest_node == 0
    stacked = replace(posed, nodes=[replace(n, position=(0.0, 0.0, 0.0)) for n in posed.nodes])
    with pytest.raises(ConfigError, match="at one place"):
        policy(stacked, localization="odometry_filter")
