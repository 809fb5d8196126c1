"""Detection training (core/detection3d/training.py): targets, augmentation, and tiny end-to-end runs from the
synthetic world, from a bag, and fine-tuning from the upstream PointPillars fixture, each writing a package that
loads back into its network."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_mmfusion.core.detection3d.training import (
    AnchorTargets,
    Batch,
    DetectionTrainConfig,
    ObjectDatabase,
    Sample,
    corrupt_mask,
    global_augment,
    gt_sample,
    points_in_box,
    train,
)
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.model_package import read_package
from ros_mmfusion.core.models.pointpillars import VARIANTS, build_model, load_checkpoint
from ros_mmfusion.core.training import LoopConfig
from test.fixtures import FIXTURES

PP_FIXTURE = FIXTURES / "pointpillars" / "state_pointpillars_kitti_fp16.npz"
needs_fixture = pytest.mark.skipif(not PP_FIXTURE.exists(), reason="PointPillars fixtures not available")
LITE = VARIANTS["pointpillars_synthetic_lite"]


pytestmark = pytest.mark.usefixtures("torch_single_thread")


def box(x, y, name="car", yaw=0.0):
    sizes = {"car": (4.4, 1.8, 1.55), "pedestrian": (0.5, 0.6, 1.75), "cyclist": (1.75, 0.62, 1.75)}
    dx, dy, dz = sizes[name]
    return np.array([x, y, -1.88 + dz / 2, dx, dy, dz, yaw], np.float32)


def cloud_with(boxes, n=60, seed=0) -> np.ndarray:
    """Points filling each box, plus ground."""
    rng = np.random.default_rng(seed)
    parts = [np.c_[rng.uniform(0, 39, (500, 2)) * [1, 1] - [0, 19], np.full(500, -1.9), rng.uniform(0, 1, 500)]]
    for b in boxes:
        local = rng.uniform(-0.45, 0.45, (n, 3)) * b[3:6]
        c, s = math.cos(b[6]), math.sin(b[6])
        xy = local[:, :2] @ np.array([[c, s], [-s, c]])
        parts.append(np.c_[xy + b[:2], local[:, 2] + b[2], rng.uniform(0, 1, n)])
    return np.concatenate(parts).astype(np.float32)


def test_every_box_in_range_gets_positive_anchors_whose_residuals_decode_back():
    targets = AnchorTargets.of(LITE)
    boxes = np.stack([box(10.0, 2.0), box(20.0, -5.0, "pedestrian"), box(15.0, 8.0, "cyclist", yaw=1.2)])
    names = np.array(["car", "pedestrian", "cyclist"], dtype=object)
    labels, matched = targets.assign(boxes, names)
    for i, name in enumerate(names):
        mine = np.all(matched == boxes[i], axis=1) & (labels > 0)
        assert mine.any(), f"{name} got no positive anchor"
        assert set(labels[mine]) == {LITE.class_names.index(name) + 1}
        assert set(targets.anchor_class[mine]) == {LITE.class_names.index(name)}
    assert (labels == 0).sum() > 0.9 * len(labels)  # far from every box: background
    coder = LITE.head.coder
    pos = labels > 0
    decoded = coder.decode(coder.encode(matched[pos], targets.anchors[pos]), targets.anchors[pos])
    np.testing.assert_allclose(decoded, matched[pos], atol=1e-4)
    # names are compared in lower case: a model's "Car" trains on ground truth "car"
    upper = replace(targets, class_names=("Car", "Pedestrian", "Cyclist"))
    np.testing.assert_array_equal(upper.assign(boxes, names)[0], labels)


def test_batch_targets_direction_bins_follow_the_heading():
    targets = AnchorTargets.of(LITE)
    ahead, back = box(12.0, 0.0, yaw=0.1), box(25.0, 6.0, yaw=0.1 + math.pi)
    batch = Batch([Sample(cloud_with([ahead, back]), np.stack([ahead, back]), np.array(["car", "car"], object))],
                  LITE, targets)
    labels, dirs = batch.labels[0].numpy(), batch.dirs[0].numpy()
    matched_front = np.isclose(targets.anchors[:, 0], 12.0, atol=1.5) & (labels > 0)
    matched_back = np.isclose(targets.anchors[:, 0], 25.0, atol=1.5) & (labels > 0)
    assert matched_front.any() and matched_back.any()
    assert len(set(dirs[matched_front])) == 1 and len(set(dirs[matched_back])) == 1
    assert dirs[matched_front][0] != dirs[matched_back][0]
    assert batch.features.shape[1:] == (LITE.max_points_per_pillar, LITE.num_input_features)


def test_global_augmentation_keeps_points_inside_their_boxes():
    boxes = np.stack([box(10.0, 2.0, yaw=0.3), box(20.0, -5.0, "pedestrian")])
    sample = Sample(cloud_with(boxes), boxes, np.array(["car", "pedestrian"], object))
    before = [points_in_box(sample.points, b) for b in boxes]
    rng = np.random.default_rng(3)
    for _ in range(5):
        out = global_augment(sample, rng, math.pi / 4, (0.95, 1.05), True)
        assert not np.allclose(out.points[:, :2], sample.points[:, :2])
        for b, inside in zip(out.boxes, before, strict=True):
            np.testing.assert_array_equal(points_in_box(out.points, b, 1e-3)[inside], True)
        np.testing.assert_array_equal(out.points[:, 3], sample.points[:, 3])  # intensity untouched


def test_ground_truth_sampling_pastes_objects_without_collisions():
    source_boxes = np.stack([box(8.0, 3.0, "pedestrian"), box(14.0, -6.0, "cyclist"), box(30.0, 10.0)])
    source = Sample(cloud_with(source_boxes), source_boxes, np.array(["pedestrian", "cyclist", "car"], object))
    database = ObjectDatabase.build([source], ("car", "pedestrian", "cyclist"))
    assert database.summary() == {"car": 1, "pedestrian": 1, "cyclist": 1}
    target_boxes = np.stack([box(30.0, 10.5)])  # collides with the database car, not with the others
    target = Sample(cloud_with(target_boxes, seed=1), target_boxes, np.array(["car"], object))
    out = gt_sample(target, database, {"car": 2, "pedestrian": 1, "cyclist": 1}, np.random.default_rng(0))
    assert sorted(out.names.tolist()) == ["car", "cyclist", "pedestrian"]
    for b in out.boxes[1:]:
        assert points_in_box(out.points, b).sum() >= 5


def test_corrupted_masks_stay_close_to_the_truth():
    mask = np.zeros((240, 320), np.uint8)
    mask[100:150, 50:120] = 9
    mask[90:170, 200:215] = 10
    rng = np.random.default_rng(0)
    out = corrupt_mask(mask, (9, 10, 11), rng)
    assert out.shape == mask.shape and out.dtype == mask.dtype
    agree = (out == mask).mean()
    assert 0.8 < agree < 1.0  # changed, but not beyond recognition
    for h, w in ((24, 32), (3, 2)):  # masks too small for the blob sizes of a 320x240 one still corrupt
        small = np.zeros((h, w), np.uint8)
        small[h // 3:, w // 3:] = 9
        changed = [corrupt_mask(small, (9, 10, 11), np.random.default_rng(s)) for s in range(10)]
        assert all(c.shape == small.shape for c in changed) and any((c != small).any() for c in changed)


def tiny(**overrides) -> DetectionTrainConfig:
    loop = LoopConfig(iterations=3, lr=1e-3, warmup=1, validate_every=100, checkpoint_every=100, log_every=1)
    base = DetectionTrainConfig(scenarios=("urban_day",), train_seeds=(1,), val_seeds=(101,), frames_per_seed=3,
                                val_frames_per_seed=2, frame_stride=5, batch=2, window=10.24, loop=loop)
    return replace(base, **overrides)


def load_back(directory: Path):
    package = read_package(directory, "detection3d")
    from ros_mmfusion.core.detection3d.painting import painted_config

    config = painted_config(VARIANTS[package.variant], len(package.data.get("paint_classes") or []))
    model = build_model(config)
    load_checkpoint(model, torch.load(package.weights), strict=True)
    return package, model


def test_synthetic_run_writes_a_package_the_variant_loads(tmp_path):
    lines = []
    metrics = train(tiny(), tmp_path / "pkg", log=lines.append, checkpoint_dir=tmp_path / "ckpt")
    package, model = load_back(tmp_path / "pkg")
    assert package.variant == "pointpillars_synthetic_lite"
    assert package.data["paint_classes"] == [] and package.data["class_names"] == list(LITE.class_names)
    assert all(v.dtype == torch.float16 for v in torch.load(package.weights).values() if v.is_floating_point())
    on_disk = json.loads((tmp_path / "pkg" / "metrics.json").read_text())
    assert on_disk["validation"] == metrics["validation"]
    assert {"car_bev_ap70", "car_3d_ap70"} <= set(on_disk["validation"])
    assert on_disk["history"]["loss"] and on_disk["history"]["validation"][-1]["iteration"] == 3
    assert on_disk["data"]["train_scans"] == 3 and on_disk["hardware"] and on_disk["date"]
    assert any("ETA" in line for line in lines)


def test_painted_run_widens_the_encoder(tmp_path):
    train(tiny(paint_classes=("car", "pedestrian", "cyclist"), loop=replace(tiny().loop, iterations=1)),
          tmp_path / "pkg", log=lambda _: None, checkpoint_dir=tmp_path / "ckpt")
    package, model = load_back(tmp_path / "pkg")
    assert package.data["paint_classes"] == ["car", "pedestrian", "cyclist"]
    assert model.vfe.pfn_layers[0].linear.weight.shape[1] == LITE.num_input_features + 3


@pytest.fixture(scope="module")
def urban_bag(tmp_path_factory) -> Path:
    from ros_mmfusion.core.sim.recorder import record

    out = tmp_path_factory.mktemp("bag") / "urban"
    record("urban_day", out, 3, seed=7, size=(64, 48))
    record("urban_night", out.parent / "held_out", 2, seed=8, size=(64, 48))
    return out


def test_bag_run_reads_clouds_and_boxes(urban_bag, tmp_path):
    lines = []
    metrics = train(tiny(scenarios=(), bags=(str(urban_bag),), val_bags=(str(urban_bag.parent / "held_out"),)),
                    tmp_path / "pkg", log=lines.append, checkpoint_dir=tmp_path / "ckpt")
    assert metrics["data"]["train_scans"] == 3 and metrics["data"]["validation_scans"] == 2
    assert any("3 clouds with ground truth" in line for line in lines)
    load_back(tmp_path / "pkg")


def test_refusals_are_config_errors_before_any_work(urban_bag, tmp_path):
    for cfg, needle in ((tiny(variant="centerpoint_pillar"), "anchor-head"),
                        (tiny(scenarios=(), bags=()), "no training data"),
                        (tiny(paint_classes=("cat",)), "not in the label set"),
                        (tiny(scenarios=(), bags=(str(urban_bag),), paint_classes=("car",),
                              val_bags=(str(urban_bag.parent / "held_out"),), labels_topic="/nope"), "no topic /nope"),
                        (tiny(scenarios=(), bags=(str(urban_bag),), paint_classes=("car",),
                              val_bags=(str(urban_bag.parent / "held_out"),), labels_topic="/camera/color/image_raw"),
                         "has encoding 'rgb8': painting reads mono8"),
                        (tiny(scenarios=(), bags=(str(urban_bag),), paint_classes=("car",),
                              val_bags=(str(urban_bag.parent / "held_out"),), sync_tolerance=-1.0
                              ), "sync_tolerance must be in"),
                        (tiny(paint_classes=("car",), corrupt_labels="sometimes"), "corrupt_labels must be one of"),
                        (tiny(bags=(str(tmp_path / "missing"),)), "bag not found"),
                        (tiny(scenarios=(), bags=(str(urban_bag),), val_bags=(str(urban_bag),)),
                         "both training and validation bags"),
                        (tiny(scenarios=(), bags=(str(urban_bag),), boxes_topic="/nope"), "no topic /nope")):
        with pytest.raises(ConfigError, match=needle):
            train(cfg, tmp_path / "never", log=lambda _: None, checkpoint_dir=tmp_path / "ckpt")
    assert not (tmp_path / "never").exists()


PAINTED = ("car", "pedestrian", "cyclist")


def test_bag_painting_equals_the_synthetic_paths_for_the_same_frames(urban_bag):
    """The bag's camera (CameraInfo), extrinsic (/tf_static chain lidar_link -> camera optical frame) and labels
    paint every point exactly as the synthetic path's rig and mask do for the same simulated frames."""
    from ros_mmfusion.core.detection3d.painting import SegmentationScores, paint_class_ids
    from ros_mmfusion.core.detection3d.training import bag_samples
    from ros_mmfusion.core.sim import Simulation

    cfg = tiny(paint_classes=PAINTED, corrupt_labels="never", bags=(str(urban_bag),))
    painting = cfg.bag_painting(0.0)
    assert painting is not None and not painting.corrupt
    samples = bag_samples([str(urban_bag)], cfg.points_topic, cfg.boxes_topic, 1.0, lambda _: None, painting)
    sim = Simulation("urban_day", seed=7, size=(64, 48))  # the bag's recording
    camera_from_lidar = sim.rig.color.T_base_sensor.inverse() @ sim.rig.lidar.T_base_sensor  # as build_samples
    assert len(samples) == 3
    for k, sample in enumerate(samples):
        frame = sim.frame(k)
        xyz = sample.points[:, :3]
        np.testing.assert_array_equal(xyz, np.stack([frame.lidar.points[c] for c in "xyz"], axis=1))
        truth = SegmentationScores(sim.rig.color.camera, camera_from_lidar, labels=frame.camera.semantic,
                                   class_ids=paint_class_ids(PAINTED))
        for got, want in zip(sample.scores.pixels(xyz), truth.pixels(xyz), strict=True):
            np.testing.assert_array_equal(got, want)
        scores = sample.scores.sample(xyz)
        np.testing.assert_array_equal(scores, truth.sample(xyz))
        assert truth.pixels(xyz)[2].sum() > 1000 and scores[:, 0].sum() > 20  # cars in view: not all zeros


