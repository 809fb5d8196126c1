"""``mmfusion doctor``: what this machine offers the suite (ROS, middleware, DDS profile, ML runtimes, GPU, the CPU's
instruction-set class and the INT8 each model family runs on it)."""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import os
import platform
import shutil

HELP = ("report versions of ROS 2, the middleware, torch, ONNX Runtime, TensorRT, the GPU, the DDS profile and the "
        "CPU's INT8 support")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return False


def collect() -> dict[str, object]:
    from ros_mmfusion import __version__
    from ros_mmfusion.paths import share_dir
    from ros_mmfusion.ros.runtime import active_profile, configure_middleware

    configure_middleware()
    info: dict[str, object] = {"ros_mmfusion": __version__, "python": platform.python_version(),
                               "share_dir": str(share_dir())}
    distro = os.environ.get("ROS_DISTRO")
    rclpy_version = _version("ros-jazzy-rclpy", "ros-rclpy", "rclpy")
    if distro is None and _version("ros-jazzy-rclpy"):
        distro = "jazzy (PyPI wheels)"
    elif distro is None and _version("ros-rclpy"):
        distro = "kilted (PyPI wheels)"
    info["ros_distro"] = distro
    info["rclpy"] = rclpy_version if _importable("rclpy") else None
    info["rmw_implementation"] = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")
    info["fastdds"] = _version("ros-fastrtps", "ros-fastdds")
    info["dds_profile"] = active_profile()
    for pkg in ("vision_msgs", "tf2_msgs"):
        info[f"{pkg}_importable"] = _importable(f"{pkg}.msg")
    info["numpy"] = _version("numpy")
    info["opencv"] = _version("opencv-python-headless", "opencv-python")
    info["open3d"] = _version("open3d")
    info["rosbags"] = _version("rosbags")
    info["torch"] = _version("torch")
    info["onnx"] = _version("onnx")
    info["onnxruntime"] = _version("onnxruntime", "onnxruntime-gpu")
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except Exception:  # noqa: BLE001
        info["onnxruntime_providers"] = []
    info["tensorrt"] = _version("tensorrt", "tensorrt-cu12", "tensorrt-cu13") if _importable("tensorrt") else None
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    if gpu is None and shutil.which("nvidia-smi"):
        gpu = "nvidia-smi present (torch has no CUDA)"
    info["cuda_gpu"] = gpu
    info.update(cpu_int8())
    return info


def cpu_int8() -> dict[str, object]:
    """The CPU (model name, instruction-set class) and, per model family, the INT8 decision of ``int8_plan``: the
    format, or why INT8 is declined (nodes asked for ``onnxruntime-int8`` then run fp32)."""
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.inference.cpu_features import cpu_isa
    from ros_mmfusion.core.inference.int8 import MODEL_FAMILIES, int8_plan

    isa = cpu_isa()
    out: dict[str, object] = {"cpu": isa.model, "cpu_isa": f"{isa.name} ({isa.description})"}
    try:
        out["int8"] = {family: int8_plan(family, isa).as_dict() for family in MODEL_FAMILIES}
    except ConfigError as exc:  # a bad MMFUSION_INT8: report it, do not crash the report
        out["int8"] = {"error": str(exc)}
    return out


def _shown(key: str, value: object) -> list[tuple[str, object]]:
    """Text rows of one entry: the INT8 decisions one row per model family."""
    if key == "int8" and isinstance(value, dict):
        return [(f"int8_{family}", plan["message"] if isinstance(plan, dict) else plan)
                for family, plan in value.items()]
    return [(key, value)]


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    rows = [row for key, value in info.items() for row in _shown(key, value)]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        shown = "no" if value is None or value is False else ("yes" if value is True else value)
        print(f"{key:<{width}}  {shown}")
    problems = [k for k in ("rclpy", "vision_msgs_importable", "dds_profile") if not info.get(k)]
    if problems:
        print(f"\nmissing: {', '.join(problems)} (run `make setup`, or install them on your ROS machine)")
        return 1
    return 0
