"""``mmfusion build-engine``: build (only) the inference artifacts into the engine cache, so that nodes start without
building: a TensorRT engine (``--target tensorrt``, the default; needs TensorRT and a GPU) or, for ``--precision int8``
on CPU machines, ONNX Runtime's INT8 (QDQ) model (``--target onnxruntime``).

Either one ONNX file (``--onnx``; with a segmentation ``--package`` its INT8 accuracy against fp32 is reported on
frames of the calibration source that were not used for calibrating), or every graph of a task's model as its node
runs it (``--task``): ``segmentation`` (the package's network at its input size), ``detection3d`` (the pillar encoder
with its pillar-count profile and the backbone+head), ``navigation`` (ViNT with a batch profile over ``--window``
topomap nodes). A file is first checked against TensorRT's ONNX operator table (``core/inference/tensorrt_ops.py``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "build TensorRT engines (or ONNX Runtime INT8 models) of an ONNX file or a task's graphs into the engine cache"
TASKS = ("segmentation", "detection3d", "navigation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", help="ONNX file (see `mmfusion export`); or --task")
    parser.add_argument("--task", choices=TASKS, help="every graph of this task's model (--package, or --model for "
                        "detection3d/navigation) as its node runs it")
    parser.add_argument("--model", default="", help="--task detection3d: detector name; navigation: ViNT variant "
                        "(default: the node's default)")
    parser.add_argument("--weights", default="", help="--task detection3d/navigation without --package: weights")
    parser.add_argument("--window", type=int, default=9, help="--task navigation: topomap nodes per batch, the "
                        "engine's maximum batch (2 * radius + 1)")
    parser.add_argument("--trt-version", default="10", help="TensorRT version whose ONNX operator table the graphs "
                        "are checked against (10, 8.6)")
    parser.add_argument("--precision", required=True, choices=["fp32", "fp16", "int8"])
    parser.add_argument("--target", choices=["tensorrt", "onnxruntime"], default="tensorrt",
                        help="tensorrt: a TensorRT engine; onnxruntime: the CPU INT8 (QDQ) model (int8 only)")
    parser.add_argument("--quantize-from", "--calib", dest="calib", metavar="BAG|sim",
                        help="INT8 quantization samples: a rosbag2 directory, or 'sim' for the synthetic world "
                             "(segmentation models; needs --package); --calib is its old name")
    parser.add_argument("--package", help="model package (model.yaml); with --onnx a segmentation package describing "
                                          "the file's inputs: X encoder and input size")
    parser.add_argument("--frames", type=int, default=16,
                        help="quantization sample frames (as many again are evaluated)")
    parser.add_argument("--shape", action="append", default=[],
                        help="input profile NAME=1x3x480x640 (fixed) or NAME=MIN:OPT:MAX (repeatable; TensorRT)")
    parser.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT workspace memory-pool limit")
    parser.add_argument("--cache-dir", help="where artifacts go (default: beside the ONNX file); a directory, "
                        "created if absent (the engine cache writes atomically and only its own files)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache holds a valid artifact")
    parser.add_argument("--threads", type=int, default=0, help="threads for the accuracy/latency check")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _shapes(items: list[str]) -> dict[str, object]:
    from ros_mmfusion.cli.main import UserError

    out: dict[str, object] = {}
    for item in items:
        name, _, text = item.partition("=")
        try:
            shapes = [tuple(int(d) for d in part.lower().split("x")) for part in text.split(":")]
        except ValueError:
            raise UserError(f"--shape {item!r}: expected NAME=1x3x480x640 or NAME=MIN:OPT:MAX") from None
        if not name or len(shapes) not in (1, 3):
            raise UserError(f"--shape {item!r}: expected NAME=1x3x480x640 or NAME=MIN:OPT:MAX")
        out[name] = shapes[0] if len(shapes) == 1 else tuple(shapes)
    return out


def _frames(args: argparse.Namespace, spec):
    """(calibration frames, evaluation frames): alternate frames of the source, so evaluation is on unseen ones."""
    from ros_mmfusion.core.segmentation.quantize import frames_from

    frames = frames_from(spec, args.calib, count=2 * args.frames)
    calib, held_out = frames[0::2], frames[1::2]
    return calib, held_out or calib


def _onnxruntime_int8(args: argparse.Namespace, onnx: Path, spec) -> dict:
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.inference.engine_cache import EngineCache
    from ros_mmfusion.core.inference.int8 import quantized_model
    from ros_mmfusion.core.segmentation.pipeline import postprocess
    from ros_mmfusion.core.segmentation.quantize import compare_int8, describe_source, feeds_of

    if args.precision != "int8":
        raise UserError("--target onnxruntime builds the INT8 model only; fp32/fp16 ONNX files run as they are")
    if spec is None:
        raise UserError("INT8 quantization needs --package (how the model's inputs are made) and "
                        "--quantize-from BAG|sim")
    calib, held_out = _frames(args, spec)
    source = describe_source(args.calib, calib)
    result = quantized_model(onnx, lambda: feeds_of(spec, calib), cache=EngineCache(args.cache_dir),
                             force=args.force or args.calib is not None,
                             notes_of=lambda: {"calibration": source})
    report = compare_int8(onnx, result.artifact, feeds_of(spec, held_out), labels=[f.labels for f in held_out],
                          num_classes=spec.num_classes, ignore_index=spec.ignore_index, threads=args.threads,
                          label_of=lambda out, size: postprocess(out[0], size).labels)
    report.notes = {"calibration": source, "evaluation": describe_source(args.calib, held_out)}
    return {"artifact": str(result.artifact), "status": result.status, "reason": result.reason,
            "target": "onnxruntime-int8", "accuracy": report.as_dict(), "summary": report.summary()}


def _tensorrt(args: argparse.Namespace, onnx: Path, spec) -> dict:
    from ros_mmfusion.core.inference.engine_cache import EngineCache
    from ros_mmfusion.core.inference.tensorrt_backend import TensorRTBackend
    from ros_mmfusion.core.segmentation.quantize import feeds_of

    shapes = _shapes(args.shape)
    if spec is not None:
        for name in ("rgb", "x"):
            shapes.setdefault(name, (1, 3, *spec.input_size))
    samples = None
    if args.precision == "int8" and spec is not None and args.calib:
        samples = lambda: feeds_of(spec, _frames(args, spec)[0])  # noqa: E731
    backend = TensorRTBackend(onnx, args.precision, shapes, workspace_bytes=args.workspace_mb << 20,
                              quantization_samples=samples, cache=EngineCache(args.cache_dir),
                              force_rebuild=args.force)
    return {"artifact": str(backend.artifact), "target": "tensorrt", "status": "ready", "summary": backend.info.detail}


def check_onnx(path: Path, spec) -> None:
    """``path`` must be a readable, valid ONNX model; with a segmentation model package (``spec``) its inputs must be
    the package network's (``rgb``, ``x``). UserError (one line) otherwise, before any work."""
    import onnx

    from ros_mmfusion.cli.main import UserError, one_line
    from ros_mmfusion.core.segmentation.pipeline import INPUTS

    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf and the checker raise many kinds for a broken file
        raise UserError(f"--onnx {path}: not a valid ONNX model (empty, truncated or another format?): "
                        f"{type(exc).__name__}: {one_line(exc, 200)}") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if spec is not None and sorted(inputs) != sorted(INPUTS):
        raise UserError(f"--onnx {path} takes inputs {', '.join(inputs) or '(none)'}, but the --package network "
                        f"takes {', '.join(INPUTS)}: export the package with `mmfusion export --model PACKAGE_DIR`")


