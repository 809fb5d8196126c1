"""``mmfusion convert-checkpoint``: an upstream checkpoint (CMX, ViNT, OpenPCDet PointPillars) to our format."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "convert an upstream checkpoint (CMX .pth, ViNT .pth, OpenPCDet .pth) into a checked plain state_dict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=["cmx", "vint", "pointpillars"], help="architecture")
    parser.add_argument("--in", dest="source", required=True, help="upstream checkpoint file")
    parser.add_argument("--out", required=True, help="output .pt file (a plain state_dict of our model)")
    parser.add_argument("--variant", help="variant name (default: inferred for cmx, vint_default, pointpillars_kitti)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    import torch

    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.models.checkpoints import convert

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    if Path(args.source).resolve() == out.resolve():
        raise UserError("--out must differ from --in (the upstream file is never overwritten)")
    converted = convert(args.source, args.model, args.variant)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(converted.state, tmp)
    tmp.replace(out)
    extra = ", ".join(f"{k}={v}" for k, v in converted.details.items())
    print(f"{args.source} -> {out}: {converted.architecture} {converted.variant} ({extra}); strict key check passed")
    return 0
