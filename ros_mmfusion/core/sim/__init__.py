"""The embedded default world: deterministic synthetic multi-sensor scenes with ground truth (ROS-free).

Stages, one module each: :mod:`.labels` (the label set), :mod:`.loop` and :mod:`.mesh` (geometry building blocks),
:mod:`.world` (scene geometry, actors), :mod:`.scenarios` (named conditions), :mod:`.ego` (route, odometry),
:mod:`.appearance` (textures, lighting, temperatures), :mod:`.sensors` (rig and ray casting), :mod:`.simulator`
(frames as numpy data), :mod:`.recorder` (rosbag2), :mod:`.calibration` (YAML), :mod:`.preview` (PNG).

Entry points::

    from ros_mmfusion.core.sim import record, Simulation
    record("urban_night", "bags/night", frames=100, seed=0)      # a rosbag2 + calibration.yaml + scenario.yaml
    frame = Simulation("fog", seed=3, size=(320, 240)).frame(0)  # numpy images, LiDAR scan, boxes

open3d, OpenCV, rosbags, PyYAML and matplotlib are imported only when rendering, writing or plotting.
"""
from ros_mmfusion.core.labels import LABELS, Label
from ros_mmfusion.core.sim.recorder import TOPICS, RecordSummary, record
from ros_mmfusion.core.sim.scenarios import SCENARIOS, Scenario, get_scenario
from ros_mmfusion.core.sim.simulator import Box3D, SimFrame, Simulation, parse_size

__all__ = [
    "LABELS",
    "SCENARIOS",
    "TOPICS",
    "Box3D",
    "Label",
    "RecordSummary",
    "Scenario",
    "SimFrame",
    "Simulation",
    "get_scenario",
    "parse_size",
    "record",
]
