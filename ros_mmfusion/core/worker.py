"""Latest-frame work off the caller's thread (ROS-free): :class:`LatestFrameWorker`.

A node's input callbacks run on one executor thread; a network that takes longer than the gap between frames would
make every callback wait behind it and the frames queue up (latency grows without bound, or the middleware drops
them unseen). The worker runs the slow job on its own thread instead and keeps at most **one** frame waiting: a new
frame replaces the waiting one, which is counted (:attr:`LatestFrameWorker.dropped`, the node reports it as
``frames_dropped_by_policy``), never lost silently. Jobs run one at a time, in submission order, so outputs never
overtake each other. Frames carry their own stamps: the job publishes with the frame's header, not the time it runs.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")



class LatestFrameWorker(Generic[T]):
    """Runs ``job(frame)`` on a daemon thread named ``name`` for the latest submitted frame.

    :meth:`submit` never blocks on the job: it puts the frame in the waiting slot, replacing (and counting in
    :attr:`dropped`) a frame that waited there (with ``max_waiting`` > 1, up to that many wait and the oldest is
        dropped beyond: for offline replay that must see every frame of a burst, at a bounded memory cost).
    ``on_error(frame, exc)`` handles an exception the job raises (the
    frame is then counted in :attr:`failed` and the worker goes on with the next frame); without it the exception is
    only counted. An exception of ``on_error`` itself is counted too: nothing stops the thread but :meth:`stop`.
    Counters (:attr:`submitted`, :attr:`processed`, :attr:`failed`, :attr:`dropped`) are read without a lock; each is
    written under it.
    """

    def __init__(self, job: Callable[[T], object], *, name: str = "latest_frame_worker",
                 on_error: Callable[[T, BaseException], object] | None = None, max_waiting: int = 1) -> None:
        if max_waiting < 1:
            raise ValueError(f"max_waiting must be >= 1, got {max_waiting}")
        self._job = job
        self._on_error = on_error
        self._cond = threading.Condition()
        self._pending: deque = deque()
        self.max_waiting = max_waiting
        """Frames that may wait: 1 is latest-frame; more queue a burst, the oldest dropped beyond (counted)."""
        self._busy = False
        self._stopping = False
        self.submitted = 0
        self.processed = 0
        self.failed = 0
        self.dropped = 0
        self.name = name
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """True until :meth:`stop` ended the thread."""
        return self._thread.is_alive()

    def submit(self, frame: T) -> bool:
        """Hand ``frame`` to the worker; True when it waits alone, False when it replaced a waiting frame (that one
        is counted in :attr:`dropped`). After :meth:`stop` the frame is refused: counted as dropped, False."""
        with self._cond:
            self.submitted += 1
            if self._stopping:
                self.dropped += 1
                return False
            replaced = len(self._pending) >= self.max_waiting
            if replaced:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(frame)
            self._cond.notify_all()
            return not replaced

    def count_dropped(self, count: int = 1) -> None:
        """Count ``count`` frames the job itself declined (e.g. its node was inactive) in :attr:`dropped`."""
        with self._cond:
            self.dropped += count

    def discard(self) -> int:
        """Drop the waiting frames, if any (counted in :attr:`dropped`); returns how many were dropped."""
        with self._cond:
            count = len(self._pending)
            self._pending.clear()
            self.dropped += count
            self._cond.notify_all()
            return count

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no frame waits and no job runs (or ``timeout`` seconds passed); True when idle. Must not be
        called from inside the job (it would wait for itself)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Stop the thread: the waiting frame is dropped (counted), the running job finishes, the thread is joined.
        True when it ended within ``timeout`` seconds. Idempotent; a no-op join from the worker thread itself."""
        with self._cond:
            self._stopping = True
            self.dropped += len(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        if threading.current_thread() is self._thread:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or bool(self._pending))
                if self._stopping:
                    self._busy = False
                    self._cond.notify_all()
                    return
                frame = self._pending.popleft()
                self._busy = True
            ok = True
            try:
                self._job(frame)
            except BaseException as exc:  # noqa: BLE001 - one bad frame must not end the worker
                ok = False
                if self._on_error is not None:
                    try:
                        self._on_error(frame, exc)
                    except BaseException:  # noqa: BLE001, S110 - the handler failing is counted, nothing more
                        pass
            finally:
                del frame
                with self._cond:
                    if ok:
                        self.processed += 1
                    else:
                        self.failed += 1
                    self._busy = False
                    self._cond.notify_all()
