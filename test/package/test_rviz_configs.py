"""Every RViz configuration in rviz/ shows what its preset publishes, in a frame the preset's TF provides.

``rviz/<preset>.rviz`` belongs to ``config/presets/<preset>.yaml``. Every display's topic must be published by a node
of that preset (the topics its node modules pass to ``create_publisher``/``output_publisher``, resolved with the
node's name and the preset's remappings) or replayed by its bag player (the synthetic bag's topics, limited by the
player's ``topics`` parameter) or published by sim_robot (its ``sensors`` parameter). RViz itself cannot run here;
this reads the files.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ros_mmfusion.core.sim.recorder import BASE_FRAME, ODOM_FRAME, TOPICS
from ros_mmfusion.launcher.ros2 import PRESET_ARGUMENTS, node_specs
from ros_mmfusion.nodes.registry import NODES
from ros_mmfusion.presets import available

from .share_files import ROOT, installed_files, literal_publications, module_file, resolve

RVIZ = sorted((ROOT / "rviz").glob("*.rviz"))
DUMMY_ARGUMENTS = {name: f"/tmp/{name}" for name in PRESET_ARGUMENTS}


def displays(tree: list) -> list[dict]:
    """Every display of a Displays list, groups opened."""
    out = []
    for display in tree or []:
        out.append(display)
        out.extend(displays(display.get("Displays", [])))
    return out


def display_topics(config: dict) -> dict[str, str]:
    """Display name -> topic for every display that subscribes to one."""
    found = {}
    for display in displays(config["Visualization Manager"]["Displays"]):
        topic = display.get("Topic")
        value = topic.get("Value") if isinstance(topic, dict) else topic
        if value:
            found[display["Name"]] = value
    return found


def bag_player_topics(parameters: dict) -> set[str]:
    wanted = [t for t in parameters.get("topics", []) if t]
    return set(wanted) if wanted else set(TOPICS)


def sim_robot_topics(parameters: dict) -> set[str]:
    from ros_mmfusion.nodes.sim_robot import SENSOR_TOPICS

    return {t for group in parameters["sensors"] for t in SENSOR_TOPICS[group]}


DYNAMIC = {"bag_player": bag_player_topics, "sim_robot": sim_robot_topics}
"""Nodes whose published topic names are data (the bag's, the simulated sensors'), not literals in their module."""


def published(preset: str) -> set[str]:
    """Every topic the preset's nodes publish, after remapping."""
    base, _ = literal_publications(module_file("ros_mmfusion.ros.node_base"))  # its non-literal call: the wrapper
    topics: set[str] = set()
    for spec in node_specs(preset, DUMMY_ARGUMENTS):
        key = spec.executable.removesuffix("_node")
        literal, other = literal_publications(module_file(NODES[key][0]))
        names = set(base) | set(literal)
        if key in DYNAMIC:
            names |= DYNAMIC[key](spec.parameters)
        else:
            assert other == 0, f"{NODES[key][0]} publishes {other} topic(s) not named by a literal: extend DYNAMIC"
        topics |= {resolve(name, spec.name, spec.remappings) for name in names}
    return topics


def test_every_rviz_config_belongs_to_a_preset_and_is_installed():
    assert RVIZ, "no RViz configurations"
    installed = installed_files()
    for path in RVIZ:
        assert path.stem in available(), f"{path.name}: no preset config/presets/{path.stem}.yaml"
        assert f"rviz/{path.name}" in installed, f"setup.py does not install rviz/{path.name}"


@pytest.mark.parametrize("path", RVIZ, ids=[p.name for p in RVIZ])
def test_every_display_topic_is_published_by_the_preset(path: Path):
    config = yaml.safe_load(path.read_text())
    topics = display_topics(config)
    assert topics, f"{path.name} shows no topic"
    provided = published(path.stem)
    missing = {name: topic for name, topic in topics.items() if topic not in provided}
    assert not missing, f"{path.name}: displays on topics nothing in preset {path.stem!r} publishes: {missing}"


@pytest.mark.parametrize("path", RVIZ, ids=[p.name for p in RVIZ])
def test_fixed_frame_is_one_the_preset_transforms_provide(path: Path):
    """The suite's base_link (placed by /tf_static) or odom (by /tf), named as the preset's sensor convention names
    them (``core/sim/conventions``: CARLA's bridge puts ego_vehicle and map on /tf, Gazebo scopes robot/...)."""
    from ros_mmfusion.core.sim.conventions import all_conventions

    frame = yaml.safe_load(path.read_text())["Visualization Manager"]["Global Options"]["Fixed Frame"]
    provided = published(path.stem)
    convention = next((c for c in all_conventions() if c.preset == path.stem), None)
    base, odom = (convention.frame(BASE_FRAME), convention.frame(ODOM_FRAME)) if convention else (BASE_FRAME,
                                                                                                    ODOM_FRAME)
    frames = ({base} if "/tf_static" in provided else set()) | ({odom, base} if "/tf" in provided else set())
    assert frame in frames, f"{path.name}: fixed frame {frame!r}; preset {path.stem!r} provides {sorted(frames)}"


def test_the_check_sees_an_unpublished_topic():
    """The demo's former RViz display /ground_truth/markers: nothing publishes it, and the check says so."""
    assert "/ground_truth/markers" not in published("demo")
    assert "/detections/markers" in published("demo")  # what does: the detector's markers


def test_resolution_follows_ros_rules():
    rules = [("points", "/velodyne_points"), ("/lidar/points", "/x")]
    assert resolve("points", "det", rules) == "/velodyne_points"
    assert resolve("lidar/points", "det", rules) == "/x"
    assert resolve("~/debug/a", "det", rules) == "/det/debug/a"
    assert resolve("detections", "det", rules) == "/detections"
