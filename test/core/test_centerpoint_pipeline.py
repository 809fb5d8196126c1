"""``centerpoint_pillar_nuscenes`` as a detection pipeline (``core/detection3d/dynamic.py``, ``artifacts.py``): the
numpy dynamic pillars and pillar encoder reproduce OpenPCDet's (the golden fixture ``shared/fixtures/centerpoint``),
and the pipeline on ONNX Runtime (dense part exported from the fixture's ``.npz`` weights) gives the head maps and
the boxes of the PyTorch reference module.

Kept fast: the ONNX graph is exported for a 25.6 m square (128 x 128 pillars) instead of the 102.4 m one; the weights
apply unchanged (a convolutional network). The fixture's weights are random and calibrated, not trained: nothing here
says anything about detection quality.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ros_mmfusion.core.detection3d.artifacts import (
    DetectorSpec,
    build_detector,
    build_module,
    detector_spec,
    export_dynamic,
    onnx_files,
)
from ros_mmfusion.core.detection3d.dynamic import (
    VFE_WEIGHTS,
    DynamicPillarDetector,
    DynamicPillarEncoder,
    decorate_grouped,
    grid_cells,
    group_pillars,
    vfe_arrays,
)
from ros_mmfusion.core.detection3d.pipeline import with_range
from ros_mmfusion.core.detection3d.preprocess import point_features
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.models.centerpoint import NUSCENES_CLASSES, VARIANTS, decoder
from ros_mmfusion.core.models.pointpillars import group_head_outputs
from ros_mmfusion.core.models.registry import detectors
from test.core.test_centerpoint_nuscenes import FIXTURE, MAP_TOL, assert_close, require

VARIANT = "centerpoint_pillar_nuscenes"
SMALL = (-12.8, -12.8, -5.0, 12.8, 12.8, 3.0)
WEIGHTS = "state_centerpoint_pillar_nuscenes_fp16.npz"


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    with np.load(require(FIXTURE / "io.npz", "centerpoint fixture")) as data:
        return {k: data[k] for k in ("points", "pfn0_input", "point_pillar_index", "pillar_features", "voxel_coords")}


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> DetectorSpec:
    weights = require(FIXTURE / WEIGHTS, "centerpoint fixture")
    return DetectorSpec(with_range(VARIANTS[VARIANT], SMALL), weights=str(weights),
                        onnx_dir=str(tmp_path_factory.mktemp("centerpoint") / "onnx"))


@pytest.fixture(scope="module")
def module(spec):
    """The PyTorch reference (``CenterPointPillar`` with the fixture's weights), one thread."""
    torch.set_num_threads(1)
    return build_module(spec)


@pytest.fixture(scope="module")
def detector(spec, module) -> DynamicPillarDetector:
    export_dynamic(module, spec.onnx_dir)  # what onnx_files would export on first use, without a second module build
    det = build_detector(spec, "onnxruntime", threads=1, intensity_scale=1.0)
    assert isinstance(det, DynamicPillarDetector)
    return det


def test_the_variant_is_a_named_detector_the_node_can_choose():
    assert detectors()[VARIANT] is VARIANTS[VARIANT]
    spec = detector_spec({"model": VARIANT})
    assert spec.dynamic and spec.intensity_scale == 1.0  # nuScenes models take raw 0..255 intensities
    with pytest.raises(ConfigError, match="'max_pillars' .* dynamic pillars have no pillar limit"):
        detector_spec({"model": VARIANT, "max_pillars": 100}, "detection3d")
    with pytest.raises(ConfigError, match="'painting' is true but centerpoint_pillar_nuscenes"):
        detector_spec({"model": VARIANT, "painting": True, "paint_classes": ["car"]})
    with pytest.raises(ConfigError, match="dynamic pillars.* runs on torch or onnxruntime.* not 'onnxruntime-int8'"):
        build_detector(detector_spec({"model": VARIANT}), "onnxruntime-int8")


def test_numpy_dynamic_pillars_and_encoder_reproduce_the_reference(io):
    """Against OpenPCDet's forward pass on the fixture cloud (its range-edge points included), manifest tolerances."""
    with np.load(require(FIXTURE / WEIGHTS, "centerpoint fixture")) as data:
        state = {k: data[k] for k in data.files}
    grid = VARIANTS[VARIANT].grid
    points = point_features(io["points"], num_features=5)
    np.testing.assert_array_equal(points, io["points"])  # an (N, 5) array keeps its time lag column
    cells, inside = grid_cells(points, grid)
    pillars = group_pillars(points[inside], cells[inside], grid)
    assert inside.sum() == len(io["pfn0_input"]) == 9103 and len(pillars) == 4698
    np.testing.assert_array_equal(pillars.coords, io["voxel_coords"])
    # the reference keeps input order; ours groups by pillar: compare through the grouping
    np.testing.assert_array_equal(pillars.pillar_index, io["point_pillar_index"][pillars.source])
    decorated = decorate_grouped(pillars, grid)
    np.testing.assert_allclose(decorated, io["pfn0_input"][pillars.source], atol=1e-5, rtol=0)
    encoder = DynamicPillarEncoder(vfe_arrays(state, 2))
    got = encoder.run({"point_features": decorated, "pillar_index": pillars.pillar_index,
                       "pillar_starts": pillars.starts})["pillar_features"]
    np.testing.assert_allclose(got, io["pillar_features"], atol=1e-4, rtol=1e-4)


def test_pipeline_on_onnx_runtime_gives_the_reference_maps_and_boxes(spec, module, detector, io):
    vfe_file, onnx_file = onnx_files(spec)
    assert vfe_file.name == VFE_WEIGHTS and onnx_file.is_file()
    points = io["points"]
    with torch.no_grad():
        reference = [t.numpy() for t in module(torch.from_numpy(points))]
        pillars = module.pillars(points)
        canvas_ref = module.map_to_bev(module.encode(pillars), pillars.coords).numpy()
    _, feeds = detector.network_inputs(points)
    assert_close(feeds["spatial_features"], canvas_ref, 1e-4, 1e-4, "canvas")
    maps = detector.backbone_head.run(feeds)
    for name, expected in zip(module.output_names, reference, strict=True):
        assert_close(maps[name], expected, what=name, **MAP_TOL)

    result = detector(points)
    expected = decoder(spec.config)(group_head_outputs(module.output_names, reference))
    det = result.detections
    assert det.boxes.shape == (len(expected.boxes), 9) and len(det.boxes) > 0  # x y z dx dy dz yaw vx vy
    np.testing.assert_array_equal(det.labels, expected.labels)
    np.testing.assert_allclose(det.scores, expected.scores, atol=1e-4)
    np.testing.assert_allclose(det.boxes, expected.boxes, atol=2e-3)
    assert set(result.names) <= set(NUSCENES_CLASSES)
    assert result.num_pillars == result.num_occupied == pillars.num_pillars and not result.truncated
    assert result.timings_ms["encoder"] > 0 and result.timings_ms["paint"] == 0


def test_single_sweeps_get_lag_zero_and_bad_clouds_give_no_boxes(detector, io):
    points = io["points"].copy()
    points[:, 4] = 0
    structured = np.zeros(len(points), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4")])
    for i, name in enumerate(("x", "y", "z", "intensity")):
        structured[name] = points[:, i]
    np.testing.assert_array_equal(point_features(structured, num_features=5), points)
    np.testing.assert_array_equal(point_features(points[:, :4], num_features=5), points)
    lagged, single = detector(io["points"]).detections, detector(structured).detections
    np.testing.assert_array_equal(single.boxes, detector(points).detections.boxes)
    assert not np.array_equal(lagged.scores, single.scores)  # the lag channel reaches the network
    for bad, finite in ((np.zeros((0, 5), np.float32), 0), (np.full((10, 5), np.nan, np.float32), 0),
                        (np.array([[40.0, 0, 0, 10, 0]], np.float32), 1)):  # empty, all-NaN, outside the range
        result = detector(bad)  # an empty canvas through the head: whatever (untrained) boxes it gives, well formed
        assert (result.num_points, result.num_points_in_range, result.num_pillars) == (finite, 0, 0)
        assert result.detections.boxes.shape[1:] == (9,) and np.isfinite(result.detections.boxes).all()
