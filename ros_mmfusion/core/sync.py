"""Approximate-time synchronisation of N message streams by their header stamps (ROS-free core).

:class:`ApproximateTimeSynchronizer` groups one message from each input into a :class:`SyncedSet` whose stamps lie
close together, with the semantics of the ``ApproximateTime`` policy of ROS' ``message_filters`` (the C++ policy; the
Python ``message_filters.ApproximateTimeSynchronizer`` is a different, greedy "slop" algorithm), plus optional inputs
that may stop arriving. It is pure Python with no threads and no ROS imports: a node calls :meth:`add` from its
subscription callbacks (one executor thread, or under the node's own lock) and publishes whatever sets come back.

Stamps are integers in nanoseconds (``header.stamp.sec * 10**9 + header.stamp.nanosec``) in whatever clock the
messages carry, so bag replay and simulated time behave exactly like live data; durations given to the constructor
are in seconds and are rounded to whole nanoseconds.

The algorithm
-------------
Every input has a queue. While every *active* input (all inputs minus stalled optional ones) has a queued message,
the heads of the queues form a set; its *spread* is the newest head stamp minus the oldest.

1. With no candidate yet: if the spread exceeds ``max_interval`` the oldest head is discarded. Otherwise the heads
   become the candidate and the input holding the newest head becomes the *pivot*: every set emitted from now on until
   this candidate is published contains the pivot's message, which is what makes the search finite.
2. With a candidate: the heads replace it when they form a smaller set. The comparison carries the age penalty
   ``a`` (default 0.1): the heads ``[s, e]`` beat the candidate ``[cs, ce]`` only if ``(e - ce) * (1 + a) < s - cs``,
   which favours the older of two nearly equal sets.
3. Then the oldest head moves into the input's "past" (examined, kept in case the candidate is abandoned), and the
   candidate is published when either the pivot's own message was that oldest head (any later set would lack it), or
   no later set containing the pivot can be smaller (``(e - ce) * (1 + a) >= pivot - cs``).
4. Publishing removes, per input, the emitted message and every message before it; the search restarts from the
   messages left.

Ties between equal stamps are broken by input order (the first input listed wins), as message_filters breaks them
by topic index. Consequences worth knowing: with perfectly synchronised inputs a set is emitted by the very
:meth:`add` that completes it; otherwise a set usually leaves one :meth:`add` later than the message that completes
it, because it takes a newer message to prove that no smaller set can follow.

Kept from message_filters' ApproximateTime
------------------------------------------
* The pivot search above, the age penalty (same default, 0.1), ``max_interval`` (a set's spread may equal it but
  never exceed it; only checked when a candidate is started, later candidates are smaller anyway).
* ``queue_size`` bounds queued plus "past" messages per input; an overflow cancels the ongoing candidate search,
  drops that input's oldest message and searches again. After an overflow on an input, that input is not used as a
  pivot (the oldest head is discarded instead) until it no longer holds the newest head, because the dropped message
  might have made a better set.
* Each message is emitted at most once; emitted stamps increase strictly per input; sets never interleave.

Differences from message_filters
--------------------------------
* The optional per-input inter-message lower bound is not implemented. message_filters uses it to publish as soon
  as the bound proves no better message can still arrive; here a set waits for a newer message instead (the latency
  of one message period on the input that ran empty). For messages that respect the bound the sets are the same,
  only emitted later.
* Out-of-order messages: message_filters assumes stamps increase on each input. Here a message whose stamp is not
  newer than the last one accepted on its input is dropped and counted in :attr:`out_of_order` (an equal stamp is a
  duplicate and counts too).
* Time jumps backwards: a stamp older than the last one on its input by more than ``reset_on_jump_back`` seconds
  (a bag that loops, a simulator restart), or the second message in a row on one input that is older than that
  input's last accepted stamp (a loop shorter than the threshold; rule in ``core/timejump.py``), clears all queues
  (:meth:`reset`), is counted in :attr:`resets`, reported
  as a :class:`SyncEvent` of kind ``RESET``, and then accepted as the first message of the new timeline. A message
  of the old timeline still arriving on another input after that is accepted too, so that input's next message jumps
  back in turn and resets once more.
* Optional inputs (below) do not exist in message_filters.
* Sets are returned by :meth:`add` instead of being passed to registered callbacks.

Optional inputs
---------------
``optional={"depth": 0.5}`` makes ``depth`` optional with a 0.5 s timeout. While it keeps arriving it is a full member
of every set. It *stalls* once the newest stamp seen on any required input is more than the timeout past the last
stamp that ``depth`` delivered (or, if it never delivered anything since the start or the last reset, past the first
required stamp): its queue is dropped, the search restarts over the required inputs and the sets are emitted with
``messages["depth"] is None`` and ``"depth"`` in :attr:`SyncedSet.missing`. It *resumes* when it delivers a message
not older than the timeout against the newest required stamp (an older one is dropped and it stays stalled); from
then on sets wait for it again. Both transitions are reported once as a :class:`SyncEvent` (:meth:`pop_events`), and
:meth:`stalled` tells the current state. The stall state survives :meth:`reset`. Any message older than the earliest
stamp of the last emitted set is dropped (this only ever hits a resumed optional input: the others took part in that
set). Choose the timeout above the optional input's period plus its latency relative to the required inputs, and a
``queue_size`` that holds the required messages of one timeout if none of them should be lost while waiting.
"""
from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any, NamedTuple

