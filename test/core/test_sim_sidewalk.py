"""Urban sidewalk routes for the navigation robot: both passes render with the robot rig, the route keeps clear of
the static world and of the pass's people, the passes share their static map but not their appearance, the static
clearance map answers disc queries, navigation training pairs the sidewalk passes as it pairs the corridor's, and a
recorded sidewalk bag becomes a topological map through `mmfusion sim` and `mmfusion topomap build`."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ros_mmfusion.core import labels as L
from ros_mmfusion.core.sim import SCENARIOS, Simulation, get_scenario
from ros_mmfusion.core.sim.clearance import ROBOT_RADIUS, WorldCollision, static_clearance
from ros_mmfusion.core.sim.scenarios import scenario_route
from ros_mmfusion.core.sim.world import KERB, URBAN_OFFSETS, URBAN_REFERENCE, Route

SIDEWALK, SIDEWALK2 = "urban_sidewalk", "urban_sidewalk_pass2"
CLEARANCE_MARGIN = 0.15  #: metres the robot's disc must keep from static geometry along its route


def min_route_clearance(cmap, route: Route) -> float:
    """The least clearance (metres) of ``route``'s centre line over one lap, sampled every 0.25 m."""
    return float(cmap.clearance(route.centre_line(spacing=0.25)[:, :2]).min())


@pytest.fixture(scope="module")
def worlds():
    return {(name, seed): get_scenario(name).build_world(seed) for name in (SIDEWALK, SIDEWALK2) for seed in (0, 7)}


@pytest.fixture(scope="module")
def clearance_maps(worlds):
    return {key: static_clearance(world) for key, world in worlds.items()}


@pytest.mark.parametrize("name", [SIDEWALK, SIDEWALK2])
def test_sidewalk_scenarios_render_with_the_robot_rig(name):
    sim = Simulation(name, seed=0, size=(64, 48), beams=16)
    assert sim.rig.platform == "robot" and get_scenario(name).route == "urban/robot"
    frames = [sim.frame(k) for k in (0, 5)]
    for frame in frames:
        assert frame.camera.rgb.shape == (48, 64, 3) and frame.camera.rgb.std() > 5.0
        assert np.mean(frame.camera.semantic == L.SIDEWALK) > 0.15  # a camera 0.45 m above the paving
        assert frame.ego.T_world_base.translation[2] == pytest.approx(KERB)  # on the sidewalk, not the road
        assert len(frame.lidar.points) > 100
    moved = np.linalg.norm(frames[1].ego.T_odom_base.translation - frames[0].ego.T_odom_base.translation)
    assert moved == pytest.approx(0.5, abs=0.01)  # 1 m/s, walking-robot speed, over 0.5 s
    np.testing.assert_allclose(frames[0].ego.T_odom_base.matrix(), np.eye(4), atol=1e-9)


@pytest.mark.parametrize("name", [SIDEWALK, SIDEWALK2])
@pytest.mark.parametrize("seed", [0, 7])
def test_the_route_keeps_clear_of_buildings_poles_and_trees_over_a_whole_lap(clearance_maps, worlds, name, seed):
    route = worlds[(name, seed)].ego_route
    assert route.loop.length > 250.0  # a lap of the outer sidewalk
    assert min_route_clearance(clearance_maps[(name, seed)], route) >= ROBOT_RADIUS + CLEARANCE_MARGIN


def test_the_route_check_finds_a_route_through_the_poles_and_the_trees(clearance_maps, worlds):
    """The check above can fail: the same clearance map rejects lines through the street lights and the trees."""
    cmap = clearance_maps[(SIDEWALK, 0)]
    for offset in (14.2, 16.6):  # the outer sidewalk's street-light poles and trees
        line = Route(URBAN_REFERENCE.offset(offset), 0.0, 1.0, z=KERB)
        assert min_route_clearance(cmap, line) == 0.0
    assert {p.class_id for p in worlds[(SIDEWALK, 0)].static_parts} >= {L.POLE, L.VEGETATION, L.BUILDING}


