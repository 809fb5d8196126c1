"""ApproximateTimeSynchronizer: hand-worked sequences with exact expected sets, and property tests.

Messages in these tests are ``(input, stamp_ms)`` tuples, so a set can be compared as ``{input: stamp_ms}``. Each
expected result below was worked out by hand from the pivot rule documented in ``ros_mmfusion.core.sync``.
"""
from __future__ import annotations

import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros_mmfusion.core.sync import (
    ApproximateTimeSynchronizer,
    SyncedSet,
    SyncEventKind,
)

MS = 1_000_000


def feed(sync: ApproximateTimeSynchronizer, name: str, stamp_ms: int) -> list[dict[str, int | None]]:
    """Add one message stamped ``stamp_ms`` and return the emitted sets as ``{input: stamp_ms or None}``."""
    return [as_ms(s) for s in sync.add(name, stamp_ms * MS, (name, stamp_ms))]


def as_ms(synced: SyncedSet) -> dict[str, int | None]:
    """A set as input -> stamp in ms, checking the set is internally consistent on the way."""
    result: dict[str, int | None] = {}
    for name, msg in synced.messages.items():
        stamp = synced.stamps_ns[name]
        if msg is None:
            assert stamp is None and name in synced.missing
            result[name] = None
        else:
            assert stamp is not None and msg == (name, stamp // MS) and name not in synced.missing
            result[name] = msg[1]
    return result


def feed_all(sync: ApproximateTimeSynchronizer, seq: Iterable[tuple[str, int]]) -> list[list[dict[str, int | None]]]:
    """Feed a sequence and return, per add, the sets it emitted."""
    return [feed(sync, name, stamp) for name, stamp in seq]


# ----------------------------------------------------------------------------- plain ApproximateTime


def test_exactly_matching_stamps_emit_on_the_add_that_completes_the_set() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b", "c"], queue_size=5, max_interval=0.01)
    seq = [(n, t) for t in (0, 100, 200) for n in ("a", "b", "c")]
    outs = feed_all(sync, seq)
    expected: list[list[dict[str, int | None]]] = [[] for _ in seq]
    expected[2] = [{"a": 0, "b": 0, "c": 0}]
    expected[5] = [{"a": 100, "b": 100, "c": 100}]
    expected[8] = [{"a": 200, "b": 200, "c": 200}]
    assert outs == expected
    assert sync.emitted == 3
    assert sync.dropped == {"a": 0, "b": 0, "c": 0}
    assert sync.queued() == {"a": 0, "b": 0, "c": 0}


def test_first_input_stamp_is_the_set_stamp() -> None:
    sync = ApproximateTimeSynchronizer(["rgb", "info"], queue_size=5)
    sync.add("info", 7 * MS, "i")
    (synced,) = sync.add("rgb", 7 * MS, "r")
    assert synced.stamp_ns == 7 * MS
    assert synced.messages == {"rgb": "r", "info": "i"}
    assert list(synced.messages) == ["rgb", "info"]
    assert synced.missing == frozenset()
    assert synced.spread_ns == 0


def test_jittered_pairs_are_matched_to_their_nearest_partner_one_message_late() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=5, max_interval=0.05)
    seq = [("a", 0), ("b", 3), ("a", 100), ("b", 98), ("a", 200), ("b", 205), ("a", 300), ("b", 296)]
    outs = feed_all(sync, seq)
    assert outs == [
        [],
        [],
        [{"a": 0, "b": 3}],  # a100 proves nothing better than {a0, b3} can come
        [],
        [],  # b is empty again (b98 examined), so no decision yet
        [{"a": 100, "b": 98}],
        [{"a": 200, "b": 205}],
        [],
    ]
    # {a300, b296} is the candidate and b296 was examined: it takes b's next message to decide, not a's.
    assert feed(sync, "a", 400) == []
    assert feed(sync, "b", 405) == [{"a": 300, "b": 296}]
    assert sync.dropped == {"a": 0, "b": 0}
    assert sync.queued() == {"a": 1, "b": 1}


