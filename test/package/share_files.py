"""What setup.py installs and what the node modules publish, read statically (shared by the launch-file, RViz and
package.xml tests): ``launch`` and ``rviz2`` are not installable here, so these tests read files instead of running
them."""
from __future__ import annotations

import ast
import os
import runpy
from functools import lru_cache
from pathlib import Path
from typing import Any

import setuptools

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "ros_mmfusion"


@lru_cache(maxsize=1)
def setup_kwargs() -> dict[str, Any]:
    """The keyword arguments setup.py passes to ``setuptools.setup`` (setup.py run with ``setup`` recorded)."""
    recorded: dict[str, Any] = {}
    original_setup, original_cwd = setuptools.setup, Path.cwd()
    setuptools.setup = lambda **kwargs: recorded.update(kwargs)  # type: ignore[assignment]
    try:
        os.chdir(ROOT)
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original_setup
        os.chdir(original_cwd)
    return recorded


def installed_files() -> dict[str, str]:
    """Source path (relative to the repository) -> install path (relative to the prefix) of every data file."""
    return {source: f"{dest}/{Path(source).name}" for dest, sources in setup_kwargs()["data_files"]
            for source in sources}


def console_scripts() -> set[str]:
    return {entry.split("=", 1)[0].strip() for entry in setup_kwargs()["entry_points"]["console_scripts"]}


def resolve(name: str, node_name: str, remappings: list[tuple[str, str]]) -> str:
    """The topic a node named ``node_name`` (namespace ``/``) uses for ``name`` after ``remappings``: ROS 2 expands
    ``~/x`` to ``/<node>/x`` and ``x`` to ``/x``, then applies the first rule whose expanded source matches."""

    def expand(n: str) -> str:
        if n.startswith("~/"):
            return f"/{node_name}/{n[2:]}"
        return n if n.startswith("/") else f"/{n}"

    full = expand(name)
    for source, target in remappings:
        if expand(source) == full:
            return expand(target)
    return full


PUBLISH_CALLS = ("create_publisher", "output_publisher")


def literal_publications(module_path: Path) -> tuple[list[str], int]:
    """(topic names given as string literals, number of publisher calls whose topic is no literal) in a module."""
    literal, other = [], 0
    for node in ast.walk(ast.parse(module_path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in PUBLISH_CALLS:
            topic = node.args[1] if len(node.args) > 1 else None
            if isinstance(topic, ast.Constant) and isinstance(topic.value, str):
                literal.append(topic.value)
            else:
                other += 1
    return literal, other


def module_file(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")
