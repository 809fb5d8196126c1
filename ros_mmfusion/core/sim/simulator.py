"""Frame by frame simulation: world snapshot -> ego pose -> sensors -> ground truth, as plain numpy data.

:class:`Simulation` is the in-memory entry point (tests, training, previews); :mod:`.recorder` turns its frames
into a rosbag2. Frame ``k`` is the instant ``k / rate`` seconds after the start; every sensor and every piece of
ground truth of a frame refers to that instant (``stamp_ns``).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core import labels as L
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.sim.ego import Ego, EgoState
from ros_mmfusion.core.sim.scenarios import Scenario, get_scenario
from ros_mmfusion.core.sim.sensors import POINT_DTYPE, CameraImages, LidarScan, SensorModel, make_rig

#: Header stamp of frame 0: 2024-01-01T00:00:00Z. Fixed, so the same seed gives the same bytes.
START_STAMP_NS = 1_704_067_200 * 1_000_000_000


@dataclass(frozen=True, eq=False)
class Box3D:
    """A ground-truth box in the LiDAR frame: ``center`` (3,) m, ``size`` (length x, width y, height z) m,
    ``quaternion`` (x, y, z, w) of its orientation, ``yaw`` rad; ``num_points`` LiDAR returns of the object."""

    instance_id: int
    class_id: int
    class_name: str
    center: np.ndarray
    size: np.ndarray
    quaternion: np.ndarray
    yaw: float
    num_points: int

    def contains(self, points: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
        """(N,) True for (N, 3) points (same frame as the box) inside the box grown by ``tolerance``."""
        rot = Transform.from_xyz_quat(self.center, self.quaternion)
        local = (np.asarray(points, dtype=np.float64) - self.center) @ rot.rotation
        return np.all(np.abs(local) <= 0.5 * self.size + tolerance, axis=1)


@dataclass(frozen=True, eq=False)
class SimFrame:
    """Everything about one instant: ego state, camera images, LiDAR scan, boxes (LiDAR frame)."""

    index: int
    stamp_ns: int
    time_s: float
    ego: EgoState
    camera: CameraImages
    lidar: LidarScan
    boxes: list[Box3D]


def parse_size(text: str) -> tuple[int, int]:
    """"WxH" -> (W, H); ConfigError unless both are integers in 16..4096."""
    parts = text.lower().split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        width, height = int(parts[0]), int(parts[1])
    except ValueError:
        raise ConfigError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 640x480") from None
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise ConfigError(f"size {text!r}: width and height must be 16..4096 pixels")
    return width, height


class Simulation:
    """A scenario rendered at ``size`` (width, height) with a ``beams``-beam LiDAR, ``rate`` frames a second."""

    def __init__(self, scenario: str | Scenario, seed: int = 0, size: tuple[int, int] = (640, 480), beams: int = 32,
                 rate: float = 10.0, start_stamp_ns: int = START_STAMP_NS) -> None:
        self.scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
        if int(seed) < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed}")
        if beams not in (16, 32, 64, 128):
            raise ConfigError(f"beams must be 16, 32, 64 or 128, got {beams}")
        if not 0.1 <= rate <= 100.0:
            raise ConfigError(f"rate must be 0.1..100 Hz, got {rate}")
        self.seed, self.size, self.beams, self.rate = int(seed), size, beams, float(rate)
        self.start_stamp_ns = int(start_stamp_ns)
        self.world = self.scenario.build_world(self.seed)
        self.rig = make_rig(self.scenario.platform, size[0], size[1], beams)
        self.ego = Ego(self.world.ego_route)
        self.sensors = SensorModel(self.world, self.scenario.conditions, self.rig)

    def stamp_ns(self, index: int) -> int:
        return self.start_stamp_ns + round(index * 1e9 / self.rate)

    def frame(self, index: int) -> SimFrame:
        """Render frame ``index`` (independent of any other frame)."""
        t = index / self.rate
        return self.frame_at(index, t, self.ego.state(t))

    def frame_at(self, index: int, t: float, ego: EgoState, lidar: bool = True) -> SimFrame:
        """Render the world at time ``t`` seconds from the ego pose ``ego`` (the scripted route's, or a simulated
        robot's), stamped as frame ``index``. Without ``lidar`` the scan is empty (no points, no boxes)."""
        snap = self.world.snapshot(t)
        scene = snap.raycasting_scene()
        camera = self.sensors.render_cameras(snap, scene, ego.T_world_base, index)
        if not lidar:
            empty = np.zeros(0, POINT_DTYPE)
            return SimFrame(index, self.stamp_ns(index), t, ego, camera,
                            LidarScan(empty, np.zeros(0, np.uint8), np.zeros(0, np.uint16)), [])
        scan = self.sensors.render_lidar(snap, scene, ego.T_world_base, index)
        T_lidar_world = (ego.T_world_base @ self.rig.lidar.T_base_sensor).inverse()
        counts = np.bincount(scan.instances, minlength=65536)
        boxes = []
        for box in snap.boxes:
            n = int(counts[box.instance_id])
            if n == 0:
                continue
            T = T_lidar_world @ box.T_world_box
            q = T.quaternion()
            boxes.append(Box3D(box.instance_id, box.class_id, L.LABELS[box.class_id].name, T.translation.copy(),
                               np.asarray(box.size, dtype=np.float64), q,
                               float(np.arctan2(T.rotation[1, 0], T.rotation[0, 0])), n))
        return SimFrame(index, self.stamp_ns(index), t, ego, camera, scan, boxes)

    def frames(self, count: int, start: int = 0) -> Iterator[SimFrame]:
        for index in range(start, start + count):
            yield self.frame(index)
