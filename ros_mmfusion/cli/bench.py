"""``mmfusion bench``: latency and throughput of a network through PyTorch and ONNX Runtime on this machine."""
from __future__ import annotations

import argparse
import json

HELP = "benchmark a network's latency through its backends (median/p95 ms, throughput)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="network name (cmx_mit_b0..b5, vint, vint_reduced), or a "
                        "whole 3D detection pipeline (pointpillars = pointpillars_kitti, centerpoint_pillar, "
                        "pointpillars_synthetic)")
    parser.add_argument("--backend", action="append", choices=["torch", "onnxruntime", "onnxruntime-int8", "tensorrt"],
                        help="backend to time (repeatable; default: torch and onnxruntime)")
    parser.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 1)")
    parser.add_argument("--size", help="input HxW (default: the model's)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the runtime decides)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--weights", default="", help="detection pipelines: a checkpoint (OpenPCDet .pth, state_dict "
                        "or .npz; default: random weights, so post-processing sees almost no candidates)")


def _size(text: str | None):
    from ros_mmfusion.cli.args import parse_hw

    return parse_hw(text, "--size")


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.bench import DETECTION_MODELS, bench_network
    from ros_mmfusion.core.models.registry import network

    if "tensorrt" in (args.backend or []):
        from ros_mmfusion.core.inference.tensorrt_support import tensorrt_unavailable

        if reason := tensorrt_unavailable():
            raise UserError(f"--backend tensorrt: {reason}")
    if args.model in DETECTION_MODELS:
        return run_detection(args)
    if args.weights:
        raise UserError("--weights applies to the detection pipelines only")
    spec = network(args.model)
    size = _size(args.size)
    if size is not None and spec.fixed_size and size != spec.default_size:
        raise UserError(f"{args.model} takes {spec.default_size[0]}x{spec.default_size[1]} inputs only")
    batches = args.batch or [1]
    if any(b <= 0 for b in batches) or args.runs <= 0 or args.warmup < 0 or args.threads < 0:
        raise UserError("--batch and --runs must be positive, --warmup and --threads non-negative")
    results = []
    for batch in batches:
        for backend in args.backend or ["torch", "onnxruntime"]:
            results.append(bench_network(spec, backend, batch, size, args.threads, args.warmup, args.runs))
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return 0
    print(f"{args.model} on {results[0].machine}, {results[0].threads} threads, {results[0].date}")
    print(f"{'backend':16s} {'graph':9s} {'batch':>5s} {'input':>9s} {'median ms':>10s} {'p95 ms':>8s} "
          f"{'items/s':>8s}")
    for r in results:
        print(f"{r.backend:16s} {r.graph:9s} {r.batch:5d} {r.height:4d}x{r.width:<4d} {r.median_ms:10.1f} "
              f"{r.p95_ms:8.1f} {r.throughput_fps:8.1f}")
    if any(r.graph == "deployed" for r in results):
        print("deployed: the exported graph is the exact deployment rewrite of the reference (e.g. CMX's folded "
              "decoder), tested equal to upstream's logits")
    for batch in batches:
        by = {r.backend: r for r in results if r.batch == batch}
        if {"torch", "onnxruntime"} <= set(by):
            print(f"batch {batch}: ONNX Runtime is {by['torch'].median_ms / by['onnxruntime'].median_ms:.2f}x "
                  "PyTorch eager")
        if {"onnxruntime", "onnxruntime-int8"} <= set(by):
            print(f"batch {batch}: ONNX Runtime INT8 is "
                  f"{by['onnxruntime'].median_ms / by['onnxruntime-int8'].median_ms:.2f}x ONNX Runtime fp32")
    return 0


def run_detection(args: argparse.Namespace) -> int:
    """A whole 3D detection pipeline per backend: pre-processing, encoder, backbone+head, post-processing, total."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.bench import bench_cloud, bench_detection
    from ros_mmfusion.core.detection3d.pipeline import PIPELINE_BACKENDS

    if args.batch or args.size:
        raise UserError(f"{args.model} is a detection pipeline: it takes one point cloud, no --batch or --size")
    if set(args.backend or []) - set(PIPELINE_BACKENDS):
        raise UserError(f"{args.model} runs on {' and '.join(PIPELINE_BACKENDS)} only")
    if args.runs <= 0 or args.warmup < 0 or args.threads < 0:
        raise UserError("--runs must be positive, --warmup and --threads non-negative")
    cloud = bench_cloud()
    results = [bench_detection(args.model, backend, cloud, args.threads, args.warmup, args.runs, args.weights)
               for backend in args.backend or ["torch", "onnxruntime"]]
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return 0
    r0 = results[0]
    print(f"{args.model} on {r0.machine}, {r0.threads} threads, {r0.date}; {r0.cloud}: {r0.points_in_range} points "
          f"in range, {r0.pillars} pillars; weights: {r0.weights}")
    print(f"{'backend':12s} {'pre ms':>8s} {'encoder':>8s} {'bb+head':>8s} {'post ms':>8s} {'total ms':>9s} "
          f"{'p95':>7s} {'boxes':>6s}  (medians per frame)")
    for r in results:
        print(f"{r.backend:12s} {r.preprocess_ms:8.1f} {r.encoder_ms:8.1f} {r.backbone_head_ms:8.1f} "
              f"{r.postprocess_ms:8.1f} {r.total_ms:9.1f} {r.total_p95_ms:7.1f} {r.detections:6d}")
    by = {r.backend: r for r in results}
    if {"torch", "onnxruntime"} <= set(by):
        print(f"ONNX Runtime pipeline is {by['torch'].total_ms / by['onnxruntime'].total_ms:.2f}x PyTorch eager")
    return 0
