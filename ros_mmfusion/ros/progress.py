"""What ``mmfusion run`` shows while it works and when it ends: per node frames in and out, frames skipped, pipeline
latency (input stamp to output, ms) and the diagnostic level, for both ways of running (in this process, or one
process per node).

The figures are the nodes' own health reports, the content of their ``/diagnostics`` status
(:func:`ros_mmfusion.ros.runtime.health_snapshot`): live from ``/diagnostics`` (:func:`diagnostics_listener`, a node
of the launcher's process), final from the node objects (in-process) or the node processes' last report. "Frames
in" is the busiest input's message count; "out" the frames processed (for the bag player: messages replayed).
"""
from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

LEVEL_NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}
REFRESH_S = 1.0
"""Seconds between redraws of the live line."""


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else 0
    except ValueError:
        return 0


@dataclass(frozen=True)
class NodeStats:
    """One node's figures from one health report."""

    name: str
    level: int
    message: str
    frames_in: int | None  # None: the node has no inputs (a bag player)
    frames_out: int
    skipped: int
    latency_p50_ms: float | None  # None: no output yet
    latency_p95_ms: float | None

    @classmethod
    def from_report(cls, name: str, level: int, message: str, values: Mapping[str, str]) -> NodeStats:
        """From a health report's level, message and key/value pairs (as :func:`health_snapshot` and
        ``/diagnostics`` carry them)."""
        received = [_int(v) for k, v in values.items() if k.endswith(".received")]
        return cls(name, int(level), message, max(received) if received else None,
                   _int(values.get("frames_processed")), _int(values.get("frames_skipped")),
                   _float(values.get("pipeline_ms.p50")), _float(values.get("pipeline_ms.p95")))

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES.get(self.level, str(self.level))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def format_progress(names: list[str], stats: Mapping[str, NodeStats], elapsed_s: float) -> str:
    """The live line: elapsed time, then per node ``name in/out p50 LEVEL`` (``waiting`` before its first report)."""
    parts = []
    for name in names:
        s = stats.get(name)
        if s is None:
            parts.append(f"{name} waiting")
            continue
        frames = f"{s.frames_out}" if s.frames_in is None else f"{s.frames_in}/{s.frames_out}"
        latency = f" p50 {_ms(s.latency_p50_ms)} ms" if s.latency_p50_ms is not None else ""
        parts.append(f"{name} {frames}{latency} {s.level_name}")
    return f"{elapsed_s:5.0f} s | " + " | ".join(parts)


def format_summary(names: list[str], stats: Mapping[str, NodeStats], elapsed_s: float) -> str:
    """The end-of-run table: per node frames in, out, skipped, pipeline latency p50/p95 (ms) and the final level
    (with the reason when not OK)."""
    width = max([4, *(len(n) for n in names)])
    lines = [f"ran {elapsed_s:.1f} s",
             f"{'node':{width}s} {'in':>7s} {'out':>7s} {'skipped':>7s} {'p50 ms':>7s} {'p95 ms':>7s}  level"]
    for name in names:
        s = stats.get(name)
        if s is None:
            lines.append(f"{name:{width}s} {'-':>7s} {'-':>7s} {'-':>7s} {'-':>7s} {'-':>7s}  no report")
            continue
        frames_in = "-" if s.frames_in is None else str(s.frames_in)
        level = s.level_name if s.level == 0 or not s.message else f"{s.level_name}: {s.message}"
        lines.append(f"{name:{width}s} {frames_in:>7s} {s.frames_out:7d} {s.skipped:7d} "
                     f"{_ms(s.latency_p50_ms):>7s} {_ms(s.latency_p95_ms):>7s}  {level}")
    idle = [n for n in names if (s := stats.get(n)) is not None and not s.frames_out and (s.frames_in or 0) > s.skipped]
    if idle:
        lines.append(f"note: {', '.join(idle)} received input but computed nothing: nodes skip the work while "
                     "nothing subscribes to their outputs")
    return "\n".join(lines)


class RunBoard:
    """The figures of one run's nodes (``names``, in preset order): a live line on a terminal, a summary at the end.

    ``live`` defaults to ``stream.isatty()``; without it only :meth:`finish` writes (the summary).
    """

    def __init__(self, names: list[str], stream: TextIO | None = None, live: bool | None = None) -> None:
        self.names = list(names)
        self.stream = stream if stream is not None else sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.stats: dict[str, NodeStats] = {}
        self.started = time.monotonic()
        self._next_draw = self.started
        self._drawn = False
        self.tick()  # "waiting" for every node until its first report

    def update(self, name: str, level: int, message: str, values: Mapping[str, str]) -> None:
        """Record a health report of node ``name`` (others are ignored: /diagnostics is shared)."""
        name = name.lstrip("/")
        if name in self.names:
            self.stats[name] = NodeStats.from_report(name, level, message, values)

    def update_snapshot(self, name: str, snapshot: Mapping[str, Any]) -> None:
        """Record a :func:`ros_mmfusion.ros.runtime.health_snapshot`."""
        self.update(name, snapshot["level"], snapshot["message"], snapshot["values"])

    def tick(self) -> None:
        """Redraw the live line when due (about once a second); call it often."""
        now = time.monotonic()
        if not self.live or now < self._next_draw:
            return
        self._next_draw = now + REFRESH_S
        line = format_progress(self.names, self.stats, now - self.started)
        columns = shutil.get_terminal_size((120, 24)).columns
        self.stream.write("\r\x1b[K" + line[:max(columns - 1, 20)])
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """Clear the live line and write the summary."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
        self.stream.write(format_summary(self.names, self.stats, time.monotonic() - self.started) + "\n")
        self.stream.flush()


def diagnostics_listener(board: RunBoard, name: str = "mmfusion_run_progress"):
    """An rclpy node feeding ``board`` from ``/diagnostics`` (spin it with the nodes, or in a thread)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node

    from ros_mmfusion.ros.qos import OUTPUT_QOS

    node = Node(name)

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            level = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
            board.update(status.name, level, status.message, {kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, OUTPUT_QOS)
    return node
