"""The simulated sensors agree with each other and with the ground truth, pixel for point."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ros_mmfusion.core import labels as L
from ros_mmfusion.core.sim.simulator import Simulation

CASES = [("urban_day", 0), ("urban_day", 37), ("urban_night", 12), ("fog", 5), ("indoor_corridor_pass2", 3)]


@pytest.fixture(scope="module")
def frames():
    out = {}
    for name, index in CASES:
        sim = Simulation(name, seed=1, size=(320, 240), beams=32)
        out[(name, index)] = (sim, sim.frame(index))
    return out


def _project(sim, frame):
    """LiDAR points in the colour camera: pixel (u, v), optical z, in-image mask."""
    pts = np.stack([frame.lidar.points[c] for c in "xyz"], axis=1).astype(np.float64)
    T_cam_lidar = sim.rig.color.T_base_sensor.inverse() @ sim.rig.lidar.T_base_sensor
    uv, z, valid = sim.rig.color.camera.project(T_cam_lidar.apply(pts))
    u = np.clip(np.rint(uv[:, 0]).astype(int), 0, sim.rig.color.camera.width - 1)
    v = np.clip(np.rint(uv[:, 1]).astype(int), 0, sim.rig.color.camera.height - 1)
    return u, v, z, valid


def _interior(labels: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood holds one class only (away from object edges)."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.erode(labels, kernel) == cv2.dilate(labels, kernel)


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_lidar_points_land_on_pixels_of_their_class(frames, case):
    sim, frame = frames[case]
    u, v, z, valid = _project(sim, frame)
    cam = frame.camera
    same_surface = valid & (np.abs(cam.depth_true[v, u] - z) < 0.03 + 0.01 * z)
    interior = _interior(cam.semantic)[v, u]
    labelled = frame.lidar.labels != L.UNLABELED
    checked = same_surface & interior & labelled
    assert checked.sum() > 500
    agreement = np.mean(cam.semantic[v, u][checked] == frame.lidar.labels[checked])
    assert agreement >= 0.99, agreement
    # The calibration is what makes the surfaces meet: most near, in-view interior points find their surface.
    near = valid & interior & labelled & (z < 15.0)
    assert np.mean(same_surface[near]) > 0.85


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_depth_image_equals_lidar_range_on_shared_surfaces(frames, case):
    sim, frame = frames[case]
    u, v, z, valid = _project(sim, frame)
    cam = frame.camera
    truth = cam.depth_true
    finite = np.where(np.isfinite(truth), truth, 0.0).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(finite, kernel) - cv2.erode(finite, kernel)
    smooth = np.isfinite(truth) & (spread < 0.01 * finite)
    shared = valid & smooth[v, u] & (frame.lidar.labels != L.UNLABELED) & (np.abs(truth[v, u] - z) < 0.5)
    assert shared.sum() > 300
    zs = z[shared]
    err_true = np.abs(truth[v, u][shared] - zs)
    close = err_true < 0.012 + 0.005 * zs  # LiDAR noise (<= 1 cm) plus sub-pixel slope
    assert close.mean() >= 0.99, np.sort(err_true)[-10:]
    # The published (noisy, range-limited) depth image: valid pixels agree within its noise model (0.2 % sigma).
    depth = cam.depth[v, u][shared]
    ok = np.isfinite(depth)
    max_range = sim.scenario.conditions.depth_max_range
    in_range = zs < max_range - 0.5
    assert ok[in_range].mean() > 0.9 if in_range.sum() >= 5 else True
    assert not ok[zs > max_range + 0.5].any()
    both = ok & close
    assert np.all(np.abs(depth[both] - zs[both]) < 0.012 + 0.015 * zs[both])


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_every_box_holds_its_object_points_and_no_others(frames, case):
    _, frame = frames[case]
    pts = np.stack([frame.lidar.points[c] for c in "xyz"], axis=1)
    inst, lab = frame.lidar.instances, frame.lidar.labels
    if case[0] != "indoor_corridor_pass2":
        assert len(frame.boxes) >= 3
    for box in frame.boxes:
        inside = box.contains(pts, tolerance=1e-4)
        own = inst == box.instance_id
        assert own.sum() == box.num_points > 0
        assert inside[own].all(), f"{box.class_name} {box.instance_id}: {np.sum(~inside[own])} own points outside"
        others = inside & ~own & (lab != L.UNLABELED)
        assert not others.any(), f"{box.class_name} {box.instance_id} holds {np.unique(lab[others])}"
        assert box.class_name == L.LABELS[box.class_id].name and L.LABELS[box.class_id].is_thing


def test_every_visible_thing_has_a_box_and_classes_match(frames):
    for _, frame in frames.values():
        by_id = {b.instance_id: b for b in frame.boxes}
        for instance in np.unique(frame.lidar.instances[frame.lidar.instances > 0]):
            labels = np.unique(frame.lidar.labels[frame.lidar.instances == instance])
            assert len(labels) == 1 and by_id[int(instance)].class_id == labels[0]


def test_semantic_and_instance_images_agree(frames):
    for _, frame in frames.values():
        sem, inst = frame.camera.semantic, frame.camera.instance
        things = np.isin(sem, L.THING_IDS)
        assert np.array_equal(things, inst > 0)


def test_night_is_dark_in_rgb_while_thermal_shows_people():
    day = Simulation("urban_day", seed=0, size=(320, 240)).frame(30)
    night = Simulation("urban_night", seed=0, size=(320, 240)).frame(30)
    assert night.camera.rgb.mean() < 0.4 * day.camera.rgb.mean()
    people = night.camera.semantic == L.PEDESTRIAN
    assert people.sum() > 20
    celsius = night.camera.thermal.astype(np.float32) / 100.0 - 273.15
    road = night.camera.semantic == L.ROAD
    assert np.median(celsius[people]) > np.median(celsius[road]) + 8.0


def test_fog_degrades_rgb_contrast_and_lidar_range():
    clear = Simulation("urban_day", seed=0, size=(160, 120)).frame(10)
    fog = Simulation("fog", seed=0, size=(160, 120)).frame(10)
    assert fog.camera.rgb.std() < 0.7 * clear.camera.rgb.std()

    def ranges(frame):
        return np.linalg.norm(np.stack([frame.lidar.points[c] for c in "xyz"], 1), axis=1)

    assert np.quantile(ranges(fog), 0.95) < 0.7 * np.quantile(ranges(clear), 0.95)
    assert np.sum(fog.lidar.labels == L.UNLABELED) > 100
    assert np.isnan(fog.camera.depth).mean() > np.isnan(clear.camera.depth).mean()
