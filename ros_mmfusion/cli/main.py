"""``mmfusion``: the suite's command line.

Each subcommand is a module of this package exposing ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Subcommand modules are imported lazily, so ``mmfusion --help`` stays fast and a subcommand
that needs ROS does not make the others need it. Errors a user can cause (bad arguments, unreadable files, invalid
configuration) print one clear line to stderr and exit non-zero, never a traceback. An unexpected exception (a bug)
prints one line too, with a hint: ``MMFUSION_DEBUG=1`` shows its traceback. Output files follow the rules of
:mod:`ros_mmfusion.core.outputs` (a non-empty ``--out`` is refused unless ``--overwrite``, which replaces only what an
earlier mmfusion run wrote).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ros_mmfusion import __version__
from ros_mmfusion.core.errors import ConfigError, MessageFormatError

#: subcommand name -> module under ros_mmfusion.cli
COMMANDS: dict[str, str] = {
    "doctor": "doctor",
    "run": "run",
    "sim": "sim",
    "import": "import_data",
    "demo": "demo",
    "eval": "eval",
    "bench-network": "bench",
    "bench-graph": "benchmark",
    "train": "train",
    "topomap": "topomap",
    "closed-loop": "closed_loop",
    "convert-checkpoint": "convert_checkpoint",
    "export": "export",
    "build-engine": "build_engine",
}

#: old subcommand name -> its new name; the old name still runs, after a one-line notice on stderr
RENAMED: dict[str, str] = {
    "bench": "bench-network",
    "benchmark": "bench-graph",
}

#: (command, flag) -> the command it stands for: ``mmfusion eval --closed-loop ...`` is ``mmfusion closed-loop ...``
FLAG_ALIASES: dict[tuple[str, str], str] = {
    ("eval", "--closed-loop"): "closed-loop",
}


def resolve_aliases(argv: Sequence[str]) -> list[str]:
    """``argv`` with a flag alias (:data:`FLAG_ALIASES`) replaced by the command it stands for."""
    argv = list(argv)
    for (command, flag), target in FLAG_ALIASES.items():
        if argv[:1] == [command] and flag in argv[1:]:
            return [target, *(a for a in argv[1:] if a != flag)]
    return argv


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit code 2 (or ``code``)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is in ``--help``)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: object, limit: int = 600) -> str:
    """``text`` with its whitespace (newlines included) collapsed, cut at ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mmfusion",
        description="ros_mmfusion: RGB-X fusion segmentation, LiDAR 3D detection and ViNT navigation for ROS 2.",
    )
    parser.add_argument("--version", action="version", version=f"ros_mmfusion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"ros_mmfusion.cli.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    for old, new in RENAMED.items():
        if new not in COMMANDS:
            continue
        module = importlib.import_module(f"ros_mmfusion.cli.{COMMANDS[new]}")
        p = sub.add_parser(old, help=f"old name of `{new}`", description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module, _renamed_to=new)
    return parser


# Offline commands that start their own ROS graph: without ROS_DOMAIN_ID each takes a free domain, so that two of them
# at once on one machine do not hear each other (launcher/fleet.own_domain_unless_set). `run` (a robot's graph) never.
OWN_DOMAIN_COMMANDS = frozenset({"eval", "closed-loop", "bench-graph", "demo"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(resolve_aliases(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return 2
    renamed_to = getattr(args, "_renamed_to", None)
    if renamed_to:
        print(f"mmfusion {args.command}: note: renamed to `mmfusion {renamed_to}`; the old name still works",
              file=sys.stderr)
    try:
        if (renamed_to or args.command) in OWN_DOMAIN_COMMANDS:
            from ros_mmfusion.launcher.fleet import own_domain_unless_set

            domain = own_domain_unless_set()
            if domain is not None:
                print(f"ROS domain {domain}: a free one on this machine, as ROS_DOMAIN_ID is unset (export "
                      f"ROS_DOMAIN_ID={domain} to watch this run in RViz or Foxglove)", flush=True)
        return int(args._module.run(args) or 0)
    except UserError as exc:
        print(f"mmfusion {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return exc.code
    except (ConfigError, MessageFormatError, OSError) as exc:  # OSError: missing file, permission, disk full ...
        print(f"mmfusion {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmfusion {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: a bug must not print a traceback at the user
        if os.environ.get("MMFUSION_DEBUG", "") not in ("", "0"):
            raise
        print(f"mmfusion {args.command}: internal error: {type(exc).__name__}: {one_line(exc, 300)}; rerun with "
              "MMFUSION_DEBUG=1 for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # run the imported module's main: subcommands raise ros_mmfusion.cli.main.UserError, not __main__.UserError
    from ros_mmfusion.cli.main import main as _main

    sys.exit(_main())
