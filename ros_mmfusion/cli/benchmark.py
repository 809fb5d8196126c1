"""``mmfusion bench-graph`` (old name ``benchmark``): throughput and latency of a preset's ROS node graph with inputs
preloaded in memory (``bench-network`` times one network alone instead).

The input frames of the evaluated nodes are read from the bag once (raw CDR, grouped by header stamp) and published
from a thread at fixed rates, each frame restamped with the wall clock at publication; the nodes run in this process
(one executor), with a tap recording each output's stamp and arrival. Per rate: latency (p50/p95/p99/max), output
rate, dropped frames, CPU (percent of one core, this process) and resident memory, over ``--repeats`` runs with the
best and worst (by output rate) dropped when there are at least three. Then a peak-throughput search: the highest
input rate whose output rate is within ``--tolerance`` of it with under 5% of frames lost (bisection). Then, the graph
idle, each node's network alone on the last frame it ran (``MmfusionNode.network_probe``), and the graph's p50 and
peak relative to the main node's network timed right after each run (a few calls with the graph idle, as far apart
as the run's frames, since this VM's speed drifts between minutes and a call after an idle pause is slower): the
overhead of the node and the graph, measured in the same run.
The result names the network each node ran (weights, package, sha256, backend, hardware), read from the nodes'
``/diagnostics`` as ``mmfusion eval`` reads it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

HELP = ("time a preset's ROS node graph: publish preloaded bag frames at fixed rates, find its peak throughput "
        "(JSON + Markdown; old name: benchmark)")

MAX_LOSS = 0.05


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="segmentation")
    parser.add_argument("--bag", required=True, help="rosbag2 directory the input frames are taken from")
    parser.add_argument("--out", default="benchmark_out", help="directory for benchmark.json and benchmark.md "
                        "(refused if not empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the benchmark.json/.md an earlier mmfusion run wrote into --out (listed in its "
                             ".mmfusion-output); nothing else there is ever touched")
    parser.add_argument("--rates", default="10,30,60", help="fixed input rates in Hz, comma-separated")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of publishing per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per rate (>= 3 drops the best and worst)")
    parser.add_argument("--tolerance", type=float, default=0.1,
                        help="peak search: output rate must be within this fraction of the input rate")
    parser.add_argument("--peak-steps", type=int, default=5, help="bisection steps of the peak search (0: none)")
    parser.add_argument("--max-frames", type=int, default=200, help="frames preloaded from the bag (memory bound)")


def _parse_rates(text: str) -> list[float]:
    from ros_mmfusion.cli.main import UserError

    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise UserError(f"--rates expects numbers separated by commas, got {text!r}") from None
    if not rates or any(not 0.1 <= r <= 1000 for r in rates):
        raise UserError(f"--rates must be in [0.1, 1000] Hz, got {text!r}")
    return rates


def preload(bag: Path, topics: list[str], max_frames: int) -> list[list[tuple[str, bytes]]]:
    """Frames of ``topics`` from ``bag``: messages grouped by header stamp (in log order), at most ``max_frames``."""
    from ros_mmfusion.core.bagio import BagSource, read_header_stamp, starts_with_header

    frames: dict[int, list[tuple[str, bytes]]] = {}
    with BagSource(bag) as source:
        for message in source.messages(topics):
            if not starts_with_header(message.msgtype):
                continue
            stamp = read_header_stamp(message.data)
            if stamp not in frames and len(frames) >= max_frames:
                break
            frames.setdefault(stamp, []).append((message.topic, message.data))
    return [frame for frame in frames.values() if {t for t, _ in frame} == set(topics)]


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


class _Harness:
    """The nodes under test, a publisher of preloaded frames and a tap, spun by one executor in this thread."""

    def __init__(self, preset, frames: list[list[tuple[str, bytes]]], msg_classes: dict[str, type],
                 outputs: dict[str, type], main_output: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        from ros_mmfusion.core.evaluation.session import DIAGNOSTICS, EvaluationSession
        from ros_mmfusion.launcher import create_nodes
        from ros_mmfusion.ros.evaluation import EvaluationFeed
        from ros_mmfusion.ros.qos import OUTPUT_QOS
        from ros_mmfusion.ros.tap import TopicTap

        self.frames = frames
        self.main_output = main_output
        self.nodes = create_nodes(preset)
        self.source = Node("mmfusion_benchmark_source")
        self.pubs = {t: self.source.create_publisher(cls, t, OUTPUT_QOS) for t, cls in msg_classes.items()}
        self.session = EvaluationSession()  # collects each node's network record from /diagnostics
        feed = EvaluationFeed(self.session)
        self.tap = TopicTap({**outputs, DIAGNOSTICS: DiagnosticArray}, name="mmfusion_benchmark_tap", timing=True,
                            on_message=lambda topic, msg, _: feed(topic, msg) if topic == DIAGNOSTICS else None)
        self.executor = SingleThreadedExecutor()
        for node in [*self.nodes, self.source, self.tap]:
            self.executor.add_node(node)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def run(self, rate: float, duration: float) -> dict[str, Any]:
        from ros_mmfusion.core.bagio import restamp
        from ros_mmfusion.core.evaluation.latency import latency_stats

        rec = self.tap.records[self.main_output]
        first = len(rec.stamps_ns)
        published: list[int] = []
        stop = threading.Event()

        def publish() -> None:
            start = time.monotonic()
            i = 0
            while not stop.is_set():
                due = start + i / rate
                if due - start >= duration or stop.wait(max(0.0, due - time.monotonic())):
                    return
                stamp = time.time_ns()
                for topic, data in self.frames[i % len(self.frames)]:
                    self.pubs[topic].publish(restamp(data, stamp))
                published.append(stamp)
                i += 1

        cpu0, wall0 = time.process_time(), time.monotonic()
        rss = [_rss_mb()]
        thread = threading.Thread(target=publish, name="benchmark_source", daemon=True)
        thread.start()
        while thread.is_alive():
            self.spin_for(0.25)
            rss.append(_rss_mb())
        last_count, quiet_since = len(rec.stamps_ns), time.monotonic()  # drain: until 1 s without an output
        while time.monotonic() - quiet_since < 1.0 and time.monotonic() - wall0 < duration + 10.0:
            self.spin_for(0.1)
            if len(rec.stamps_ns) != last_count:
                last_count, quiet_since = len(rec.stamps_ns), time.monotonic()
        stop.set()
        cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0) * 100
        stamps, arrivals = rec.stamps_ns[first:], rec.arrivals_ns[first:]
        sent = set(published)
        pairs = [(s, a) for s, a in zip(stamps, arrivals, strict=True) if s in sent]
        stats = latency_stats([s for s, _ in pairs], [a for _, a in pairs], len(published)).as_dict()
        input_rate = (len(published) - 1) / ((published[-1] - published[0]) / 1e9) if len(published) > 1 else 0.0
        return {"target_rate_hz": rate, "input_rate_hz": round(input_rate, 2), "published": len(published), **stats,
                "cpu_percent": round(cpu, 1), "rss_mb_max": round(max(rss), 1)}

    def close(self) -> None:
        for node in [*self.nodes, self.source, self.tap]:
            self.executor.remove_node(node)
            getattr(node, "close", lambda: None)()
            node.destroy_node()
        self.executor.shutdown()


def _summarise(runs: list[dict]) -> dict:
    """Median figures of the runs left after dropping the best and worst (by output rate) when there are >= 3."""
    kept = sorted(runs, key=lambda r: r["rate_hz"] or 0.0)
    if len(kept) >= 3:
        kept = kept[1:-1]
    out: dict[str, Any] = {"runs": len(runs), "kept": len(kept), "target_rate_hz": runs[0]["target_rate_hz"]}
    for key in ("input_rate_hz", "rate_hz", "p50_ms", "p95_ms", "p99_ms", "max_ms", "drop_ratio", "cpu_percent",
                "rss_mb_max"):
        values = [r[key] for r in kept if r.get(key) is not None]
        out[key] = round(float(np.median(values)), 3) if values else None
    return out


def _keeps_up(summary: dict, tolerance: float) -> bool:
    rate, target, loss = summary["rate_hz"], summary["target_rate_hz"], summary["drop_ratio"]
    return rate is not None and loss is not None and rate >= (1 - tolerance) * target and loss < MAX_LOSS


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError
    from ros_mmfusion.core.bagio import scan_bag
    from ros_mmfusion.core.evaluation.topics import resolve_topic
    from ros_mmfusion.core.outputs import OutputDirectory

    rates = _parse_rates(args.rates)
    if not (math.isfinite(args.duration) and 0 < args.duration <= 3600) or not 0 < args.repeats <= 100 \
            or not 0 <= args.peak_steps <= 20 or not 0 < args.tolerance < 1 or not 0 < args.max_frames <= 100000:
        raise UserError("--duration must be in (0, 3600] s, --repeats in 1..100, --peak-steps in 0..20, --tolerance "
                        "in (0, 1), --max-frames in 1..100000")
    from ros_mmfusion import presets

    bag = Path(args.bag)
    output = OutputDirectory(args.out, "benchmark", overwrite=args.overwrite,
                             writes=("benchmark.json", "benchmark.md"), inputs=[bag], what="benchmark directory")
    facts = scan_bag(bag)
    preset = presets.load(args.preset, {"bag": str(bag)})
    under_test = [n for n in preset.nodes if n.key != "bag_player"]
    from ros_mmfusion.launcher import evaluated_nodes

    evaluated = evaluated_nodes(preset, under_test)
    if not evaluated:
        raise UserError(f"preset {args.preset!r} has no node the benchmark knows how to feed")
    inputs = sorted({resolve_topic(name, n.remappings) for n, ev in evaluated for name in ev.inputs})
    missing = [t for t in inputs if t not in facts.topics]
    if missing:
        raise UserError(f"bag {bag} lacks the input topic(s) {', '.join(missing)}")
    launch, ev = evaluated[0]
    main_output = resolve_topic(ev.outputs[0], launch.remappings)
    frames = preload(bag, inputs, args.max_frames)
    if not frames:
        raise UserError(f"bag {bag} has no frame with every input ({', '.join(inputs)}) under one stamp")
    print(f"benchmarking {', '.join(n.name for n in under_test)} on {len(frames)} preloaded frames of {bag} "
          f"(main output {main_output})", flush=True)

    import rclpy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection3DArray

    import ros_mmfusion.ros  # noqa: F401  (DDS profile)
    from ros_mmfusion.ros.messages import message_class

    classes = {t: message_class(facts.topics[t]) for t in inputs}
    preset_under_test = replace(preset, nodes=under_test)
    rclpy.init()
    try:
        output_type = Detection3DArray if ev.detections else Image
        harness = _Harness(preset_under_test, frames, classes, {main_output: output_type}, main_output)
        try:
            harness.run(min(rates), min(2.0, args.duration))  # warm-up (model load, first inferences, discovery)
            main_node = harness.nodes[under_test.index(launch)]
            fixed = []
            for rate in rates:
                runs = [_probed(harness.run(rate, args.duration), main_node) for _ in range(args.repeats)]
                fixed.append({**_summarise(runs), "all_runs": runs})
                s = fixed[-1]
                print(f"  {rate:6.1f} Hz in: {s['rate_hz'] or 0:6.1f} Hz out, "
                      f"loss {100 * (s['drop_ratio'] or 0):5.1f}%, p50 {s['p50_ms'] or 0:7.1f} ms, "
                      f"p95 {s['p95_ms'] or 0:7.1f} ms, CPU {s['cpu_percent']:.0f}%,"
                      f" RSS {s['rss_mb_max']:.0f} MB", flush=True)
            peak = _peak_search(harness, fixed, args, main_node)
            network = _network_alone(harness, under_test)  # the nodes idle now: each network by itself
            _relate_to_network(fixed, peak, network.get(f"/{launch.name}"))
            notes: list[str] = []
            models = harness.session.model_section([f"/{n.name}" for n in under_test], notes)
        finally:
            harness.close()
    finally:
        rclpy.try_shutdown()
    result = {"preset": args.preset, "bag": str(bag), "frames_preloaded": len(frames), "main_output": main_output,
              "duration_s": args.duration, "repeats": args.repeats, "tolerance": args.tolerance,
              "max_loss": MAX_LOSS, "cpu_count": os.cpu_count(), "models": models, "fixed_rate": fixed, "peak": peak,
              "network_alone": network, "notes": notes}
    with output as stage:
        (stage / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
        (stage / "benchmark.md").write_text(_markdown(result))
    print(f"peak throughput: {peak['rate_hz']} Hz" if peak["rate_hz"] else "peak throughput: none kept up")
    print(f"wrote {output.path / 'benchmark.json'} and {output.path / 'benchmark.md'}")
    return 0


NETWORK_RUNS = 15
PROBE_RUNS = 5  # network-alone calls after each graph run (the VM's speed drifts between minutes)


def _time_network(node: Any, warmup: int, runs: int, period_s: float = 0.0) -> np.ndarray | None:
    """Milliseconds of ``runs`` calls of ``node``'s network alone on the last frame it ran
    (``MmfusionNode.network_probe``; call only while the graph is idle) after ``warmup`` calls, ``period_s`` apart;
    None for a node without a probe or before its first frame."""
    from ros_mmfusion.core.bench import time_runs

    probe = getattr(node, "network_probe", lambda: None)()
    return None if probe is None else time_runs(probe, warmup=warmup, runs=runs, period_s=period_s)


def _probed(run: dict, node: Any) -> dict:
    """``run`` with ``network_p50_ms``: the main node's network alone (median of :data:`PROBE_RUNS` calls after one
    warm-up) timed right after the run, the graph idle, the calls as far apart as the run's input frames (an idle VM
    wakes slowly: back-to-back calls would flatter the network at low rates); absent without a probe."""
    ms = _time_network(node, warmup=1, runs=PROBE_RUNS, period_s=min(1.0, 1.0 / run["target_rate_hz"]))
    if ms is not None:
        run["network_p50_ms"] = round(float(np.median(ms)), 3)
    return run


def _network_alone(harness: _Harness, under_test: list) -> dict[str, dict[str, float]]:
    """Node name (``/name``) -> the network's own latency (p50/p95 ms over :data:`NETWORK_RUNS` calls after 2 warm-up
    calls) on the last frame it ran, timed here with the graph idle."""
    out = {}
    for launch, node in zip(under_test, harness.nodes, strict=True):
        ms = _time_network(node, warmup=2, runs=NETWORK_RUNS)
        if ms is not None:
            out[f"/{launch.name}"] = {"p50_ms": round(float(np.median(ms)), 3),
                                      "p95_ms": round(float(np.percentile(ms, 95)), 3), "runs": NETWORK_RUNS}
    return out


def _relate_to_network(fixed: list[dict], peak: dict, network: dict[str, float] | None) -> None:
    """Add the graph's figures relative to the main node's network alone: ``p50_over_network`` per fixed rate
    (graph p50 latency / network p50) and the peak's ``fraction_of_network_rate`` (peak Hz x network p50 s). The
    network's p50 is the median of the probes timed right after that rate's runs (``network_p50_ms``, see
    :func:`_probed`: the VM's speed drifts by up to 1.5x between minutes, so a network timed minutes later would
    skew the ratio either way), else the final ``network`` figure."""
    def adjacent(summary: dict, runs: list[dict]) -> float | None:
        probes = [r["network_p50_ms"] for r in runs if r.get("network_p50_ms")]
        value = float(np.median(probes)) if probes else (network or {}).get("p50_ms")
        summary["network_p50_ms"] = round(value, 3) if value else None
        return value

    for s in fixed:
        net = adjacent(s, s.get("all_runs", []))
        s["p50_over_network"] = round(s["p50_ms"] / net, 3) if s.get("p50_ms") and net else None
    def at(rate: float) -> bool:
        return peak["rate_hz"] is not None and abs(rate - peak["rate_hz"]) < 0.01

    kept = [p for p in peak["probes"] if p["kept_up"] and at(p["target_rate_hz"])]
    at_peak = kept[-1] if kept else next((s for s in fixed if at(s["target_rate_hz"])), None)
    net = adjacent(peak, at_peak.get("all_runs", []) if at_peak else [])
    peak["fraction_of_network_rate"] = round(peak["rate_hz"] * net / 1e3, 3) if peak["rate_hz"] and net else None


def _peak_search(harness: _Harness, fixed: list[dict], args: argparse.Namespace, main_node: Any = None) -> dict:
    """Bisection between the highest fixed rate that kept up and the lowest that did not (or 2x the highest); each
    run followed by a network probe of ``main_node`` (:func:`_probed`)."""
    ok = [s["target_rate_hz"] for s in fixed if _keeps_up(s, args.tolerance)]
    bad = [s["target_rate_hz"] for s in fixed if not _keeps_up(s, args.tolerance)]
    lo = max(ok) if ok else 0.0
    hi = min([r for r in bad if r > lo], default=2 * max(s["target_rate_hz"] for s in fixed))
    probes = []
    for _ in range(args.peak_steps):
        mid = (lo + hi) / 2 if lo > 0 else hi / 2
        runs = [_probed(harness.run(mid, args.duration), main_node) for _ in range(args.repeats)]
        s = _summarise(runs)
        kept = _keeps_up(s, args.tolerance)
        probes.append({**s, "kept_up": kept, "all_runs": runs})
        print(f"  peak search {mid:6.1f} Hz: {'keeps up' if kept else 'falls behind'} "
              f"({s['rate_hz'] or 0:.1f} Hz out, loss {100 * (s['drop_ratio'] or 0):.1f}%)", flush=True)
        lo, hi = (mid, hi) if kept else (lo, mid)
    return {"rate_hz": round(lo, 2) if lo > 0 else None, "upper_bound_hz": round(hi, 2), "probes": probes}


def _markdown(result: dict) -> str:
    from ros_mmfusion.core.evaluation.report import models_table

    models = models_table(result.get("models") or {})
    lines = [f"# mmfusion benchmark: preset {result['preset']}", "",
             f"{result['frames_preloaded']} frames of {result['bag']} preloaded; {result['duration_s']} s per run, "
             f"{result['repeats']} runs per rate (best and worst dropped from 3 on); main output "
             f"{result['main_output']}; {result['cpu_count']} CPUs.", ""]
    if len(models) > 1:
        lines += ["| " + " | ".join(row) + " |" for row in models[:1]] + ["|" + "---|" * len(models[0])]
        lines += ["| " + " | ".join(row) + " |" for row in models[1:]] + [""]
    lines += ["| input Hz | output Hz | loss % | p50 ms | p50 / network | p95 ms | p99 ms | max ms | CPU % | RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def f(v, scale=1.0):
        return "-" if v is None else f"{v * scale:.1f}"

    for s in result["fixed_rate"]:
        ratio = s.get("p50_over_network")
        lines.append(f"| {f(s['target_rate_hz'])} | {f(s['rate_hz'])} | {f(s['drop_ratio'], 100)} | {f(s['p50_ms'])} "
                     f"| {'-' if ratio is None else f'{ratio:.2f}x'} | {f(s['p95_ms'])} | {f(s['p99_ms'])} "
                     f"| {f(s['max_ms'])} | {f(s['cpu_percent'])} | {f(s['rss_mb_max'])} |")
    peak = result["peak"]
    lines += ["", f"Peak throughput (output within {100 * result['tolerance']:.0f}% of input, under "
                  f"{100 * result['max_loss']:.0f}% lost): "
                  + (f"**{peak['rate_hz']} Hz** (falls behind at {peak['upper_bound_hz']} Hz)" if peak["rate_hz"]
                     else "no probed rate kept up"), ""]
    probes = ", ".join(f"{f(s.get('network_p50_ms'))} ms at {f(s['target_rate_hz'])} Hz" for s in result["fixed_rate"])
    for node, net in (result.get("network_alone") or {}).items():
        lines.append(f"Network alone ({node}, same run, graph idle, last frame): p50 {net['p50_ms']:.1f} ms, p95 "
                     f"{net['p95_ms']:.1f} ms over {net['runs']} calls (1 / p50 = {1e3 / net['p50_ms']:.1f} Hz) at "
                     f"the end; \"p50 / network\" divides by the network timed right after each rate's runs, its "
                     f"calls as far apart as the frames ({PROBE_RUNS} calls per run: {probes})")
    if peak.get("fraction_of_network_rate") is not None:
        lines.append(f"Peak throughput = {100 * peak['fraction_of_network_rate']:.0f}% of the network's own rate "
                     f"(its p50 timed after the peak's runs: {f(peak.get('network_p50_ms'))} ms)")
    lines += ["", *[f"Note: {n}" for n in result.get("notes", [])]]
    return "\n".join(lines)
