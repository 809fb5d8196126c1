"""package.xml declares every run dependency the code imports: walk the imports of ros_mmfusion/ and launch/ with
ast (plus the message packages named in type strings such as "tf2_msgs/msg/TFMessage", which are imported by name
at run time), map each to its package.xml key, and compare both ways. A new import without a declaration fails
here; so does a declaration nothing uses."""
from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET

from .share_files import ROOT

PIP = "pip"
KEYS: dict[str, str] = {
    # ROS packages: the module is the package
    **{m: m for m in ("rclpy", "rcl_interfaces", "builtin_interfaces", "rosgraph_msgs", "lifecycle_msgs", "std_msgs",
                      "sensor_msgs", "geometry_msgs", "nav_msgs", "visualization_msgs", "diagnostic_msgs",
                      "vision_msgs", "tf2_msgs", "ament_index_python", "launch", "launch_ros")},
    # rosdep keys (rosdistro rosdep/python.yaml)
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "cv2": "python3-opencv",
    "matplotlib": "python3-matplotlib",
    "PIL": "python3-pil",
    "onnxruntime": "python3-onnxruntime-pip",
    "open3d": "python3-open3d-pip",
    # no rosdep key: documented in a package.xml comment and the README, pinned in requirements/python.txt
    "torch": PIP,
    "onnx": PIP,
    "rosbags": PIP,
    "tensorrt": PIP,
    "ray": PIP,
}
"""Imported top-level module -> package.xml exec_depend key (PIP: documented pip-only dependency)."""
OPTIONAL = {"tensorrt", "ray"}
"""pip-only and optional (GPU machines; Ray for fleet evaluation, requirements/fleet.txt): documented, not in
requirements/python.txt."""
MESSAGE_TYPE = re.compile(r"^([a-z][a-z0-9_]*)/(msg|srv|action)/[A-Z]\w*$")


def imported_modules() -> dict[str, str]:
    """Top-level module -> one file importing it, for every non-standard, non-own import (messages by name too)."""
    found: dict[str, str] = {}
    files = [*sorted((ROOT / "ros_mmfusion").rglob("*.py")), *sorted((ROOT / "launch").glob("*.py"))]
    for path in files:
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MESSAGE_TYPE.match(node.value):
                names = [MESSAGE_TYPE.match(node.value).group(1)]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "ros_mmfusion":
                    found.setdefault(top, where)
    return found


def declared() -> set[str]:
    return {e.text.strip() for e in ET.parse(ROOT / "package.xml").getroot().iter("exec_depend")}


def xml_comments() -> str:
    return " ".join(re.findall(r"<!--(.*?)-->", (ROOT / "package.xml").read_text(), re.DOTALL))


def test_every_import_is_mapped_to_a_dependency():
    unknown = {m: f for m, f in imported_modules().items() if m not in KEYS}
    assert not unknown, (f"imports with no dependency entry (declare them in package.xml and map them in KEYS): "
                         f"{unknown}")


def test_every_imported_dependency_is_declared():
    keys = declared()
    missing = {m: KEYS[m] for m in imported_modules() if m in KEYS and KEYS[m] != PIP and KEYS[m] not in keys}
    assert not missing, f"package.xml lacks exec_depend for (module: key): {missing}"


def test_every_declaration_is_used():
    used = {KEYS[m] for m in imported_modules() if m in KEYS}
    assert not declared() - used, f"package.xml declares what nothing imports: {sorted(declared() - used)}"


def test_pip_only_dependencies_are_documented_and_pinned():
    pip_only = sorted(m for m in imported_modules() if KEYS.get(m) == PIP)
    comments = xml_comments()
    readme = (ROOT / "README.md").read_text()
    pinned = {re.split(r"[=<>!~\[ ]", line, maxsplit=1)[0].strip().lower()
              for line in (ROOT / "requirements" / "python.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    for module in pip_only:
        assert re.search(rf"\b{module}\b", comments), f"package.xml comments do not name pip-only {module}"
        assert re.search(rf"`{module}`", readme), f"README does not name pip-only `{module}`"
        if module not in OPTIONAL:
            assert module.lower() in pinned, f"requirements/python.txt does not pin {module}"


def test_the_pins_need_python_3_11_as_the_readme_says():
    """README: Humble (Python 3.10) is unsupported because these pins declare Requires-Python >=3.11."""
    from importlib.metadata import metadata

    pins = dict(line.split("==", 1) for line in (ROOT / "requirements" / "python.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for distribution in ("numpy", "onnxruntime", "matplotlib"):
        meta = metadata(distribution)
        assert meta["Version"] == pins[distribution], f"{distribution}: installed {meta['Version']}, pinned"
        assert meta["Requires-Python"].replace(" ", "") == ">=3.11", f"{distribution}: {meta['Requires-Python']}"
        assert f"{distribution} {pins[distribution]}" in (ROOT / "README.md").read_text()
