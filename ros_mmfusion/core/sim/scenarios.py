"""Named scenarios: a world, the conditions it is seen in (light, weather, temperatures) and the sensor platform.

A scenario is data; :func:`get_scenario` looks one up by name. The same seed builds the same world in every
scenario of one world kind, so ``urban_day``, ``urban_night`` and ``fog`` with one seed show the same street,
``indoor_corridor`` / ``indoor_corridor_pass2`` the same corridor along the same looped route, and ``urban_sidewalk``
/ ``urban_sidewalk_pass2`` the same street along the same sidewalk route (:attr:`Scenario.route`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.sim.world import Route, World, build_indoor, build_urban


@dataclass(frozen=True)
class Conditions:
    """Illumination, weather and temperatures (radiance and irradiance in arbitrary linear units; deg C; metres).

    ``sun_direction`` points from the scene toward the sun (world frame) or is None; ``lights_on`` are the light
    groups switched on (lamps, lit windows, headlights; see :class:`~.mesh.Material`). ``fog_density`` is the visible
    extinction coefficient (1/m; meteorological visibility is about 3 / fog_density); thermal infrared and the
    LiDAR see ``thermal_fog_ratio`` and ``lidar_fog_ratio`` of it. ``exposure`` scales scene radiance to the camera's
    linear signal (1 = white), ``shot_noise`` and ``read_noise`` set its noise.
    """

    sun_direction: tuple[float, float, float] | None
    sun_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ambient_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sky_zenith: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sky_horizon: tuple[float, float, float] = (0.0, 0.0, 0.0)
    lights_on: frozenset[int] = frozenset()
    light_gain: float = 1.0
    light_tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    window_lights: float = 0.0
    headlights: float = 0.0
    fog_density: float = 0.0
    fog_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    thermal_fog_ratio: float = 0.25
    lidar_fog_ratio: float = 0.9
    air_temp_c: float = 15.0
    sky_temp_c: float = -20.0
    solar_heating_c: float = 0.0
    exposure: float = 1.0
    shot_noise: float = 0.0004
    read_noise: float = 0.002
    lidar_dropout: float = 0.005
    lidar_clutter: float = 0.0
    depth_max_range: float = 20.0
    depth_dropout: float = 0.002


def _sun(azimuth_deg: float, elevation_deg: float) -> tuple[float, float, float]:
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))


DAY = Conditions(
    sun_direction=_sun(250.0, 55.0), sun_rgb=(3.0, 2.85, 2.6), ambient_rgb=(0.55, 0.62, 0.75),
    sky_zenith=(0.22, 0.42, 0.85), sky_horizon=(0.75, 0.82, 0.92), air_temp_c=22.0, sky_temp_c=-25.0,
    solar_heating_c=22.0, exposure=0.8,
)
NIGHT = Conditions(
    sun_direction=None, ambient_rgb=(0.0025, 0.003, 0.005), sky_zenith=(0.0015, 0.002, 0.004),
    sky_horizon=(0.008, 0.007, 0.008), lights_on=frozenset({1}), light_gain=0.2, window_lights=0.25,
    headlights=16.0, air_temp_c=9.0, sky_temp_c=-30.0, exposure=1.0, shot_noise=0.004, read_noise=0.012,
)
FOG = Conditions(
    sun_direction=_sun(250.0, 55.0), sun_rgb=(0.35, 0.35, 0.35), ambient_rgb=(0.9, 0.92, 0.95),
    sky_zenith=(0.8, 0.82, 0.85), sky_horizon=(0.8, 0.82, 0.85), fog_density=0.07, fog_rgb=(0.78, 0.8, 0.83),
    air_temp_c=6.0, sky_temp_c=5.0, solar_heating_c=2.0, exposure=0.75, lidar_dropout=0.03, lidar_clutter=0.03,
    depth_max_range=12.0, depth_dropout=0.02,
)
CORRIDOR_MAPPING = Conditions(
    sun_direction=None, ambient_rgb=(0.12, 0.12, 0.12), lights_on=frozenset({1, 2}), air_temp_c=21.0,
    sky_temp_c=21.0, exposure=1.5, depth_max_range=10.0,
)
CORRIDOR_EVENING = Conditions(
    sun_direction=None, ambient_rgb=(0.03, 0.028, 0.025), lights_on=frozenset({1}), light_gain=0.7,
    light_tint=(1.0, 0.8, 0.55), air_temp_c=23.0, sky_temp_c=23.0, exposure=1.5, shot_noise=0.0015,
    read_noise=0.005, depth_max_range=10.0,
)


SIDEWALK_DUSK = Conditions(
    sun_direction=_sun(290.0, 4.0), sun_rgb=(0.9, 0.5, 0.25), ambient_rgb=(0.10, 0.10, 0.15),
    sky_zenith=(0.06, 0.08, 0.22), sky_horizon=(0.55, 0.32, 0.18), lights_on=frozenset({1}), light_gain=0.6,
    window_lights=0.12, headlights=10.0, air_temp_c=14.0, sky_temp_c=-15.0, solar_heating_c=3.0, exposure=2.2,
    shot_noise=0.0015, read_noise=0.005,
)


@dataclass(frozen=True)
class Scenario:
    """A named recording set-up: which world, whether people are in it, conditions, platform and route changes."""

    name: str
    description: str
    world: str
    conditions: Conditions
    platform: str
    people: bool = True
    route_sway: float = 0.0
    parked_cars: int = 0
    aliases: tuple[str, ...] = field(default=())

    @property
    def route(self) -> str:
        """The route this scenario drives ("world/platform"): scenarios of one route and one seed are passes of it,
        from the same start pose at the same speed (their ``/odom`` frames coincide) in the same static world."""
        return f"{self.world}/{self.platform}"

    def build_world(self, seed: int) -> World:
        if self.world == "urban":
            world = build_urban(seed, self.platform, people=self.people, parked_cars=self.parked_cars)
        else:
            world = build_indoor(seed, people=self.people)
        if self.route_sway:
            from dataclasses import replace

            world.ego_route = replace(world.ego_route, sway=self.route_sway, sway_wavelength=15.0)
        return world


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("urban_day", "city block ring road in sunshine: traffic, cyclists, pedestrians", "urban", DAY, "car"),
        Scenario("urban_night", "the same street at night: street lights, headlights, lit windows; RGB nearly dark, "
                 "thermal still shows people and running cars", "urban", NIGHT, "car"),
        Scenario("fog", "the same street in dense fog (visibility ~40 m): RGB washed out, LiDAR range cut with clutter "
                 "returns and dropouts, depth camera range cut; thermal least affected", "urban", FOG, "car"),
        Scenario("indoor_corridor", "mapping pass: a robot drives the looped corridor once, all lights on, nobody "
                 "about", "indoor", CORRIDOR_MAPPING, "robot", people=False, aliases=("indoor_corridor_pass1",)),
        Scenario("indoor_corridor_pass2", "second pass along the same loop: half the lights off, warmer and dimmer, "
                 "people walking and standing; the route weaves by up to 0.12 m", "indoor", CORRIDOR_EVENING,
                 "robot", people=True, route_sway=0.12),
        Scenario("urban_sidewalk", "mapping pass: a robot drives the outer sidewalk ring of the city block in "
                 "daylight, nobody on foot; traffic and parked cars on the road beside it", "urban", DAY, "robot",
                 people=False, aliases=("urban_sidewalk_pass1",)),
        Scenario("urban_sidewalk_pass2", "second pass along the same sidewalk at dusk (low sun, street lights on), "
                 "pedestrians walking against the robot beside its path and standing by the trees, other parked "
                 "cars; the route weaves by up to 0.12 m", "urban", SIDEWALK_DUSK, "robot", people=True,
                 route_sway=0.12, parked_cars=1),
    )
}


def scenario_route(name: str, seed: int) -> Route:
    """The ego's route (centre line, speed, start) of scenario ``name`` with ``seed``, world frame; sample it with
    :meth:`~.world.Route.centre_line` or :meth:`~.world.Route.pose`. The static world it runs through is
    ``get_scenario(name).build_world(seed)`` (see :func:`~.clearance.static_clearance`)."""
    return get_scenario(name).build_world(seed).ego_route


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name`` (or one of its aliases); ConfigError listing the known names otherwise."""
    for scenario in SCENARIOS.values():
        if name == scenario.name or name in scenario.aliases:
            return scenario
    raise ConfigError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")
