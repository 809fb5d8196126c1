"""The suite's ROS 2 nodes, one module each (registry.py lists them; ``<key>_node`` console scripts run them).

Ctrl-C while a node program is still importing its modules (before :func:`ros_mmfusion.ros.entry.run_node` handles
it) ends the program quietly, without a traceback: an uncaught KeyboardInterrupt prints nothing.
"""
from __future__ import annotations

import sys


def _quiet_keyboard_interrupt(exc_type, exc, tb, _previous=sys.excepthook) -> None:  # noqa: ANN001
    if issubclass(exc_type, KeyboardInterrupt):
        return
    _previous(exc_type, exc, tb)


if sys.excepthook is sys.__excepthook__:
    sys.excepthook = _quiet_keyboard_interrupt
