"""Declarative node parameters: one spec per parameter, validated the same way at start-up and on every change.

ROS-free: the node base turns a :class:`ParamSpec` into an ``rcl_interfaces/ParameterDescriptor`` (type, range,
read-only, description) and calls :func:`validate` for start-up values and ``set_parameters`` requests alike.
"""
from __future__ import annotations

import array
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ros_mmfusion.core.errors import ConfigError

_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class ParamSpec:
    """A node parameter. ``default`` fixes the type (bool, int, float, str, or a list of one of them).

    ``minimum``/``maximum`` bound numbers (inclusive); ``choices`` restricts values; ``read_only`` parameters can
    only be set at start-up (for example a model file); ``check`` is an extra predicate returning an error text or
    None. ``stamp_time``: a duration in seconds of header-stamp time (not of the clock): a replay at x``rate``, whose
    player restamps with the wall clock, scales it by ``1 / rate`` (``mmfusion eval``).
    """

    name: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: Sequence[Any] | None = None
    read_only: bool = False
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)
    stamp_time: bool = False

    @property
    def kind(self) -> type:
        value = self.default
        if isinstance(value, (list, tuple)):
            if not value:
                raise ConfigError(f"parameter {self.name!r}: a list default must not be empty (its type is unknown)")
            value = value[0]
        for t in _TYPES:  # bool before int: bool is an int subclass
            if type(value) is t:
                return t
        raise ConfigError(f"parameter {self.name!r}: unsupported default type {type(self.default).__name__}")

    @property
    def is_list(self) -> bool:
        return isinstance(self.default, (list, tuple))

    def constraints_text(self) -> str:
        parts = []
        if self.minimum is not None or self.maximum is not None:
            parts.append(f"range [{self.minimum if self.minimum is not None else '-inf'}, "
                         f"{self.maximum if self.maximum is not None else 'inf'}]")
        if self.choices is not None:
            parts.append("one of " + ", ".join(repr(c) for c in self.choices))
        return "; ".join(parts)


def _check_scalar(spec: ParamSpec, value: Any) -> Any:
    kind = spec.kind
    if kind is float and type(value) is int:  # YAML writes 1 for 1.0
        value = float(value)
    if type(value) is not kind:
        raise ConfigError(f"parameter {spec.name!r} must be {kind.__name__}, got {value!r} ({type(value).__name__})")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"parameter {spec.name!r} must be finite, got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(f"parameter {spec.name!r} = {value!r} is below its minimum {spec.minimum}")
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(f"parameter {spec.name!r} = {value!r} is above its maximum {spec.maximum}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"parameter {spec.name!r} = {value!r} is not one of {list(spec.choices)}")
    return value


def validate(spec: ParamSpec, value: Any) -> Any:
    """Return ``value`` normalised (ints widened to float where a float is expected, a list as a ``list``) or raise
    ConfigError. A list may arrive as a tuple or an ``array.array`` (what rclpy makes of a double or integer array set
    over DDS, as ``ros2 param set`` does)."""
    if spec.is_list:
        if not isinstance(value, (list, tuple, array.array)):
            raise ConfigError(f"parameter {spec.name!r} must be a list, got {value!r}")
        value = [_check_scalar(spec, v) for v in value]
    else:
        value = _check_scalar(spec, value)
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            raise ConfigError(f"parameter {spec.name!r} = {value!r}: {problem}")
    return value
