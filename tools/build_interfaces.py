#!/usr/bin/env python3
"""Build the ROS 2 interface packages that PyPI lacks (vision_msgs, tf2_msgs) into a virtual environment.

Run with the venv's python.  A package that is importable already (a system ROS install, or an earlier build) is left
alone, so a second run takes well under a second.  On a ROS machine, install the real packages instead
(``apt install ros-$ROS_DISTRO-vision-msgs``); this script is only for the pip-only path.

The ROS wheels on PyPI export CMake files that hard-code their build machine's Python and numpy include directories;
those are rewritten to this interpreter's before the first build (see shared ENVIRONMENT notes in docs/install.md).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INTERFACES = ROOT / "interfaces"
FOREIGN_PY_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
FOREIGN_NP_INCLUDE = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"


def importable(package: str) -> bool:
    return importlib.util.find_spec(package) is not None and importlib.util.find_spec(f"{package}.msg") is not None


def patch_exported_cmake(prefix: Path) -> int:
    """Point the wheels' exported CMake files at this interpreter's include directories; returns files changed."""
    import numpy

    py_inc = sysconfig.get_paths()["include"]
    np_inc = numpy.get_include()
    changed = 0
    for path in (prefix / "share").rglob("*.cmake"):
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if FOREIGN_PY_INCLUDE not in text and FOREIGN_NP_INCLUDE not in text:
            continue
        path.write_text(text.replace(FOREIGN_NP_INCLUDE, np_inc).replace(FOREIGN_PY_INCLUDE, py_inc))
        changed += 1
    return changed


def build(package: str, prefix: Path, jobs: int) -> None:
    src = INTERFACES / package
    env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix), CMAKE_PREFIX_PATH=str(prefix))
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    with tempfile.TemporaryDirectory(prefix=f"build_{package}_") as build_dir:
        configure = [
            "cmake", "-S", str(src), "-B", build_dir,
            f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DCMAKE_PREFIX_PATH={prefix}",
            f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release",
        ]
        for cmd in (configure, ["cmake", "--build", build_dir, "-j", str(jobs)], ["cmake", "--install", build_dir]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
                raise SystemExit(f"build_interfaces: '{' '.join(cmd[:3])} ...' failed for {package}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix), help="install prefix (default: this venv)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("packages", nargs="*", default=sorted(p.name for p in INTERFACES.iterdir() if p.is_dir()))
    args = parser.parse_args()
    missing = [p for p in args.packages if not importable(p)]
    if not missing:
        print(f"build_interfaces: {', '.join(args.packages)} importable already; nothing to build")
        return 0
    if shutil.which("cmake") is None:
        raise SystemExit("build_interfaces: cmake not found; install it (apt-get install cmake) and run again")
    patched = patch_exported_cmake(args.prefix)
    if patched:
        print(f"build_interfaces: rewrote include paths in {patched} exported CMake files")
    for package in missing:
        print(f"build_interfaces: building {package} into {args.prefix} ...", flush=True)
        build(package, args.prefix, args.jobs)
    still = [p for p in missing if not importable(p)]
    if still:
        raise SystemExit(f"build_interfaces: built but cannot import {', '.join(still)}")
    print(f"build_interfaces: built {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
