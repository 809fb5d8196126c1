"""ament_python package definition: `colcon build` on a ROS machine, `pip install -e .` on the pip-only path."""
from __future__ import annotations

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ros_mmfusion"
SHARE_TREES = ("launch", "config", "rviz", "models", "interfaces")


def share_files() -> list[tuple[str, list[str]]]:
    """(destination, files) pairs installing every file of SHARE_TREES under share/ros_mmfusion, keeping sub-folders."""
    entries: dict[str, list[str]] = {}
    for tree in SHARE_TREES:
        for path in sorted(glob(os.path.join(tree, "**", "*"), recursive=True)):
            if os.path.isfile(path) and "__pycache__" not in path:
                dest = os.path.join("share", PACKAGE, os.path.dirname(path))
                entries.setdefault(dest, []).append(path)
    return sorted(entries.items())


def node_scripts() -> dict[str, str]:
    """Console scripts ``<key>_node`` for every node in ros_mmfusion/nodes/registry.py (read as data, not imported)."""
    registry: dict = {}
    with open(os.path.join("ros_mmfusion", "nodes", "registry.py")) as f:
        exec(compile(f.read(), "registry.py", "exec"), registry)  # noqa: S102 - our own pure-data module
    return {f"{key}_node": f"{module}:main" for key, (module, _cls) in registry["NODES"].items()}


NODES = node_scripts()

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml", "README.md"]),
        *share_files(),
    ],
    install_requires=["setuptools"],
    # `mmfusion eval --bags --engine ray` (docs/evaluation.md); pinned as requirements/fleet.txt pins it
    extras_require={"fleet": ["ray==2.60.0"]},
    zip_safe=False,
    maintainer="ros_mmfusion maintainers",
    maintainer_email="maintainers@ros-mmfusion.dev",
    description="Multi-modal fusion perception and visual navigation for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{name} = {target}" for name, target in NODES.items()]
        + ["mmfusion = ros_mmfusion.cli.main:main"],
    },
)
