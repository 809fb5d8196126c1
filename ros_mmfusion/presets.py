"""Presets: named sets of nodes with their parameters (``config/presets/<name>.yaml``), shared by ``mmfusion run``
and the launch files. It reads and validates YAML; only the parameter-name check imports the node modules (rclpy).

Format::

    description: one line
    nodes:
      - node: <key in ros_mmfusion.nodes.registry.NODES>
        name: <ROS node name, optional>
        params_file: <ROS params YAML (/** or node name -> ros__parameters), relative to the share dir, optional>
        parameters: {name: value}      # inline, override the file; "$(arg NAME)" takes a run argument
        remappings: {from: to}
        if_arg: <NAME, optional>       # start the node only when the run gives argument NAME (non-empty)

A node with ``if_arg`` is optional: without that argument it is left out (``Preset.left_out`` says which and what
it needs; ``mmfusion run`` prints it), its inline parameters are still checked, and ``--set`` on it is refused with
that reason. The convention presets use it for ViNT navigation, which needs a topological map (``topomap``).

Parameter precedence: params_file < inline parameters < command-line ``--set node.param=value``.

Inline parameters and ``--set`` must name parameters the node declares (its ``PARAMS`` and the node base's
``COMMON_PARAMS``) or ROS's own (``use_sim_time``, ``qos_overrides.*``); checking them imports the node module.
A params file may hold other keys (its ``/**`` section is shared by every node), so its keys are not checked.
"""
from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.nodes.registry import NODES
from ros_mmfusion.paths import config_dir, share_dir

_ARG = re.compile(r"\$\(arg (\w+)\)")

ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")
"""Parameters rclpy declares on every node, accepted beside the node's own."""
ROS_PARAMETER_PREFIXES = ("qos_overrides.",)

PRESET_ARGUMENTS: dict[str, str] = {
    "bag": "bag directory written by `mmfusion sim` (presets that replay one)",
    "topomap": "topological map directory written by `mmfusion topomap build` (navigation; optional in the "
               "convention presets)",
}
"""The ``$(arg NAME)`` arguments presets use, with their descriptions (launch files declare them, empty default)."""

TIME_SOURCES = ("bag_player", "sim_robot")
"""Nodes that make the time base: the bag player (wall time by restamping, or sim time on /clock with
``publish_clock``) and sim_robot (/clock). ``use_sim_time`` is never set on them."""


@dataclass
class NodeLaunch:
    key: str
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return NODES[self.key][0]

    @property
    def class_name(self) -> str:
        return NODES[self.key][1]


@dataclass(frozen=True)
class LeftOut:
    """An optional node (``if_arg``) not started because the run did not give its ``argument``."""

    name: str
    argument: str

    def note(self, preset: str, launch: bool = False) -> str:
        """One line for the user: what was left out and the argument that starts it (``mmfusion run``'s
        ``--arg NAME=VALUE``, or with ``launch`` the launch argument ``NAME:=VALUE``)."""
        what = PRESET_ARGUMENTS.get(self.argument, "")
        given = f"{self.argument}:=VALUE" if launch else f"--arg {self.argument}=VALUE"
        return f"preset {preset!r}: node {self.name!r} not started: it needs {given}" + (f" ({what})" if what else "")


@dataclass
class Preset:
    name: str
    description: str
    nodes: list[NodeLaunch]
    arguments: set[str]
    left_out: list[LeftOut] = field(default_factory=list)
    """Optional nodes left out for want of their argument (``if_arg``), in the preset's order."""


def known_parameters(key: str) -> list[str]:
    """The parameter names node ``key`` declares (its ``PARAMS`` plus ``COMMON_PARAMS``), sorted.

    Imports the node's module (and so rclpy): presets stay ROS-free until parameters are checked.
    """
    module, class_name = NODES[key]
    cls = getattr(importlib.import_module(module), class_name)
    return sorted(spec.name for spec in cls.declared_params())


def check_parameter_names(node_name: str, key: str, names: list[str], source: str) -> None:
    """ConfigError when one of ``names`` (given by ``source``, e.g. "--set") is no parameter of node ``key``."""
    names = [n for n in names if n not in ROS_PARAMETERS and not n.startswith(ROS_PARAMETER_PREFIXES)]
    if not names:
        return
    known = known_parameters(key)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{source}: node {node_name!r} ({key}) has no parameter {name!r}{hint}; its "
                              f"parameters: {', '.join(known)}")


def available() -> list[str]:
    return sorted(p.stem for p in (config_dir() / "presets").glob("*.yaml"))


def load_description(name: str) -> str:
    data = _load_yaml(config_dir() / "presets" / f"{name}.yaml")
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_params_file(path: Path, node_name: str) -> dict[str, Any]:
    """``ros__parameters`` of ``node_name`` (or ``/**``) from a ROS 2 parameters file, flattened with dots."""
    if not path.is_file():
        raise ConfigError(f"parameters file not found: {path}")
    data = _load_yaml(path) or {}
    params: dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}"):
        section = data.get(key)
        if isinstance(section, dict):
            params.update(_flatten(section.get("ros__parameters") or {}))
    return params


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _substitute(value: str, args: dict[str, str], preset: str, needed: set[str]) -> str:
    """Replace every ``$(arg NAME)`` in ``value``; ConfigError naming the first missing argument."""

    def one(match: re.Match) -> str:
        arg = match.group(1)
        needed.add(arg)
        if arg not in args:
            hint = "--bag DIR" if arg == "bag" else f"--arg {arg}=VALUE"
            raise ConfigError(f"preset {preset!r} needs the argument {arg!r} (mmfusion run {preset} {hint})")
        return str(args[arg])

    return _ARG.sub(one, value)


