"""Render docs/img/nuscenes_painting.png: the nuScenes sample's LIDAR_TOP sweep from above, each point coloured by the
camera that paints it in six-camera painting (``MultiCameraScores``, the cameras in the nuscenes preset's order,
nuScenes' calibration), grey where no camera sees it, with the annotated 3D boxes.

    PYTHONPATH=. python tools/nuscenes_figure.py [DATASET] [OUT.png]

DATASET defaults to ../shared/real/nuscenes_sample. The data is nuScenes' (CC BY-NC-SA 4.0, non-commercial).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ros_mmfusion.core.datasets import nuscenes as nus
from ros_mmfusion.core.detection3d.painting import MultiCameraScores, SegmentationScores

COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]
SIZE, HALF_RANGE_M = 640, 50.0


def render(dataset: Path, out: Path) -> None:
    sample = nus.read_samples(dataset)[0]
    points = sample.points()
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=1)
    cameras = tuple(SegmentationScores(c.camera, c.T_cam_lidar, labels=np.zeros((9, 16), np.uint8), class_ids=(1,))
                    for c in sample.cameras.values())
    which = MultiCameraScores(cameras).camera_index(xyz)
    scale = SIZE / (2 * HALF_RANGE_M)

    def pixel(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # LIDAR_TOP: y forward (up in the picture), x right
        return (SIZE / 2 + x * scale), (SIZE / 2 - y * scale)

    canvas = np.full((SIZE, SIZE, 3), 16, np.uint8)
    u, v = pixel(xyz[:, 0], xyz[:, 1])
    keep = (u >= 0) & (u < SIZE) & (v >= 0) & (v < SIZE)
    palette = np.array([(90, 90, 90)] + COLOURS, np.uint8)
    canvas[v[keep].astype(int), u[keep].astype(int)] = palette[which[keep] + 1]
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for box in sample.boxes:
        bottom = box.corners()[:4]
        bu, bv = pixel(bottom[:, 0], bottom[:, 1])
        draw.polygon(list(zip(bu.tolist(), bv.tolist(), strict=True)), outline=(255, 255, 255))
    for i, name in enumerate(nus.CAMERAS):
        draw.rectangle([8, 8 + 16 * i, 20, 20 + 16 * i], fill=COLOURS[i])
        draw.text((26, 8 + 16 * i), name, fill=(230, 230, 230))
    draw.text((8, SIZE - 34), f"nuScenes {sample.token[:8]}: {len(xyz)} LIDAR_TOP points, {len(sample.boxes)} boxes",
              fill=(230, 230, 230))
    draw.text((8, SIZE - 18), "grey: seen by no camera; 100 m x 100 m, forward up", fill=(230, 230, 230))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    dataset = Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared" / "real" / "nuscenes_sample"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else root / "docs" / "img" / "nuscenes_painting.png"
    render(dataset, target)
    print(f"{target} ({target.stat().st_size // 1024} KB)")
