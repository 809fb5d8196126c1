"""The demo's pictures: 3D boxes (LiDAR frame) projected into the camera view."""
from __future__ import annotations

import math

import numpy as np

from ros_mmfusion.cli.demo import draw_boxes
from ros_mmfusion.core.geometry import PinholeCamera, Transform

# camera optical frame (x right, y down, z forward) <- LiDAR frame (x forward, y left, z up), same origin
OPTICAL_FROM_LIDAR = Transform(np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]), np.zeros(3))
CAMERA = PinholeCamera.from_fov(160, 120, math.radians(90))
GREEN = (0, 255, 0)


def _drawn(boxes) -> np.ndarray:
    image = np.zeros((120, 160, 3), np.uint8)
    draw_boxes(image, np.asarray(boxes, np.float64), CAMERA, OPTICAL_FROM_LIDAR, GREEN, ["car"] * len(boxes))
    return np.argwhere(image[:, :, 1] > 0)


def test_a_box_ahead_is_drawn_around_its_projection():
    # 4 m long, 2 m wide, 2 m high, centred 10 m ahead: fx = 80 px, so its near face spans u 80 +- 80/8*... px
    pixels = _drawn([[10.0, 0.0, 0.0, 4.0, 2.0, 2.0, 0.0]])
    assert pixels.size
    rows, cols = pixels[:, 0], pixels[:, 1]
    # the near face (x = 8 m) spans +-1 m: u = 80 +- 80 / 8 = 70..90, v = 60 +- 10 (the label sits above it)
    assert 68 <= cols.min() <= 71 and 89 <= cols.max() <= 92
    assert rows.max() <= 71 and rows.min() >= 0


def test_a_box_to_the_left_lands_left_and_a_box_behind_is_not_drawn():
    left = _drawn([[10.0, 5.0, 0.0, 2.0, 2.0, 2.0, 0.0]])  # +y is left in the LiDAR frame
    assert left.size and left[:, 1].max() < 80
    assert _drawn([[-10.0, 0.0, 0.0, 4.0, 2.0, 2.0, 0.0]]).size == 0
    assert _drawn(np.zeros((0, 7))).size == 0
