"""Every ``config/<node>.param.yaml`` matches the parameters its node declares: names, types and ranges.

A misspelt name would be ignored by ROS (an undeclared override) and an out-of-range or mistyped value refused only
when the node starts; this test finds both in the file. It also proves it catches them, on altered copies.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.params import validate
from ros_mmfusion.nodes.registry import NODES
from ros_mmfusion.presets import ROS_PARAMETER_PREFIXES, ROS_PARAMETERS, load_params_file

CONFIG = Path(__file__).resolve().parents[2] / "config"
PARAM_FILES = sorted(CONFIG.glob("*.param.yaml"))


def node_key(path: Path) -> str:
    return path.name.removesuffix(".param.yaml")


def param_file_problems(path: Path, key: str) -> list[str]:
    """What in parameters file ``path`` node ``key`` would not accept: undeclared names, values of the wrong type
    (an integer where ROS declares a double: rclpy refuses it at start-up) or out of range / not among the choices."""
    module, class_name = NODES[key]
    cls = getattr(importlib.import_module(module), class_name)
    specs = {spec.name: spec for spec in cls.declared_params()}
    problems = []
    for name, value in load_params_file(path, key).items():
        if name in ROS_PARAMETERS or name.startswith(ROS_PARAMETER_PREFIXES):
            continue
        spec = specs.get(name)
        if spec is None:
            problems.append(f"{name}: {key} declares no such parameter")
            continue
        items = value if isinstance(value, list) else [value]
        if spec.kind is float and any(type(v) is int for v in items):
            problems.append(f"{name}: {value!r} is an integer but the parameter is a double (write {float(items[0])})")
            continue
        try:
            validate(spec, value)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def test_there_is_a_parameters_file_per_model_node():
    assert {node_key(p) for p in PARAM_FILES} >= {"lidar_depth", "fusion_segmentation", "detection3d",
                                                   "vint_navigation", "waypoint_controller", "bag_player"}


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_param_file_matches_the_declared_parameters(path):
    assert node_key(path) in NODES, f"{path.name}: no node {node_key(path)!r} in ros_mmfusion.nodes.registry"
    assert load_params_file(path, node_key(path)), f"{path.name}: no ros__parameters for /** or the node"
    assert param_file_problems(path, node_key(path)) == []


@pytest.mark.parametrize("edit, expected", [
    (lambda p: p.__setitem__("max_rnage", p.pop("max_range")), "max_rnage: lidar_depth declares no such parameter"),
    (lambda p: p.__setitem__("fill_kernel", 99), "is above its maximum 31"),
    (lambda p: p.__setitem__("max_range", 100), "is an integer but the parameter is a double"),
    (lambda p: p.__setitem__("camera", 3), "must be str"),
    (lambda p: p.__setitem__("camera_from_lidar", [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]), "unit length"),
])
def test_a_misspelt_mistyped_or_out_of_range_entry_is_found(tmp_path, edit, expected):
    data = yaml.safe_load((CONFIG / "lidar_depth.param.yaml").read_text())
    edit(data["/**"]["ros__parameters"])
    path = tmp_path / "lidar_depth.param.yaml"
    path.write_text(yaml.safe_dump(data))
    problems = param_file_problems(path, "lidar_depth")
    assert len(problems) == 1 and expected in problems[0], problems


def test_every_duration_of_stamp_time_is_marked_so_a_replay_scales_it():
    """``mmfusion eval`` scales the parameters marked ``stamp_time`` by 1 / rate (the player restamps with the wall
    clock). A duration whose description says it is measured in stamp time but is not marked would keep its bag-time
    value at x0.1 and, like the demo's x_timeout before 2026-12-07, quietly drop the input it guards."""
    marked, said = set(), set()
    for key, (module, class_name) in NODES.items():
        for spec in getattr(importlib.import_module(module), class_name).declared_params():
            text = spec.description.lower()
            # a rate "per second of stamp time" (vint_navigation.frame_rate) is not a duration: eval notes it
            if ("stamp time" in text and "per second" not in text) or "stamp difference" in text:
                said.add(f"{key}.{spec.name}")
            if spec.stamp_time:
                assert spec.kind is float, f"{key}.{spec.name}: stamp time is in seconds (a double)"
                marked.add(f"{key}.{spec.name}")
    assert said == marked, f"described as stamp time but unmarked: {sorted(said - marked)}; marked but not " \
                           f"described: {sorted(marked - said)}"
    assert {"fusion_segmentation.x_timeout", "detection3d.painting_timeout"} <= marked
