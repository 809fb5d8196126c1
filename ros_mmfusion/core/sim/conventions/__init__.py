"""Sensor conventions of simulators and robot drivers: the synthetic world recorded as CARLA's ROS bridge, Gazebo
through ros_gz_bridge or a robot's drivers (RealSense, Velodyne, Ouster, a 16-bit thermal camera) would publish it.

A :class:`Convention` says, for a recording of the synthetic world (``core.sim.recorder``, whose own layout is the
suite's convention, docs/world.md): which topic each of the suite's topics becomes (or that it is not recorded),
which frame each of the suite's frames becomes (headers, ``child_frame_id``, ``/tf``, ``/tf_static``), which encoding
each camera image is written in, and, through ``convert``, anything a table cannot say (a cloud in a driver's field
layout, CARLA's palette-coloured semantic camera). ``mmfusion sim --convention NAME`` records in it; the
convention's ``preset`` runs such a bag (its topic names and frames are that preset's defaults), and the tests run
one bag of every convention through its preset over real DDS.

Each convention lives in its own module of this package and is registered in :data:`CONVENTIONS` by name.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ros_mmfusion.core.errors import ConfigError

#: ``convert(topic, message, messages)``: the (topic, message) pairs to record for the suite's ``topic`` and its
#: rosbags ``message`` (frames already renamed, images already in the convention's encodings; called only for topics
#: the table keeps), ``messages`` the recorder's message builder (``core.sim.recorder.SimMessages``, for
#: ``new``/``header``/``image``/``cloud``); return the pairs on the convention's topics (``convention.topic(topic)``
#: for the message as is), ``[]`` to drop it. A topic it adds or retypes is declared in the bag as it is first written.
Convert = Callable[[str, Any, Any], list[tuple[str, Any]]]


@dataclass(frozen=True)
class Convention:
    """How one simulator or driver names and encodes what the suite's recordings hold."""

    name: str
    description: str
    preset: str
    """The preset that runs a bag of this convention as recorded (config/presets/<preset>.yaml)."""
    topics: Mapping[str, str | None] = field(default_factory=dict)
    """Suite topic -> this convention's topic; None: not recorded; a topic not listed keeps its name."""
    frames: Mapping[str, str] = field(default_factory=dict)
    """Suite frame id -> this convention's frame id; a frame not listed keeps its name."""
    encodings: Mapping[str, str] = field(default_factory=dict)
    """Suite image topic -> the encoding it is written in (``bgra8``, ``32FC1``, ``16UC1``, ``mono16`` ...)."""
    descriptions: Mapping[str, str] = field(default_factory=dict)
    """Suite topic -> what it holds in this convention, for ``scenario.yaml``'s topic table (default: the suite's
    description, with the encoding)."""
    convert: Convert | None = None
    """Anything the tables cannot say (see :data:`Convert`); None: the tables are all."""

    def topic(self, suite_topic: str) -> str | None:
        """The topic ``suite_topic`` is recorded on in this convention (None: not recorded)."""
        return self.topics.get(suite_topic, suite_topic)

    def frame(self, suite_frame: str) -> str:
        """The frame id ``suite_frame`` is named in this convention."""
        return self.frames.get(suite_frame, suite_frame)


CONVENTIONS: dict[str, Convention] = {}
"""Every convention by name (filled by :func:`register` as the convention modules are imported)."""


def register(convention: Convention) -> Convention:
    if convention.name in CONVENTIONS:
        raise ValueError(f"convention {convention.name!r} registered twice")
    CONVENTIONS[convention.name] = convention
    return convention


def get_convention(name: str) -> Convention:
    """The convention ``name``; ConfigError naming the known ones otherwise."""
    _load_all()
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ConfigError(f"unknown convention {name!r}; expected one of: {', '.join(sorted(CONVENTIONS))}") from None


def all_conventions() -> list[Convention]:
    """Every convention, sorted by name."""
    _load_all()
    return [CONVENTIONS[name] for name in sorted(CONVENTIONS)]


def _load_all() -> None:
    """Import every convention module of this package (each registers itself)."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