def test_the_collision_query_hits_inside_buildings_and_on_poles_but_not_on_the_open_sidewalk(clearance_maps, worlds):
    world, cmap = worlds[(SIDEWALK, 0)], clearance_maps[(SIDEWALK, 0)]
    inner = [p for p in world.static_parts if p.class_id == L.BUILDING
             and np.all(np.abs(p.vertices[:, 0]) < 27.0) and np.all(np.abs(p.vertices[:, 1]) < 17.0)]
    assert len(inner) >= 4  # the buildings inside the block, all within the map
    for p in inner:
        centre = 0.5 * (p.vertices[:, :2].min(axis=0) + p.vertices[:, :2].max(axis=0))
        assert cmap.hits(*centre, radius=0.01)
    poles = [p for p in world.static_parts if p.class_id == L.POLE and len(p.vertices) > 20]  # the cylinders
    for p in poles:
        assert cmap.hits(*p.vertices[:, :2].mean(axis=0), radius=0.01)
        assert cmap.hits(*p.vertices[:, :2].mean(axis=0) + np.array([0.25, 0.0]), radius=ROBOT_RADIUS)
    x, y, _, _ = world.ego_route.pose(0.0)
    assert not cmap.hits(x, y, ROBOT_RADIUS)
    assert cmap.hits(1e4, 0.0, 0.01)  # outside the mapped area counts as a hit
    # The same query indoors: the rooms inside the loop and the walls hit, the corridor does not.
    indoor = get_scenario("indoor_corridor").build_world(0)
    imap = static_clearance(indoor)
    x, y, _, _ = indoor.ego_route.pose(3.0)
    assert not imap.hits(x, y, ROBOT_RADIUS) and imap.hits(0.0, 0.0, 0.01)
    assert imap.hits(x, y, 1.2)  # the corridor is 3 m wide: a 2.4 m disc reaches a wall
    assert min_route_clearance(imap, indoor.ego_route) >= ROBOT_RADIUS + CLEARANCE_MARGIN


def test_the_passes_share_the_static_map_and_the_start_but_not_light_people_or_parked_cars(worlds):
    first, second = worlds[(SIDEWALK, 0)], worlds[(SIDEWALK2, 0)]
    assert len(first.static_parts) == len(second.static_parts)
    for a, b in zip(first.static_parts, second.static_parts, strict=True):
        assert a.class_id == b.class_id
        np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_allclose(first.ego_route.transform(0.0).matrix(), second.ego_route.transform(0.0).matrix())
    p1 = first.ego_route.centre_line(60.0)[:, :2]
    gap = np.linalg.norm(p1 - second.ego_route.centre_line(60.0)[:, :2], axis=1)
    assert 0.05 < gap.max() <= 0.121  # pass 2 weaves off pass 1's line, never far

    def people(world):
        return [a for a in world.actors if a.class_id == L.PEDESTRIAN]

    def parked(world):
        return {tuple(np.round(a.route.pose(0.0)[:2], 2)) for a in world.actors
                if a.class_id == L.CAR and a.route.speed == 0.0}

    assert not people(first) and len(people(second)) >= 16
    assert parked(first) and parked(second) and parked(first) != parked(second)
    assert parked(first) == parked(get_scenario("urban_day").build_world(0))  # pass 1 parks urban_day's cars
    assert get_scenario(SIDEWALK).conditions != get_scenario(SIDEWALK2).conditions
    # Another seed, another street.
    other = worlds[(SIDEWALK, 7)]
    assert not np.array_equal(first.static_parts[10].vertices, other.static_parts[10].vertices)


def test_nobody_on_foot_and_no_vehicle_touches_the_robots_route(worlds):
    world = worlds[(SIDEWALK2, 0)]
    collision = WorldCollision(world)
    route = world.ego_route
    walkers = [a for a in world.actors if a.class_id == L.PEDESTRIAN and a.route.speed > 0.0]
    met = 0
    for t in np.arange(0.0, route.loop.length / route.speed, 0.5):
        x, y, _, _ = route.pose(t)
        assert collision.actor_hit(x, y, ROBOT_RADIUS, t) == 0, t
        met += any(math.dist((x, y), a.route.pose(t)[:2]) < 3.0 for a in walkers)
    assert met >= 10  # walkers do pass close by (a lap meets each walker going the other way)
    # The query sees an actor where it is: a walker's own position at some time hits it.
    walker = walkers[0]
    assert collision.actor_hit(*walker.route.pose(12.0)[:2], 0.05, 12.0) == walker.instance_id
    assert collision(*walker.route.pose(12.0)[:2], 0.05, 12.0)
    # Vehicles stay on the road: the car ahead of the urban ego keeps to the traffic lane, not the robot's sidewalk.
    road_lo, road_hi = URBAN_OFFSETS["road"]
    for actor in world.actors:
        if actor.class_id != L.PEDESTRIAN:
            assert road_lo < actor.route.loop.half_x - URBAN_REFERENCE.half_x < road_hi


