"""``mmfusion import DATASET``: turn a dataset folder into a rosbag2 (MCAP) the suite and ``ros2 bag play`` replay.

Each dataset is a module of this package named in :data:`IMPORTERS`, exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int`` like a subcommand; the reading and writing live in
``ros_mmfusion/core/datasets/``. A missing or partial dataset folder is one line naming the missing file.
See docs/datasets.md.
"""
from __future__ import annotations

import argparse
import importlib

HELP = "import a dataset folder (KITTI, nuScenes, RGB-D sequences) into a rosbag2 (see docs/datasets.md)"

#: dataset name -> module under ros_mmfusion.cli
IMPORTERS: dict[str, str] = {
    "kitti": "import_kitti",
    "nuscenes": "import_nuscenes",
    "rgbd": "import_rgbd",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET")
    for name, module_name in IMPORTERS.items():
        module = importlib.import_module(f"ros_mmfusion.cli.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_importer=module)


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError

    importer = getattr(args, "_importer", None)
    if importer is None:
        raise UserError(f"name the dataset: one of {', '.join(IMPORTERS) or '(none yet)'}")
    return int(importer.run(args))