def test_slow_input_at_a_third_of_the_rate_pairs_with_the_nearest_fast_message() -> None:
    sync = ApproximateTimeSynchronizer(["rgb", "depth"], queue_size=10, max_interval=0.05)
    seq: list[tuple[str, int]] = []
    for k in range(10):  # rgb every 30 ms, depth every 90 ms (+2 ms), each arriving in stamp order
        seq.append(("rgb", 30 * k))
        if k % 3 == 0:
            seq.append(("depth", 30 * k + 2))
    emitted = [s for out in feed_all(sync, seq) for s in out]
    assert emitted == [
        {"rgb": 0, "depth": 2},
        {"rgb": 90, "depth": 92},
        {"rgb": 180, "depth": 182},
    ]
    # Per depth message, the rgb 62 ms before it is too far (max_interval) and the one 32 ms before it loses to the
    # one 2 ms before it: rgb 30, 60, 120, 150, 210, 240 are dropped. {rgb 270, depth 272} waits for rgb 300.
    assert sync.dropped == {"rgb": 6, "depth": 0}
    assert sync.queued() == {"rgb": 1, "depth": 1}
    assert feed(sync, "rgb", 300) == [{"rgb": 270, "depth": 272}]


def test_pivot_rule_keeps_the_smallest_set_not_the_first_complete_one() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=10, age_penalty=0.0)
    for t in (0, 40, 80, 95):
        assert feed(sync, "a", t) == []
    # b100: candidates {a0,b100} -> {a40,b100} -> {a80,b100} -> {a95,b100}; a is then empty.
    assert feed(sync, "b", 100) == []
    assert feed(sync, "a", 130) == [{"a": 95, "b": 100}]
    assert sync.dropped == {"a": 3, "b": 0}


def test_set_is_published_once_no_later_set_containing_the_pivot_can_be_smaller() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b", "c"], queue_size=5)
    assert feed_all(sync, [("a", 0), ("b", 1), ("c", 2)]) == [[], [], []]  # candidate {0, 1, 2}, pivot c
    # a50: any later set holds c2 and a message >= 50 ms, so it spans more than 2 ms: publish now, without
    # waiting for c's next message.
    assert feed(sync, "a", 50) == [{"a": 0, "b": 1, "c": 2}]


@pytest.mark.parametrize(("age_penalty", "expected"), [(0.1, {"a": 0, "b": 100, "c": 100}),
                                                       (0.0, {"a": 195, "b": 100, "c": 100})])
def test_age_penalty_prefers_the_older_of_two_nearly_equal_sets(age_penalty: float, expected: dict) -> None:
    sync = ApproximateTimeSynchronizer(["a", "b", "c"], queue_size=5, age_penalty=age_penalty)
    assert feed_all(sync, [("a", 0), ("b", 100), ("c", 100)]) == [[], [], []]
    # {a195, b100, c100} spans 95 ms against 100 ms, but 95 * 1.1 > 100: with the default penalty the older set wins.
    assert feed(sync, "a", 195) == [expected]


def test_max_interval_rejects_every_set_wider_than_it() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=5, max_interval=0.02)
    seq = [("a", 0), ("b", 70), ("a", 100), ("b", 130), ("a", 200)]
    assert feed_all(sync, seq) == [[], [], [], [], []]
    assert sync.dropped == {"a": 2, "b": 2}  # a0, b70, a100, b130: each the older head of a too-wide pair
    assert sync.queued() == {"a": 1, "b": 0}
    assert feed(sync, "b", 205) == []
    assert feed(sync, "a", 300) == [{"a": 200, "b": 205}]


def test_max_interval_is_inclusive() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=5, max_interval=0.02)
    assert feed_all(sync, [("a", 0), ("b", 20), ("a", 100)]) == [[], [], [{"a": 0, "b": 20}]]
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=5, max_interval=0.02)
    assert feed_all(sync, [("a", 0), ("b", 21), ("a", 100)]) == [[], [], []]
    assert sync.dropped == {"a": 1, "b": 1}


