"""Keeping one frame every period of stamp time, whatever rate the frames arrive at."""
from __future__ import annotations


class PeriodicSampler:
    """Accepts one frame per ``period_s`` of stamp time, on a fixed schedule.

    The first frame is taken; after that a frame is taken when its stamp reaches the next due time (less a tolerance
    of ``tolerance`` periods, so a camera at exactly the period with a little jitter loses no frames), and the due
    time advances by one period. The schedule, not the last taken stamp, sets the next due time, so a 10 Hz camera
    sampled at 4 Hz gives 4 frames a second on average (spacings 0.3, 0.2, 0.3, 0.2 s) rather than drifting to
    5 Hz. A stamp earlier than the last one taken (a looping bag) or a gap of more than a period restarts the
    schedule at that frame.
    """

    def __init__(self, period_s: float, tolerance: float = 0.1) -> None:
        if not period_s > 0:
            raise ValueError(f"period must be positive, got {period_s}")
        if not 0 <= tolerance < 0.5:
            raise ValueError(f"tolerance must be in [0, 0.5) periods, got {tolerance}")
        self.period_ns = round(period_s * 1e9)
        self.tolerance_ns = round(tolerance * self.period_ns)
        self._due: int | None = None
        self._last: int | None = None

    def offer(self, stamp_ns: int) -> bool:
        """True when the frame stamped ``stamp_ns`` is taken."""
        if self._due is None or self._last is None or stamp_ns < self._last:
            take = True
            self._due = stamp_ns + self.period_ns
        elif stamp_ns >= self._due - self.tolerance_ns:
            take = True
            self._due += self.period_ns
            if stamp_ns >= self._due:  # fell behind by a whole period (a gap): restart the schedule here
                self._due = stamp_ns + self.period_ns
        else:
            take = False
        if take:
            self._last = stamp_ns
        return take

    @property
    def last_ns(self) -> int | None:
        """Stamp of the last frame taken."""
        return self._last

    def reset(self) -> None:
        self._due = self._last = None
