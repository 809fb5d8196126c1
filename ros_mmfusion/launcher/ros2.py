"""What the ``ros2 launch`` files start: a preset's nodes as (executable, name, parameters, remappings).

The launch files in ``launch/`` are thin: every one calls :func:`preset_launch_description`, which at launch time reads
``config/presets/<preset>.yaml`` through :mod:`ros_mmfusion.presets` (the file ``mmfusion run`` reads too) and turns
it into ``launch_ros`` Node actions with :func:`node_specs`. The ROS launch API (``launch``, ``launch_ros``) is
imported only inside :func:`preset_launch_description`, so the rest of this module runs without it (``launch`` is
not on PyPI; tests check :func:`node_specs` here, and the launch files statically).

Launch arguments every launch file declares (:data:`LAUNCH_ARGUMENTS`, :data:`TOPIC_ARGUMENTS`):

* ``use_sim_time``: ``true``/``false`` for every node but the time sources (:data:`TIME_SOURCES`); ``true`` also makes
  the preset's bag players publish ``/clock`` from the bag with its stamps kept (``presets.add_sim_time``, as
  ``mmfusion run --use-sim-time``); empty keeps the preset's values.
* ``backend``: inference backend of every node that has one; ``model_package``: model package directory of the
  preset's one node that takes one (a preset with several: ``set:=NODE.model_package=DIR``).
* ``set``: ``NODE.PARAM=VALUE`` items separated by ``;`` (values as YAML scalars), like ``mmfusion run --set``.
* ``lifecycle``: ``true`` starts every node as a managed (lifecycle) node (parameter ``managed``): unconfigured,
  waiting for ``<node>/change_state`` from ``ros2 lifecycle set`` or a lifecycle manager (e.g. nav2_lifecycle_manager
  with the preset's node names in order, bag players last).
* ``live``: ``true`` drops the preset's bag players (inputs come from live sensors or a simulator); then
  ``calibration:=FILE`` replaces the ``<bag>/calibration.yaml`` the presets read.
* ``<sensor>_topic``: the topic a sensor publishes on (default: the synthetic bag's name). Each renames that topic
  for every node: a preset's remapping onto it is redirected, and a node's own name resolving to it is remapped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ros_mmfusion import presets
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.launcher import PLAYER_KEY, typed_parameters
from ros_mmfusion.paths import PACKAGE
from ros_mmfusion.presets import PRESET_ARGUMENTS, TIME_SOURCES  # noqa: F401  (re-exported: see their docstrings)

LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "use_sim_time": ("", "true/false for every node but bag_player and sim_robot (true: the bag player publishes "
                         "/clock from the bag); empty: the preset's"),
    "backend": ("", "inference backend of every node that has one (onnxruntime, onnxruntime-int8, torch, "
                    "tensorrt); empty: the preset's"),
    "model_package": ("", "model package directory of the preset's one model node; empty: the preset's"),
    "set": ("", "parameter overrides NODE.PARAM=VALUE separated by ';' (as mmfusion run --set)"),
    "live": ("false", "true: drop the preset's bag players, inputs come from live sensors or a simulator"),
    "lifecycle": ("false", "true: every node starts as a managed (lifecycle) node, unconfigured, for a lifecycle "
                           "manager to configure and activate"),
    "calibration": ("", "with live:=true, the rig's calibration.yaml (replaces <bag>/calibration.yaml)"),
}
"""Launch arguments every launch file declares: name -> (default, description)."""

TOPIC_ARGUMENTS: dict[str, str] = {
    "color_topic": "/camera/color/image_raw",
    "color_info_topic": "/camera/color/camera_info",
    "depth_topic": "/camera/depth/image_rect_raw",
    "thermal_topic": "/thermal/image_raw",
    "lidar_topic": "/lidar/points",
    "odom_topic": "/odom",
    "cmd_vel_topic": "/cmd_vel",
}
"""Topic launch arguments: argument name -> the topic of the presets (the synthetic bag's, and the controller's
command) that it renames."""



@dataclass
class NodeSpec:
    """One node to start: its console script in ``lib/ros_mmfusion``, ROS node name, parameters, remappings."""

    executable: str
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)


def _flag(name: str, text: str) -> bool | None:
    text = text.strip().lower()
    if not text:
        return None
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"launch argument {name}: expected true or false, got {text!r}")


def topic_map(arguments: dict[str, str]) -> dict[str, str]:
    """{preset topic: topic to use instead} from the ``<sensor>_topic`` arguments that differ from the default."""
    renamed = {}
    for argument, topic in TOPIC_ARGUMENTS.items():
        value = arguments.get(argument, "").strip()
        if value and value != topic:
            if not value.startswith("/"):
                raise ConfigError(f"launch argument {argument}: give an absolute topic name, got {value!r}")
            renamed[topic] = value
    return renamed


def remappings(preset_remappings: dict[str, str], renamed: dict[str, str]) -> list[tuple[str, str]]:
    """A node's remapping rules: the preset's (targets renamed), then one rule per renamed topic.

    ROS 2 applies the first rule whose (expanded) name matches, so a preset rule ``rgb/image:=/camera/color/...``
    must itself point at the new name; the trailing rules rename the topics a node uses under their own name.
    """
    rules = [(source, renamed.get(target, target)) for source, target in preset_remappings.items()]
    return rules + sorted(renamed.items())


def _overrides(preset_name: str, arguments: dict[str, str], live: bool) -> dict[str, dict[str, Any]]:
    """{node name: {param: value}} from the ``set``, ``backend``, ``model_package``, ``use_sim_time``,
    ``lifecycle`` and ``calibration`` arguments, checked against the nodes' declared parameters."""
    plain = presets.load(preset_name, _preset_args(arguments, live))
    overrides = presets.parse_set([item.strip() for item in arguments.get("set", "").split(";") if item.strip()])

    def declaring(param: str) -> list[presets.NodeLaunch]:
        return [n for n in plain.nodes if param in presets.known_parameters(n.key)]

    def put(node: presets.NodeLaunch, param: str, value: Any) -> None:
        overrides.setdefault(node.name, {}).setdefault(param, value)  # an explicit set:= item wins

    backend = arguments.get("backend", "").strip()
    if backend:
        for node in declaring("backend"):
            put(node, "backend", backend)
    package = arguments.get("model_package", "").strip()
    if package:
        models = declaring("model_package")
        if len(models) != 1:
            names = ", ".join(n.name for n in models) or "none"
            raise ConfigError(f"launch argument model_package: preset {preset_name!r} has {len(models)} model nodes "
                              f"({names}); use set:=NODE.model_package=DIR")
        put(models[0], "model_package", package)
    sim_time = _flag("use_sim_time", arguments.get("use_sim_time", ""))
    if sim_time is not None:
        presets.add_sim_time(plain.nodes, overrides, sim_time)
    if _flag("lifecycle", arguments.get("lifecycle", "")):
        for node in plain.nodes:
            put(node, "managed", True)
    if live:
        # the nodes whose preset names a calibration file (<bag>/calibration.yaml); an empty one (the params files'
        # default) means extrinsics from TF, as in the carla, gazebo and realsense presets
        calibrated = [n for n in plain.nodes if n.key != PLAYER_KEY and n.parameters.get("calibration_file")]
        calibration = arguments.get("calibration", "").strip()
        if calibrated and not calibration:
            raise ConfigError(f"live:=true: preset {preset_name!r} reads <bag>/calibration.yaml in "
                              f"{', '.join(n.name for n in calibrated)}; give calibration:=FILE")
        for node in calibrated:
            put(node, "calibration_file", calibration)
    return overrides


