"""The ros2 launch files, checked statically (``launch`` is not on PyPI, so no launch file is executed here).

Every ``launch/*.py`` parses and defines ``generate_launch_description``; every preset has its own launch file; every
preset, executable, config file and model package a launch file names (directly or through its preset) exists and
is installed by setup.py; every launch argument a file uses is declared. :func:`ros_mmfusion.launcher.ros2.node_specs`,
which the launch files call at launch time, is exercised for every preset and argument.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.launcher.ros2 import (
    LAUNCH_ARGUMENTS,
    PRESET_ARGUMENTS,
    TOPIC_ARGUMENTS,
    left_out_notes,
    node_specs,
)
from ros_mmfusion.presets import available

from .share_files import ROOT, console_scripts, installed_files

LAUNCH = sorted((ROOT / "launch").glob("*.py"))
DECLARED_BY_HELPER = set(LAUNCH_ARGUMENTS) | set(TOPIC_ARGUMENTS) | set(PRESET_ARGUMENTS)
DUMMY_ARGUMENTS = {name: f"/tmp/{name}" for name in PRESET_ARGUMENTS}
SHARE_PREFIXES = ("config/", "models/", "launch/", "rviz/", "interfaces/")


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def calls(module: ast.Module, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(module) if isinstance(n, ast.Call)
            and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)]


def strings(module: ast.Module) -> list[str]:
    return [n.value for n in ast.walk(module) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def preset_of(path: Path) -> tuple[str | None, dict[str, str]]:
    """(preset, argument defaults) a launch file passes to preset_launch_description; (None, ...) = argument."""
    found = calls(tree(path), "preset_launch_description")
    assert len(found) == 1, f"{path.name}: expected one preset_launch_description call"
    args = [ast.literal_eval(a) for a in found[0].args]
    return (args[0] if args else None), (args[1] if len(args) > 1 else {})


def share_paths(value: object) -> list[str]:
    """Strings in a parameter value that name a file or directory of the share tree (config/..., models/...)."""
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, str) and v.startswith(SHARE_PREFIXES)]


def assert_installed(relative: str, where: str) -> None:
    path = ROOT / relative
    assert path.exists(), f"{where}: {relative} does not exist"
    files = [relative] if path.is_file() else [str(p.relative_to(ROOT)) for p in path.rglob("*") if p.is_file()
                                                 and "__pycache__" not in p.parts
                                                 and not any(part.startswith(".") for part in p.parts)]
    installed = installed_files()
    missing = [f for f in files if f not in installed]
    assert files and not missing, f"{where}: setup.py does not install {missing or relative}"


@pytest.mark.parametrize("path", LAUNCH, ids=[p.name for p in LAUNCH])
def test_launch_file_parses_and_defines_generate_launch_description(path: Path):
    functions = [n.name for n in tree(path).body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in functions, path.name
    assert f"launch/{path.name}" in installed_files(), f"setup.py does not install launch/{path.name}"


def test_every_preset_has_its_launch_file():
    names = {p.name for p in LAUNCH}
    missing = [p for p in available() if f"{p}.launch.py" not in names]
    assert not missing, f"presets without launch/<preset>.launch.py: {missing}"
    for preset in available():
        assert preset_of(ROOT / "launch" / f"{preset}.launch.py")[0] == preset


@pytest.mark.parametrize("path", LAUNCH, ids=[p.name for p in LAUNCH])
def test_everything_a_launch_file_names_exists_and_is_installed(path: Path):
    preset, defaults = preset_of(path)
    unknown = set(defaults) - DECLARED_BY_HELPER - {"preset"}
    assert not unknown, f"{path.name}: undeclared launch argument(s) {sorted(unknown)}"
    names = [preset] if preset else [defaults.get("preset", "demo")]
    for name in names:
        assert name in available(), f"{path.name}: no preset {name!r}"
        assert_installed(f"config/presets/{name}.yaml", path.name)
    scripts = console_scripts()
    for text in strings(tree(path)):  # any file or executable named directly
        if text.endswith("_node"):
            assert text in scripts, f"{path.name}: {text} is no console script of setup.py"
        if text.startswith(SHARE_PREFIXES) and re.fullmatch(r"[\w./-]+", text):
            assert_installed(text, path.name)


@pytest.mark.parametrize("preset", available())
def test_every_node_a_preset_launches_is_installed(preset: str):
    """Through the preset the launch files read: executables are console scripts; params files, model packages
    and other share paths exist and are installed; every $(arg) the preset uses is a declared launch argument."""
    text = (ROOT / "config" / "presets" / f"{preset}.yaml").read_text()
    used = set(re.findall(r"\$\(arg (\w+)\)", text))
    undeclared = used - set(PRESET_ARGUMENTS)
    assert not undeclared, f"{preset}: $(arg) not declared by the launch files: {sorted(undeclared)}"
    for entry in yaml.safe_load(text)["nodes"]:
        if entry.get("params_file"):
            assert_installed(entry["params_file"], f"preset {preset}")
    specs = node_specs(preset, DUMMY_ARGUMENTS)
    scripts = console_scripts()
    for spec in specs:
        assert spec.executable in scripts, f"preset {preset}: {spec.executable} is no console script"
        for param, value in spec.parameters.items():
            for relative in share_paths(value):
                assert_installed(relative, f"preset {preset}: {spec.name}.{param}")


def test_arguments_reach_the_nodes():
    specs = {s.name: s for s in node_specs("demo", {"bag": "/b", "backend": "torch", "use_sim_time": "true",
                                                     "lidar_topic": "/velodyne_points",
                                                     "set": "detection3d.threads=2; lidar_depth.max_range=50.0"})}
    assert specs["fusion_segmentation"].parameters["backend"] == "torch"
    assert specs["detection3d"].parameters["backend"] == "torch"
    assert specs["detection3d"].parameters["threads"] == 2
    assert specs["lidar_depth"].parameters["max_range"] == 50.0
    assert "use_sim_time" not in specs["bag_player"].parameters  # the time source keeps its own
    # ... and makes the sim time: /clock from the bag, the bag's stamps kept (restamping would contradict /clock)
    assert specs["bag_player"].parameters["publish_clock"] is True
    assert specs["bag_player"].parameters["restamp"] is False
    assert specs["lidar_depth"].parameters["use_sim_time"] is True
    explicit = {s.name: s for s in node_specs("demo", {"bag": "/b", "use_sim_time": "true",
                                                       "set": "bag_player.clock_rate=50.0"})}
    player = explicit["bag_player"].parameters
    assert player["clock_rate"] == 50.0 and player["publish_clock"] is True
    wall = {s.name: s for s in node_specs("demo", {"bag": "/b", "use_sim_time": "false"})}
    assert wall["lidar_depth"].parameters["use_sim_time"] is False
    assert not wall["bag_player"].parameters.get("publish_clock") and wall["bag_player"].parameters["restamp"] is True
    # the preset's remapping onto /lidar/points follows the rename, and the node's own name is renamed after it
    assert specs["detection3d"].remappings[0] == ("points", "/velodyne_points")
    assert ("/lidar/points", "/velodyne_points") in specs["lidar_depth"].remappings
    assert not any("managed" in s.parameters for s in specs.values()), "unmanaged unless asked"
    managed = node_specs("demo", {"bag": "/b", "lifecycle": "true"})
    assert [s.parameters.get("managed") for s in managed] == [True] * len(managed)
    navigation = {s.name: s for s in node_specs("navigation", {"bag": "/b", "topomap": "/m", "model_package": "/p"})}
    assert navigation["vint_navigation"].parameters["model_package"] == "/p"


CONVENTION_NAVIGATION = {  # preset: (camera, odometry topic, path_frame, base_frame, replays on sim time)
    "carla": ("/carla/ego_vehicle/rgb_front/image", "/carla/ego_vehicle/odometry", "map", "ego_vehicle", True),
    "gazebo": ("/camera/image", "/model/robot/odometry", "robot/odom", "robot/base_link", True),
    "realsense": ("/camera/camera/color/image_raw", "/odom", "odom", "base_link", False),
    "realsense_ouster": ("/camera/camera/color/image_raw", "/odom", "odom", "base_link", False),
}


@pytest.mark.parametrize("preset", sorted(CONVENTION_NAVIGATION))
def test_convention_presets_navigate_only_with_a_topomap_in_their_odometry_frame(preset: str):
    """ViNT needs a topological map: without topomap:= the convention presets run their other nodes and say what
    was left out; with it, vint_navigation reads the convention's camera and odometry and publishes its path in the
    odometry frame. The simulators' presets replay on the bag's /clock; use_sim_time:=false puts the player back on
    restamping (a player publishing /clock beside wall-clock nodes would contradict them)."""
    from ros_mmfusion.core.sim.conventions import get_convention

    camera, odom, path_frame, base_frame, sim_time = CONVENTION_NAVIGATION[preset]
    convention = get_convention(preset)
    assert (convention.topic("/camera/color/image_raw"), convention.topic("/odom")) == (camera, odom)
    assert (convention.frame("odom"), convention.frame("base_link")) == (path_frame, base_frame)
    without = {s.name: s for s in node_specs(preset, {"bag": "/b"})}
    assert "vint_navigation" not in without and {"fusion_segmentation", "detection3d"} <= set(without)
    assert left_out_notes(preset, {"bag": "/b"}) == [
        f"preset {preset!r}: node 'vint_navigation' not started: it needs topomap:=VALUE "
        f"({PRESET_ARGUMENTS['topomap']})"]
    specs = {s.name: s for s in node_specs(preset, {"bag": "/b", "topomap": "/m"})}
    navigation = specs["vint_navigation"]
    assert dict(navigation.remappings) == {"image": camera, "odom": odom}
    assert navigation.parameters["topomap_dir"] == "/m" and left_out_notes(preset, {"bag": "/b", "topomap": "/m"}) == []
    assert (navigation.parameters["path_frame"], navigation.parameters["base_frame"]) == (path_frame, base_frame)
    player = specs["bag_player"].parameters
    assert (player["publish_clock"], player["restamp"]) == (sim_time, not sim_time)
    assert all(s.parameters.get("use_sim_time", False) is sim_time for n, s in specs.items() if n != "bag_player")
    wall = {s.name: s for s in node_specs(preset, {"bag": "/b", "topomap": "/m", "use_sim_time": "false"})}
    assert (wall["bag_player"].parameters["publish_clock"], wall["bag_player"].parameters["restamp"]) == (False, True)
    assert all(s.parameters["use_sim_time"] is False for n, s in wall.items() if n != "bag_player")
    live = node_specs(preset, {"live": "true", "use_sim_time": "true", "topomap": "/m"})
    assert [s.name for s in live] == ["fusion_segmentation", "detection3d", "vint_navigation"]


def test_live_drops_the_bag_player_and_needs_a_calibration():
    with pytest.raises(ConfigError, match="calibration:=FILE"):
        node_specs("detection", {"live": "true"})
    specs = node_specs("detection", {"live": "true", "calibration": "/rig/calibration.yaml"})
    assert [s.executable for s in specs] == ["detection3d_node"]
    assert specs[0].parameters["calibration_file"] == "/rig/calibration.yaml"


@pytest.mark.parametrize("arguments, reason", [
    ({"bag": "/b", "model_package": "/p"}, "2 model nodes"),
    ({}, "needs the argument 'bag'"),
    ({"bag": "/b", "use_sim_time": "maybe"}, "use_sim_time: expected true or false"),
    ({"bag": "/b", "lifecycle": "yes please"}, "lifecycle: expected true or false"),
    ({"bag": "/b", "lidar_topic": "velodyne_points"}, "absolute topic name"),
    ({"bag": "/b", "set": "detection3d.no_such=1"}, "has no parameter 'no_such'"),
    ({"bag": "/b", "backend": "cuda-magic"}, "backend"),
])
def test_bad_arguments_are_one_line_errors(arguments, reason):
    with pytest.raises(ConfigError, match=re.escape(reason)) as caught:
        node_specs("demo", arguments)
    assert "\n" not in str(caught.value)