def load(name: str, args: dict[str, str] | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Preset:
    """Read and resolve preset ``name``; ``args`` fill ``$(arg X)``; ``overrides`` is {node name: {param: value}}."""
    path = config_dir() / "presets" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(available()) or 'none'}")
    data = _load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not data["nodes"]:
        raise ConfigError(f"{path}: a preset needs a non-empty 'nodes' list")
    args = dict(args or {})
    needed: set[str] = set()
    nodes: list[NodeLaunch] = []
    left_out: list[LeftOut] = []
    for i, entry in enumerate(data["nodes"]):
        if not isinstance(entry, dict) or entry.get("node") not in NODES:
            raise ConfigError(f"{path}: nodes[{i}] must name a node, one of {sorted(NODES)}; got {entry!r}")
        unknown = set(entry) - {"node", "name", "params_file", "parameters", "remappings", "if_arg"}
        if unknown:
            raise ConfigError(f"{path}: nodes[{i}] has unknown keys {sorted(unknown)}")
        node_name = entry.get("name", entry["node"])
        condition = entry.get("if_arg")
        if condition is not None and not (isinstance(condition, str) and re.fullmatch(r"\w+", condition)):
            raise ConfigError(f"{path}: nodes[{i}].if_arg must be an argument name, got {condition!r}")
        inline = entry.get("parameters") or {}
        if not isinstance(inline, dict):
            raise ConfigError(f"{path}: nodes[{i}].parameters must be a mapping, got {inline!r}")
        check_parameter_names(node_name, entry["node"], list(inline), f"{path}: nodes[{i}].parameters")
        if condition is not None and not args.get(condition):
            left_out.append(LeftOut(node_name, condition))
            continue
        params: dict[str, Any] = {}
        if entry.get("params_file"):
            params.update(load_params_file(share_dir() / entry["params_file"], node_name))
        for key, value in inline.items():
            if isinstance(value, str):
                value = _substitute(value, args, name, needed)
            params[key] = value
        node_overrides = (overrides or {}).get(node_name, {})
        check_parameter_names(node_name, entry["node"], list(node_overrides), "--set")
        params.update(node_overrides)
        nodes.append(NodeLaunch(entry["node"], node_name, params, dict(entry.get("remappings") or {})))
    names = [n.name for n in nodes] + [n.name for n in left_out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: node names must be unique, got {names}")
    for skipped in left_out:
        if skipped.name in (overrides or {}):
            raise ConfigError(f"--set names node {skipped.name!r}, which preset {name!r} starts only with "
                              f"--arg {skipped.argument}=VALUE")
    unknown_targets = set(overrides or {}) - set(names)
    if unknown_targets:
        raise ConfigError(f"--set names unknown node(s) {sorted(unknown_targets)}; preset nodes: {names}")
    return Preset(name, str(data.get("description", "")), nodes, needed, left_out)


def add_sim_time(nodes: list[NodeLaunch], overrides: dict[str, dict[str, Any]], enabled: bool
                 ) -> dict[str, dict[str, Any]]:
    """``overrides`` ({node name: {param: value}}, changed in place and returned) plus what ``use_sim_time`` =
    ``enabled`` means for ``nodes``: every node but the time sources (:data:`TIME_SOURCES`) gets ``use_sim_time``;
    enabled, bag players publish /clock from the bag (``publish_clock: true``) and keep the bag's stamps
    (``restamp: false``); disabled, they publish no /clock and restamp onto the wall clock (undoing a preset that
    replays on sim time, such as ``carla``). Values already in ``overrides`` (an explicit ``--set``) win."""
    for node in nodes:
        wanted: dict[str, Any] = {}
        if node.key == "bag_player":
            wanted = {"publish_clock": enabled, "restamp": not enabled}
        elif node.key not in TIME_SOURCES:
            wanted = {"use_sim_time": enabled}
        for param, value in wanted.items():
            overrides.setdefault(node.name, {}).setdefault(param, value)
    return overrides


def split_assignment(item: str, option: str, form: str = "NAME=VALUE") -> tuple[str, str]:
    """``"name=value"`` -> ``("name", "value")`` (the value may hold "=" and be empty); ConfigError naming ``option``
    and the expected ``form`` when there is no "=" or no name."""
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ConfigError(f"{option} expects {form}, got {item!r}")
    return name, value


def parse_arguments(items: list[str]) -> dict[str, str]:
    """``--arg`` values ``["NAME=VALUE", ...]`` -> {name: value} (strings, substituted for ``$(arg NAME)``)."""
    return dict(split_assignment(item, "--arg") for item in items)


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["node.param=value", ...]`` -> {node: {param: value}}; values parsed as YAML scalars (1.0, true, [a, b])."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, raw = split_assignment(item, "--set", "NODE.PARAM=VALUE")
        node, dot, param = target.partition(".")
        if not dot or not node or not param:
            raise ConfigError(f"--set expects NODE.PARAM=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        out.setdefault(node, {})[param] = value
    return out
