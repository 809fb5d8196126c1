"""Input health and latency bookkeeping behind every node's ``/diagnostics`` (ROS-free).

Times are seconds (floats) on whatever clock the caller uses consistently: the node passes its ROS clock, so replay
with ``use_sim_time`` is judged in bag time. Levels mirror ``diagnostic_msgs/DiagnosticStatus`` (OK=0, WARN=1, ERROR=2).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from ros_mmfusion.core.timejump import BackstepRule, Step


class Level(IntEnum):
    OK = 0
    WARN = 1
    ERROR = 2


@dataclass
class InputMonitor:
    """Arrival statistics of one input topic.

    ``stall_timeout`` seconds without a message makes the input stalled (ERROR for a required input, WARN for an
    optional one); ``min_rate`` (Hz, 0 = unchecked) below which the measured rate is a WARN.
    """

    name: str
    stall_timeout: float = 1.0
    min_rate: float = 0.0
    required: bool = True
    window: int = 50
    received: int = 0
    malformed: int = 0
    dropped: int = 0
    last_arrival: float | None = None
    last_problem: str = ""
    _arrivals: deque = field(default_factory=deque, repr=False)
    _problems_at_report: int = 0

    def on_message(self, now: float) -> None:
        if self.last_arrival is not None and now < self.last_arrival:
            self._arrivals.clear()  # the clock went back (sim time of a looping bag): the old rate window is void
        self.received += 1
        self.last_arrival = now
        self._arrivals.append(now)
        while len(self._arrivals) > self.window:
            self._arrivals.popleft()

    def on_malformed(self, reason: str) -> None:
        self.malformed += 1
        self.last_problem = reason

    def on_dropped(self, reason: str, count: int = 1) -> None:
        self.dropped += count
        self.last_problem = reason

    def rate(self, now: float) -> float:
        """Messages per second over the recent window, 0 when fewer than two arrivals or the input stalled."""
        if len(self._arrivals) < 2 or self.stalled(now):
            return 0.0
        span = self._arrivals[-1] - self._arrivals[0]
        return (len(self._arrivals) - 1) / span if span > 0 else 0.0

    def stalled(self, now: float) -> bool:
        return self.last_arrival is None or now - self.last_arrival > self.stall_timeout

    def evaluate(self, now: float) -> tuple[Level, str]:
        """This input's level and a short reason; problems since the previous evaluation count once."""
        problems = self.malformed + self.dropped
        new_problems = problems - self._problems_at_report
        self._problems_at_report = problems
        if self.last_arrival is None:
            return (Level.ERROR if self.required else Level.WARN), f"{self.name}: no message received yet"
        if self.stalled(now):
            level = Level.ERROR if self.required else Level.WARN
            return level, f"{self.name}: stalled, last message {now - self.last_arrival:.1f} s ago"
        if new_problems > 0:
            return Level.WARN, f"{self.name}: {new_problems} malformed/dropped since last report ({self.last_problem})"
        rate = self.rate(now)
        if self.min_rate > 0 and rate < self.min_rate:
            return Level.WARN, f"{self.name}: rate {rate:.1f} Hz below {self.min_rate:.1f} Hz"
        return Level.OK, f"{self.name}: ok"


@dataclass
class LatencyMonitor:
    """Rolling processing time and pipeline latency (input stamp to output), milliseconds."""

    warn_ms: float = 200.0
    error_ms: float = 1000.0
    window: int = 100
    processing: deque = field(default_factory=deque)
    pipeline: deque = field(default_factory=deque)

    def record(self, processing_ms: float, pipeline_ms: float) -> None:
        for q, v in ((self.processing, processing_ms), (self.pipeline, pipeline_ms)):
            q.append(v)
            while len(q) > self.window:
                q.popleft()

    def percentile(self, which: str, q: float) -> float:
        values = self.processing if which == "processing" else self.pipeline
        return float(np.percentile(np.fromiter(values, float), q)) if values else float("nan")

    def evaluate(self) -> tuple[Level, str]:
        if not self.pipeline:
            return Level.OK, "no output yet"
        p95 = self.percentile("pipeline", 95)
        if p95 > self.error_ms:
            return Level.ERROR, f"pipeline latency p95 {p95:.0f} ms above {self.error_ms:.0f} ms"
        if p95 > self.warn_ms:
            return Level.WARN, f"pipeline latency p95 {p95:.0f} ms above {self.warn_ms:.0f} ms"
        return Level.OK, f"pipeline latency p95 {p95:.0f} ms"


