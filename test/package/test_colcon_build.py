"""The repository builds as a ROS 2 ament_python package with colcon and installs where ROS tools look.

Copies the package sources into ``<tmp>/src/ros_mmfusion``, runs ``colcon build --base-paths src`` with the venv's
colcon (colcon-ros identifies the ament_python package from package.xml, colcon-python-setup-py runs setup.py), then
checks the install space the way ``ros2 run`` / ``ros2 launch`` / ament_index would use it.
"""
from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "ros_mmfusion"
# What a source checkout of the package consists of (no .venv, .git, build outputs or caches).
SOURCES = ("package.xml", "setup.py", "setup.cfg", "resource", PACKAGE, "launch", "config", "rviz", "models",
           "interfaces", "README.md")
SHARE_TREES = ("launch", "config", "rviz", "models", "interfaces")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".mypy_cache",
                                 ".ruff_cache", ".hypothesis")


def colcon_executable() -> Path | None:
    """The colcon next to this interpreter (the venv's), else one on PATH, else None."""
    beside = Path(sys.executable).parent / "colcon"
    if beside.is_file():
        return beside
    found = shutil.which("colcon")
    return Path(found) if found else None


def console_scripts_from_setup_py(package_dir: Path) -> list[str]:
    """Console script names that ``package_dir/setup.py`` declares, read by running it with ``setuptools.setup``
    replaced by a recorder (so however setup.py computes them, e.g. from the node registry, is honoured)."""
    recorded: dict[str, Any] = {}
    original_setup = setuptools.setup
    original_cwd = Path.cwd()
    setuptools.setup = lambda **kwargs: recorded.update(kwargs)  # type: ignore[assignment]
    try:
        os.chdir(package_dir)
        runpy.run_path(str(package_dir / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original_setup
        os.chdir(original_cwd)
    entries = recorded.get("entry_points", {}).get("console_scripts", [])
    return sorted(entry.split("=", 1)[0].strip() for entry in entries)


def child_env(tmp_path: Path) -> dict[str, str]:
    """Environment for colcon and the import check: no ROS-wheels bootstrap marker, no user colcon defaults, and
    no PYTHONPATH pointing back at the source tree."""
    from ros_mmfusion.ros.runtime import child_environment

    env = child_environment()
    env.pop("PYTHONPATH", None)
    env["COLCON_HOME"] = str(tmp_path / "colcon_home")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def test_colcon_build_installs_share_files_console_scripts_and_ament_index_entry(tmp_path: Path) -> None:
    colcon = colcon_executable()
    if colcon is None:
        pytest.skip("colcon is not installed (pip install -r requirements/dev.txt provides it)")

    # setup.py installs README.md and these trees; a file it names that is missing fails a real colcon build too.
    for required in ("package.xml", "setup.py", "setup.cfg", f"resource/{PACKAGE}", "README.md"):
        assert (ROOT / required).is_file(), f"{required} is missing from the package sources"

    src = tmp_path / "src" / PACKAGE
    src.mkdir(parents=True)
    for item in SOURCES:
        path = ROOT / item
        if path.is_dir():
            shutil.copytree(path, src / item, ignore=IGNORED)
        elif path.is_file():
            shutil.copy2(path, src / item)

    env = child_env(tmp_path)
    result = subprocess.run(
        [str(colcon), "build", "--base-paths", "src"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"

    install = tmp_path / "install"
    prefix = install / PACKAGE
    # Exactly one package: the interface packages under interfaces/ are data here, not packages of their own.
    assert sorted(p.name for p in install.iterdir() if p.is_dir()) == [PACKAGE]

    share = prefix / "share" / PACKAGE
    assert (share / "package.xml").is_file()
    assert (share / "config" / "dds" / "fastdds_large_messages.xml").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    # Every file of the share trees (launch/, rviz/, config/, models/, interfaces/) lands at the same relative path;
    # hidden files (.gitkeep placeholders) are left out, as setup.py's glob leaves them out.
    for tree in SHARE_TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            parts = path.relative_to(ROOT).parts
            if path.is_file() and "__pycache__" not in parts and not any(p.startswith(".") for p in parts):
                relative = path.relative_to(ROOT)
                assert (share / relative).is_file(), f"{relative} was not installed under share/{PACKAGE}"

    # `ros2 run ros_mmfusion <name>` looks for executables in lib/ros_mmfusion.
    scripts = console_scripts_from_setup_py(src)
    assert scripts, "no console scripts found in setup.py"
    for name in scripts:
        exe = prefix / "lib" / PACKAGE / name
        assert exe.is_file(), f"console script {name} not installed in lib/{PACKAGE}"
        assert os.access(exe, os.X_OK), f"{exe} is not executable"
    installed = sorted(p.name for p in (prefix / "lib" / PACKAGE).iterdir())
    assert installed == scripts, "lib/ros_mmfusion holds other executables than setup.py declares"

    # The Python package imports from the install space, at the path colcon's own PYTHONPATH hook adds.
    hook = (share / "hook" / "pythonpath.dsv").read_text(encoding="utf-8").strip()
    kind, variable, relative_dir = hook.split(";")
    assert (kind, variable) == ("prepend-non-duplicate", "PYTHONPATH")
    site_packages = prefix / relative_dir
    assert (site_packages / PACKAGE / "core" / "__init__.py").is_file()
    env["PYTHONPATH"] = str(site_packages)
    probe = subprocess.run(
        [sys.executable, "-c", "import ros_mmfusion, ros_mmfusion.core; print(ros_mmfusion.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    imported_from = Path(probe.stdout.strip().splitlines()[-1]).resolve()
    assert imported_from == (site_packages / PACKAGE / "__init__.py").resolve()
