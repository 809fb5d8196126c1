"""Other label sets mapped onto the suite's (:mod:`ros_mmfusion.core.labels`): a simulator's semantic tags, their
palette colours, and which suite class each one is.

A :class:`LabelMap` reads a foreign semantic image as suite class ids (the ground truth ``mmfusion eval
--label-map NAME`` scores against) and writes suite class ids in the foreign set (what ``mmfusion sim --convention``
records as that simulator's semantic camera). Foreign classes without a suite counterpart read as the suite's ignore
index (``unlabeled``, 0), so evaluation leaves those pixels out, as it leaves out the suite's own ``unlabeled``.

Palette images are decoded by exact colour: a pixel whose colour is no entry's (a compression artefact, a tag newer
than the table) is ignore and counted, never guessed at (:meth:`LabelMap.decode_colours`).

:data:`CARLA` is CARLA 0.9.14+'s semantic segmentation camera (tags 0..28, the table of CARLA's sensor reference
``Docs/ref_sensors.md`` "Semantic segmentation camera", which notes the tags changed from 0.9.13 to 0.9.14), as
carla-ros-bridge publishes it: CityScapes-palette colours in a bgra8 Image. docs/simulators.md has the table.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core import labels as L
from ros_mmfusion.core.errors import ConfigError


@dataclass(frozen=True)
class ForeignClass:
    """One class of a foreign label set: its ``id`` (tag), ``name``, palette ``color`` (R, G, B) and the suite class
    ``suite`` it reads as (a :data:`ros_mmfusion.core.labels.LABELS` name; None: no counterpart, read as ignore)."""

    id: int
    name: str
    color: tuple[int, int, int]
    suite: str | None


@dataclass(frozen=True)
class LabelMap:
    """A foreign label set and its map onto the suite's classes (module docstring).

    ``write`` names, per suite class, the foreign class id it is written as (every suite class must be there: a
    suite class without a foreign counterpart is written as some catch-all foreign class, which then reads back as
    ignore)."""

    name: str
    version: str
    source: str
    classes: tuple[ForeignClass, ...]
    write: dict[str, int]
    semantic_topic: str = ""
    """Where this label set's semantic camera is usually published (``mmfusion eval --label-map``'s default
    ground-truth topic); empty: none."""

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if len(set(ids)) != len(ids) or not all(0 <= i <= 255 for i in ids):
            raise ValueError(f"label map {self.name}: class ids must be distinct and in 0..255")
        colours = [c.color for c in self.classes]
        if len(set(colours)) != len(colours):
            raise ValueError(f"label map {self.name}: two classes share a colour")
        for c in self.classes:
            if c.suite is not None:
                L.label_by_name(c.suite)
        missing = [lb.name for lb in L.LABELS if lb.name not in self.write]
        unknown = [i for i in self.write.values() if i not in ids]
        if missing or unknown:
            raise ValueError(f"label map {self.name}: write table lacks {missing} or names unknown ids {unknown}")

    def to_suite(self) -> np.ndarray:
        """(256,) uint8 lookup: foreign id -> suite id (ignore, 0, for no counterpart and for ids not in the set)."""
        lut = np.full(256, L.IGNORE_INDEX, np.uint8)
        for c in self.classes:
            if c.suite is not None:
                lut[c.id] = L.label_by_name(c.suite).id
        return lut

    def from_suite(self) -> np.ndarray:
        """(256,) uint8 lookup: suite id -> the foreign id it is written as (ids past the suite's: ``write`` of
        ``unlabeled``)."""
        lut = np.full(256, self.write[L.LABELS[L.IGNORE_INDEX].name], np.uint8)
        for label in L.LABELS:
            lut[label.id] = self.write[label.name]
        return lut

    def palette(self) -> np.ndarray:
        """(256, 3) uint8: foreign id -> its colour (R, G, B); black for ids not in the set."""
        lut = np.zeros((256, 3), np.uint8)
        for c in self.classes:
            lut[c.id] = c.color
        return lut

    def ignored(self) -> list[str]:
        """Names of the foreign classes that have no suite counterpart (read as ignore)."""
        return [c.name for c in self.classes if c.suite is None]

    def encode_colours(self, suite_ids: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 R, G, B palette image of an (H, W) suite class-id image, in this label set's colours."""
        return self.palette()[self.from_suite()[np.asarray(suite_ids).astype(np.intp) & 0xFF]]

    def decode_colours(self, rgb: np.ndarray) -> tuple[np.ndarray, int]:
        """Suite class ids ((H, W) uint8) of an (H, W, 3) uint8 R, G, B palette image, and the number of pixels
        whose colour is no class's (read as ignore)."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"palette image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        codes = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
        known = np.array(sorted((r << 16) | (g << 8) | b for r, g, b in (c.color for c in self.classes)), np.uint32)
        suite_of = self.to_suite()
        by_code = {(c.color[0] << 16) | (c.color[1] << 8) | c.color[2]: suite_of[c.id] for c in self.classes}
        suite_sorted = np.array([by_code[int(k)] for k in known], np.uint8)
        index = np.clip(np.searchsorted(known, codes), 0, len(known) - 1)
        hit = known[index] == codes
        ids = np.where(hit, suite_sorted[index], np.uint8(L.IGNORE_INDEX)).astype(np.uint8)
        return ids, int(hit.size - np.count_nonzero(hit))


def _carla() -> LabelMap:
    C = ForeignClass
    classes = (
        C(0, "Unlabeled", (0, 0, 0), "unlabeled"),
        C(1, "Roads", (128, 64, 128), "road"),
        C(2, "SideWalks", (244, 35, 232), "sidewalk"),
        C(3, "Building", (70, 70, 70), "building"),
        C(4, "Wall", (102, 102, 156), "wall"),
        C(5, "Fence", (190, 153, 153), None),
        C(6, "Pole", (153, 153, 153), "pole"),
        C(7, "TrafficLight", (250, 170, 30), None),
        C(8, "TrafficSign", (220, 220, 0), None),
        C(9, "Vegetation", (107, 142, 35), "vegetation"),
        C(10, "Terrain", (152, 251, 152), "terrain"),
        C(11, "Sky", (70, 130, 180), "sky"),
        C(12, "Pedestrian", (220, 20, 60), "pedestrian"),
        C(13, "Rider", (255, 0, 0), "cyclist"),
        C(14, "Car", (0, 0, 142), "car"),
        C(15, "Truck", (0, 0, 70), None),
        C(16, "Bus", (0, 60, 100), None),
        C(17, "Train", (0, 80, 100), None),
        C(18, "Motorcycle", (0, 0, 230), None),
        C(19, "Bicycle", (119, 11, 32), "cyclist"),
        C(20, "Static", (110, 190, 160), None),
        C(21, "Dynamic", (170, 120, 50), None),
        C(22, "Other", (55, 90, 80), None),
        C(23, "Water", (45, 60, 150), None),
        C(24, "RoadLine", (157, 234, 50), "road"),
        C(25, "Ground", (81, 0, 81), None),
        C(26, "Bridge", (150, 100, 100), None),
        C(27, "RailTrack", (230, 150, 140), None),
        C(28, "GuardRail", (180, 165, 180), None),
    )
    write = {"unlabeled": 0, "road": 1, "sidewalk": 2, "terrain": 10, "building": 3, "wall": 4, "vegetation": 9,
             "pole": 6, "sky": 11, "car": 14, "pedestrian": 12, "cyclist": 19,
             # indoor classes: CARLA has no indoor tags; written as Other (22), which reads back as ignore
             "floor": 22, "ceiling": 22, "door": 22}
    return LabelMap("carla", "CARLA 0.9.14+ (tags 0..28)",
                    "CARLA Docs/ref_sensors.md, Semantic segmentation camera (tags changed from 0.9.13 to 0.9.14); "
                    "carla-ros-bridge camera.py publishes them CityScapesPalette-converted as bgra8",
                    classes, write, semantic_topic="/carla/ego_vehicle/semantic_segmentation_front/image")


CARLA = _carla()
"""CARLA 0.9.14+'s semantic tags (module docstring)."""

LABEL_MAPS: dict[str, LabelMap] = {CARLA.name: CARLA}


def get_label_map(name: str) -> LabelMap:
    """The label map ``name``; ConfigError naming the known ones otherwise."""
    try:
        return LABEL_MAPS[name]
    except KeyError:
        raise ConfigError(f"unknown label map {name!r}; expected one of: {', '.join(sorted(LABEL_MAPS))}") from None
