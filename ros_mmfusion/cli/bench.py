"""``mmfusion bench-network`` (old name ``bench``): one network alone, no ROS: latency and throughput of a network
through PyTorch and ONNX Runtime on this machine (``bench-graph`` times a preset's node graph instead); with
``--int8-format``, the accuracy and speed-up of ONNX Runtime INT8 formats against fp32 on synthetic inputs."""
from __future__ import annotations

import argparse
import json

HELP = ("time one network alone through its backends, no ROS: latency (median/p95 ms) and throughput per batch "
        "(old name: bench)")


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
    parser.add_argument("--point-cloud-range", type=float, nargs=6, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                        help="detection pipelines: run the detector over this range (m; the same weights, grid of "
                        "the same pillar size, as the node's point_cloud_range), e.g. the KITTI range "
                        "0 -39.68 -3 69.12 39.68 1 for the synthetic lite package (default: the model's own)")
    parser.add_argument("--int8-format", action="append", choices=["auto", "u8s8", "u8s8-rr", "u8u8", "s8s8"],
                        help="compare ONNX Runtime INT8 in this format (repeatable; auto: this CPU's) with fp32 on "
                        "synthetic inputs: accuracy and interleaved latency (cmx_*: a trained --package; vint; "
                        "detection pipelines with --weights)")
    parser.add_argument("--package", help="--int8-format with cmx_*: segmentation model package (default: the "
                        "shipped models/cmx_b0_rgbt_synthetic_320)")
    parser.add_argument("--window", type=int, help="vint*: time a navigation step (camera frame in, localisation "
                        "and waypoints out) with a WINDOW-node localisation window, the whole network against the "
                        "split one that encodes each context frame once, interleaved (--backend onnxruntime "
                        "(default) and/or torch)")
    parser.add_argument("--frames", type=int, default=8, help="--int8-format: inputs to calibrate on, and as many "
                        "others to evaluate on")


def _size(text: str | None):
    from ros_mmfusion.cli.args import parse_hw

    return parse_hw(text, "--size")


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.bench import bench_network
    from ros_mmfusion.core.models.registry import detectors, network

    if "tensorrt" in (args.backend or []):
        from ros_mmfusion.core.inference.tensorrt_support import tensorrt_unavailable

        if reason := tensorrt_unavailable():
            raise UserError(f"--backend tensorrt: {reason}")
    if args.int8_format:
        return run_int8(args)
    if args.package:
        raise UserError("--package applies to --int8-format only")
    if "onnxruntime-int8" in (args.backend or []):
        from ros_mmfusion.core.inference.int8 import int8_plan

        family = "detection3d" if args.model in detectors() else (
            "navigation" if args.model.startswith("vint") else "segmentation")
        print(f"{int8_plan(family).message()}; timing INT8 as asked")
    if args.window is not None:
        return run_navigation_tick(args)
    if args.model in detectors():
        return run_detection(args)
    if args.weights or args.point_cloud_range:
        raise UserError("--weights and --point-cloud-range apply to the detection pipelines only")
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


def run_navigation_tick(args: argparse.Namespace) -> int:
    """A ViNT navigation step with a ``--window``-node window: whole network against the split one, per backend."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.bench import bench_navigation_tick
    from ros_mmfusion.core.models.registry import network
    from ros_mmfusion.core.navigation.artifacts import SPLIT_BACKENDS

    if not args.model.startswith("vint"):
        raise UserError(f"--window applies to the vint models only, not {args.model}")
    if args.batch or args.size or args.weights or args.point_cloud_range:
        raise UserError("--window times a navigation step: no --batch, --size, --weights or --point-cloud-range")
    if set(args.backend or []) - set(SPLIT_BACKENDS):
        raise UserError(f"--window runs on {' and '.join(SPLIT_BACKENDS)} only")
    if args.window <= 0 or args.runs <= 0 or args.warmup < 0 or args.threads < 0:
        raise UserError("--window and --runs must be positive, --warmup and --threads non-negative")
    variant = network(args.model).name
    results = [bench_navigation_tick(variant, backend, args.window, args.threads, args.warmup, args.runs)
               for backend in args.backend or ["onnxruntime"]]
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return 0
    r0 = results[0]
    print(f"{variant} navigation step, {r0.window}-node window, on {r0.cpu}, {r0.machine}, {r0.threads} threads, "
          f"{r0.date}; {r0.runs} steps, whole and split interleaved")
    print(f"{'backend':12s} {'whole ms':>9s} {'p95':>7s} {'split ms':>9s} {'p95':>7s} {'speed-up':>8s} "
          f"{'frame enc':>9s} {'goal dec':>9s}  agreement")
    for r in results:
        print(f"{r.backend:12s} {r.whole_ms:9.1f} {r.whole_p95_ms:7.1f} {r.split_ms:9.1f} {r.split_p95_ms:7.1f} "
              f"{r.speedup:7.2f}x {r.frame_encoder_ms:9.1f} {r.goal_decoder_ms:9.1f}  "
              f"{'same' if r.same_closest_nodes else 'DIFFERENT'} closest/subgoal nodes, max |diff| "
              f"{r.max_abs_diff:.1e}")
    print("whole: the network on the context repeated per node; split: only the newest frame encoded, the other "
          "frames' tokens reused (frame enc: batch 1; goal dec: goal encoder + transformer, batch = window)")
    return 0


def run_detection(args: argparse.Namespace) -> int:
    """A whole 3D detection pipeline per backend: pre-processing, encoder, backbone+head, post-processing, total."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.bench import bench_cloud, bench_detection
    from ros_mmfusion.core.detection3d.artifacts import PIPELINE_BACKENDS

    if args.batch or args.size:
        raise UserError(f"{args.model} is a detection pipeline: it takes one point cloud, no --batch or --size")
    if set(args.backend or []) - set(PIPELINE_BACKENDS):
        raise UserError(f"{args.model} runs on {' and '.join(PIPELINE_BACKENDS)} only")
    if args.runs <= 0 or args.warmup < 0 or args.threads < 0:
        raise UserError("--runs must be positive, --warmup and --threads non-negative")
    cloud = bench_cloud()
    results = [bench_detection(args.model, backend, cloud, args.threads, args.warmup, args.runs, args.weights,
                               point_cloud_range=_range(args))
               for backend in args.backend or ["torch", "onnxruntime"]]
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return 0
    r0 = results[0]
    print(f"{args.model} over {r0.point_cloud_range} ({r0.grid}) on {r0.machine}, {r0.threads} threads, {r0.date}; "
          f"{r0.cloud}: {r0.points_in_range} points in range, {r0.pillars} pillars; weights: {r0.weights}")
    print(f"{'backend':12s} {'pre ms':>8s} {'encoder':>8s} {'bb+head':>8s} {'post ms':>8s} {'total ms':>9s} "
          f"{'p95':>7s} {'boxes':>6s}  (medians per frame)")
    for r in results:
        print(f"{r.backend:12s} {r.preprocess_ms:8.1f} {r.encoder_ms:8.1f} {r.backbone_head_ms:8.1f} "
              f"{r.postprocess_ms:8.1f} {r.total_ms:9.1f} {r.total_p95_ms:7.1f} {r.detections:6d}")
    by = {r.backend: r for r in results}
    if {"torch", "onnxruntime"} <= set(by):
        print(f"ONNX Runtime pipeline is {by['torch'].total_ms / by['onnxruntime'].total_ms:.2f}x PyTorch eager")
    if {"onnxruntime", "onnxruntime-int8"} <= set(by):
        print(f"ONNX Runtime INT8 pipeline is {by['onnxruntime'].total_ms / by['onnxruntime-int8'].total_ms:.2f}x "
              "ONNX Runtime fp32")
    return 0


