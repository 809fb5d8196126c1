"""Post-processing of 3D detection on hand-built cases with known answers: rotated BEV IoU (checked against a slow
polygon-clipping reference), rotated and circle NMS, score thresholds, the residual box coder, the direction
classifier, the anchor grid and centre-head decoding."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros_mmfusion.core.detection3d.anchors import AnchorClassConfig, generate_anchors
from ros_mmfusion.core.detection3d.box_coder import DirectionClassifier, ResidualCoder, limit_period
from ros_mmfusion.core.detection3d.centerpoint import CenterHeadDecoder, heatmap_peaks
from ros_mmfusion.core.detection3d.nms import (
    circle_nms,
    rotated_iou_matrix,
    rotated_iou_pairs,
    rotated_nms,
)
from ros_mmfusion.core.detection3d.postprocess import NmsConfig, PostProcessConfig, select_detections
from ros_mmfusion.core.errors import ConfigError


def box(x=0.0, y=0.0, dx=4.0, dy=2.0, yaw=0.0, z=0.0, dz=1.5) -> list[float]:
    return [x, y, z, dx, dy, dz, yaw]


# ----------------------------------------------------------------- slow exact reference: Sutherland-Hodgman clipping


def _corners(b) -> list[tuple[float, float]]:
    x, y, _, dx, dy, _, yaw = b
    c, s = math.cos(yaw), math.sin(yaw)
    return [(x + c * u - s * v, y + s * u + c * v) for u, v in ((dx / 2, dy / 2), (-dx / 2, dy / 2),
                                                                 (-dx / 2, -dy / 2), (dx / 2, -dy / 2))]


def _clip(subject, clipper):
    out = list(subject)
    for i in range(len(clipper)):
        (ax, ay), (bx, by) = clipper[i], clipper[(i + 1) % len(clipper)]
        inp, out = out, []
        for j in range(len(inp)):
            cur, prev = inp[j], inp[j - 1]
            sc = (bx - ax) * (cur[1] - ay) - (by - ay) * (cur[0] - ax)
            sp = (bx - ax) * (prev[1] - ay) - (by - ay) * (prev[0] - ax)
            if (sc >= 0) != (sp >= 0):
                t = sp / (sp - sc)
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            if sc >= 0:
                out.append(cur)
        if not out:
            break
    return out


def _area(poly) -> float:
    return 0.5 * abs(sum(poly[i - 1][0] * poly[i][1] - poly[i][0] * poly[i - 1][1] for i in range(len(poly))))


def reference_iou(a, b) -> float:
    inter = _area(_clip(_corners(a), _corners(b)))
    return inter / (a[3] * a[4] + b[3] * b[4] - inter)


# ---------------------------------------------------------------------------------------------------- rotated IoU


@pytest.mark.parametrize("yaw", [0.0, 0.3, -1.2, math.pi / 2, math.pi])
def test_iou_of_identical_boxes_is_one(yaw):
    b = np.array([box(1.5, -2.0, 4.0, 2.0, yaw)])
    assert rotated_iou_pairs(b, b)[0] == pytest.approx(1.0, abs=1e-12)


def test_iou_of_disjoint_and_edge_touching_boxes_is_zero():
    a = np.array([box(0, 0)] * 3)
    b = np.array([box(10, 0), box(4.0, 0), box(0, 2.0, yaw=np.pi)])  # far; sharing the x=2 edge; sharing y=1
    np.testing.assert_allclose(rotated_iou_pairs(a, b), 0.0, atol=1e-12)


def test_iou_with_itself_turned_by_90_degrees():
    a = np.array([box(3, 3, 4.0, 2.0, 0.4), box(0, 0, 2.0, 2.0, 0.0)])
    b = a.copy()
    b[:, 6] += np.pi / 2
    # 4x2 box: 2x2 overlap, union 8 + 8 - 4; a square is unchanged.
    np.testing.assert_allclose(rotated_iou_pairs(a, b), [1 / 3, 1.0], atol=1e-12)


def test_iou_of_a_square_and_itself_turned_by_45_degrees_is_the_octagon():
    octagon = 2 * (math.sqrt(2) - 1)  # unit square intersected with its 45-degree turn
    a, b = np.array([box(0, 0, 1, 1)]), np.array([box(0, 0, 1, 1, math.pi / 4)])
    assert rotated_iou_pairs(a, b)[0] == pytest.approx(octagon / (2 - octagon), abs=1e-12)


def test_iou_of_a_contained_box_is_its_area_ratio():
    a, b = np.array([box(0, 0, 6, 4, 0.7)]), np.array([box(0.2, 0.1, 1, 1, 0.1)])
    assert rotated_iou_pairs(a, b)[0] == pytest.approx(1 / 24, abs=1e-12)


_coord = st.floats(-3, 3, allow_nan=False)
_size = st.floats(0.2, 4, allow_nan=False)
_yaw = st.one_of(st.floats(-math.pi, math.pi, allow_nan=False),
                 st.integers(-4, 4).map(lambda k: k * math.pi / 2))  # right angles give collinear edges
_box = st.builds(box, _coord, _coord, _size, _size, _yaw)


def _related(a: list[float], b: list[float], relation: str) -> list[float]:
    """``b``, or a box sharing ``a``'s centre / heading so that edges coincide or cross at corners."""
    x, y, z, dx, dy, dz, yaw = a
    if relation == "turned":  # same centre, a right angle turned
        return [x, y, z, b[3], b[4], dz, yaw + math.pi / 2]
    if relation == "slid":  # same heading, slid along it by half or all of its length
        step = dx * (0.5 if b[3] > 2 else 1.0)
        return [x + step * math.cos(yaw), y + step * math.sin(yaw), z, dx, dy, dz, yaw]
    return b