def test_bag_painting_corrupts_ground_truth_labels_only_by_default(urban_bag):
    from ros_mmfusion.core.detection3d.training import bag_samples

    assert tiny(paint_classes=PAINTED).bag_painting(0.2).corrupt
    assert not tiny(paint_classes=PAINTED, labels_topic="/segmentation/labels").bag_painting(0.2).corrupt
    assert tiny(paint_classes=PAINTED, labels_topic="/segmentation/labels", corrupt_labels="always"
                ).bag_painting(0.2).corrupt
    assert tiny().bag_painting(0.2) is None  # unpainted

    def read(corrupt: str, dropout: float):
        return bag_samples([str(urban_bag)], "/lidar/points", "/ground_truth/boxes", 1.0, lambda _: None,
                           tiny(paint_classes=PAINTED, corrupt_labels=corrupt).bag_painting(dropout), seed=1)

    clean, corrupted = read("never", 0.0), read("auto", 0.0)
    assert any(not np.array_equal(a.scores.labels, b.scores.labels) for a, b in zip(clean, corrupted, strict=True))
    assert all(s.scores is None for s in read("auto", 1.0))  # dropout: scans without scores


def test_painted_bag_run_writes_a_painted_package_and_validates(urban_bag, tmp_path):
    lines = []
    cfg = tiny(scenarios=(), bags=(str(urban_bag),), val_bags=(str(urban_bag.parent / "held_out"),),
               paint_classes=PAINTED, loop=replace(tiny().loop, iterations=1))
    metrics = train(cfg, tmp_path / "pkg", log=lines.append, checkpoint_dir=tmp_path / "ckpt")
    package, model = load_back(tmp_path / "pkg")
    assert package.data["paint_classes"] == list(PAINTED)
    assert model.vfe.pfn_layers[0].linear.weight.shape[1] == LITE.num_input_features + 3
    assert metrics["data"]["train_scans"] == 3 and metrics["validation"]["frames"] == 2
    assert "car_bev_ap70" in metrics["validation"]
    assert any("2 clouds with ground truth, 2 painted from /ground_truth/semantic (corrupted)" in line
               for line in lines)


