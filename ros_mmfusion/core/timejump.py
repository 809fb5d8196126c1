"""Time jumps backwards in one stream of header stamps (ROS-free).

A stream's stamps normally increase. A stamp older than the last accepted one is either a lone late message (out of
order: skip it) or the first message of a new timeline (a bag that loops, a simulator that restarts, a driver whose
clock was reset: every state that depends on time must be reset and the message accepted). :class:`BackstepRule`
tells the two apart without losing more than one message:

* a step back larger than ``jump_ns`` is a time jump at once;
* a smaller step back is out of order, unless the message before it was behind too: two messages in a row older than
  the last accepted stamp mean the timeline restarted (a short loop), so the stream resumes after at most one skipped
  message instead of staying silent until its stamps catch up with the old timeline;
* an equal stamp is a duplicate (neither forward nor a jump).

Stamps are integer nanoseconds on whatever clock the messages carry.
"""
from __future__ import annotations

import enum


class Step(enum.Enum):
    """How a stamp relates to the last accepted one of its stream."""

    FORWARD = "forward"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    JUMP = "jump"


class BackstepRule:
    """Classifies each new stamp of one stream against the last accepted stamp (see the module docstring).

    ``jump_ns``: a step back larger than this is a jump at once; ``None`` never reports a jump (every step back is
    out of order). The caller keeps the last accepted stamp and passes it in.
    """

    def __init__(self, jump_ns: int | None) -> None:
        if jump_ns is not None and jump_ns < 0:
            raise ValueError(f"jump_ns must be >= 0 or None, got {jump_ns}")
        self.jump_ns = jump_ns
        self._behind = False

    def classify(self, last_ns: int | None, stamp_ns: int) -> Step:
        if last_ns is None or stamp_ns > last_ns:
            self._behind = False
            return Step.FORWARD
        if stamp_ns == last_ns:
            return Step.DUPLICATE
        if self.jump_ns is not None and (last_ns - stamp_ns > self.jump_ns or self._behind):
            self._behind = False
            return Step.JUMP
        self._behind = True
        return Step.OUT_OF_ORDER

    def forget(self) -> None:
        """Start afresh (after a reset of the stream's timeline)."""
        self._behind = False