@settings(max_examples=300, deadline=None)
@given(a=_box, other=_box, relation=st.sampled_from(["free", "turned", "slid"]), far=st.sampled_from([0.0, 69.12]))
def test_iou_matches_polygon_clipping_and_is_symmetric(a, other, relation, far):
    b = _related(a, other, relation)
    a, b = ([v + far * (i < 2) for i, v in enumerate(box_)] for box_ in (a, b))  # also far from the sensor
    iou_ab = rotated_iou_pairs(np.array([a]), np.array([b]))[0]
    iou_ba = rotated_iou_pairs(np.array([b]), np.array([a]))[0]
    assert 0.0 <= iou_ab <= 1.0 + 1e-12
    assert iou_ab == pytest.approx(reference_iou(a, b), abs=1e-9)
    assert iou_ab == pytest.approx(iou_ba, abs=1e-9)


def test_iou_matrix_agrees_with_pairs():
    rng = np.random.default_rng(3)
    boxes = np.c_[rng.uniform(-3, 3, (12, 2)), np.zeros(12), rng.uniform(0.5, 3, (12, 2)), np.ones(12),
                  rng.uniform(-3, 3, 12)]
    matrix = rotated_iou_matrix(boxes, boxes[:5], chunk=7)
    i, j = np.meshgrid(np.arange(12), np.arange(5), indexing="ij")
    np.testing.assert_allclose(matrix, rotated_iou_pairs(boxes[i.ravel()], boxes[j.ravel()]).reshape(12, 5))


# ------------------------------------------------------------------------------------------------------------ NMS


