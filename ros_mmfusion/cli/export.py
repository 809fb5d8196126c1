"""``mmfusion export``: write a registered network (or a segmentation model package) as an ONNX file."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "export a network to ONNX (opset 17, dynamic batch; dynamic image size where the network allows it)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="network name from the registry (see `mmfusion bench-network --help`), or a "
                             "segmentation model package directory (model.yaml + weights)")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument("--weights", help="state_dict (.pt/.pth) to load into a registry network (default: random "
                                          "weights, for timing and graph checks only)")
    parser.add_argument("--size", help="example input HxW, each side 16..8192 (default: the network's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def _export_registry(args: argparse.Namespace, out: Path) -> str:
    import torch

    from ros_mmfusion.cli.args import parse_hw
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.models.checkpoints import load_state, load_weights_file
    from ros_mmfusion.core.models.registry import network
    from ros_mmfusion.core.onnx_export import export_onnx

    spec = network(args.model)
    size = parse_hw(args.size) or spec.default_size
    if spec.fixed_size and size != spec.default_size:
        raise UserError(f"{args.model} takes {spec.default_size[0]}x{spec.default_size[1]} inputs only")
    torch.manual_seed(0)
    module: Any = spec.build()
    if args.weights:
        state = load_weights_file(args.weights)
        load_state(module, state.get("state_dict", state))  # strict: a ConfigError names every mismatched key
    exported = spec.deploy(module) if spec.deploy else module  # the exact deployment rewrite, where one exists
    export_onnx(exported, spec.example(1, size), out, spec.input_names, spec.output_names, spec.dynamic_axes)
    return f"{args.model} ({'weights ' + args.weights if args.weights else 'random weights'}, example input " \
           f"{size[0]}x{size[1]})"


def _export_package(args: argparse.Namespace, out: Path) -> str:
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.segmentation.artifacts import export_model
    from ros_mmfusion.core.segmentation.pipeline import SegmentationModelSpec

    if args.weights or args.size:
        raise UserError("--weights and --size come from the model package's model.yaml; leave them out")
    spec = SegmentationModelSpec.from_package(args.model)
    export_model(spec, out)
    return f"segmentation package {args.model} ({spec.variant}, {spec.num_classes} classes)"


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.args import parse_hw
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.onnx_export import op_types
    from ros_mmfusion.core.outputs import OutputFile, require_file

    out = Path(args.out)
    if out.suffix != ".onnx":
        raise UserError(f"--out should name a .onnx file, got {out}")
    parse_hw(args.size)  # a bad --size is an error before any work
    if args.weights:
        require_file(args.weights, "--weights")
    with OutputFile(out, overwrite=args.overwrite, inputs=[args.weights] if args.weights else []) as tmp:
        what = _export_package(args, tmp) if Path(args.model).is_dir() else _export_registry(args, tmp)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {what}; ops: {' '.join(sorted(op_types(out)))}")
    return 0
