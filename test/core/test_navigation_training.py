"""ViNT navigation training: labels against the deployment's reading of them, goal sampling, the shared-context
forward, and tiny end-to-end runs (synthetic world and a recorded bag) whose packages load back into the variant,
fine-tuning from the upstream fixture, and resuming an interrupted run."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.model_package import read_package
from ros_mmfusion.core.models.vint import ViNT, create_vint, load_checkpoint, waypoints_to_metric
from ros_mmfusion.core.navigation.metrics import Trajectory, future_in_body_frame
from ros_mmfusion.core.navigation.training import (
    GoalSampler,
    NavTrainConfig,
    Recording,
    initial_model,
    measured_waypoint_spacing,
    train,
    waypoint_labels,
)
from ros_mmfusion.core.training import LoopConfig
from test.fixtures import FIXTURES

VINT_FIXTURE = FIXTURES / "vint" / "state_vint_reduced_fp16.npz"
needs_fixture = pytest.mark.skipif(not VINT_FIXTURE.exists(), reason="ViNT fixtures not available")


pytestmark = pytest.mark.usefixtures("torch_single_thread")


def tiny_config(**overrides) -> NavTrainConfig:
    loop = LoopConfig(iterations=2, lr=1e-4, warmup=1, schedule="cosine", validate_every=1000, checkpoint_every=1,
                      log_every=1)
    base = NavTrainConfig(train_seeds=(1,), val_seeds=(101,), frames_per_seed=12, val_frames=12, width=64,
                          height=48, batch=4, goals_per_context=2, loop=loop)
    return replace(base, **overrides)


def straight_recording(n: int = 30, step: float = 0.25, heading: float = 0.7, group: str = "a") -> Recording:
    k = np.arange(n, dtype=np.float64)
    xy = np.stack([3.0 + k * step * math.cos(heading), -1.0 + k * step * math.sin(heading)], axis=1)
    images = np.zeros((n, 8, 8, 3), np.uint8)
    return Recording(f"straight-{group}", group, images, xy, np.full(n, heading), k / 4.0)


# -- labels -----------------------------------------------------------------------------------------------------------
def test_straight_motion_gives_unit_steps_forward():
    rec = straight_recording()
    labels = waypoint_labels(rec.times, rec.xy, rec.yaw, 6, 5, spacing=0.25, dt=0.25)
    expected = np.array([[i, 0.0, 1.0, 0.0] for i in range(1, 6)], np.float32)
    np.testing.assert_allclose(labels, expected, atol=1e-6)
    assert measured_waypoint_spacing([rec], 0.25) == 0.25
    # past the end the last pose repeats
    np.testing.assert_allclose(waypoint_labels(rec.times, rec.xy, rec.yaw, 27, 5, 0.25, 0.25)[:, 0], [1, 2, 2, 2, 2],
                               atol=1e-6)


def test_left_turn_labels_are_left_and_turning():
    # a quarter circle to the left, radius 1 m, one frame = 0.1 rad
    t = np.arange(20) * 0.1
    xy, yaw = np.stack([np.sin(t), 1.0 - np.cos(t)], axis=1), t.copy()
    labels = waypoint_labels(t * 2.5, xy, yaw, 0, 5, spacing=0.1, dt=0.25)
    assert np.all(labels[:, 1] > 0), "y (left) must grow on a left turn"
    np.testing.assert_allclose(np.arctan2(labels[:, 3], labels[:, 2]), t[1:6], atol=1e-6)
    np.testing.assert_allclose(labels[:, 0] * 0.1, np.sin(t[1:6]), atol=1e-6)


def test_labels_read_back_by_the_deployment_equal_the_evaluated_ground_truth():
    """A network predicting the labels exactly would score ADE 0 in `mmfusion eval`: the deployment's scaling of the
    labels (waypoints_to_metric) gives the future odometry positions in base_link the evaluator compares with."""
    rng = np.random.default_rng(3)
    # frames as a 10 Hz camera sampled at 4 Hz gives them: 0.3, 0.2, 0.3, ... s apart
    times = np.cumsum(np.tile([0.3, 0.2], 20))
    yaw = np.cumsum(rng.uniform(-0.2, 0.2, 40))
    speed = 1.24  # m/s
    xy = np.cumsum(np.stack([np.cos(yaw), np.sin(yaw)], axis=1) * speed * np.diff(times, prepend=0)[:, None], axis=0)
    trajectory = Trajectory.build(times, xy, yaw)
    for current in (5, 17, 30):
        labels = waypoint_labels(times, xy, yaw, current, 5, spacing=0.31, dt=0.25)
        metric = waypoints_to_metric(labels, 0.31)[:, :2]
        truth = future_in_body_frame(trajectory, times[current], 5, 0.25)
        np.testing.assert_allclose(metric, truth, atol=1e-5)


def test_goal_distances_masks_and_negatives():
    cfg = tiny_config(cross_pass=0.0, behind_negatives=0.0, max_dist=20, max_action_dist=10)
    recs = [straight_recording(40, group="a"), straight_recording(40, group="b")]
    sampler = GoalSampler(recs, cfg)
    rng = np.random.default_rng(0)
    seen_negative = seen_positive = False
    for _ in range(400):
        rec, cur = sampler.context(rng)
        assert cfg.context_size <= cur < len(recs[rec]) - cfg.len_traj_pred
        goal = sampler.goal(rng, rec, cur)
        if goal.negative:
            seen_negative = True
            assert goal.recording != rec and goal.distance == 20 and not goal.action
        else:
            seen_positive = True
            assert goal.recording == rec and goal.distance == goal.frame - cur
            assert 1 <= goal.distance <= 20 and goal.action == (goal.distance < 10)
    assert seen_negative and seen_positive


def test_behind_negatives_and_cross_pass_goals():
    a1, a2 = straight_recording(40, group="a"), straight_recording(40, group="a")
    a1.aligned = a2.aligned = True
    cfg = tiny_config(cross_pass=1.0, behind_negatives=0.5)
    sampler = GoalSampler([a1, a2], cfg)
    rng = np.random.default_rng(1)
    behind = other_pass = 0
    for _ in range(300):
        rec, cur = sampler.context(rng)
        goal = sampler.goal(rng, rec, cur)
        if goal.negative:
            behind += goal.frame <= cur - 3
            assert goal.distance == cfg.max_dist and not goal.action
        else:
            other_pass += goal.recording != rec
            assert goal.distance == goal.frame - cur
    assert behind > 50 and other_pass > 50


# -- model ------------------------------------------------------------------------------------------------------------
def test_shared_context_forward_equals_one_context_per_goal():
    torch.manual_seed(0)
    model = create_vint("vint_reduced")
    obs, goals = torch.randn(2, 18, 64, 85), torch.randn(3, 3, 64, 85)
    index = torch.tensor([1, 0, 1])
    with torch.inference_mode():
        shared = model.forward_intermediates(obs, goals, index)
        dist, action = model(obs[index], goals)
    torch.testing.assert_close(shared["dist"], dist, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared["action"], action, atol=1e-5, rtol=1e-5)


def test_config_refusals_are_one_line_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="multiple of goals_per_context"):
        tiny_config(batch=5).check()
    with pytest.raises(ConfigError, match="both training and validation seeds"):
        tiny_config(val_seeds=(1,)).check()
    with pytest.raises(ConfigError, match="bag not found"):
        tiny_config(bags=(str(tmp_path / "nope"),)).check()
    with pytest.raises(ConfigError, match="unknown scenario"):
        tiny_config(scenarios=("atlantis",)).check()


# -- end to end -------------------------------------------------------------------------------------------------------
def load_package_model(directory: Path) -> tuple[ViNT, dict]:
    package = read_package(directory, "navigation")
    model = create_vint(package.variant)
    state = torch.load(package.weights, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    load_checkpoint(model, state, allow_missing=model.unused_state_keys())
    return model, package.data


def test_synthetic_run_writes_a_package_the_variant_loads(tmp_path):
    out = tmp_path / "pkg"
    lines: list[str] = []
    metrics = train(tiny_config(), out, log=lines.append, checkpoint_dir=tmp_path / "ck")
    model, data = load_package_model(out)
    assert data["variant"] == "vint_reduced" and data["config"]["obs_encoding_size"] == 256
    assert data["image_size"] == [85, 64] and data["frame_rate_hz"] == 4.0
    assert data["waypoint_spacing"] == pytest.approx(0.25, abs=0.01)  # the corridor robot drives 1 m/s at 4 Hz
    assert "indoor_corridor" in data["trained_on"] and set(data["validation"]) >= {
        "localisation_accuracy", "window_accuracy", "waypoint_ADE_m"}
    with torch.inference_mode():
        dist, action = model.eval()(torch.zeros(3, 18, 64, 85), torch.zeros(3, 3, 64, 85))
    assert dist.shape == (3, 1) and action.shape == (3, 5, 4)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["seeds"] == {"train": [1], "validation": [101]} and saved["iterations"] == 2
    assert saved["data"]["held_out"] and saved["history"]["validation"][-1]["iteration"] == 2
    assert {"date", "device", "hardware", "train_seconds"} <= set(saved) and metrics["variant"] == "vint_reduced"
    assert (out / "weights.pt").stat().st_size < 25 * 2**20


@pytest.fixture(scope="module")
def corridor_bag(tmp_path_factory) -> Path:
    from ros_mmfusion.core.sim import record

    out = tmp_path_factory.mktemp("bags") / "corridor"
    record("indoor_corridor", out, frames=40, seed=2, size=(64, 48), beams=16)
    return out


def bag_config(bag: Path, **overrides) -> NavTrainConfig:
    return tiny_config(scenarios=(), train_seeds=(), val_seeds=(), bags=(str(bag),), **overrides)


def test_bag_run_reads_images_and_odometry_at_4hz(corridor_bag, tmp_path):
    lines: list[str] = []
    train(bag_config(corridor_bag), tmp_path / "pkg", log=lines.append, checkpoint_dir=tmp_path / "ck")
    model, data = load_package_model(tmp_path / "pkg")
    saved = json.loads((tmp_path / "pkg" / "metrics.json").read_text())
    # 40 frames at 10 Hz = 3.9 s of stamps -> 16 frames at 4 Hz
    assert saved["data"]["train"] == [{"name": "bag:corridor", "frames": 16}]
    assert not saved["data"]["held_out"]  # no validation bag: validated on the training bag, and it says so
    assert data["waypoint_spacing"] == pytest.approx(0.25, abs=0.01)


def test_bag_without_odometry_topic_is_refused(corridor_bag, tmp_path):
    with pytest.raises(ConfigError, match="no nav_msgs/Odometry topic '/nope'"):
        train(bag_config(corridor_bag, odom_topic="/nope"), tmp_path / "pkg", log=lambda _: None,
              checkpoint_dir=tmp_path / "ck")
    assert not (tmp_path / "pkg").exists()


@needs_fixture
def test_init_from_the_upstream_fixture_and_from_a_package(corridor_bag, tmp_path):
    with np.load(VINT_FIXTURE) as npz:
        fixture = {k: npz[k] for k in npz.files}
    key = "decoder.sa_decoder.layers.0.linear1.weight"
    model, what = initial_model(bag_config(corridor_bag, init=str(VINT_FIXTURE)))
    assert what == "fine-tuned from checkpoint state_vint_reduced_fp16.npz"
    np.testing.assert_array_equal(model.state_dict()[key].numpy(), fixture[key].astype(np.float32))
    # the released form: a training dict holding the state under "model"
    released = tmp_path / "vint_released.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in fixture.items()}, "epoch": 3}, released)
    model, _ = initial_model(bag_config(corridor_bag, init=str(released)))
    np.testing.assert_array_equal(model.state_dict()[key].numpy(), fixture[key].astype(np.float32))
    # fine-tune one iteration, then start again from the package written
    train(bag_config(corridor_bag, init=str(released)), tmp_path / "pkg", log=lambda _: None,
          checkpoint_dir=tmp_path / "ck")
    assert "fine-tuned from checkpoint vint_released.pth" in read_package(tmp_path / "pkg", "navigation").data[
        "trained_on"]
    tuned = torch.load(tmp_path / "pkg" / "weights.pt", weights_only=True)
    model, what = initial_model(bag_config(corridor_bag, init=str(tmp_path / "pkg")))
    assert what == "fine-tuned from model package pkg"
    torch.testing.assert_close(model.state_dict()[key], tuned[key].float())
    with pytest.raises(ConfigError, match="--init .*: .*shape|size"):
        initial_model(bag_config(corridor_bag, variant="vint_default", init=str(VINT_FIXTURE)))


class Interrupt(Exception):
    pass


def test_resume_continues_an_interrupted_run_to_the_same_weights(corridor_bag, tmp_path):
    cfg = bag_config(corridor_bag, loop=replace(tiny_config().loop, iterations=3))
    train(cfg, tmp_path / "straight", log=lambda _: None, checkpoint_dir=tmp_path / "ck-straight")

    def stop_at_two(line: str) -> None:
        if "[2/3]" in line:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "resumed", log=stop_at_two, checkpoint_dir=tmp_path / "ck")
    assert not (tmp_path / "resumed").exists()
    lines: list[str] = []
    train(cfg, tmp_path / "resumed", log=lines.append, resume=True, checkpoint_dir=tmp_path / "ck")
    assert any("resumed from" in line and "at iteration 1" in line for line in lines)
    a = torch.load(tmp_path / "straight" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_recovery_labels_lead_back_onto_the_route():
    """A robot 0.3 m left of a straight route, heading along it: its waypoints bend right, back onto the route."""
    from ros_mmfusion.core.navigation.training import waypoint_labels

    times = np.arange(20) * 0.25
    route = np.stack([times * 1.0, np.zeros_like(times)], axis=1)  # 1 m/s along x
    drifted = route + [0.0, 0.3]
    yaw = np.zeros_like(times)
    plain = waypoint_labels(times, drifted, yaw, 4, 5, 0.25, 0.25)
    back = waypoint_labels(times, drifted, yaw, 4, 5, 0.25, 0.25, target_xy=route, target_yaw=yaw)
    assert np.allclose(plain[:, 1], 0.0), "without the route the robot just keeps its offset"
    assert np.allclose(back[:, 1] * 0.25, -0.3) and np.allclose(back[:, 0] * 0.25, 0.25 * np.arange(1, 6))


def batch_mean(rec) -> float:
    """The mean of a preprocessed frame of ``rec`` (one colour per recording), to tell batch images apart."""
    from ros_mmfusion.core.navigation.preprocess import preprocess_frame

    return float(preprocess_frame(rec.images[0], (16, 12))[-1].mean())


def test_a_goal_from_a_twin_pass_gets_labels_onto_that_pass_line():
    """The passes of one route weave apart (up to 0.12 m): a context paired with a goal from the other pass learns
    waypoints onto the line that goal was taken on, a goal from its own pass its own future, and a recovery
    context with a goal from its route pass the way back onto that route (the batch's labels, per goal)."""
    import dataclasses

    from ros_mmfusion.core.navigation.training import draw_batch

    first = dataclasses.replace(straight_recording(40, heading=0.0), name="corridor/seed1", aligned=True)
    second = dataclasses.replace(first, name="corridor_pass2/seed1", xy=first.xy + [0.0, 0.1])  # 0.1 m left
    drifted = dataclasses.replace(first, name="corridor/seed1/recovery", xy=first.xy + [0.0, -0.2],
                                  route_xy=first.xy.copy(), route_yaw=first.yaw.copy())
    recs = [dataclasses.replace(r, images=np.full_like(r.images, 60 * (k + 1))) for k, r in  # told apart by colour
            enumerate((first, second, drifted))]
    cfg = tiny_config(cross_pass=0.5, behind_negatives=0.0, augment=False)
    sampler = GoalSampler(recs, cfg)
    sideways = {(c, r): sampler.action_labels(c, 10, r, 0.25)[:, 1] * 0.25 for c, r in
                ((0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 1))}
    assert np.allclose(sideways[0, 0], 0.0) and np.allclose(sideways[1, 1], 0.0)
    assert np.allclose(sideways[0, 1], 0.1) and np.allclose(sideways[1, 0], -0.1)
    assert np.allclose(sideways[2, 2], 0.2) and np.allclose(sideways[2, 1], 0.3)
    expected = {(0, 0): 0.0, (0, 1): 0.1, (1, 1): 0.0, (1, 0): -0.1, (2, 0): 0.2, (2, 1): 0.3}  # (context, goal)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        batch = draw_batch(sampler, rng, cfg, 0.25, (16, 12))
        for i in np.flatnonzero(batch["action_mask"]):  # each supervised goal: its context's and its own recording
            context = int(np.argmin([abs(batch["obs_img"][batch["context_index"][i], -1].mean() - v) for v in
                                     (batch_mean(r) for r in recs)]))
            goal = int(np.argmin([abs(batch["goal_img"][i].mean() - batch_mean(r)) for r in recs]))
            assert batch["action"][i, 2, 1] * 0.25 == pytest.approx(expected[context, goal], abs=1e-6)
            seen.add((context, goal))
    assert seen == set(expected), seen


def test_recovery_passes_drift_beside_the_route_within_bounds():
    from ros_mmfusion.core.navigation.training import render_recording

    drifted = render_recording("indoor_corridor", 3, 24, (32, 24), 4.0, drift=(0.4, 0.3))
    nominal = render_recording("indoor_corridor", 3, 24, (32, 24), 4.0)
    offset = np.hypot(*(drifted.xy - drifted.route_xy).T)
    assert 0.05 < offset.max() <= 0.4 + 1e-9 and np.abs(drifted.yaw - drifted.route_yaw).max() <= 0.3 + 1e-9
    assert np.allclose(drifted.route_xy, nominal.xy) and drifted.group == nominal.group
    assert np.abs(drifted.images.astype(int) - nominal.images).mean() > 1.0, "rendered from the drifted poses"
    assert nominal.route_xy is None and drifted.name.endswith("/recovery")


def test_static_contexts_repeat_the_current_frame_with_moving_labels():
    from ros_mmfusion.core.navigation.training import GoalSampler, NavTrainConfig, Recording, draw_batch

    n = 40
    times = np.arange(n) * 0.25
    images = np.stack([np.full((24, 32, 3), 5 * k, np.uint8) for k in range(n)])
    rec = Recording("r", "g", images, np.stack([times, np.zeros(n)], 1), np.zeros(n), times)
    cfg = NavTrainConfig(scenarios=(), bags=("x",), batch=4, goals_per_context=4, augment=False, static_contexts=1.0)
    batch = draw_batch(GoalSampler([rec], cfg), np.random.default_rng(0), cfg, 0.25, (32, 24))
    context = batch["obs_img"][0].reshape(-1, 3, 24, 32)
    assert all(np.array_equal(frame, context[-1]) for frame in context)
    assert np.allclose(batch["action"][0][:, 0], np.arange(1, 6))  # 1 m/s: one spacing per frame, still moving


def test_validate_recovery_scores_steering_back_onto_the_route():
    """Known answers: a predictor that returns the recovery labels scores 1, one that returns their opposite -1,
    one that always goes straight 0 (the metric must tell a recovering policy from a drifting one)."""
    import torch

    from ros_mmfusion.core.navigation.training import (
        FrameCache,
        NavTrainConfig,
        render_recording,
        validate_recovery,
        waypoint_labels,
    )

    cfg = NavTrainConfig(scenarios=("indoor_corridor",), val_frames=30)
    rec = render_recording("indoor_corridor", 101, 30, (32, 24), 4.0, drift=(0.4, 0.3))
    frames = FrameCache([rec], (85, 64))
    currents: list[int] = []

    class Labels(torch.nn.Module):
        """Returns, for each context, the label of the frame whose context was passed (read from the obs' order)."""

        def __init__(self, sign: float) -> None:
            super().__init__()
            self.sign = sign

        def forward_intermediates(self, obs, goal, index):
            out = []
            for row in obs.numpy():
                cur = next(k for k in range(cfg.context_size, len(rec))
                           if np.array_equal(row[-3:], frames(0, k)))
                currents.append(cur)
                label = waypoint_labels(rec.times, rec.xy, rec.yaw, cur, 5, 0.25, 0.25, True, rec.route_xy,
                                        rec.route_yaw)
                out.append(label * self.sign)
            return {"action": torch.from_numpy(np.stack(out)), "dist": torch.zeros(len(out))}

    good = validate_recovery(Labels(1.0), [rec], cfg, 0.25, frames)
    bad = validate_recovery(Labels(-1.0), [rec], cfg, 0.25, frames)
    straight = validate_recovery(Labels(0.0), [rec], cfg, 0.25, frames)
    assert good["recovery_contexts"] >= 5 and len(set(currents)) == good["recovery_contexts"]
    assert good["recovery_correlation"] == pytest.approx(1.0) and good["recovery_slope"] == pytest.approx(1.0)
    assert bad["recovery_correlation"] == pytest.approx(-1.0) and straight["recovery_correlation"] == 0.0


def test_recovery_passes_take_their_goals_from_the_route():
    """A recovery pass's action labels lead back onto the route, so its goals are views from the route (as a map's
    nodes are), never from beside it; and no context gets a goal from a recovery pass (regression: goals drawn from
    the drifted pass itself contradicted the labels, and the trained policy steered away from the route)."""
    import dataclasses

    route = dataclasses.replace(straight_recording(40, group="a"), name="corridor/seed1", aligned=True)
    other = dataclasses.replace(straight_recording(40, group="a"), name="corridor_pass2/seed1", aligned=True)
    drifted = dataclasses.replace(straight_recording(40, group="a"), name="corridor/seed1/recovery", aligned=True,
                                  route_xy=route.xy.copy(), route_yaw=route.yaw.copy())
    stranger = dataclasses.replace(straight_recording(40, group="b"), name="sidewalk/seed1")
    recs = [route, other, drifted, stranger]
    sampler = GoalSampler(recs, tiny_config(cross_pass=0.3, behind_negatives=0.2))
    assert sampler.goal_source == {0: 0, 1: 1, 2: 0, 3: 3}
    rng = np.random.default_rng(3)
    targets = {r: set() for r in range(len(recs))}
    for _ in range(2000):
        rec, cur = sampler.context(rng)
        goal = sampler.goal(rng, rec, cur)
        targets[rec].add(goal.recording)
        if rec == 2 and not goal.negative:
            assert goal.recording in (0, 1) and goal.distance == goal.frame - cur
    assert all(2 not in seen for seen in targets.values())
    assert targets[2] >= {0, 1, 3}, "a recovery context still gets positives on both passes and negatives"


def test_recovery_fraction_draws_that_share_of_contexts_from_the_recovery_passes():
    """Diluted in proportion to frames (one recovery pass per route pass: half the contexts, with the route passes'
    distance targets) the sideways labels were not learned; ``recovery_fraction`` sets the share. 0 keeps the
    uniform draw over every frame, and with no recovery pass every context comes from the route passes."""
    import dataclasses

    route = dataclasses.replace(straight_recording(40, group="a"), name="corridor/seed1", aligned=True)
    other = dataclasses.replace(straight_recording(40, group="a"), name="corridor_pass2/seed1", aligned=True)
    drifted = dataclasses.replace(straight_recording(40, group="a"), name="corridor/seed1/recovery", aligned=True,
                                  route_xy=route.xy.copy(), route_yaw=route.yaw.copy())

    def share(recs, **kw):
        sampler = GoalSampler(recs, tiny_config(**kw))
        rng = np.random.default_rng(5)
        draws = [sampler.context(rng) for _ in range(4000)]
        assert {k for _, k in draws} == {k for _, k in sampler.index}, "every frame still gets drawn"
        return np.mean([recs[r].route_xy is not None for r, _ in draws])

    assert share([route, other, drifted]) == pytest.approx(1 / 3, abs=0.03)  # uniform: one recording in three
    assert share([route, other, drifted], recovery_fraction=0.75) == pytest.approx(0.75, abs=0.03)
    assert share([route, other], recovery_fraction=0.75) == 0.0
    with pytest.raises(ConfigError, match="recovery_fraction"):
        tiny_config(recovery_fraction=1.5).check()


def test_validate_recovery_goals_are_route_views():
    import torch

    from ros_mmfusion.core.navigation.training import FrameCache, NavTrainConfig, render_recording, validate_recovery

    cfg = NavTrainConfig(scenarios=("indoor_corridor",), val_frames=24)
    drifted = render_recording("indoor_corridor", 101, 24, (32, 24), 4.0, drift=(0.4, 0.3))
    route = render_recording("indoor_corridor", 101, 24, (32, 24), 4.0)
    frames = FrameCache([drifted, route], (85, 64))
    checked = []

    class GoalCheck(torch.nn.Module):
        def forward_intermediates(self, obs, goal, index):
            for row, g in zip(obs.numpy(), goal.numpy(), strict=True):
                cur = next(k for k in range(cfg.context_size, len(drifted)) if np.array_equal(row[-3:], frames(0, k)))
                checked.append(np.array_equal(g, frames(1, cur + 4)))
            return {"action": torch.randn(len(obs), 5, 4), "dist": torch.zeros(len(obs))}

    result = validate_recovery(GoalCheck(), [drifted, route], cfg, 0.25, frames)
    assert result["recovery_contexts"] == len(checked) >= 3 and all(checked)


def test_augmentation_crops_keep_the_heading_and_a_context_shares_its_crop_with_its_goals():
    """A sideways crop would turn the view like a heading change no label follows, and crops drawn apart for a
    context and its goal would teach the network to ignore their sideways shift (the cue that steers back onto the
    route): crops are centred horizontally and a goal gets its context's crop with its own colours."""
    from ros_mmfusion.core.navigation.training import Jitter

    rng = np.random.default_rng(5)
    for _ in range(200):
        jitter = Jitter.draw(rng, 120, 160)
        top, left, h, w = jitter.crop
        assert left == (160 - w) // 2 and 0 <= top <= 120 - h and w <= 160 and h <= 120
        goal = jitter.recoloured(rng)
        assert goal.crop == jitter.crop and (goal.gain, goal.tint) != (jitter.gain, jitter.tint)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    assert jitter.apply(image).shape == goal.apply(image).shape == (h, w, 3)