def test_scenario_route_gives_the_robot_route_of_a_scenario_and_seed():
    route = scenario_route(SIDEWALK2, 7)
    assert route.speed == 1.0 and route.sway == pytest.approx(0.12) and route.z == KERB
    line = route.centre_line(10.0, spacing=0.5)
    assert line.shape == (21, 3)
    steps = np.linalg.norm(np.diff(line[:, :2], axis=0), axis=1)
    np.testing.assert_allclose(steps, 0.5, atol=0.02)
    np.testing.assert_allclose(line[0], np.array(route.pose(0.0))[[0, 1, 3]])


def test_navigation_training_pairs_the_sidewalk_passes_like_the_corridor_passes():
    from ros_mmfusion.core.navigation.training import (
        GoalSampler,
        NavTrainConfig,
        load_recordings,
        measured_waypoint_spacing,
        validation_routes,
    )

    names = ("indoor_corridor", "indoor_corridor_pass2", SIDEWALK, SIDEWALK2)
    cfg = NavTrainConfig(scenarios=names, train_seeds=(1,), val_seeds=(101,), frames_per_seed=12, val_frames=12,
                         width=64, height=48, cross_pass=1.0, behind_negatives=0.0)
    cfg.check()
    recordings = load_recordings(cfg, (1,), 12, (), log=lambda _: None)
    assert [r.name for r in recordings] == [f"{n}/seed1" for n in names]
    assert all(r.aligned and len(r) == 12 for r in recordings)
    assert measured_waypoint_spacing(recordings, 0.25) == 0.25  # both robots drive 1 m/s
    sampler = GoalSampler(recordings, cfg)
    assert sampler.twins == {0: [1], 1: [0], 2: [3], 3: [2]}
    assert sampler.strangers == {0: [2, 3], 1: [2, 3], 2: [0, 1], 3: [0, 1]}
    rng = np.random.default_rng(0)
    for _ in range(50):
        rec, current = sampler.context(rng)
        goal = sampler.goal(rng, rec, current)
        assert (goal.recording // 2 == rec // 2) != goal.negative  # positives on a pass of the same route only
    routes = validation_routes(recordings)
    assert [(r.map_recording, r.queries) for r in routes] == [(0, [1]), (2, [3])]  # each route mapped by pass 1
    np.testing.assert_allclose(recordings[2].xy, recordings[3].xy, atol=0.13)  # the passes' odom frames coincide


def test_a_recorded_sidewalk_bag_becomes_a_topological_map(tmp_path, capsys):
    from ros_mmfusion.cli import main as cli
    from ros_mmfusion.core.navigation import load_topomap

    bag = tmp_path / "sidewalk"
    code = cli.main(["sim", "--scenario", SIDEWALK, "--frames", "9", "--rate", "4", "--size", "64x48", "--out",
                     str(bag)])
    assert code == 0
    out = capsys.readouterr().out
    for topic in ("/camera/color/image_raw", "/camera/depth/image_rect_raw", "/odom", "/tf", "/lidar/points"):
        assert topic in out
    code = cli.main(["topomap", "build", "--bag", str(bag), "--image-topic", "/camera/color/image_raw", "--dt", "1",
                     "--out", str(tmp_path / "map")])
    assert code == 0
    topomap = load_topomap(tmp_path / "map")
    assert len(topomap) == 3 and topomap.has_poses
    poses = topomap.poses_xy_yaw()
    np.testing.assert_allclose(np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1), 1.0, atol=1e-3)


def test_the_sidewalk_scenarios_are_listed():
    assert {SIDEWALK, SIDEWALK2} <= set(SCENARIOS)
    assert get_scenario("urban_sidewalk_pass1").name == SIDEWALK