@dataclass
class ClockWatch:
    """Whether a simulated clock (``/clock`` with ``use_sim_time``) still advances, judged on a wall clock.

    Inputs are judged in simulated time (an input stalls after ``input_timeout`` simulated seconds), so a slowed or
    paused replay raises no false stall. When the clock itself stops (the bag ended, the simulator paused) simulated
    time stands still and no input can stall: this watch says so instead, a WARN once the clock has not moved for
    ``timeout`` wall seconds, and a WARN while no clock message came at all (simulated time 0).
    """

    timeout: float = 1.0
    _clock: float | None = None
    _advanced_at: float = 0.0

    def evaluate(self, clock_now: float, wall_now: float) -> tuple[Level, str]:
        """``clock_now``: the simulated time (s); ``wall_now``: a monotonic wall time (s)."""
        if clock_now <= 0.0:
            return Level.WARN, "clock: no /clock message yet (use_sim_time is true); simulated time is 0"
        if clock_now != self._clock:
            self._clock, self._advanced_at = clock_now, wall_now
            return Level.OK, "clock: advancing"
        idle = wall_now - self._advanced_at
        if idle > self.timeout:
            return Level.WARN, (f"clock: /clock stopped at {clock_now:.3f} s, {idle:.1f} s ago (bag ended or "
                                "simulation paused); inputs cannot stall in simulated time")
        return Level.OK, "clock: advancing"


@dataclass
class HealthReport:
    level: Level
    message: str
    values: dict[str, str]


def summarize(inputs: list[InputMonitor], latency: LatencyMonitor, now: float, extra: list[tuple[Level, str]] = ()
              ) -> HealthReport:
    """The worst level among inputs, latency and ``extra`` findings, with every non-OK reason in the message."""
    findings = [m.evaluate(now) for m in inputs] + [latency.evaluate()] + list(extra)
    level = max((lvl for lvl, _ in findings), default=Level.OK)
    bad = [text for lvl, text in findings if lvl > Level.OK]
    message = "; ".join(bad) if bad else "ok"
    values: dict[str, str] = {}
    for m in inputs:
        values[f"{m.name}.rate_hz"] = f"{m.rate(now):.2f}"
        values[f"{m.name}.received"] = str(m.received)
        values[f"{m.name}.malformed"] = str(m.malformed)
        values[f"{m.name}.dropped"] = str(m.dropped)
    for which in ("processing", "pipeline"):
        values[f"{which}_ms.p50"] = f"{latency.percentile(which, 50):.2f}"
        values[f"{which}_ms.p95"] = f"{latency.percentile(which, 95):.2f}"
    return HealthReport(Level(level), message, values)


class StampGuard:
    """Rejects stale and out-of-order header stamps of one input; detects time jumps back (a bag that loops).

    ``check(stamp_ns, now_ns)`` returns None to accept, or the reason to skip. A lone message at most
    ``reorder_tolerance_s`` older than the previous one is out of order and skipped; a larger step back, or a second
    message in a row behind the last accepted stamp, is a time jump (rule in ``core/timejump.py``): accepted, and
    ``jumped`` is set so the caller resets its time-dependent state. So a looping bag of any length resumes after at
    most one skipped message. A stale message (older than ``max_age_s`` on the caller's clock, 0 disables) is skipped
    but still advances the stream, so stamps that keep coming are never refused for good.
    """

    def __init__(self, max_age_s: float, reorder_tolerance_s: float = 0.05) -> None:
        self.max_age_ns = int(max_age_s * 1e9)
        self.last_ns: int | None = None
        self.jumped = False
        self._rule = BackstepRule(int(reorder_tolerance_s * 1e9))

    def check(self, stamp_ns: int, now_ns: int) -> str | None:
        self.jumped = False
        if stamp_ns <= 0:
            return "header stamp is zero (unset by the driver)"
        last = self.last_ns
        step = self._rule.classify(last, stamp_ns)
        if step is Step.OUT_OF_ORDER:
            return f"out-of-order stamp ({(last - stamp_ns) / 1e6:.1f} ms older than the previous one)"
        self.jumped = step is Step.JUMP
        self.last_ns = stamp_ns
        if self.max_age_ns > 0 and now_ns - stamp_ns > self.max_age_ns:
            return f"stale stamp ({(now_ns - stamp_ns) / 1e9:.2f} s old, limit {self.max_age_ns / 1e9:.2f} s)"
        return None

    def forget(self) -> None:
        """Start a new timeline: the next stamp is accepted whatever it is (after another input's time jump)."""
        self.last_ns = None
        self._rule.forget()