def _range(args: argparse.Namespace) -> tuple[float, ...] | None:
    """``--point-cloud-range`` checked (``with_range``'s rules: extents in multiples of 8 pillars), or None."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.detection3d.pipeline import with_range
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.models.registry import detector

    if not args.point_cloud_range:
        return None
    try:
        return with_range(detector(args.model), args.point_cloud_range).point_cloud_range
    except ConfigError as exc:
        raise UserError(f"--point-cloud-range: {exc}") from None


def run_int8(args: argparse.Namespace) -> int:
    """INT8 formats against fp32 on synthetic inputs: one row per format (accuracy, interleaved latency)."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.bench import bench_int8_formats
    from ros_mmfusion.core.inference.int8 import cpu_int8_settings
    from ros_mmfusion.core.models.registry import detectors

    if not (args.model.startswith("cmx") or args.model.startswith("vint") or args.model in detectors()):
        raise UserError(f"--int8-format: no INT8 comparison for {args.model}")
    if args.backend or args.batch:
        raise UserError("--int8-format compares ONNX Runtime fp32 and INT8 at batch 1: no --backend or --batch")
    if args.package and not args.model.startswith("cmx"):
        raise UserError("--package applies to the cmx_* models only")
    if args.frames <= 0 or args.runs <= 0 or args.threads < 0:
        raise UserError("--frames and --runs must be positive, --threads non-negative")
    size = _size(args.size)
    if size is not None and not args.model.startswith("cmx"):
        raise UserError("--size applies to the cmx_* models only")
    if args.point_cloud_range and args.model not in detectors():
        raise UserError("--point-cloud-range applies to the detection pipelines only")
    formats = list(dict.fromkeys(cpu_int8_settings().label if f == "auto" else f for f in args.int8_format))
    results = bench_int8_formats(args.model, formats, size, args.threads, args.runs, args.frames,
                                 args.package, args.weights, point_cloud_range=_range(args))
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return 0
    r0 = results[0]
    threads = f"{r0.threads} threads" if r0.threads else "threads: the runtime's choice"
    print(f"{args.model} INT8 vs fp32 ONNX Runtime on {r0.machine} ({r0.cpu_isa}), {threads}, {r0.date}")
    print(f"{r0.inputs}; {r0.runs} interleaved runs each")
    print(f"{'format':9s} {'fp32 ms':>9s} {'int8 ms':>9s} {'speed-up':>9s}  accuracy")
    for r in results:
        print(f"{r.format:9s} {r.fp32_ms:9.1f} {r.int8_ms:9.1f} {r.speedup:8.2f}x  {_accuracy(r.accuracy)}")
    print(f"this CPU: {r0.plan}")
    return 0


def _accuracy(a: dict) -> str:
    """The comparison's headline figures, whichever model family's report ``a`` is."""
    if "argmax_agreement" in a:
        miou = f", mIoU {a['miou_fp32']:.4f} -> {a['miou_int8']:.4f}" if a.get("miou_fp32") is not None else ""
        return (f"argmax agreement {100 * a['argmax_agreement']:.2f} %, logits relative RMSE "
                f"{100 * a['logits_relative_rmse']:.2f} %{miou}")
    if "waypoint_error_mean_m" in a:
        return (f"distance |error| max {a['distance_abs_error_max']:.4f}, waypoint error mean "
                f"{1e3 * a['waypoint_error_mean_m']:.2f} / max {1e3 * a['waypoint_error_max_m']:.2f} mm")
    return (f"confident boxes matched {100 * a['confident_recall']:.1f} % of {a['confident_fp32']}, "
            f"recall {100 * a['recall']:.1f} %, cls relative RMSE {100 * a['head_relative_rmse']['cls_preds']:.2f} %")