def test_queue_overflow_drops_the_oldest_message_of_that_input() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=3)
    for t in (0, 10, 20):
        assert feed(sync, "a", t) == []
    assert sync.dropped["a"] == 0
    assert feed(sync, "a", 30) == []
    assert sync.overflowed == {"a": 1, "b": 0}
    assert sync.queued() == {"a": 3, "b": 0}
    assert feed(sync, "b", 31) == []
    assert feed(sync, "a", 40) == [{"a": 30, "b": 31}]
    assert sync.dropped == {"a": 3, "b": 0}  # a0 by overflow, a10 and a20 by the search
    assert sync.overflowed == {"a": 1, "b": 0}


def test_input_that_overflowed_is_not_used_as_pivot_until_another_head_passes_it() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=2, age_penalty=0.0)
    for t in (10, 20, 30):
        feed(sync, "b", t)
    assert sync.overflowed == {"a": 0, "b": 1}  # b10 lost
    # b (head b20) just overflowed: a5 cannot start a set with b as pivot, it is dropped.
    assert feed(sync, "a", 5) == []
    assert sync.dropped == {"a": 1, "b": 1}
    # a25 is newer than b's head, so b is usable again: {a25, b20} then {a25, b30} is no better.
    assert feed(sync, "a", 25) == [{"a": 25, "b": 20}]


def test_out_of_order_and_duplicate_stamps_are_dropped_and_counted() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=5)
    assert feed_all(sync, [("a", 0), ("a", 100), ("a", 50), ("a", 100)]) == [[], [], [], []]
    assert sync.out_of_order == {"a": 2, "b": 0}
    assert sync.queued() == {"a": 2, "b": 0}
    assert sync.resets == 0
    # a100 is already queued, so b2's add can decide {a0, b2} at once.
    assert feed_all(sync, [("b", 2), ("b", 101)]) == [[{"a": 0, "b": 2}], []]
    assert feed(sync, "b", 90) == []  # older than b101
    assert sync.out_of_order == {"a": 2, "b": 1}
    assert feed(sync, "a", 200) == [{"a": 100, "b": 101}]


def test_time_jump_back_resets_and_is_reported() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=5, max_interval=0.01, reset_on_jump_back=1.0)
    for t in range(0, 3000, 100):
        feed(sync, "a", t)
        feed(sync, "b", t)
    assert sync.emitted == 30
    assert feed(sync, "a", 3000) == []  # waits for b3000
    assert sync.pop_events() == []
    assert feed(sync, "a", 0) == []  # the bag looped: back by 3 s
    assert sync.resets == 1
    assert sync.dropped == {"a": 1, "b": 0}  # a3000 went with the reset
    (event,) = sync.pop_events()
    assert (event.kind, event.input, event.stamp_ns) == (SyncEventKind.RESET, "a", 0)
    assert "3.000 s" in str(event)
    assert feed(sync, "b", 0) == [{"a": 0, "b": 0}]  # b's history was forgotten too
    assert feed_all(sync, [("a", 100), ("b", 100)]) == [[], [{"a": 100, "b": 100}]]
    # A jump shorter than the threshold is just out of order.
    assert feed(sync, "a", -500) == []
    assert sync.resets == 1
    assert sync.out_of_order == {"a": 1, "b": 0}


def test_explicit_reset_drops_queued_messages() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=5)
    feed_all(sync, [("a", 0), ("a", 10), ("b", 12)])
    sync.reset()
    assert sync.queued() == {"a": 0, "b": 0}
    assert sync.dropped == {"a": 2, "b": 1}
    assert sync.resets == 1
    assert feed_all(sync, [("a", 5), ("b", 5)]) == [[], [{"a": 5, "b": 5}]]


