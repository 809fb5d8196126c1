"""The ego platform: its pose along the world's route and its odometry.

``odom`` is fixed to the world at the ego's pose at time 0 (REP-105: the odometry frame starts where the robot
starts), so ``T_odom_base`` is the identity at the first frame. The odometry is exact (it is the ground-truth
trajectory); twist is in ``base_link`` (x forward, y left, z up), metres per second and radians per second.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.sim.world import Route


@dataclass(frozen=True, eq=False)
class EgoState:
    """The ego at one instant: poses in the world and odom frames, and its body-frame twist."""

    T_world_base: Transform
    T_odom_base: Transform
    linear: np.ndarray
    angular: np.ndarray


class Ego:
    """Drives ``route``: base_link on the ground (z = the route's support height) heading along it."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.T_world_odom = route.transform(0.0)
        self._T_odom_world = self.T_world_odom.inverse()

    def T_world_base(self, t: float) -> Transform:
        return self.route.transform(t)

    def state(self, t: float, dt: float = 1e-3) -> EgoState:
        """Pose and twist at ``t`` seconds (twist by central differences over ``dt``)."""
        T = self.route.transform(t)
        x0, y0, _, yaw0 = self.route.pose(t - dt)
        x1, y1, _, yaw1 = self.route.pose(t + dt)
        v_world = np.array([(x1 - x0) / (2 * dt), (y1 - y0) / (2 * dt), 0.0])
        dyaw = math.atan2(math.sin(yaw1 - yaw0), math.cos(yaw1 - yaw0))
        return EgoState(
            T_world_base=T,
            T_odom_base=self._T_odom_world @ T,
            linear=T.rotation.T @ v_world,
            angular=np.array([0.0, 0.0, dyaw / (2 * dt)]),
        )