def test_rotated_nms_keeps_the_right_boxes():
    boxes = np.array([box(0, 0), box(0.5, 0), box(20, 0), box(4.0, 0), box(0.0, 0.0, yaw=np.pi / 2)])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    # B overlaps A (IoU 7/9): dropped. D touches A and overlaps only the dropped B: kept. E crosses A (IoU 1/3).
    np.testing.assert_array_equal(rotated_nms(boxes, scores, 0.5), [0, 2, 3, 4])
    np.testing.assert_array_equal(rotated_nms(boxes, scores, 0.3), [0, 2, 3])
    np.testing.assert_array_equal(rotated_nms(boxes, scores, 0.8), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(rotated_nms(boxes, scores, 0.5, post_max_size=2), [0, 2])
    np.testing.assert_array_equal(rotated_nms(boxes, scores, 0.5, pre_max_size=2), [0])


def test_rotated_nms_equals_brute_force_greedy_and_breaks_ties_by_input_order():
    rng = np.random.default_rng(7)
    n = 120
    boxes = np.c_[rng.uniform(0, 12, (n, 2)), np.zeros(n), rng.uniform(0.5, 4, (n, 2)), np.ones(n),
                  rng.uniform(-np.pi, np.pi, n)]
    scores = np.round(rng.uniform(0, 1, n), 1)  # many ties
    order = np.argsort(-scores, kind="stable")
    iou = rotated_iou_matrix(boxes[order], boxes[order])
    suppressed, expected = np.zeros(n, bool), []
    for i in range(n):
        if not suppressed[i]:
            expected.append(order[i])
            suppressed |= iou[i] > 0.1
    np.testing.assert_array_equal(rotated_nms(boxes, scores, 0.1), expected)


def test_circle_nms_suppresses_by_squared_centre_distance_inclusive():
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [2.5, 0.0], [2.5, 1.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    np.testing.assert_array_equal(circle_nms(centres, scores, 4.0), [0, 2])  # 1 m^2 <= 4; 6.25 > 4
    np.testing.assert_array_equal(circle_nms(centres, scores, 1.0), [0, 2])  # boundary: 1 <= 1 suppresses
    np.testing.assert_array_equal(circle_nms(centres, scores, 0.5), [0, 1, 2, 3])
    np.testing.assert_array_equal(circle_nms(centres, scores, 0.5, post_max_size=3), [0, 1, 2])


def test_per_class_score_thresholds():
    boxes = np.array([box(0, 0), box(10, 0), box(20, 0), box(30, 0)])
    scores = np.array([0.5, 0.5, 0.5, 0.25], np.float32)
    labels = np.array([1, 2, 3, 2])
    det = select_detections(boxes, scores, labels, PostProcessConfig(score_thresh=(0.75, 0.25, 0.5)))
    np.testing.assert_array_equal(det.labels, [2, 3, 2])  # 0.5 < 0.75 drops class 1; thresholds are inclusive
    np.testing.assert_array_equal(det.boxes[:, 0], [10, 20, 30])
    with pytest.raises(ConfigError):
        select_detections(boxes, scores, np.array([1, 2, 3, 4]), PostProcessConfig(score_thresh=(0.1, 0.1, 0.1)))


def test_class_agnostic_versus_per_class_nms():
    boxes = np.array([box(0, 0), box(0.2, 0), box(0.4, 0)])
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    labels = np.array([1, 2, 1])
    agnostic = select_detections(boxes, scores, labels, PostProcessConfig(0.1, NmsConfig("nms_gpu", 0.5)))
    per_class = select_detections(boxes, scores, labels, PostProcessConfig(
        0.1, NmsConfig("rotated", 0.5, multi_classes_nms=True)))
    np.testing.assert_array_equal(agnostic.labels, [1])
    np.testing.assert_array_equal(per_class.labels, [1, 2])
    np.testing.assert_allclose(per_class.scores, [0.9, 0.8])
    circle = select_detections(boxes, scores, labels, PostProcessConfig(
        0.1, NmsConfig("circle_nms", (0.2, 0.01), multi_classes_nms=True)))  # per-class squared radii
    np.testing.assert_array_equal(circle.labels, [1, 2])
    with pytest.raises(ConfigError):
        NmsConfig("rotated", (0.1, 0.2))
    with pytest.raises(ConfigError):
        NmsConfig("soft_nms")


def test_selection_is_deterministic_and_independent_of_input_order():
    rng = np.random.default_rng(11)
    n = 300
    boxes = np.c_[rng.uniform(0, 30, (n, 2)), np.zeros(n), rng.uniform(0.5, 4, (n, 2)), np.ones(n),
                  rng.uniform(-np.pi, np.pi, n)].astype(np.float32)
    scores = rng.permutation(n).astype(np.float32) / n  # distinct
    labels = rng.integers(1, 4, n)
    config = PostProcessConfig(0.1, NmsConfig("rotated", 0.01, 200, 50))
    first = select_detections(boxes, scores, labels, config)
    perm = rng.permutation(n)
    second = select_detections(boxes[perm], scores[perm], labels[perm], config)
    assert 0 < len(first) <= 50
    np.testing.assert_array_equal(first.boxes, second.boxes)
    np.testing.assert_array_equal(first.scores, second.scores)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.boxes.dtype == np.float32 and first.labels.dtype == np.int64


# ------------------------------------------------------------------------------------------ box coder and anchors


def test_residual_decode_of_known_residuals():
    anchor = np.array([[0.0, 0.0, 0.0, 3.0, 4.0, 2.0, 0.5]])  # BEV diagonal 5
    deltas = np.array([[1.0, -0.4, 0.5, math.log(2.0), 0.0, math.log(0.5), 0.3]])
    np.testing.assert_allclose(ResidualCoder().decode(deltas, anchor), [[5.0, -2.0, 1.0, 6.0, 4.0, 1.0, 0.8]],
                               rtol=1e-6)


@pytest.mark.parametrize("sincos", [False, True])
def test_residual_coder_round_trip(sincos):
    rng = np.random.default_rng(5)
    n = 200
    anchors = np.c_[rng.uniform(-40, 70, (n, 3)), rng.uniform(0.5, 4, (n, 3)), rng.choice([0, 1.57], n),
                    np.zeros((n, 2))]
    boxes = np.c_[anchors[:, :3] + rng.normal(0, 1, (n, 3)), anchors[:, 3:6] * rng.uniform(0.5, 2, (n, 3)),
                  rng.uniform(-np.pi, np.pi, n), rng.normal(0, 3, (n, 2))]  # two extra channels (velocity)
    coder = ResidualCoder(code_size=8 if sincos else 7, encode_angle_by_sincos=sincos)
    deltas = coder.encode(boxes, anchors)
    assert deltas.shape == (n, coder.code_size + 2)
    back = coder.decode(deltas, anchors)
    np.testing.assert_allclose(back[:, :6], boxes[:, :6], atol=1e-9)
    np.testing.assert_allclose(np.cos(back[:, 6] - boxes[:, 6]), 1.0, atol=1e-12)
    np.testing.assert_allclose(back[:, 7:], boxes[:, 7:], atol=1e-9)


def test_direction_classifier_picks_the_half_turn():
    direction = DirectionClassifier(dir_offset=0.78539, dir_limit_offset=0.0, num_bins=2)
    yaw = np.linspace(-7, 7, 57)
    for label in (0, 1):
        logits = np.zeros((yaw.size, 2))
        logits[:, label] = 1.0
        fixed = direction.apply(yaw, logits)
        low = 0.78539 + label * np.pi
        assert np.all((fixed >= low - 1e-9) & (fixed < low + np.pi + 1e-9))
        np.testing.assert_allclose(np.sin(fixed - yaw), 0.0, atol=1e-9)  # only whole half-turns are added
    np.testing.assert_allclose(limit_period(np.array([-0.5, 3.5]), 0.5, np.pi), [-0.5, 3.5 - np.pi])


def test_anchor_layout_and_alignment():
    car = AnchorClassConfig("Car", ((4.0, 2.0, 1.5),), (0.0, 1.57), (-2.0,), align_center=False, feature_map_stride=1)
    ped = AnchorClassConfig("Pedestrian", ((0.8, 0.6, 1.7),), (0.0,), (-0.5,), align_center=False,
                            feature_map_stride=1)
    anchors = generate_anchors([car, ped], (0, -2, -3, 6, 2, 1), (4, 3, 1))
    assert anchors.shape == (3, 4, 3, 7)
    np.testing.assert_allclose(anchors[0, :, 0, 0], [0, 2, 4, 6])  # first and last on the range's edges
    np.testing.assert_allclose(anchors[:, 0, 0, 1], [-2, 0, 2])
    np.testing.assert_allclose(anchors[1, 2, :, 2:], [[-1.25, 4, 2, 1.5, 0], [-1.25, 4, 2, 1.5, 1.57],
                                                      [0.35, 0.8, 0.6, 1.7, 0]], rtol=1e-6)
    centred = generate_anchors([AnchorClassConfig("Car", ((4.0, 2.0, 1.5),), (0.0,), (-2.0,), True, 2)],
                               (0, -2, -3, 8, 2, 1), (8, 4, 1))
    np.testing.assert_allclose(centred[0, :, 0, 0], [1, 3, 5, 7])  # cell centres of the stride-2 map
    with pytest.raises(ConfigError):
        AnchorClassConfig("Car", ((4.0, 2.0, 1.5),), (0.0,), (-2.0, -1.0))


# ---------------------------------------------------------------------------------------------------- centre head


def _centre_maps(h=8, w=10):
    hm = np.full((1, 2, h, w), -10.0, np.float32)
    hm[0, 1, 3, 4] = 2.0  # Pedestrian peak
    hm[0, 1, 3, 5] = 1.0  # its neighbour (not a local maximum)
    hm[0, 0, 7, 9] = 3.0  # a Car whose centre lands outside the limit range
    center = np.zeros((1, 2, h, w), np.float32)
    center[0, :, 3, 4] = [0.25, 0.5]
    center_z = np.full((1, 1, h, w), -1.0, np.float32)
    dim = np.zeros((1, 3, h, w), np.float32)
    dim[0, :, 3, 4] = np.log([0.8, 0.6, 1.7])
    rot = np.zeros((1, 2, h, w), np.float32)
    rot[0, :, :, :] = np.array([0.0, 1.0], np.float32)[:, None, None]  # cos 0, sin 1: yaw = pi/2
    return {"hm": hm, "center": center, "center_z": center_z, "dim": dim, "rot": rot}


def _centre_decoder(**kw) -> CenterHeadDecoder:
    base = dict(class_names=("Car", "Pedestrian"), class_names_each_head=(("Car", "Pedestrian"),),
                point_cloud_range=(0.0, -2.0, -3.0, 10.0, 2.0, 1.0), voxel_size=(0.5, 0.5, 4.0),
                feature_map_stride=2, max_obj_per_sample=20, score_thresh=0.1,
                post_center_limit_range=(0.0, -2.0, -3.0, 9.0, 2.0, 1.0),
                nms=NmsConfig("circle", 4.0, 4096, 100))
    base.update(kw)
    return CenterHeadDecoder(**base)


def test_centre_head_decodes_offset_height_size_and_heading():
    boxes, scores, labels = _centre_decoder(peak_kernel=3).decode(_centre_maps())
    # x = (col + dx) * stride * voxel + x_min = 4.25; y = (row + dy) * 1 + (-2) = 1.5; the Car at x = 9.5 is cut.
    np.testing.assert_allclose(boxes, [[4.25, 1.5, -1.0, 0.8, 0.6, 1.7, np.pi / 2]], rtol=1e-6)
    np.testing.assert_allclose(scores, [1 / (1 + math.exp(-2.0))], rtol=1e-6)
    np.testing.assert_array_equal(labels, [2])


def test_centre_head_without_peaks_relies_on_circle_nms():
    decoder = _centre_decoder()
    _, scores, labels = decoder.decode(_centre_maps())
    assert scores.size == 2 and np.all(labels == 2)
    det = decoder([_centre_maps()])
    np.testing.assert_array_equal(det.labels, [2])  # neighbour 1 m away: 1 m^2 <= 4 m^2
    det = _centre_decoder(nms=NmsConfig("circle", 0.5))([_centre_maps()])
    assert len(det) == 2 and np.all(np.diff(det.scores) <= 0)


def test_centre_heads_map_their_channels_to_global_labels():
    maps = _centre_maps()
    car_maps = {**maps, "hm": maps["hm"][:, 1:2]}  # reuse the pedestrian heatmap as a one-class head
    decoder = _centre_decoder(class_names=("Car", "Pedestrian"), class_names_each_head=(("Pedestrian",), ("Car",)),
                              peak_kernel=3)
    det = decoder([car_maps, car_maps])
    np.testing.assert_array_equal(np.sort(det.labels), [1, 2])


def test_heatmap_peaks_keep_only_local_maxima():
    heat = np.zeros((1, 4, 4))
    heat[0, 1, 1], heat[0, 1, 2], heat[0, 3, 3] = 0.9, 0.5, 0.4
    peaks = heatmap_peaks(heat)
    assert peaks[0, 1, 1] == 0.9 and peaks[0, 1, 2] == 0 and peaks[0, 3, 3] == 0.4