def test_jump_reset_can_be_disabled() -> None:
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=5, reset_on_jump_back=None)
    feed_all(sync, [("a", 10_000), ("a", 0)])
    assert sync.resets == 0
    assert sync.out_of_order == {"a": 1, "b": 0}


# ----------------------------------------------------------------------------- optional inputs


def test_optional_input_stalls_then_recovers() -> None:
    sync = ApproximateTimeSynchronizer(
        ["rgb", "depth", "info"], queue_size=10, max_interval=0.05, optional={"depth": 0.5}
    )
    emitted: list[dict[str, int | None]] = []
    # 0..400 ms: all three, identical stamps, in the order rgb, info, depth.
    for t in range(0, 500, 100):
        assert feed(sync, "rgb", t) == []
        assert feed(sync, "info", t) == []
        assert feed(sync, "depth", t) == [{"rgb": t, "depth": t, "info": t}]
    # depth stops after 400 ms. Up to 900 ms it is not yet stalled (900 - 400 = 500 ms is not more than 0.5 s):
    # rgb and info wait for it.
    for t in range(500, 1000, 100):
        assert feed(sync, "rgb", t) == []
        assert feed(sync, "info", t) == []
    assert sync.stalled() == frozenset()
    assert sync.queued() == {"rgb": 5, "depth": 0, "info": 5}
    # rgb 1000 makes depth stalled: the five waiting pairs come out at once, without depth.
    out = feed(sync, "rgb", 1000)
    assert out == [{"rgb": t, "depth": None, "info": t} for t in range(500, 1000, 100)]
    assert sync.stalled() == frozenset({"depth"})
    (event,) = sync.pop_events()
    assert (event.kind, event.input, event.stamp_ns) == (SyncEventKind.STALLED, "depth", 1000 * MS)
    assert "depth stopped arriving" in str(event)
    emitted += out
    for t in range(1000, 1500, 100):
        if t > 1000:
            assert feed(sync, "rgb", t) == []
        assert feed(sync, "info", t) == [{"rgb": t, "depth": None, "info": t}]
    assert sync.pop_events() == []  # the stall is reported once
    # depth comes back at 1500 (arriving first this time): sets include it again at once.
    assert feed(sync, "depth", 1500) == []
    assert sync.stalled() == frozenset()
    (event,) = sync.pop_events()
    assert (event.kind, event.input, event.stamp_ns) == (SyncEventKind.RESUMED, "depth", 1500 * MS)
    assert "depth is back" in str(event)
    assert feed(sync, "rgb", 1500) == []
    assert feed(sync, "info", 1500) == [{"rgb": 1500, "depth": 1500, "info": 1500}]
    assert sync.dropped == {"rgb": 0, "depth": 0, "info": 0}
    assert sync.emitted == 5 + 5 + 5 + 1


def test_missing_field_and_set_stamp_for_a_stalled_input() -> None:
    sync = ApproximateTimeSynchronizer(["depth", "rgb"], queue_size=10, optional={"depth": 0.1})
    assert sync.add("rgb", 0, "r0") == []
    out = sync.add("rgb", 200 * MS, "r1")  # depth stalls: both rgb messages go out alone
    assert [s.messages["rgb"] for s in out] == ["r0", "r1"]
    synced = out[0]
    assert synced.messages == {"depth": None, "rgb": "r0"}
    assert synced.missing == frozenset({"depth"})
    assert synced.stamps_ns == {"depth": None, "rgb": 0}
    assert synced.stamp_ns == 0  # the first *required* input's stamp


def test_optional_input_that_never_arrives_stalls_after_its_timeout() -> None:
    sync = ApproximateTimeSynchronizer(["rgb", "depth"], queue_size=10, optional={"depth": 0.25})
    assert feed_all(sync, [("rgb", 0), ("rgb", 100), ("rgb", 200)]) == [[], [], []]
    assert feed(sync, "rgb", 300) == [{"rgb": t, "depth": None} for t in (0, 100, 200, 300)]
    assert feed(sync, "rgb", 400) == [{"rgb": 400, "depth": None}]  # a single active input emits at once
    assert [e.kind for e in sync.pop_events()] == [SyncEventKind.STALLED]