from ros_mmfusion.core.timejump import BackstepRule, Step

NS_PER_S = 1_000_000_000


def seconds_to_ns(seconds: float) -> int:
    """A duration in seconds as whole nanoseconds (rounded to nearest)."""
    return round(seconds * NS_PER_S)


@dataclass(frozen=True)
class SyncedSet:
    """One synchronised group of messages.

    Attributes:
        stamp_ns: stamp (ns) of the first required input's message: the stamp an output derived from the set carries.
        messages: one entry per input, in input order; ``None`` for a stalled optional input.
        missing: names of the inputs whose slot is ``None`` (stalled optional inputs).
        stamps_ns: each message's stamp (ns), ``None`` where the message is missing.
    """

    stamp_ns: int
    messages: dict[str, Any]
    missing: frozenset[str]
    stamps_ns: dict[str, int | None]

    @property
    def spread_ns(self) -> int:
        """Newest minus oldest stamp of the messages present (ns); never more than the synchronizer's max_interval."""
        present = [s for s in self.stamps_ns.values() if s is not None]
        return max(present) - min(present)


class SyncEventKind(enum.Enum):
    """What changed in a :class:`SyncEvent`."""

    STALLED = "stalled"
    RESUMED = "resumed"
    RESET = "reset"


@dataclass(frozen=True)
class SyncEvent:
    """A state change worth one log line: an optional input stalled or resumed, or a time jump reset the queues.

    Attributes:
        kind: what happened.
        input: the optional input that stalled/resumed, or the input whose stamp jumped back.
        stamp_ns: the stamp (ns) of the message that triggered the change.
        description: a human-readable sentence for the log.
    """

    kind: SyncEventKind
    input: str
    stamp_ns: int
    description: str

    def __str__(self) -> str:
        return self.description


class _Stamped(NamedTuple):
    stamp_ns: int
    msg: Any