def check_parser(path: Path, version: str) -> None:
    """UserError naming what TensorRT ``version``'s ONNX parser would reject in ``path`` (``tensorrt_ops.py``)."""
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.inference.tensorrt_ops import check_parser_support

    try:
        check_parser_support(path, version)
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def _task(args: argparse.Namespace) -> dict:
    """Every graph of ``args.task``'s model through the builders its node uses (engines into the cache)."""
    cache_dir = args.cache_dir or None
    calibration = args.calib if args.precision == "int8" else None
    if args.task == "segmentation":
        from ros_mmfusion.core.segmentation.artifacts import build_backend, int8_onnx_for, load_package, onnx_for

        spec = load_package(args.package)
        graphs = [onnx_for(spec)]
        if args.target == "onnxruntime":
            return _int8_only(args, [int8_onnx_for(spec, calibration, args.frames, force=args.force)])
        _check_graphs(args, graphs)
        details = [build_backend(spec, "tensorrt", precision=args.precision, cache_dir=cache_dir).info.detail]
    elif args.task == "detection3d":
        from ros_mmfusion.core.detection3d.artifacts import build_backends, detector_spec, int8_onnx_files, onnx_files

        params = {"model_package": args.package or "", "model": args.model, "weights": args.weights}
        spec = detector_spec(params, "--task detection3d")
        graphs = list(onnx_files(spec))
        if args.target == "onnxruntime":
            from ros_mmfusion.core.inference.int8 import is_quantized

            # the pillar encoder stays fp32 on the CPU (core/detection3d/quantize.py): only INT8 models are listed
            return _int8_only(args, [f for f in int8_onnx_files(spec, count=args.frames, force=args.force,
                                                                source=calibration) if is_quantized(f)])
        _check_graphs(args, graphs)
        backends = build_backends(spec, "tensorrt", precision=args.precision, cache_dir=cache_dir,
                                  calibration=calibration)
        details = [backends.encoder.info.detail, backends.backbone_head.info.detail]
    else:
        from ros_mmfusion.core.navigation.artifacts import build_backend, navigation_model, vint_int8_onnx, vint_onnx

        model = navigation_model({"model_package": args.package or "", "variant": args.model,
                                  "weights": args.weights}, "--task navigation")
        graphs = [vint_onnx(model.variant, model.weights)]
        if args.target == "onnxruntime":
            return _int8_only(args, [vint_int8_onnx(model.variant, model.weights, count=args.frames,
                                                    force=args.force, source=calibration)])
        _check_graphs(args, graphs)
        details = [build_backend("tensorrt", model.variant, model.weights, precision=args.precision,
                                 cache_dir=cache_dir, window=args.window, calibration=calibration).info.detail]
    return {"target": "tensorrt", "artifact": ", ".join(str(g) for g in graphs), "status": "ready",
            "summary": "\n".join(details)}