def test_late_message_of_a_stalled_input_does_not_resume_it() -> None:
    sync = ApproximateTimeSynchronizer(["rgb", "depth"], queue_size=10, optional={"depth": 0.25})
    feed_all(sync, [("depth", 0), ("rgb", 0), ("rgb", 100), ("rgb", 200), ("rgb", 300)])
    assert sync.stalled() == frozenset({"depth"})
    sync.pop_events()
    assert feed(sync, "depth", 20) == []  # 300 - 20 = 280 ms > 250 ms: still stalled
    assert sync.stalled() == frozenset({"depth"})
    assert sync.pop_events() == []
    assert sync.dropped["depth"] == 1
    assert feed(sync, "depth", 290) == []
    assert sync.stalled() == frozenset()


def test_resumed_message_older_than_the_last_emitted_set_is_dropped() -> None:
    sync = ApproximateTimeSynchronizer(["rgb", "depth"], queue_size=10, optional={"depth": 0.25})
    assert feed_all(sync, [("depth", 0), ("rgb", 0)]) == [[], [{"rgb": 0, "depth": 0}]]
    out = feed_all(sync, [("rgb", 100), ("rgb", 200), ("rgb", 300)])  # depth stalls at 300
    assert out == [[], [], [{"rgb": t, "depth": None} for t in (100, 200, 300)]]
    assert sync.stalled() == frozenset({"depth"})
    assert feed(sync, "depth", 250) == []  # back (within 250 ms) but older than the set rgb300 went out in
    assert sync.stalled() == frozenset()
    assert sync.dropped["depth"] == 1
    assert feed(sync, "depth", 390) == []
    assert feed(sync, "rgb", 400) == []
    assert feed(sync, "depth", 490) == [{"rgb": 400, "depth": 390}]