@needs_fixture
def test_fine_tunes_from_the_upstream_checkpoint_fixture(tmp_path):
    with np.load(PP_FIXTURE) as npz:
        fixture = {k: npz[k] for k in npz.files}
    cfg = tiny(variant="pointpillars_kitti", init=str(PP_FIXTURE), batch=1,
               loop=replace(tiny().loop, iterations=1, lr=1e-12, warmup=0))
    lines = []
    train(cfg, tmp_path / "pkg", log=lines.append, checkpoint_dir=tmp_path / "ckpt")
    assert any("initialised from" in line for line in lines)
    package, model = load_back(tmp_path / "pkg")
    key = "backbone_2d.blocks.2.4.weight"
    np.testing.assert_allclose(model.state_dict()[key].numpy(), fixture[key].astype(np.float32), atol=1e-3)
    # and a package is a valid --init too
    train(tiny(init=str(tmp_path / "pkg"), variant="pointpillars_kitti", batch=1,
               loop=replace(tiny().loop, iterations=1)), tmp_path / "pkg2", log=lambda _: None,
          checkpoint_dir=tmp_path / "ckpt2")


def test_resume_picks_up_a_finished_checkpoint(tmp_path):
    cfg = tiny(loop=replace(tiny().loop, iterations=2, checkpoint_every=1))
    train(cfg, tmp_path / "a", log=lambda _: None, checkpoint_dir=tmp_path / "ckpt")
    lines = []
    train(cfg, tmp_path / "b", log=lines.append, resume=True, checkpoint_dir=tmp_path / "ckpt")
    assert any("resumed from" in line and "at iteration 2" in line for line in lines)
    assert not any(line.startswith("  [") for line in lines)  # no training iteration ran again
    a, b = torch.load(tmp_path / "a" / "weights.pt"), torch.load(tmp_path / "b" / "weights.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
