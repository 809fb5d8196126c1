"""``mmfusion convert-checkpoint``: an upstream checkpoint (CMX, ViNT, OpenPCDet PointPillars or dynamic-pillar
CenterPoint) to our format."""
from __future__ import annotations

import argparse

HELP = "convert an upstream checkpoint (CMX .pth, ViNT .pth, OpenPCDet .pth) into a checked plain state_dict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ros_mmfusion.core.models.upstream import ARCHITECTURES

    parser.add_argument("--model", required=True, choices=list(ARCHITECTURES),
                        help="architecture (centerpoint: OpenPCDet's dynamic-pillar CenterPoint for nuScenes)")
    parser.add_argument("--in", dest="source", required=True, help="upstream checkpoint file")
    parser.add_argument("--out", required=True, help="output .pt file (a plain state_dict of our model)")
    parser.add_argument("--variant", help="variant name (default: inferred for cmx, vint_default, pointpillars_kitti, "
                        "centerpoint_pillar_nuscenes)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file (never --in)")


def run(args: argparse.Namespace) -> int:
    import torch

    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.models.upstream import convert
    from ros_mmfusion.core.outputs import OutputFile, require_file

    try:
        require_file(args.source, "--in")
    except ConfigError as exc:
        raise UserError(f"checkpoint not found: {args.source}" if "no such file" in str(exc) else str(exc)) from None
    output = OutputFile(args.out, overwrite=args.overwrite, inputs=[args.source])
    try:
        converted = convert(args.source, args.model, args.variant)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        # a readable file whose contents are not laid out like an upstream checkpoint (a pickled list, say)
        raise UserError(f"--in {args.source}: not a {args.model} checkpoint ({type(exc).__name__}: {exc})") from None
    with output as tmp:
        torch.save(converted.state, tmp)
    extra = ", ".join(f"{k}={v}" for k, v in converted.details.items())
    print(f"{args.source} -> {output.path}: {converted.architecture} {converted.variant} ({extra}); strict key "
          "check passed")
    return 0