def _preset_args(arguments: dict[str, str], live: bool) -> dict[str, str]:
    """The ``$(arg NAME)`` values: non-empty arguments; live, ``bag`` is not needed (its uses are replaced)."""
    args = {k: v for k, v in arguments.items() if v != ""}
    if live:
        args.setdefault("bag", "")
    return args


def node_specs(preset_name: str, arguments: dict[str, str]) -> list[NodeSpec]:
    """The nodes ``ros2 launch`` starts for preset ``preset_name`` given the launch ``arguments`` (strings).

    Raises ConfigError (one line) for an unknown preset, a missing ``$(arg)``, an unknown node or parameter in
    ``set``, a value a parameter does not accept, or an ambiguous ``model_package``.
    """
    live = bool(_flag("live", arguments.get("live", "")))
    preset = presets.load(preset_name, _preset_args(arguments, live), _overrides(preset_name, arguments, live))
    renamed = topic_map(arguments)
    return [NodeSpec(f"{launch.key}_node", launch.name, typed_parameters(launch),
                     remappings(launch.remappings, renamed))
            for launch in preset.nodes if not (live and launch.key == PLAYER_KEY)]


def left_out_notes(preset_name: str, arguments: dict[str, str]) -> list[str]:
    """One line per optional node (``if_arg``) of preset ``preset_name`` that the launch ``arguments`` leave out,
    naming the launch argument that starts it (e.g. the convention presets' ViNT navigation without ``topomap:=``)."""
    live = bool(_flag("live", arguments.get("live", "")))
    preset = presets.load(preset_name, _preset_args(arguments, live))
    return [skipped.note(preset_name, launch=True) for skipped in preset.left_out]


def preset_launch_description(preset: str | None = None, defaults: dict[str, str] | None = None) -> Any:
    """The LaunchDescription of a launch file: preset ``preset`` (None: a ``preset`` argument, default ``demo``),
    every argument of :data:`LAUNCH_ARGUMENTS`, :data:`TOPIC_ARGUMENTS` and :data:`PRESET_ARGUMENTS` declared with
    its default, or the value in ``defaults`` (a robot or simulator variant's topic names, ``live``, ...).

    Never executed here (``launch`` is not on PyPI); the logic it relies on is :func:`node_specs`.
    """
    from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
    from launch_ros.actions import Node

    from launch import LaunchDescription

    defaults = dict(defaults or {})
    unknown = set(defaults) - set(LAUNCH_ARGUMENTS) - set(TOPIC_ARGUMENTS) - set(PRESET_ARGUMENTS) - {"preset"}
    if unknown:
        raise ConfigError(f"unknown launch argument default(s) {sorted(unknown)}")
    declared = {name: (default, text) for name, (default, text) in LAUNCH_ARGUMENTS.items()}
    declared.update({name: (topic, f"topic of {topic} on this system") for name, topic in TOPIC_ARGUMENTS.items()})
    declared.update({name: ("", text) for name, text in PRESET_ARGUMENTS.items()})
    if preset is None:
        declared["preset"] = ("demo", f"preset in config/presets/: {', '.join(presets.available())}")
    actions = [DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=text)
               for name, (default, text) in declared.items()]

    def nodes(context, *args, **kwargs):
        values = {name: context.launch_configurations.get(name, "") for name in declared}
        name = preset if preset is not None else values.pop("preset")
        return [LogInfo(msg=note) for note in left_out_notes(name, values)] + [
            Node(package=PACKAGE, executable=spec.executable, name=spec.name, parameters=[spec.parameters],
                 remappings=spec.remappings, output="screen")
            for spec in node_specs(name, values)]

    return LaunchDescription([*actions, OpaqueFunction(function=nodes)])
