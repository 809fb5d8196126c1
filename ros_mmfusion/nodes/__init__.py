"""The suite's ROS 2 nodes, one module each (registry.py lists them; ``<key>_node`` console scripts run them).

Ctrl-C while a node program is still importing its modules (before :func:`ros_mmfusion.ros.entry.run_node` handles
it) ends the program quietly, without a traceback: in a node program (``python -m ros_mmfusion.nodes.<node>``, as
the launcher starts them, or a ``<key>_node`` console script) SIGINT exits at once with status 130 until
``run_node`` takes over, so no KeyboardInterrupt is ever raised inside an extension module's import (one raised
inside pybind11 code aborted the process, about once in twenty Ctrl-Cs 0.6 s after start); elsewhere an uncaught
KeyboardInterrupt (or an error it caused) prints nothing.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

EXIT_INTERRUPTED = 130
"""``ros_mmfusion.ros.entry.EXIT_INTERRUPTED``, not imported from there: that import loads numpy, a C extension,
before Ctrl-C is handled here (test_node_startup checks the two agree)."""


def _exit_interrupted(signum, frame) -> None:  # noqa: ANN001
    """SIGINT while a node program imports: nothing to clean up yet (no ROS context, no files), so end now."""
    os._exit(EXIT_INTERRUPTED)


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


def _is_node_program() -> bool:
    # ``python -m ros_mmfusion.nodes.x`` imports this package while sys.argv[0] is still "-m"; a console script
    # <key>_node has its own name there. The launcher's own process (which imports node modules to run them
    # in-process) is neither and keeps its Ctrl-C.
    return sys.argv[:1] == ["-m"] or os.path.basename(sys.argv[0] if sys.argv else "").endswith("_node")


if (_is_node_program() and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
    signal.signal(signal.SIGINT, _exit_interrupted)
