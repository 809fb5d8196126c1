"""Stamps that jump back (a looping bag, a restarted simulator): the stream resumes within one message, in the rule
(core/timejump.py), in every node's stamp guard (core/health.py) and in the synchronizer (core/sync.py)."""
from __future__ import annotations

import pytest

from ros_mmfusion.core.health import InputMonitor, StampGuard
from ros_mmfusion.core.sync import ApproximateTimeSynchronizer
from ros_mmfusion.core.timejump import BackstepRule, Step

MS = 1_000_000
S = 1_000_000_000


def test_a_lone_late_message_is_out_of_order_and_a_second_one_in_a_row_is_a_jump():
    rule = BackstepRule(jump_ns=50 * MS)
    assert rule.classify(None, 5) is Step.FORWARD
    assert rule.classify(100 * MS, 120 * MS) is Step.FORWARD
    assert rule.classify(100 * MS, 100 * MS) is Step.DUPLICATE
    assert rule.classify(100 * MS, 90 * MS) is Step.OUT_OF_ORDER
    assert rule.classify(100 * MS, 110 * MS) is Step.FORWARD, "the stream went on: the late one was a straggler"
    assert rule.classify(110 * MS, 100 * MS) is Step.OUT_OF_ORDER
    assert rule.classify(110 * MS, 105 * MS) is Step.JUMP, "two in a row behind: a new timeline"
    assert rule.classify(110 * MS, 10 * MS) is Step.JUMP, "a step back beyond the tolerance jumps at once"


def test_the_rule_can_be_told_never_to_jump():
    rule = BackstepRule(jump_ns=None)
    assert [rule.classify(10 * S, t) for t in (1, 2, 3)] == [Step.OUT_OF_ORDER] * 3
    with pytest.raises(ValueError):
        BackstepRule(jump_ns=-1)


def loop(guard: StampGuard, period_ns: int, frames: int, loops: int) -> tuple[list[int], int]:
    """Feed ``loops`` repetitions of a ``frames``-frame bag (not restamped) through ``guard``; the accepted stamps
    and how many jumps were seen."""
    accepted, jumps = [], 0
    for _ in range(loops):
        for i in range(frames):
            stamp = S + i * period_ns
            if guard.check(stamp, stamp) is None:
                accepted.append(stamp)
            jumps += guard.jumped
    return accepted, jumps


@pytest.mark.parametrize("period_ms, frames", [(100, 10), (20, 4), (1000, 2)])
def test_a_looping_bag_of_any_length_resumes_at_once(period_ms, frames):
    # Before the fix, a step back under 2 s was "out of order" and never advanced the guard: a 1 s loop played five
    # frames once and then nothing, for good.
    accepted, jumps = loop(StampGuard(max_age_s=0.0), period_ms * MS, frames, loops=3)
    assert jumps == 2
    assert len(accepted) == 3 * frames, "every frame of every loop passes, the first of a loop included"


def test_a_loop_shorter_than_the_reorder_tolerance_loses_at_most_one_frame_per_loop():
    accepted, jumps = loop(StampGuard(max_age_s=0.0, reorder_tolerance_s=0.05), 10 * MS, 4, loops=4)  # 30 ms back
    assert jumps == 3
    assert len(accepted) >= 4 * 4 - 3


def test_a_straggler_is_skipped_without_silencing_the_input():
    guard = StampGuard(max_age_s=0.0)
    assert guard.check(10 * S, 0) is None
    assert "out-of-order" in guard.check(10 * S - 20 * MS, 0)
    assert guard.check(10 * S + 100 * MS, 0) is None and not guard.jumped


def test_stale_messages_advance_the_guard_and_a_forgotten_guard_takes_any_stamp():
    guard = StampGuard(max_age_s=1.0)
    assert "stale" in guard.check(10 * S, 20 * S)
    assert guard.last_ns == 10 * S
    guard.forget()
    assert guard.check(3 * S, 3 * S) is None and not guard.jumped


def test_arrival_rate_restarts_when_the_clock_goes_back():
    monitor = InputMonitor("rgb", stall_timeout=1.0)
    for t in (100.0, 100.1, 100.2, 100.3):
        monitor.on_message(t)
    assert monitor.rate(100.3) == pytest.approx(10.0)
    for t in (1.0, 1.1, 1.2):  # sim time restarted
        monitor.on_message(t)
    assert monitor.rate(1.2) == pytest.approx(10.0), "the old window would give a negative span, i.e. 0 Hz"


def test_synchronizer_resets_on_a_short_loop_instead_of_dropping_until_stamps_catch_up():
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=5, max_interval=0.01, reset_on_jump_back=1.0)
    emitted = 0
    for _ in range(3):  # a 0.5 s bag looping three times: a step back below reset_on_jump_back each time
        for t in range(0, 500 * MS, 100 * MS):
            emitted += len(sync.add("a", S + t, t)) + len(sync.add("b", S + t, t))
    assert sync.resets == 2
    assert emitted >= 3 * 5 - 2 * 2, "each loop loses at most the frame that revealed the jump"


def test_clock_watch_reports_a_missing_and_a_stopped_sim_clock_on_the_wall_clock():
    from ros_mmfusion.core.health import ClockWatch, Level

    watch = ClockWatch(timeout=1.0)
    assert watch.evaluate(0.0, 10.0)[0] == Level.WARN and "no /clock" in watch.evaluate(0.0, 10.0)[1]
    assert watch.evaluate(5.0, 10.0)[0] == Level.OK
    assert watch.evaluate(5.0, 10.9)[0] == Level.OK, "within the timeout"
    level, text = watch.evaluate(5.0, 11.5)
    assert level == Level.WARN and "stopped at 5.000 s" in text
    assert watch.evaluate(4.0, 12.0)[0] == Level.OK, "moving again (a looping bag jumps back): advancing"