def test_constructor_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="unique"):
        ApproximateTimeSynchronizer(["a", "a"])
    with pytest.raises(ValueError, match="required"):
        ApproximateTimeSynchronizer(["a"], optional={"a": 1.0})
    with pytest.raises(ValueError, match="not among"):
        ApproximateTimeSynchronizer(["a"], optional={"b": 1.0})
    with pytest.raises(ValueError, match="timeout"):
        ApproximateTimeSynchronizer(["a", "b"], optional={"b": 0.0})
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSynchronizer(["a", "b"], queue_size=0)
    sync = ApproximateTimeSynchronizer(["a", "b"])
    with pytest.raises(KeyError):
        sync.add("c", 0, None)
    with pytest.raises(TypeError):
        sync.add("a", 0.5, None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- properties

NAMES = ("a", "b", "c", "d")


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    """Random inputs (some optional), stamps with gaps, per-message latency (so arrival can reorder stamps)."""
    n = draw(st.integers(2, 4))
    names = NAMES[:n]
    optional_names = draw(st.lists(st.sampled_from(names[1:]), unique=True, max_size=n - 1))
    optional = {name: draw(st.integers(1, 400)) / 1000 for name in optional_names}
    messages: list[tuple[int, str, int]] = []  # (arrival, name, stamp_ms)
    for name in names:
        stamp = draw(st.integers(0, 50))
        for _ in range(draw(st.integers(0, 25))):
            latency = draw(st.integers(0, 60))
            messages.append((stamp + latency, name, stamp))
            stamp += draw(st.integers(0, 120))  # 0: a duplicate stamp
            if draw(st.integers(0, 30)) == 0:
                stamp -= 2000  # occasional jump back (reset)
    arrival = sorted(messages, key=lambda m: m[0])
    return {
        "names": names,
        "optional": optional,
        "queue_size": draw(st.integers(1, 8)),
        "max_interval_ms": draw(st.one_of(st.none(), st.integers(0, 100))),
        "age_penalty": draw(st.sampled_from([0.0, 0.1, 0.5])),
        "arrival": [(name, stamp) for _, name, stamp in arrival],
    }


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_emitted_sets_respect_max_interval_uniqueness_and_order(sc: dict) -> None:
    max_ms = sc["max_interval_ms"]
    sync = ApproximateTimeSynchronizer(
        sc["names"], queue_size=sc["queue_size"], max_interval=None if max_ms is None else max_ms / 1000,
        optional=sc["optional"], age_penalty=sc["age_penalty"], reset_on_jump_back=1.0,
    )
    seen: set[tuple[str, int]] = set()
    last_emitted: dict[str, int] = {}
    resets_seen = 0
    added = dict.fromkeys(sc["names"], 0)
    emitted_count = dict.fromkeys(sc["names"], 0)
    for index, (name, stamp_ms) in enumerate(sc["arrival"]):
        added[name] += 1
        out = sync.add(name, stamp_ms * MS, (name, index))
        if sync.resets != resets_seen:  # a new timeline: per-input order restarts
            resets_seen = sync.resets
            last_emitted.clear()
        for synced in out:
            assert list(synced.messages) == list(sc["names"])
            assert synced.missing <= set(sc["optional"])
            assert synced.stamp_ns == synced.stamps_ns[sync.required[0]]
            if max_ms is not None:
                assert synced.spread_ns <= max_ms * MS
            for slot, msg in synced.messages.items():
                if msg is None:
                    assert slot in synced.missing
                    continue
                assert msg not in seen, "a message was emitted twice"
                seen.add(msg)
                emitted_count[slot] += 1
                stamp = synced.stamps_ns[slot]
                assert stamp is not None
                assert stamp > last_emitted.get(slot, -(10**18)), "emitted stamps must increase per input"
                last_emitted[slot] = stamp
    queued = sync.queued()
    for name in sc["names"]:  # every accepted message is emitted, dropped or still queued
        assert added[name] == emitted_count[name] + sync.dropped[name] + sync.out_of_order[name] + queued[name]
        assert queued[name] <= sc["queue_size"]


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 5),
    stamps=st.lists(st.integers(1, 200), min_size=1, max_size=30),
    order_seed=st.randoms(use_true_random=False),
    max_ms=st.one_of(st.none(), st.integers(0, 50)),
    age_penalty=st.sampled_from([0.0, 0.1, 1.0]),
)
def test_perfectly_synchronised_inputs_emit_every_set_immediately(
    n: int, stamps: list[int], order_seed: random.Random, max_ms: int | None, age_penalty: float
) -> None:
    names = NAMES[:n] if n <= len(NAMES) else (*NAMES, "e")
    times = []
    t = 0
    for gap in stamps:
        t += gap
        times.append(t)
    # Random interleaving that keeps each input's own order.
    pending = {name: list(times) for name in names}
    arrival: list[tuple[str, int]] = []
    while any(pending.values()):
        name = order_seed.choice([nm for nm in names if pending[nm]])
        arrival.append((name, pending[name].pop(0)))
    sync = ApproximateTimeSynchronizer(
        names, queue_size=len(times), max_interval=None if max_ms is None else max_ms / 1000, age_penalty=age_penalty
    )
    remaining = {name: list(times) for name in names}
    emitted: list[int] = []
    for name, stamp in arrival:
        remaining[name].remove(stamp)
        out = sync.add(name, stamp * MS, (name, stamp))
        complete = [s for s in times if all(s not in remaining[nm] for nm in names) and s not in emitted]
        assert [synced.stamp_ns // MS for synced in out] == complete  # emitted by the add that completes it
        for synced in out:
            assert synced.messages == {nm: (nm, synced.stamp_ns // MS) for nm in names}
        emitted += complete
    assert emitted == times
    assert sync.dropped == dict.fromkeys(names, 0)
