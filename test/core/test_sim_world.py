"""Building blocks of the synthetic world: label set, loop geometry, meshes, actors' boxes, ego odometry."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ros_mmfusion.core import labels as L
from ros_mmfusion.core.calibration import load_calibration
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.sim.calibration import calibration_dict, write_calibration
from ros_mmfusion.core.sim.ego import Ego
from ros_mmfusion.core.sim.loop import RoundedRect
from ros_mmfusion.core.sim.mesh import box, cylinder, sphere
from ros_mmfusion.core.sim.scenarios import SCENARIOS, get_scenario
from ros_mmfusion.core.sim.sensors import make_rig
from ros_mmfusion.core.sim.simulator import parse_size
from ros_mmfusion.core.sim.world import BOX_MARGIN, HOVER, KERB, build_urban


def test_label_set_is_indexed_by_id_with_unique_names_and_colours():
    assert [lb.id for lb in L.LABELS] == list(range(len(L.LABELS)))
    assert len({lb.name for lb in L.LABELS}) == len(L.LABELS)
    assert len({lb.color for lb in L.LABELS}) == len(L.LABELS)
    assert {L.LABELS[i].name for i in L.THING_IDS} == {"car", "pedestrian", "cyclist"}
    assert L.label_by_name("sky").id == L.SKY and L.IGNORE_INDEX == L.UNLABELED == 0
    with pytest.raises(ConfigError, match="unknown class"):
        L.label_by_name("truck")
    img = np.array([[L.ROAD, L.CAR]], np.uint8)
    assert L.colorize(img).tolist() == [[list(L.LABELS[L.ROAD].color), list(L.LABELS[L.CAR].color)]]


@pytest.mark.parametrize("clockwise", [False, True])
def test_loop_poses_are_continuous_and_stay_on_the_curve(clockwise):
    loop = RoundedRect(20.0, 10.0, 4.0)
    s = np.linspace(0.0, 2 * loop.length, 2001)
    poses = np.array([loop.pose_at(x, clockwise) for x in s])
    step = np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1)
    assert np.allclose(step, s[1] - s[0], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(loop.signed_distance(poses[:, :2]), 0.0, atol=1e-9)
    heading = np.arctan2(np.diff(poses[:, 1]), np.diff(poses[:, 0]))
    dyaw = np.angle(np.exp(1j * (heading - poses[:-1, 2])))
    assert np.abs(dyaw).max() < 0.02
    assert loop.length == pytest.approx(2 * (32 + 12) + 2 * math.pi * 4)
    assert sum(length for _, length in loop.straights()) == pytest.approx(2 * (32 + 12))


def test_offset_curves_are_at_their_distance():
    base = RoundedRect(27.0, 17.0, 3.0)
    for d in (0.0, 2.5, 10.0):
        pts = base.offset(d).boundary(12)
        np.testing.assert_allclose(base.signed_distance(pts), d, atol=1e-9)
    with pytest.raises(ConfigError):
        RoundedRect(1.0, 1.0, 2.0)


@pytest.mark.parametrize("mesh", [box((0, 0, 0), (1, 2, 3)), cylinder(0.5, 2.0, 10), sphere(1.0, 6, 10)])
def test_primitives_are_closed_and_face_outward(mesh):
    verts, tris = mesh
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    normal = np.cross(b - a, c - a)
    centre = verts.mean(axis=0)
    assert np.all(np.einsum("ij,ij->i", normal, (a + b + c) / 3 - centre) > 0)
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts == 2)  # every edge shared by two triangles: watertight


def test_actor_boxes_are_tight_and_above_the_ground():
    world = build_urban(0)
    snap = world.snapshot(2.0)
    assert len(snap.boxes) == len(world.actors) > 30
    classes = {b.class_id for b in snap.boxes}
    assert classes == set(L.THING_IDS)
    for box_gt in snap.boxes:
        mask = snap.tri_instance == box_gt.instance_id
        verts = snap.vertices[np.unique(snap.triangles[mask])]
        local = box_gt.T_world_box.inverse().apply(verts.astype(np.float64))
        half = 0.5 * box_gt.size
        assert np.all(np.abs(local) <= half + 1e-4)
        assert np.all(np.abs(local).max(axis=0) >= half - BOX_MARGIN - 1e-4)  # tight: touches every face
        bottom = box_gt.T_world_box.translation[2] - half[2]
        assert bottom >= HOVER - BOX_MARGIN - 1e-6 and bottom < KERB + 0.1  # walkers lift their feet a little


def test_ego_odometry_starts_at_identity_and_reports_the_route_speed():
    world = build_urban(5)
    ego = Ego(world.ego_route)
    start = ego.state(0.0)
    np.testing.assert_allclose(start.T_odom_base.matrix(), np.eye(4), atol=1e-12)
    later = ego.state(3.0)
    assert later.linear[0] == pytest.approx(world.ego_route.speed, rel=1e-4)
    assert abs(later.linear[1]) < 1e-3
    travelled = np.linalg.norm(later.T_odom_base.translation)
    assert 0.5 * 3.0 * world.ego_route.speed < travelled <= 3.0 * world.ego_route.speed + 1e-9


def test_scenarios_resolve_by_name_and_alias():
    assert set(SCENARIOS) >= {"urban_day", "urban_night", "fog", "indoor_corridor", "indoor_corridor_pass2"}
    assert get_scenario("indoor_corridor_pass1").name == "indoor_corridor"
    with pytest.raises(ConfigError, match="urban_day"):
        get_scenario("mars")


@pytest.mark.parametrize("text,expected", [("640x480", (640, 480)), ("160X120", (160, 120))])
def test_parse_size_accepts_width_x_height(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["640", "640x", "x480", "axb", "8x8", "640x480x3", "-640x480"])
def test_parse_size_rejects_malformed_sizes(text):
    with pytest.raises(ConfigError):
        parse_size(text)


def test_calibration_round_trips(tmp_path):
    rig = make_rig("car", 320, 240, 64)
    path = write_calibration(tmp_path / "calibration.yaml", rig)
    calib = load_calibration(path)
    assert calib.platform == "car" and set(calib.cameras) == {"color", "depth", "thermal"}
    for sensor in rig.cameras:
        got = calib.cameras[sensor.name]
        assert got.frame_id == sensor.frame_id
        np.testing.assert_allclose(got.camera.k, sensor.camera.k)
        np.testing.assert_allclose(got.T_base_sensor.matrix(), sensor.T_base_sensor.matrix(), atol=1e-9)
    np.testing.assert_allclose(calib.lidar.elevations_rad, rig.lidar.elevations_rad, atol=1e-7)
    assert calibration_dict(rig)["lidar"]["beams"] == 64
    # The optical frame looks along base_link +x (slightly down) with its x axis to the right (-y).
    R = rig.color.T_base_sensor.rotation
    assert R[:, 2] @ np.array([1.0, 0.0, 0.0]) > 0.99 and R[:, 0] @ np.array([0.0, -1.0, 0.0]) > 0.99
    (tmp_path / "bad.yaml").write_text("format: something else\n")
    with pytest.raises(ConfigError):
        load_calibration(tmp_path / "bad.yaml")
