"""End-to-end latency of an output topic (ROS-free): input header stamp -> arrival, percentiles, drops, rate.

An output message carries the header stamp of the input frame it was computed from; with the bag player's restamping
that stamp is the wall-clock time at which the input was published, so ``arrival - stamp`` is the latency through the
graph (publication, transport, synchronisation, inference, publication of the output).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    count: int
    expected: int | None
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    rate_hz: float
    dropped: int | None

    def as_dict(self) -> dict:
        def clean(v: float) -> float | None:
            return None if v is None or np.isnan(v) else round(float(v), 3)

        return {"count": self.count, "expected": self.expected, "dropped": self.dropped,
                "drop_ratio": (None if not self.expected else round(self.dropped / self.expected, 4)),
                "p50_ms": clean(self.p50_ms), "p95_ms": clean(self.p95_ms), "p99_ms": clean(self.p99_ms),
                "max_ms": clean(self.max_ms), "mean_ms": clean(self.mean_ms), "rate_hz": clean(self.rate_hz)}


def latency_stats(stamps_ns: Sequence[int], arrivals_ns: Sequence[int], expected: int | None = None) -> LatencyStats:
    """Statistics of one output topic from its messages' input stamps and arrival times (same clock, ns).

    ``expected`` is the number of input frames that should each have produced one output; ``dropped`` counts the
    distinct input stamps that never came out (duplicates of a stamp count once). The rate is over arrivals.
    """
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    arrivals = np.asarray(arrivals_ns, dtype=np.int64)
    if stamps.shape != arrivals.shape:
        raise ValueError(f"stamps and arrivals differ in length: {stamps.shape} vs {arrivals.shape}")
    dropped = None if expected is None else max(0, expected - len(np.unique(stamps)))
    if stamps.size == 0:
        nan = float("nan")
        return LatencyStats(0, expected, nan, nan, nan, nan, nan, 0.0, dropped)
    ms = (arrivals - stamps) / 1e6
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    span = (arrivals.max() - arrivals.min()) / 1e9
    rate = (stamps.size - 1) / span if stamps.size > 1 and span > 0 else 0.0
    return LatencyStats(int(stamps.size), expected, float(p50), float(p95), float(p99), float(ms.max()),
                        float(ms.mean()), float(rate), dropped)


def pipeline_latency_summary(values_ms: Sequence[float]) -> dict | None:
    """``messages``, ``p50_ms`` and ``p95_ms`` of a node's ``debug/pipeline_latency_ms`` values; None when empty."""
    values = np.asarray(values_ms, np.float64)
    if not values.size:
        return None
    return {"messages": int(values.size), "p50_ms": float(np.median(values)),
            "p95_ms": float(np.percentile(values, 95))}
