"""Exception types shared by the core and the ROS adapters."""
from __future__ import annotations


class MessageFormatError(ValueError):
    """A message (or array standing in for one) cannot be interpreted: the text says what is wrong and with which field.

    Raised by every conversion in ``ros_mmfusion.ros`` for malformed input (step too small, data too short, unknown
    encoding or field datatype, ...). Nodes catch it, log it throttled, count it in diagnostics and skip the frame.
    """


class ConfigError(ValueError):
    """A configuration file, preset or parameter value is invalid; the text names the offending key and why."""


def one_line(text: object) -> str:
    """``text`` (an exception or a string) on one line: runs of whitespace, newlines included, become one space.

    Third-party messages (YAML parsers, rosbags) span several lines; a command's error is one line on stderr.
    """
    return " ".join(str(text).split())


class TransformLookupError(LookupError):
    """A transform between two frames cannot be given (``core/tf_buffer.py``): an unknown frame, no chain of transforms
    joining the frames, or a stamp beyond the buffered history (extrapolation). The text names both frames and why;
    ``target`` and ``source`` are the frames asked for. Nodes log it throttled, report a WARN and skip the frame."""

    def __init__(self, target: str, source: str, reason: str) -> None:
        super().__init__(f"no transform {target!r} <- {source!r}: {reason}")
        self.target, self.source, self.reason = target, source, reason
