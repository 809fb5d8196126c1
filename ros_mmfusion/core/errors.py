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
