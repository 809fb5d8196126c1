"""The import contracts of ``[tool.importlinter]`` in pyproject.toml hold, checked by import-linter's ``lint-imports``.

One test per contract, so a broken one is named in the failure; then proof that the checker fails when a forbidden
import or a cycle is added (on a copy of the package in a temporary directory, never on the source tree).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

CONTRACTS = [c["id"] for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]]

PENDING = {
    "acyclic": "core.models <-> core.detection3d: models/pointpillars.py builds its configuration from the "
               "detection3d stage modules (anchors, box_coder, centerpoint, pillarize, postprocess: leaf modules, so "
               "no module-level cycle) while the detection3d pipeline imports the architecture",
}
"""Contracts that are written but not yet kept; strict xfail, so the day one holds the test says to enable it."""


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess:
    """``lint-imports`` run in ``root`` (its pyproject.toml and its copy of ``ros_mmfusion``)."""
    env = {k: v for k, v in os.environ.items() if k != "_ROS_WHEELS_BOOTSTRAP_COMPLETE"}
    env["PYTHONPATH"] = str(root)
    args = [str(LINT_IMPORTS), "--no-cache", "--no-logo"]
    for contract in contracts:
        args += ["--contract", contract]
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_contracts_are_configured():
    assert {"layers", "core-ros-free", "tasks-independent", "shared-acyclic", "acyclic"} <= set(CONTRACTS)


@pytest.mark.parametrize("contract", [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=PENDING[c])) if c in PENDING else c
    for c in CONTRACTS
])
def test_contract_is_kept(contract):
    result = lint_imports(ROOT, contract)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the package and its pyproject.toml, to break on purpose."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "ros_mmfusion", tmp_path / "ros_mmfusion",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


@pytest.mark.parametrize("contract, file, line, expected", [
    ("layers", "core/geometry.py", "from ros_mmfusion.ros import builders  # noqa", "ros_mmfusion.core.geometry ->"),
    ("layers", "ros/qos.py", "import ros_mmfusion.nodes.lidar_depth  # noqa", "ros_mmfusion.ros.qos ->"),
    ("layers", "nodes/lidar_depth.py", "import ros_mmfusion.cli.main  # noqa", "ros_mmfusion.nodes.lidar_depth ->"),
    ("core-ros-free", "core/sync.py", "import rclpy  # noqa", "ros_mmfusion.core.sync -> rclpy"),
    ("tasks-independent", "core/navigation/control.py", "import ros_mmfusion.core.detection3d.nms  # noqa",
     "ros_mmfusion.core.navigation.control -> ros_mmfusion.core.detection3d.nms"),
    ("shared-acyclic", "core/models/checkpoints.py", "import ros_mmfusion.core.models.cmx  # noqa",
     "checkpoints"),
    ("shared-acyclic", "core/inference/base.py", "import ros_mmfusion.core.inference.factory  # noqa", "base"),
    ("shared-acyclic", "core/sim/world.py", "import ros_mmfusion.core.sim.simulator  # noqa", "world"),
])
def test_an_added_forbidden_import_or_cycle_breaks_the_contract(package_copy, contract, file, line, expected):
    assert lint_imports(package_copy, contract).returncode == 0  # the unchanged copy keeps it
    _append(package_copy / "ros_mmfusion" / file, line)
    result = lint_imports(package_copy, contract)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and expected in result.stdout, result.stdout[-4000:]


MODULE_CYCLES = """
import grimp
graph = grimp.build_graph("ros_mmfusion")
for module in sorted(graph.modules):
    for imported in graph.find_modules_directly_imported_by(module):
        try:
            back = graph.find_shortest_chain(importer=imported, imported=module, as_packages=False)
        except ValueError:  # a package and its own submodule: not an import cycle
            continue
        if back:
            print(" -> ".join((module, *back)))
"""


def module_cycles(root: Path) -> list[str]:
    """Every module-level import cycle of the ``ros_mmfusion`` under ``root`` (one line each), found by grimp, the
    graph library behind import-linter; lazy imports inside functions count."""
    env = {k: v for k, v in os.environ.items() if k != "_ROS_WHEELS_BOOTSTRAP_COMPLETE"}
    env["PYTHONPATH"] = str(root)
    result = subprocess.run([sys.executable, "-c", MODULE_CYCLES], cwd=root, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()


def test_no_module_imports_itself_through_other_modules():
    """Zero import cycles at module level across the whole package (the package-level ``acyclic`` contract is
    stricter)."""
    cycles = module_cycles(ROOT)
    assert not cycles, "import cycles:\n" + "\n".join(cycles[:20])


def test_an_added_module_cycle_is_found(package_copy):
    geometry = package_copy / "ros_mmfusion" / "core" / "geometry.py"
    lazy = "\n\ndef _late():\n    from ros_mmfusion.core.sync import NS_PER_S  # noqa\n"  # inside a function: counts
    geometry.write_text(geometry.read_text() + lazy)
    sync = package_copy / "ros_mmfusion" / "core" / "sync.py"
    sync.write_text(sync.read_text() + "\nfrom ros_mmfusion.core import geometry  # noqa: E402,F401\n")
    assert any("ros_mmfusion.core.geometry" in c and "ros_mmfusion.core.sync" in c for c in module_cycles(package_copy))
