"""The suite's ROS 2 nodes, one module each (registry.py lists them; ``<key>_node`` console scripts run them).

Ctrl-C while a node program is still importing its modules (before :func:`ros_mmfusion.ros.entry.run_node` handles
it) ends the program quietly, without a traceback: an uncaught KeyboardInterrupt (or an error it caused) prints
nothing.
"""
from __future__ import annotations

import sys


def _quiet_keyboard_interrupt(exc_type, exc, tb, _previous=sys.excepthook) -> None:  # noqa: ANN001
    cause, seen = exc, set()
    while cause is not None and id(cause) not in seen:  # numpy turns Ctrl-C during its import into ImportError
        if isinstance(cause, KeyboardInterrupt):
            return
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    _previous(exc_type, exc, tb)


if sys.excepthook is sys.__excepthook__:
    sys.excepthook = _quiet_keyboard_interrupt