class ApproximateTimeSynchronizer:
    """Approximate-time synchronizer for N named inputs with optional inputs; see the module docstring.

    Args:
        inputs: input names in order; sets list their messages in this order and ties go to the earlier name.
        queue_size: messages kept per input (queued plus examined), at least 1.
        max_interval: the largest spread (s) of an emitted set; ``None`` for no limit.
        optional: optional input name -> stall timeout (s, in stamp time). At least one input must stay required.
        age_penalty: bias towards older sets when two candidate sets compare (message_filters' default 0.1).
        reset_on_jump_back: a stamp this many seconds older than the last one on its input (or a second older
            stamp in a row on one input) resets the synchronizer; ``None`` treats every backwards stamp as merely
            out of order.
        max_events: unread events kept; the oldest are discarded beyond this.

    Example::

        sync = ApproximateTimeSynchronizer(["rgb", "depth", "info"], queue_size=10, max_interval=0.05,
                                           optional={"depth": 0.5})
        for synced in sync.add("rgb", stamp_ns, msg):
            publish(synced)
        for event in sync.pop_events():
            logger.warn(str(event))
    """

    def __init__(
        self,
        inputs: Sequence[str],
        queue_size: int = 10,
        max_interval: float | None = None,
        optional: Mapping[str, float] | None = None,
        age_penalty: float = 0.1,
        reset_on_jump_back: float | None = 1.0,
        max_events: int = 64,
    ) -> None:
        names = tuple(inputs)
        if not names:
            raise ValueError("inputs must name at least one input")
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {list(names)}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if max_interval is not None and max_interval < 0:
            raise ValueError(f"max_interval must be >= 0 s or None, got {max_interval}")
        if age_penalty < 0:
            raise ValueError(f"age_penalty must be >= 0, got {age_penalty}")
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        if reset_on_jump_back is not None and reset_on_jump_back <= 0:
            raise ValueError(f"reset_on_jump_back must be > 0 s or None, got {reset_on_jump_back}")
        optional = dict(optional or {})
        unknown = sorted(set(optional) - set(names))
        if unknown:
            raise ValueError(f"optional inputs {unknown} are not among inputs {list(names)}")
        for name, timeout in optional.items():
            if not timeout > 0:
                raise ValueError(f"optional input {name!r} needs a timeout > 0 s, got {timeout}")
        required = tuple(n for n in names if n not in optional)
        if not required:
            raise ValueError("at least one input must be required (not optional)")

        self._inputs = names
        self._required = required
        self._timeout_ns = {name: seconds_to_ns(t) for name, t in optional.items()}
        self._queue_size = int(queue_size)
        self._max_interval_ns = None if max_interval is None else seconds_to_ns(max_interval)
        self._penalty = 1.0 + float(age_penalty)
        self._jump_ns = None if reset_on_jump_back is None else seconds_to_ns(reset_on_jump_back)

        self._queue: dict[str, deque[_Stamped]] = {n: deque() for n in names}
        self._past: dict[str, list[_Stamped]] = {n: [] for n in names}
        self._overflowed_flag = dict.fromkeys(names, False)
        self._candidate: dict[str, _Stamped] | None = None
        self._cand_start_ns = 0
        self._cand_end_ns = 0
        self._pivot: str | None = None
        self._pivot_ns = 0

        self._last_ns: dict[str, int | None] = dict.fromkeys(names, None)
        self._backsteps = {n: BackstepRule(self._jump_ns) for n in names}
        self._first_required_ns: int | None = None
        self._newest_required_ns: int | None = None
        self._last_emitted_start_ns: int | None = None
        self._stalled: set[str] = set()
        self._active: tuple[str, ...] = names

        self._dropped = dict.fromkeys(names, 0)
        self._overflowed = dict.fromkeys(names, 0)
        self._out_of_order = dict.fromkeys(names, 0)
        self._emitted = 0
        self._resets = 0
        self._events: deque[SyncEvent] = deque(maxlen=max_events)

    # ------------------------------------------------------------------ public API

    @property
    def inputs(self) -> tuple[str, ...]:
        """All input names, in order."""
        return self._inputs

    @property
    def required(self) -> tuple[str, ...]:
        """The required inputs, in order."""
        return self._required

    @property
    def optional(self) -> dict[str, float]:
        """Optional input name -> stall timeout (s)."""
        return {name: ns / NS_PER_S for name, ns in self._timeout_ns.items()}

    def add(self, name: str, stamp_ns: int, msg: Any) -> list[SyncedSet]:
        """Offer one message; returns the sets this completes (usually none or one), oldest first.

        Args:
            name: the input the message arrived on.
            stamp_ns: its header stamp in integer nanoseconds.
            msg: the message itself (any object; returned untouched in a :class:`SyncedSet`).

        Raises:
            KeyError: ``name`` is not one of the inputs.
            TypeError: ``stamp_ns`` is not an integer.
        """
        if name not in self._queue:
            raise KeyError(f"unknown input {name!r}; inputs are {list(self._inputs)}")
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, Integral):
            raise TypeError(f"stamp_ns must be an integer number of nanoseconds, got {type(stamp_ns).__name__}")
        stamp = int(stamp_ns)

        last = self._last_ns[name]
        step = self._backsteps[name].classify(last, stamp)
        if step is Step.JUMP:
            assert last is not None
            self._reset_after_jump(name, stamp, last)
        elif step is not Step.FORWARD:
            self._out_of_order[name] += 1
            return []
        self._last_ns[name] = stamp

        if name in self._timeout_ns:
            if name in self._stalled:
                newest = self._newest_required_ns
                if newest is not None and newest - stamp > self._timeout_ns[name]:
                    self._dropped[name] += 1  # still too old to count as back
                    return []
                self._resume(name, stamp)
        else:
            if self._first_required_ns is None:
                self._first_required_ns = stamp
            if self._newest_required_ns is None or stamp > self._newest_required_ns:
                self._newest_required_ns = stamp
        self._detect_stalls(stamp)

        out: list[SyncedSet] = []
        if name in self._stalled or (
            self._last_emitted_start_ns is not None and stamp < self._last_emitted_start_ns
        ):
            self._dropped[name] += 1
        else:
            self._queue[name].append(_Stamped(stamp, msg))
        self._search(out)

        if len(self._queue[name]) + len(self._past[name]) > self._queue_size:
            self._abandon_candidate()
            self._queue[name].popleft()
            self._dropped[name] += 1
            self._overflowed[name] += 1
            self._overflowed_flag[name] = True
            self._search(out)
        return out

    def stalled(self) -> frozenset[str]:
        """Optional inputs currently stalled (sets are emitted without them)."""
        return frozenset(self._stalled)

    def pop_events(self) -> list[SyncEvent]:
        """Stall/resume/reset events since the last call, oldest first; each transition is reported once."""
        events = list(self._events)
        self._events.clear()
        return events

    def reset(self) -> None:
        """Forget all queued messages and the stamp history (e.g. after time jumped backwards).

        Queued messages count as dropped; counters and the stalled state of optional inputs are kept (a stalled
        input resumes when it delivers a message again).
        """
        for name in self._inputs:
            self._dropped[name] += len(self._queue[name]) + len(self._past[name])
            self._queue[name].clear()
            self._past[name].clear()
            self._overflowed_flag[name] = False
            self._last_ns[name] = None
            self._backsteps[name].forget()
        self._candidate = None
        self._pivot = None
        self._first_required_ns = None
        self._newest_required_ns = None
        self._last_emitted_start_ns = None
        self._resets += 1

    @property
    def dropped(self) -> dict[str, int]:
        """Per input: accepted messages discarded without being emitted (unmatched, overflow, stall, reset)."""
        return dict(self._dropped)

    @property
    def overflowed(self) -> dict[str, int]:
        """Per input: the part of :attr:`dropped` lost to queue overflow (queue_size too small for the lag)."""
        return dict(self._overflowed)

    @property
    def out_of_order(self) -> dict[str, int]:
        """Per input: messages refused because their stamp was not newer than the input's previous one."""
        return dict(self._out_of_order)

    @property
    def emitted(self) -> int:
        """Number of sets emitted so far."""
        return self._emitted

    @property
    def resets(self) -> int:
        """Number of resets (time jumps backwards and explicit :meth:`reset` calls)."""
        return self._resets

    def queued(self) -> dict[str, int]:
        """Per input: messages held, waiting to be matched."""
        return {name: len(self._queue[name]) + len(self._past[name]) for name in self._inputs}

    # ------------------------------------------------------------------ optional inputs

    def _detect_stalls(self, stamp: int) -> None:
        """Stall every live optional input whose last delivery is more than its timeout behind the required inputs."""
        newest = self._newest_required_ns
        if newest is None:
            return
        for name, timeout in self._timeout_ns.items():
            if name in self._stalled:
                continue
            last = self._last_ns[name]
            reference = last if last is not None else self._first_required_ns
            if reference is not None and newest - reference > timeout:
                self._stall(name, stamp)

    def _stall(self, name: str, stamp: int) -> None:
        self._abandon_candidate()
        self._dropped[name] += len(self._queue[name])
        self._queue[name].clear()
        self._overflowed_flag[name] = False
        self._stalled.add(name)
        self._active = tuple(n for n in self._inputs if n not in self._stalled)
        timeout_s = self._timeout_ns[name] / NS_PER_S
        self._events.append(SyncEvent(
            SyncEventKind.STALLED, name, stamp,
            f"{name} stopped arriving (nothing for more than {timeout_s:g} s of stamp time); running without it",
        ))

    def _resume(self, name: str, stamp: int) -> None:
        self._abandon_candidate()
        self._stalled.discard(name)
        self._active = tuple(n for n in self._inputs if n not in self._stalled)
        self._events.append(SyncEvent(SyncEventKind.RESUMED, name, stamp, f"{name} is back; sets include it again"))

    def _reset_after_jump(self, name: str, stamp: int, last: int) -> None:
        self.reset()
        self._events.append(SyncEvent(
            SyncEventKind.RESET, name, stamp,
            f"time jumped back {(last - stamp) / NS_PER_S:.3f} s on {name}; synchronizer queues reset",
        ))

    # ------------------------------------------------------------------ the ApproximateTime search

    def _abandon_candidate(self) -> None:
        """Give up the current candidate: examined messages go back to the front of their queues."""
        for name in self._inputs:
            past = self._past[name]
            if past:
                self._queue[name].extendleft(reversed(past))
                past.clear()
        self._candidate = None
        self._pivot = None

    def _search(self, out: list[SyncedSet]) -> None:
        """Advance the candidate search while every active input has a queued message; append emitted sets."""
        active = self._active
        queue = self._queue
        while all(queue[name] for name in active):
            start_name = end_name = active[0]
            start_ns = end_ns = queue[start_name][0].stamp_ns
            for name in active[1:]:
                head_ns = queue[name][0].stamp_ns
                if head_ns < start_ns:
                    start_name, start_ns = name, head_ns
                if head_ns > end_ns:
                    end_name, end_ns = name, head_ns
            for name in active:
                if name != end_name:
                    self._overflowed_flag[name] = False

            if self._pivot is None:
                too_wide = self._max_interval_ns is not None and end_ns - start_ns > self._max_interval_ns
                if too_wide or self._overflowed_flag[end_name]:
                    queue[start_name].popleft()
                    self._dropped[start_name] += 1
                    continue
                self._take_heads_as_candidate(start_ns, end_ns)
                self._pivot, self._pivot_ns = end_name, end_ns
            elif (end_ns - self._cand_end_ns) * self._penalty < start_ns - self._cand_start_ns:
                self._take_heads_as_candidate(start_ns, end_ns)
            self._past[start_name].append(queue[start_name].popleft())

            if start_name == self._pivot or (end_ns - self._cand_end_ns) * self._penalty >= (
                self._pivot_ns - self._cand_start_ns
            ):
                out.append(self._publish())

    def _take_heads_as_candidate(self, start_ns: int, end_ns: int) -> None:
        """The current queue heads become the candidate; messages examined before them can no longer be used."""
        for name in self._active:
            self._dropped[name] += len(self._past[name])
            self._past[name].clear()
        self._candidate = {name: self._queue[name][0] for name in self._active}
        self._cand_start_ns, self._cand_end_ns = start_ns, end_ns

    def _publish(self) -> SyncedSet:
        """Emit the candidate and remove, per input, its message and everything before it."""
        candidate = self._candidate
        assert candidate is not None
        for name in self._active:
            past = self._past[name]
            queue = self._queue[name]
            if past:
                queue.extendleft(reversed(past))
                past.clear()
            queue.popleft()  # the candidate's message: everything older was discarded while searching
        self._candidate = None
        self._pivot = None
        self._last_emitted_start_ns = self._cand_start_ns
        self._emitted += 1
        messages = {name: (candidate[name].msg if name in candidate else None) for name in self._inputs}
        stamps = {name: (candidate[name].stamp_ns if name in candidate else None) for name in self._inputs}
        stamp = stamps[self._required[0]]
        assert stamp is not None
        return SyncedSet(
            stamp_ns=stamp,
            messages=messages,
            missing=frozenset(name for name in self._inputs if name not in candidate),
            stamps_ns=stamps,
        )
