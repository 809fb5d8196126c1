"""The core never imports ROS: every module under ros_mmfusion.core imports in a process where rclpy cannot load."""
from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import ros_mmfusion.core

CORE = Path(ros_mmfusion.core.__file__).parent
ROS_IMPORT = re.compile(r"^\s*(import|from)\s+(rclpy|rosidl_\w+|\w+_msgs)\b", re.M)


def core_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(CORE)], "ros_mmfusion.core."))


def test_core_sources_have_no_ros_imports():
    offenders = [str(p) for p in CORE.rglob("*.py") if ROS_IMPORT.search(p.read_text())]
    assert not offenders, f"core modules importing ROS: {offenders}"


def test_every_core_module_imports_with_ros_blocked(tmp_path, ros_child_env):
    modules = core_modules()
    assert "ros_mmfusion.core.sync" in modules and "ros_mmfusion.core.health" in modules
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        root = name.split('.')[0]\n"
        "        if root == 'rclpy' or root.endswith('_msgs') or root.startswith('rosidl'):\n"
        "            raise ImportError(f'ROS import {name} in the core')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok')\n"
    env = ros_child_env(PYTHONPATH=f"{tmp_path}:{Path(__file__).resolve().parents[2]}")
    proc = subprocess.run([sys.executable, "-c", code, *modules], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
