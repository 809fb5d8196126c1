"""One ``mmfusion eval`` run's accumulators (ROS-free): whichever of segmentation, 3D detection and navigation the
preset evaluates, fed with arrays and stamps (ns) by the ROS layer (``ros/evaluation.py``), and the metric sections
of ``metrics.json`` they give at the end."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ros_mmfusion.core.detection3d.metrics import DetectionAccumulator
from ros_mmfusion.core.navigation.metrics import NavigationRecord
from ros_mmfusion.core.segmentation.metrics import SegmentationAccumulator

GT_SEMANTIC = "/ground_truth/semantic"
"""The ground-truth class-id image topic of a simulated bag (``mmfusion sim``)."""
GT_BOXES = "/ground_truth/boxes"
"""The ground-truth Detection3DArray topic of a simulated bag."""
GT_BOXES_2D = "/ground_truth/boxes_2d"
"""The ground-truth Detection2DArray (camera image boxes, DontCare included) of a bag from ``mmfusion import kitti``."""
DIAGNOSTICS = "/diagnostics"
"""Where nodes publish their status, with the ``model.*`` record of their network (``core.model_package``)."""


@dataclass
class EvaluationSession:
    """The accumulators of one run; None where the preset or the bag gives nothing to evaluate.
    ``odom_topic`` names the ground-truth trajectory in navigation's notes. ``models``: per node (fully qualified
    name) the record of the network it ran, from its ``/diagnostics`` (``core.model_package.model_values``)."""

    segmentation: SegmentationAccumulator | None = None
    detection: DetectionAccumulator | None = None
    navigation: NavigationRecord | None = None
    odom_topic: str = "/odom"
    semantic_topic: str = GT_SEMANTIC
    """The ground-truth semantic image topic (``mmfusion eval --ground-truth-semantic``)."""
    models: dict[str, dict[str, str]] = field(default_factory=dict)

    def add_status(self, node: str, values: Mapping[str, str]) -> None:
        """A ``/diagnostics`` status of ``node``: its network record (weights kind, package, sha256, backend,
        hardware) is kept when it has one (the latest wins)."""
        from ros_mmfusion.core.model_package import model_of_values

        record = model_of_values(values)
        if record is not None:
            self.models[node] = record

    def model_section(self, nodes: list[str], notes: list[str]) -> dict[str, dict[str, str]]:
        """The ``models`` section of ``metrics.json``: the network record of each node in ``nodes`` (fully qualified
        names) that runs one, with a note for any whose record never arrived; random or fixture weights get a note
        too, since their accuracy figures mean nothing."""
        section = {}
        for node in nodes:
            record = self.models.get(node)
            if record is None:
                continue
            section[node] = record
            if record.get("weights") not in ("trained", "file"):
                notes.append(f"{node} ran untrained weights ({record.get('description')}): its accuracy figures "
                             "mean nothing")
        return section

    def results(self, class_names: list[str], ground_truth_frames: Mapping[str, int],
                notes: list[str]) -> dict[str, dict]:
        """The ``segmentation``, ``detection`` and ``navigation`` sections that could be computed (in that order);
        a section that could not gets a line in ``notes`` instead. ``ground_truth_frames``: message count per
        ground-truth topic in the bag."""
        sections: dict[str, dict | None] = {}
        if self.segmentation is not None:
            sections["segmentation"] = self.segmentation.results(
                class_names, ground_truth_frames.get(self.semantic_topic, 0), notes)
        if self.detection is not None:
            sections["detection"] = self.detection.results(ground_truth_frames.get(GT_BOXES, 0), notes)
        if self.navigation is not None:
            sections["navigation"] = self.navigation.results(notes, self.odom_topic)
        return {key: value for key, value in sections.items() if value is not None}
