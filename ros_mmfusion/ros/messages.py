"""Message types by name: ``pkg/msg/Name`` <-> the rclpy class (for replaying and recording serialized messages)."""
from __future__ import annotations

import importlib
from typing import Any

from ros_mmfusion.core.errors import ConfigError


def message_class(msgtype: str) -> type:
    """The rclpy class of ``pkg/msg/Name``; ConfigError when its package is not installed."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"message type {msgtype} is not installed") from None


def message_type_name(msg: Any) -> str:
    """The ``pkg/msg/Name`` of an rclpy message instance."""
    cls = type(msg)
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"
