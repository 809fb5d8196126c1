"""CMX's exported graphs on ONNX Runtime (CPU): argmax agreement and interleaved latency, optionally a profile.

    python tools/cmx_graph_bench.py [--package models/cmx_b0_rgbt_synthetic_320] [--size 480x640] [--threads 2]
        [--runs 9] [--frames 4] [--baseline OLD.onnx ...] [--profile 3]

Exports the deployed network twice at ``--size``: the portable graph (standard opset-17 operators: TensorRT, INT8)
and the ONNX Runtime graph (its fused ``com.microsoft.MultiHeadAttention``, what the ``onnxruntime`` backend runs);
``--baseline`` adds ONNX files exported elsewhere (e.g. by an older checkout) with the same inputs and output. The
first graph (the first baseline, else the portable graph) is the reference: each other graph's argmax agreement and
largest |logit difference| against it on ``--frames`` frames of the synthetic world (urban_day, urban_night, fog)
and one pair of random inputs. Latency: medians of ``--runs`` calls per graph, the graphs alternating call by call
so that load from other processes falls on all alike. Without ``--package``: the random weights of
``mmfusion bench-network --model cmx_mit_b0`` (40 classes, decoder width 512, seed 0). ``--profile N``: ONNX
Runtime's profiler over N runs of the last graph, milliseconds per operator type and per block (both branches).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

AXES = {0: "batch", 2: "height", 3: "width"}


def _block(path: str) -> str:
    """The model part an ONNX node name (a module path) belongs to, both branches together."""
    m = re.search(r"/backbone/(?:extra_)?block(\d)\.\d+/(attn|mlp)?", path)
    if m:
        return f"stage {m.group(1)} {m.group(2) or 'norms, residuals'}"
    m = re.search(r"/backbone/(?:extra_)?(patch_embed|norm)(\d)", path)
    if m:
        return f"stage {m.group(2)} {'patch embedding' if m.group(1) == 'patch_embed' else 'output norm'}"
    m = re.search(r"/backbone/(FRM|FFM)s\.(\d)", path)
    if m:
        return f"stage {int(m.group(2)) + 1} {m.group(1)}"
    return "decoder" if "decode_head" in path else "final resize, layout, other"


def profile_table(onnx_path: Path, feed: dict, threads: int, runs: int, workdir: Path) -> str:
    """Markdown tables of ONNX Runtime's profile of ``runs`` runs: per operator type and per block."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    optimized = workdir / "optimized.onnx"
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling, options.profile_file_prefix = True, str(workdir / "profile")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())

    # fused nodes lose their module path: take it from the nearest tensor or producer that has one
    graph = onnx.load(str(optimized), load_external_data=False).graph
    nodes = {n.name: n for n in graph.node}
    producer = {out: n for n in graph.node for out in n.output}

    def path_of(name: str, depth: int = 0) -> str:
        node = nodes.get(name)
        if "/" in name or node is None or depth > 8:
            return name
        for tensor in (*node.output, *node.input):
            if tensor.startswith("/"):
                return tensor
        for tensor in node.input:
            if tensor in producer:
                found = path_of(producer[tensor].name, depth + 1)
                if found.startswith("/"):
                    return found
        return name

    per_op: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    per_block: collections.Counter = collections.Counter()
    block_ops: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        op, block = e["args"]["op_name"], _block(path_of(e["name"][:-len("_kernel_time")]))
        per_op[op] += e["dur"]
        count[op] += 1
        per_block[block] += e["dur"]
        block_ops[block][op] += e["dur"]
    total = sum(per_op.values())
    lines = [f"kernel time per run {total / runs / 1e3:.1f} ms", "", "| operator | ms/run | share | nodes |",
             "|---|---|---|---|"]
    lines += [f"| {op} | {d / runs / 1e3:.1f} | {100 * d / total:.1f} % | {count[op] // runs} |"
              for op, d in per_op.most_common() if d / total >= 0.002]
    lines += ["", "| block (both branches) | ms/run | share | main operators |", "|---|---|---|---|"]
    for block, d in per_block.most_common():
        ops = ", ".join(f"{op} {100 * t / d:.0f} %" for op, t in block_ops[block].most_common(3))
        lines.append(f"| {block} | {d / runs / 1e3:.1f} | {100 * d / total:.1f} % | {ops} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", default="", help="a segmentation model package (default: random weights)")
    parser.add_argument("--size", default="480x640", help="HEIGHTxWIDTH")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--baseline", action="append", default=[], help="an ONNX file to compare as well")
    parser.add_argument("--profile", type=int, default=0, help="profile the last graph over this many runs")
    args = parser.parse_args()
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"cmx_graph_bench: error: --size {args.size!r}: expected HEIGHTxWIDTH", file=sys.stderr)
        return 2
    for path in args.baseline:
        if not Path(path).is_file():
            print(f"cmx_graph_bench: error: --baseline {path}: no such file", file=sys.stderr)
            return 2

    import onnxruntime as ort
    import torch

    from ros_mmfusion.core.bench import machine
    from ros_mmfusion.core.inference.cpu_features import cpu_isa
    from ros_mmfusion.core.models.cmx import build_cmx, fold_for_inference
    from ros_mmfusion.core.onnx_export import export_onnx
    from ros_mmfusion.core.segmentation.artifacts import DEFAULT_PACKAGE, build_module, load_package
    from ros_mmfusion.core.segmentation.quantize import feeds_of, frames_from_simulation

    if args.package:
        spec = load_package(args.package)
        model = build_module(spec, deploy=False)
    else:
        torch.manual_seed(0)
        model = build_cmx("cmx_mit_b0", num_classes=40).eval()
        spec = load_package(DEFAULT_PACKAGE)  # only for the synthetic frames' encoding
    feeds = feeds_of(dataclasses.replace(spec, input_size=(h, w)), frames_from_simulation(
        dataclasses.replace(spec, input_size=(h, w)), count=args.frames)) if args.frames else []
    rng = np.random.default_rng(0)
    feeds.append({name: rng.standard_normal((1, 3, h, w), dtype=np.float32) for name in ("rgb", "x")})

    with tempfile.TemporaryDirectory(prefix="cmx_graph_bench_") as tmp:
        graphs = {f"baseline {Path(p).name}": Path(p) for p in args.baseline}
        example = (torch.zeros(1, 3, h, w), torch.zeros(1, 3, h, w))
        for name, onnxruntime in (("portable", False), ("onnxruntime", True)):
            graphs[name] = export_onnx(fold_for_inference(model, onnxruntime=onnxruntime), example,
                                       Path(tmp) / f"{name}.onnx", ["rgb", "x"], ["logits"],
                                       {n: AXES for n in ("rgb", "x", "logits")})
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        sessions = {name: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                    for name, p in graphs.items()}
        names = list(sessions)
        reference = [sessions[names[0]].run(None, f)[0] for f in feeds]
        rows = []
        for name in names:
            outs = [sessions[name].run(None, f)[0] for f in feeds]
            agree = np.mean([np.mean(a.argmax(1) == b.argmax(1)) for a, b in zip(reference[:-1], outs[:-1],
                                                                                  strict=True)] or [np.nan])
            agree_random = np.mean(reference[-1].argmax(1) == outs[-1].argmax(1))
            diff = max(float(np.abs(a - b).max()) for a, b in zip(reference, outs, strict=True))
            rows.append([name, agree, agree_random, diff])
        times = np.empty((args.runs, len(names)))
        for s in sessions.values():
            s.run(None, feeds[0])
        for i in range(args.runs):
            for j, name in enumerate(names):
                started = time.perf_counter()
                sessions[name].run(None, feeds[0])
                times[i, j] = (time.perf_counter() - started) * 1e3
        medians = np.median(times, axis=0)
        print(f"# {machine()}, {cpu_isa()}, ONNX Runtime {ort.__version__}, {args.threads} threads, {h}x{w}, "
              f"weights: {args.package or 'random (seed 0, 40 classes, decoder 512)'}, {args.runs} interleaved runs")
        print(f"| graph | argmax agreement vs {names[0]} ({args.frames} synthetic frames) | same, random input "
              "| max abs logit diff | median ms | vs reference |\n|---|---|---|---|---|---|")
        for (name, agree, agree_random, diff), median in zip(rows, medians, strict=True):
            print(f"| {name} | {100 * agree:.4f} % | {100 * agree_random:.4f} % | {diff:.2g} | {median:.1f} | "
                  f"{medians[0] / median:.2f}x |")
        if args.profile:
            print()
            print(profile_table(graphs[names[-1]], feeds[0], args.threads, args.profile, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
