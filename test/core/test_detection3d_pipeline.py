"""The detection pipeline: cloud -> pillars -> encoder -> scatter -> backbone+head -> decode -> NMS, on both backends.

Reduced grids keep this fast on two cores: the networks are the KITTI ones (same weights fit any range) over
0..20.48 m ahead and +-10.24 m to the side (128 x 128 pillars instead of 432 x 496). The anchor-head case runs the
parity fixture's weights (calibrated to give realistic score distributions) on the fixture's KITTI-like cloud; the
centre-head case random weights on a synthetic-world sweep.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_mmfusion.core.codec.pointcloud import structured_cloud
from ros_mmfusion.core.detection3d.artifacts import (
    BACKBONE_HEAD_ONNX,
    ENCODER_ONNX,
    DetectorSpec,
    build_detector,
    build_module,
)
from ros_mmfusion.core.detection3d.pillarize import pillarize
from ros_mmfusion.core.detection3d.pipeline import STAGES, with_range
from ros_mmfusion.core.detection3d.preprocess import point_features
from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.models.pointpillars import VARIANTS
from test.fixtures import FIXTURES as ALL_FIXTURES

FIXTURE = ALL_FIXTURES / "pointpillars"
WEIGHTS = FIXTURE / "state_pointpillars_kitti_fp16.npz"
needs_fixture = pytest.mark.skipif(not (FIXTURE / "io.npz").is_file(), reason="pointpillars fixture not available")
NEAR = (0.0, -10.24, -3.0, 20.48, 10.24, 1.0)


@pytest.fixture(scope="module")
def fixture_cloud() -> np.ndarray:
    with np.load(FIXTURE / "io.npz") as data:
        return data["points"]


@pytest.fixture(scope="module")
def synthetic_cloud() -> np.ndarray:
    from ros_mmfusion.core.sim import Simulation

    return Simulation("urban_day", size=(64, 48), beams=16).frame(0).lidar.points  # structured, intensity 0..255


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("mmfusion_cache")
    old = os.environ.get("MMFUSION_CACHE_DIR")
    os.environ["MMFUSION_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MMFUSION_CACHE_DIR")
    else:
        os.environ["MMFUSION_CACHE_DIR"] = old


def both_backends(spec: DetectorSpec, cloud: np.ndarray, **kwargs):
    torch.set_num_threads(1)
    results = [build_detector(spec, backend=b, threads=1, **kwargs)(cloud) for b in ("torch", "onnxruntime")]
    return results


def assert_same_detections(a, b) -> None:
    assert len(a.detections) == len(b.detections) > 0
    np.testing.assert_array_equal(a.detections.labels, b.detections.labels)
    np.testing.assert_allclose(a.detections.scores, b.detections.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.detections.boxes, b.detections.boxes, rtol=0, atol=1e-3)  # metres, x up to 20 m


@needs_fixture
def test_anchor_head_pipeline_gives_the_same_detections_on_torch_and_onnxruntime(cache, fixture_cloud):
    spec = DetectorSpec(with_range(VARIANTS["pointpillars_kitti"], NEAR), weights=str(WEIGHTS))
    ref, ort = both_backends(spec, fixture_cloud)
    assert_same_detections(ref, ort)
    assert set(ref.names) == {"Car", "Pedestrian", "Cyclist"}
    assert ref.num_points == len(fixture_cloud) and 0 < ref.num_pillars == ref.num_occupied < ref.num_points_in_range
    assert set(ref.timings_ms) == set(STAGES) and ref.timings_ms["paint"] == 0.0
    assert all(ref.timings_ms[s] > 0 for s in ("encoder", "backbone_head", "decode", "nms"))
    groups = ref.stage_groups_ms()
    assert groups.keys() == {"preprocess", "encoder", "backbone_head", "postprocess"}
    assert sum(groups.values()) == pytest.approx(ref.total_ms)
    # exported once into the cache, in a directory named by the configuration and the weights
    exported = list((cache / "onnx").iterdir())
    assert len(exported) == 1 and exported[0].name.startswith("pointpillars_kitti-")
    assert {p.name for p in exported[0].iterdir()} == {ENCODER_ONNX, BACKBONE_HEAD_ONNX}


def spread_centre_head(tmp_path: Path) -> DetectorSpec:
    """Random centre-head weights whose heatmap scores spread out (the initial heatmap bias puts every score near 0.1,
    where float rounding decides ties), saved as our state_dict: non-trivial BatchNorm statistics, a 30x steeper
    heatmap."""
    config = with_range(VARIANTS["centerpoint_pillar"], NEAR)
    state = build_module(DetectorSpec(config, seed=3)).state_dict()
    generator = torch.Generator().manual_seed(0)
    for key, value in state.items():
        if key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
        elif key.endswith("running_mean"):
            value.copy_(torch.rand(value.shape, generator=generator) * 0.4 - 0.2)
    state["dense_head.heads_list.0.hm.1.weight"] *= 30
    torch.save(state, tmp_path / "centerpoint.pt")
    return DetectorSpec(config, weights=str(tmp_path / "centerpoint.pt"))


def test_centre_head_pipeline_gives_the_same_detections_on_torch_and_onnxruntime(cache, synthetic_cloud, tmp_path):
    ref, ort = both_backends(spread_centre_head(tmp_path), synthetic_cloud, intensity_scale=1 / 255,
                             score_thresholds=0.3)
    assert_same_detections(ref, ort)
    assert np.all(np.diff(ref.detections.scores) <= 0) and np.all(ref.detections.scores > 0.3)


def test_onnx_files_are_reused_and_random_weights_are_reproducible(cache, synthetic_cloud):
    spec = DetectorSpec(with_range(VARIANTS["pointpillars_synthetic"], NEAR), seed=1)
    first = build_detector(spec, threads=1, intensity_scale=1 / 255, score_thresholds=0.01)
    directory = next(d for d in (cache / "onnx").iterdir() if d.name.startswith("pointpillars_synthetic-"))
    stamp = (directory / ENCODER_ONNX).stat().st_mtime_ns
    again = build_detector(spec, threads=1, intensity_scale=1 / 255, score_thresholds=0.01)
    assert (directory / ENCODER_ONNX).stat().st_mtime_ns == stamp, "the cached export must be reused"
    a, b = first(synthetic_cloud), again(synthetic_cloud)
    assert len(a.detections) > 0
    np.testing.assert_array_equal(a.detections.boxes, b.detections.boxes)
    build_detector(dataclasses.replace(spec, seed=2), threads=1)
    assert len([d for d in (cache / "onnx").iterdir() if d.name.startswith("pointpillars_synthetic-")]) == 2


def test_per_class_score_thresholds_filter_each_class(synthetic_cloud, tmp_path):
    detector = build_detector(spread_centre_head(tmp_path), backend="torch", threads=1, intensity_scale=1 / 255,
                              score_thresholds=0.3)
    everything = detector(synthetic_cloud)
    detector.set_score_thresholds([0.3, 1.0, 0.3])  # no pedestrians
    fewer = detector(synthetic_cloud)
    assert "Pedestrian" in everything.names and "Pedestrian" not in fewer.names
    assert sorted(fewer.names) == sorted(n for n in everything.names if n != "Pedestrian")
    with pytest.raises(ConfigError, match="2 score thresholds for 3 classes"):
        detector.set_score_thresholds([0.1, 0.2])


def test_too_many_pillars_are_truncated_and_counted(synthetic_cloud):
    config = dataclasses.replace(with_range(VARIANTS["pointpillars_synthetic"], NEAR), max_pillars=100)
    result = build_detector(DetectorSpec(config), backend="torch", threads=1, intensity_scale=1 / 255)(synthetic_cloud)
    everything = dataclasses.replace(config.grid, max_pillars=10**6)
    occupied = len(pillarize(point_features(synthetic_cloud)[:, :4], everything))
    assert result.truncated and result.num_pillars == 100 and result.num_occupied == occupied > 100


def test_a_cloud_with_nothing_in_range_gives_no_pillars_and_runs_through(synthetic_cloud):
    detector = build_detector(DetectorSpec(with_range(VARIANTS["pointpillars_synthetic"], NEAR)), backend="torch",
                              threads=1)
    behind = np.array([[-5.0, 0.0, 0.0, 0.5], [np.nan, 1.0, 0.0, 0.5]], np.float32)
    result = detector(behind)
    assert (result.num_points, result.num_points_in_range, result.num_pillars) == (1, 0, 0)
    assert result.timings_ms["backbone_head"] > 0


def test_network_inputs_are_what_the_pipeline_feeds_its_graphs(synthetic_cloud):
    """Quantization calibrates on ``network_inputs``: the same stages as a detection, not a copy of them."""
    detector = build_detector(DetectorSpec(with_range(VARIANTS["pointpillars_synthetic"], NEAR), paint_channels=2),
                              backend="torch", threads=1, intensity_scale=1 / 255)
    result = detector(synthetic_cloud)
    encoder_feeds, head_feeds = detector.network_inputs(synthetic_cloud)
    decorated, canvas = encoder_feeds["input_features"], head_feeds["spatial_features"]
    c = detector.config
    assert decorated.shape == (result.num_pillars, c.max_points_per_pillar, c.num_input_features) and len(decorated)
    assert canvas.shape == (1, c.num_bev_features, *detector.grid.bev_shape)
    embedded = detector.encoder.run(encoder_feeds)["pillar_features"]
    assert canvas[0].reshape(c.num_bev_features, -1).any(axis=0).sum() == (embedded != 0).any(axis=1).sum() > 0
    np.testing.assert_array_equal(np.sort(canvas[canvas != 0]), np.sort(embedded[embedded != 0]))
    maps = detector.backbone_head.run(head_feeds)
    again = detector.backbone_head.run(detector.network_inputs(synthetic_cloud)[1])
    assert all(np.array_equal(maps[k], again[k]) for k in maps)
    empty_feeds, empty_canvas = detector.network_inputs(np.array([[-5.0, 0.0, 0.0, 0.5]], np.float32))
    assert empty_feeds["input_features"].shape == (0, c.max_points_per_pillar, c.num_input_features)
    assert not empty_canvas["spatial_features"].any()


def test_point_features_read_any_layout_and_require_intensity():
    xyz = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0], [4.0, 5.0, 6.0]])
    cloud = structured_cloud(xyz.astype(np.float32), ring=np.array([3, 1, 2], np.uint16),
                             intensity=np.array([255, 7, 51], np.uint8))
    np.testing.assert_allclose(point_features(cloud, intensity_scale=1 / 255),
                               [[1, 2, 3, 1.0], [4, 5, 6, 0.2]], rtol=1e-6)
    organized = cloud.reshape(1, 3)
    assert point_features(organized).shape == (2, 4)
    plain = np.array([[1, 2, 3, 0.5, 9.0]], np.float64)
    np.testing.assert_array_equal(point_features(plain), [[1, 2, 3, 0.5]])
    with pytest.raises(MessageFormatError, match="no field 'intensity'"):
        point_features(structured_cloud(xyz.astype(np.float32)))
    with pytest.raises(MessageFormatError, match=r"\(N, 4\+\)"):
        point_features(xyz)


def test_a_range_must_hold_whole_backbone_strides():
    with pytest.raises(ConfigError, match="multiples of 8"):
        with_range(VARIANTS["pointpillars_kitti"], (0.0, -10.0, -3.0, 20.48, 10.0, 1.0))
    assert with_range(VARIANTS["pointpillars_kitti"], NEAR).grid.bev_shape == (128, 128)


def test_onnx_files_of_another_configuration_are_refused(tmp_path):
    near = DetectorSpec(with_range(VARIANTS["pointpillars_synthetic"], NEAR), onnx_dir=str(tmp_path / "near"))
    build_detector(near, threads=1)
    with pytest.raises(ConfigError, match="input_features is .* needs"):
        build_detector(dataclasses.replace(near, paint_channels=3), threads=1)
    wider = with_range(VARIANTS["pointpillars_synthetic"], (0.0, -20.48, -3.0, 20.48, 20.48, 1.0))
    with pytest.raises(ConfigError, match="spatial_features is .* needs"):
        build_detector(dataclasses.replace(near, config=wider), threads=1)


def test_bench_reports_pre_and_post_processing_both_graphs_and_the_total(synthetic_cloud, tmp_path):
    from ros_mmfusion.core.bench import bench_detection

    result = bench_detection("pointpillars_synthetic", "onnxruntime", (synthetic_cloud, "a 16-beam sweep"), threads=1,
                             warmup=0, runs=2, workdir=tmp_path)
    parts = (result.preprocess_ms, result.encoder_ms, result.backbone_head_ms, result.postprocess_ms)
    assert all(p > 0 for p in parts) and result.total_ms >= 0.9 * sum(parts)
    assert result.pillars > 0 and result.points == len(synthetic_cloud) and result.weights == "random"
    assert (tmp_path / "pointpillars_synthetic_onnx" / "backbone_head.onnx").is_file()


def test_named_detectors_are_the_architecture_files_variants_plus_the_command_line_alias():
    from ros_mmfusion.core.models.centerpoint import VARIANTS as DYNAMIC
    from ros_mmfusion.core.models.registry import DETECTOR_ALIASES, detector, detectors

    assert detectors(aliases=False) == {**VARIANTS, **DYNAMIC}
    assert set(VARIANTS) == {"pointpillars_kitti", "centerpoint_pillar", "pointpillars_synthetic",
                             "pointpillars_synthetic_lite"}
    assert set(DYNAMIC) == {"centerpoint_pillar_nuscenes"}
    assert list(detectors()) == [*VARIANTS, *DYNAMIC, *DETECTOR_ALIASES]
    assert detector("pointpillars") is VARIANTS["pointpillars_kitti"]
    assert DetectorSpec.named("pointpillars_synthetic").config is VARIANTS["pointpillars_synthetic"]
    with pytest.raises(ConfigError, match="unknown detector 'pointpilars'; known: pointpillars_kitti"):
        detector("pointpilars")
