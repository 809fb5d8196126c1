#!/usr/bin/env python3
"""The GPU check: the three tasks' networks on CUDA (ONNX Runtime's CUDA provider and PyTorch CUDA; fp32 and fp16)
against ONNX Runtime on the CPU, with latency and throughput per model, as JSON and a markdown table for
docs/benchmarks.md (``ros_mmfusion/core/inference/gpu_check.py``).

    python3 tools/gpu_check.py --out DIR [--runs 20] [--window 9] [--pillars 12000]
    python3 tools/gpu_check.py --dry-run --tiny --out DIR      # the same code on the CPU (make test runs this)

Self-contained: needs the repository (run from its root, or with it on PYTHONPATH) and numpy, torch, onnx and
onnxruntime (onnxruntime-gpu for the CUDA-provider rows; without it those rows are SKIP with the reason); no ROS.
Exit 0 when no row failed, 1 when one did, 2 for bad arguments or no CUDA device.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for gpu_check.json and gpu_check.md")
    parser.add_argument("--work", help="directory for ONNX files and converted copies (default: OUT/work)")
    parser.add_argument("--dry-run", action="store_true", help="run on the CPU (CPU providers, fp32 only)")
    parser.add_argument("--tiny", action="store_true", help="tiny inputs (CMX 64x96, a 64x64-pillar range, "
                        "vint_reduced)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per row (median)")
    parser.add_argument("--window", type=int, default=9, help="ViNT batch: topomap nodes per localisation window")
    parser.add_argument("--pillars", type=int, default=12000, help="pillars per pillar-encoder run")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of the runtimes (0: they choose)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.window < 1 or args.pillars < 1:
        print("gpu_check: error: --runs, --window and --pillars must be >= 1", file=sys.stderr)
        return 2
    from ros_mmfusion.core.errors import ConfigError
    from ros_mmfusion.core.inference.gpu_check import run_check, write_report

    try:
        report = run_check(args.work or Path(args.out) / "work", dry_run=args.dry_run, tiny=args.tiny,
                           runs=args.runs, window=args.window, pillars=args.pillars, threads=args.threads,
                           precisions=("fp32",) if args.dry_run else ("fp32", "fp16"))
    except ConfigError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2
    json_path, md_path = write_report(report, args.out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
