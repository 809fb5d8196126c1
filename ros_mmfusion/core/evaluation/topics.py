"""What a node offers to evaluation (ROS-free): the topics ``mmfusion eval`` compares with ground truth and
``mmfusion benchmark`` feeds and times. Each node class declares one :class:`EvaluationTopics` as its
``EVALUATION`` class attribute; names are relative ROS topic names (remappable), resolved with :func:`resolve_topic`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluationTopics:
    """A node's topics for evaluation: its main input (counts the expected frames), outputs, and the outputs that
    are compared with ground truth."""

    main_input: str
    required_inputs: tuple[str, ...]
    outputs: tuple[str, ...]  # Image topics (relative names, remappable)
    labels: str | None = None  # the mono8 class-id output compared with /ground_truth/semantic
    inputs: tuple[str, ...] = ()  # every input topic (relative), preloaded by ``mmfusion benchmark``
    detections: str | None = None  # the Detection3DArray output compared with /ground_truth/boxes (not an Image)
    path: str | None = None  # the nav_msgs/Path of waypoints compared with the future odometry (not an Image)
    closest_node: str | None = None  # the std_msgs/Int32 localised node (no header: paired with ``path`` in order)
    odom: str | None = None  # the nav_msgs/Odometry input used as ground-truth trajectory


def resolve_topic(name: str, remappings: dict[str, str]) -> str:
    """The absolute topic of relative ``name`` after the node's ``remappings`` (keyed by the relative name or an
    absolute one), as a node in the root namespace resolves it."""
    return remappings.get(name, name if name.startswith("/") else f"/{name}")
