"""The suite's one semantic label set: ids, names and colours of every class the synthetic world, the trained
models and the evaluation use.

Ids are what the ``/ground_truth/semantic`` mono8 image, the LiDAR ground truth and the segmentation models use;
names are what ``vision_msgs`` ``ObjectHypothesis.class_id`` strings carry (``/ground_truth/boxes``). Id 0
(``unlabeled``) is the ignore index: pixels and points of it carry no class (LiDAR fog clutter, say) and are left out
of training losses and evaluation. Colours follow the Cityscapes palette where a Cityscapes class exists.

"Thing" classes are countable objects with an instance id and a 3D box; the others are "stuff".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros_mmfusion.core.errors import ConfigError


@dataclass(frozen=True)
class Label:
    """One class: ``id`` (the pixel value), ``name`` (the class_id string), ``color`` (RGB 0..255), ``is_thing``."""

    id: int
    name: str
    color: tuple[int, int, int]
    is_thing: bool
    description: str


UNLABELED = 0
ROAD = 1
SIDEWALK = 2
TERRAIN = 3
BUILDING = 4
WALL = 5
VEGETATION = 6
POLE = 7
SKY = 8
CAR = 9
PEDESTRIAN = 10
CYCLIST = 11
FLOOR = 12
CEILING = 13
DOOR = 14

#: Every class, in id order (``LABELS[i].id == i``).
LABELS: tuple[Label, ...] = (
    Label(UNLABELED, "unlabeled", (0, 0, 0), False, "no class; the ignore index (also LiDAR clutter returns)"),
    Label(ROAD, "road", (128, 64, 128), False, "drivable asphalt, lane markings included"),
    Label(SIDEWALK, "sidewalk", (244, 35, 232), False, "raised pavement and its kerb"),
    Label(TERRAIN, "terrain", (152, 251, 152), False, "grass, soil and other natural ground"),
    Label(BUILDING, "building", (70, 70, 70), False, "building facades, windows included"),
    Label(WALL, "wall", (102, 102, 156), False, "free-standing walls outdoors, room and corridor walls indoors"),
    Label(VEGETATION, "vegetation", (107, 142, 35), False, "trees (trunk and crown), hedges, potted plants"),
    Label(POLE, "pole", (153, 153, 153), False, "street-light poles and their lamp heads"),
    Label(SKY, "sky", (70, 130, 180), False, "camera rays that hit nothing outdoors"),
    Label(CAR, "car", (0, 0, 142), True, "passenger cars, parked or moving"),
    Label(PEDESTRIAN, "pedestrian", (220, 20, 60), True, "people on foot, standing or walking"),
    Label(CYCLIST, "cyclist", (119, 11, 32), True, "a bicycle together with its rider"),
    Label(FLOOR, "floor", (128, 96, 64), False, "indoor floor"),
    Label(CEILING, "ceiling", (0, 128, 128), False, "indoor ceiling, ceiling lights included"),
    Label(DOOR, "door", (255, 170, 0), False, "doors set in indoor walls"),
)

IGNORE_INDEX = UNLABELED
THING_IDS: tuple[int, ...] = tuple(label.id for label in LABELS if label.is_thing)
_BY_NAME = {label.name: label for label in LABELS}


def label_by_name(name: str) -> Label:
    """The label called ``name``; ConfigError naming the known classes otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown class {name!r}; known: {', '.join(_BY_NAME)}") from None


def label_names() -> list[str]:
    """Class names indexed by id."""
    return [label.name for label in LABELS]


def palette() -> np.ndarray:
    """(256, 3) uint8 colour lookup table: row ``i`` is the colour of class ``i`` (black past the last class)."""
    lut = np.zeros((256, 3), np.uint8)
    for label in LABELS:
        lut[label.id] = label.color
    return lut


def colorize(label_image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB visualisation of an (H, W) integer label image."""
    return palette()[np.asarray(label_image).astype(np.intp) & 0xFF]
