"""Argument parsing shared by the ``mmfusion`` subcommands (sizes, the ``--overwrite`` flag)."""
from __future__ import annotations

import argparse


def parse_hw(text: str | None, option: str = "--size") -> tuple[int, int] | None:
    """``"HxW"`` -> ``(height, width)`` pixels, each side 16..8192 (:mod:`ros_mmfusion.core.limits`); None for None.

    Raises ``UserError`` (one line) for anything else."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.limits import check_image_size

    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"{option} expects HxW, e.g. 480x640; got {text!r}") from None
    try:
        return check_image_size(h, w, f"{option} {text!r}")
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def add_overwrite(parser: argparse.ArgumentParser, what: str = "the files an earlier run of this command wrote "
                  "into --out (listed in its .mmfusion-output); nothing else is ever touched") -> None:
    """The ``--overwrite`` flag every command that writes files has."""
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what}")
