"""``core.bench.time_runs``: the calls it times, and their spacing when a period is asked for (the network probes of
``mmfusion bench-graph`` call a network as far apart as the graph's input frames)."""
from __future__ import annotations

import time

from ros_mmfusion.core.bench import time_runs


def test_time_runs_times_each_call_after_the_warm_up_and_spaces_them_by_the_period():
    starts: list[float] = []

    def call() -> None:
        starts.append(time.perf_counter())
        time.sleep(0.002)

    ms = time_runs(call, warmup=2, runs=4)
    assert len(starts) == 6 and ms.shape == (4,) and (ms >= 2.0).all()
    starts.clear()
    ms = time_runs(call, warmup=1, runs=4, period_s=0.2)
    gaps = [b - a for a, b in zip(starts[1:], starts[2:], strict=False)]  # between the timed calls
    assert len(starts) == 5 and len(gaps) == 3 and min(gaps) >= 0.2 - 1e-3
    assert (ms < 150).all()  # the 0.2 s idle between calls is not counted in a call's (2 ms) time
