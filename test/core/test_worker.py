"""LatestFrameWorker: a new frame replaces a waiting one (counted), jobs run in order, failures handled, stop joins."""
from __future__ import annotations

import threading

import pytest

from ros_mmfusion.core.worker import LatestFrameWorker

WAIT_S = 10.0  # generous: only a hung worker gets near it


class SlowJob:
    """A real job: records each frame, and holds the frame ``hold`` until :meth:`release` (a slow network)."""

    def __init__(self, hold: object = None, fail: object = "never") -> None:
        self.hold, self.fail = hold, fail
        self.started = threading.Event()
        self.gate = threading.Event()
        self.done: list[object] = []
        self.threads: set[str] = set()

    def __call__(self, frame: object) -> None:
        self.threads.add(threading.current_thread().name)
        if frame == self.hold:
            self.started.set()
            assert self.gate.wait(WAIT_S)
        if frame == self.fail:
            raise ValueError(f"bad frame {frame}")
        self.done.append(frame)

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def workers():
    made: list[LatestFrameWorker] = []
    yield made
    for worker in made:
        worker.stop(WAIT_S)


def test_a_new_frame_replaces_the_waiting_one_and_is_counted(workers):
    job = SlowJob(hold=1)
    worker = LatestFrameWorker(job, name="seg_worker")
    workers.append(worker)
    assert worker.submit(1)
    assert job.started.wait(WAIT_S)  # frame 1 is in the job: the caller is not blocked by it
    assert worker.submit(2) is True  # waits alone
    assert worker.submit(3) is False and worker.submit(4) is False  # each replaced the waiting frame
    assert worker.dropped == 2 and worker.submitted == 4
    job.release()
    assert worker.wait_idle(WAIT_S)
    assert job.done == [1, 4]  # in submission order, the latest frame last; 2 and 3 never ran
    assert worker.processed == 2 and worker.failed == 0
    assert job.threads == {"seg_worker"} and threading.current_thread().name not in job.threads


def test_frames_submitted_slower_than_the_job_all_run_in_order(workers):
    worker = LatestFrameWorker(job := SlowJob())
    workers.append(worker)
    for i in range(5):
        worker.submit(i)
        assert worker.wait_idle(WAIT_S)
    assert job.done == [0, 1, 2, 3, 4] and worker.dropped == 0


def test_a_failing_frame_goes_to_on_error_and_the_worker_goes_on(workers):
    errors: list[tuple[object, str]] = []
    job = SlowJob(fail="bad")
    worker = LatestFrameWorker(job, on_error=lambda frame, exc: errors.append((frame, str(exc))))
    workers.append(worker)
    for frame in ("a", "bad", "b"):
        worker.submit(frame)
        assert worker.wait_idle(WAIT_S)
    assert errors == [("bad", "bad frame bad")]
    assert job.done == ["a", "b"] and worker.failed == 1 and worker.processed == 2 and worker.running


def test_a_failing_error_handler_is_counted_and_does_not_end_the_thread(workers):
    def broken_handler(frame: object, exc: BaseException) -> None:
        raise RuntimeError("handler failed too")

    worker = LatestFrameWorker(job := SlowJob(fail=1), on_error=broken_handler)
    workers.append(worker)
    worker.submit(1)
    assert worker.wait_idle(WAIT_S)
    worker.submit(2)
    assert worker.wait_idle(WAIT_S)
    assert job.done == [2] and worker.failed == 1 and worker.running


def test_stop_finishes_the_running_frame_drops_the_waiting_one_and_joins(workers):
    job = SlowJob(hold="running")
    worker = LatestFrameWorker(job)
    worker.submit("running")
    assert job.started.wait(WAIT_S)
    worker.submit("waiting")
    stopper = threading.Thread(target=lambda: worker.stop(WAIT_S))
    stopper.start()
    job.release()
    stopper.join(WAIT_S)
    assert not worker.running
    assert job.done == ["running"] and worker.dropped == 1  # the waiting frame was dropped, counted
    assert worker.submit("late") is False and worker.dropped == 2  # refused after stop, counted
    assert worker.stop(WAIT_S)  # idempotent


def test_discard_drops_only_the_waiting_frame(workers):
    job = SlowJob(hold=1)
    worker = LatestFrameWorker(job)
    workers.append(worker)
    worker.submit(1)
    assert job.started.wait(WAIT_S)
    assert worker.discard() == 0  # frame 1 left the waiting slot when its job started
    worker.submit(2)
    assert worker.discard() == 1 and worker.dropped == 1
    job.release()
    assert worker.wait_idle(WAIT_S)
    assert job.done == [1]


def test_max_waiting_queues_a_burst_and_drops_the_oldest_beyond():
    """With ``max_waiting`` 3, a burst of 5 frames behind a held job keeps the newest 3 (in order); 1 frame is dropped
    for each beyond the bound, so memory stays bounded."""
    import threading

    from ros_mmfusion.core.worker import LatestFrameWorker

    gate, done = threading.Event(), []

    def job(frame: int) -> None:
        if frame == 0:
            gate.wait(5.0)
        done.append(frame)

    worker = LatestFrameWorker(job, max_waiting=3)
    worker.submit(0)
    while not worker._busy:  # the held frame 0 is running, nothing waits
        threading.Event().wait(0.01)
    results = [worker.submit(k) for k in range(1, 6)]
    gate.set()
    assert worker.wait_idle(5.0)
    worker.stop()
    assert results == [True, True, True, False, False] and worker.dropped == 2
    assert done == [0, 3, 4, 5]