def _check_graphs(args: argparse.Namespace, graphs: list[Path]) -> None:
    for graph in graphs:
        check_parser(graph, args.trt_version)


def _int8_only(args: argparse.Namespace, artifacts: list[Path]) -> dict:
    from ros_mmfusion.cli.main import UserError

    if args.precision != "int8":
        raise UserError("--target onnxruntime builds the INT8 models only; fp32/fp16 ONNX files run as they are")
    return {"target": "onnxruntime-int8", "artifact": ", ".join(str(a) for a in artifacts), "status": "ready",
            "summary": f"{len(artifacts)} INT8 (QDQ) model(s) in this CPU's format in the engine cache"}


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.inference.tensorrt_support import tensorrt_unavailable
    from ros_mmfusion.core.outputs import check_directory_option, require_file
    from ros_mmfusion.core.segmentation.pipeline import SegmentationModelSpec

    if bool(args.onnx) == bool(args.task):
        raise UserError("give one of --onnx FILE and --task " + "|".join(TASKS))
    if args.task == "segmentation" and not args.package:
        raise UserError("--task segmentation needs --package (the segmentation model package)")
    if not 0 < args.frames <= 1000 or not 0 < args.workspace_mb <= 1 << 20 or args.threads < 0 \
            or not 0 < args.window <= 1024:
        raise UserError("--frames must be in 1..1000, --workspace-mb in 1..1048576, --window in 1..1024, "
                        "--threads >= 0")
    if args.cache_dir:
        check_directory_option(args.cache_dir, "--cache-dir")
    if args.calib and args.calib != "sim" and not Path(args.calib).is_dir():
        raise UserError(f"--quantize-from {args.calib}: not a rosbag2 directory (or 'sim')")
    if args.task:
        if args.target == "tensorrt":
            reason = tensorrt_unavailable()
            if reason:
                raise UserError(f"{reason}; no engine was built for --task {args.task}.")
        result = _task(args)
        return _print(args, result)
    onnx = Path(args.onnx)
    if not onnx.exists():
        raise UserError(f"ONNX file not found: {onnx}")
    require_file(onnx, "--onnx")
    spec = SegmentationModelSpec.from_package(args.package) if args.package else None
    check_onnx(onnx, spec)
    if args.target == "tensorrt":
        check_parser(onnx, args.trt_version)
        reason = tensorrt_unavailable()
        if reason:
            hint = " For the CPU INT8 model add --target onnxruntime." if args.precision == "int8" else ""
            raise UserError(f"{reason}; no engine was built.{hint}")
        result = _tensorrt(args, onnx, spec)
    else:
        result = _onnxruntime_int8(args, onnx, spec)
    return _print(args, result)


def _print(args: argparse.Namespace, result: dict) -> int:
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        reason = f": {result['reason']}" if result.get("reason") else ""
        print(f"{result['target']}: {result['artifact']} ({result['status']}{reason})")
        print(result["summary"])
    return 0
