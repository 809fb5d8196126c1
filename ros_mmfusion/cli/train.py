"""``mmfusion train segmentation``: train default weights on the synthetic world and write a model package."""
from __future__ import annotations

import argparse

HELP = "train a model on the synthetic world and write a model package (model.yaml + weights.pt + metrics.json)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ros_mmfusion.cli.args import add_overwrite

    parser.add_argument("task", choices=["segmentation"], help="what to train")
    parser.add_argument("--out", required=True, help="model package directory to write")
    parser.add_argument("--variant", default="cmx_mit_b0")
    parser.add_argument("--x-modality", default="thermal", choices=["thermal", "depth", "depth_hha"])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", default="160x120", help="training resolution WxH (each side 32..8192)")
    parser.add_argument("--frames-per-seed", type=int, default=40)
    parser.add_argument("--decoder-embed-dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (>= 1)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda needs a CUDA GPU and torch")
    add_overwrite(parser, "the model package files (model.yaml, weights.pt, metrics.json) an earlier "
                          "`mmfusion train` wrote into --out; nothing else is ever touched")


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.core.outputs import OutputDirectory
    from ros_mmfusion.core.segmentation.training import PACKAGE_FILES, TrainConfig, train
    from ros_mmfusion.core.sim import parse_size

    width, height = parse_size(args.size)
    x_params = {"window_k": [263.0, 318.0], "kelvin_per_count": 0.01} if args.x_modality == "thermal" else {}
    cfg = TrainConfig(variant=args.variant, decoder_embed_dim=args.decoder_embed_dim, width=width, height=height,
                      iterations=args.iterations, batch=args.batch, frames_per_seed=args.frames_per_seed,
                      x_modality=args.x_modality, x_params=x_params, threads=args.threads, device=args.device)
    cfg.check()  # every setting and --out are checked before the (long) training starts
    output = OutputDirectory(args.out, "train", overwrite=args.overwrite, writes=PACKAGE_FILES, what="model package")
    with output as stage:
        train(cfg, stage, log=lambda line: print(line, flush=True))
    print(f"model package: {output.path}")
    return 0
