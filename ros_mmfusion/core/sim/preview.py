"""Side-by-side PNG of one simulated frame: RGB, depth, thermal, LiDAR bird's-eye view (with boxes) and labels.

``python -m ros_mmfusion.core.sim.preview --out docs/img`` writes one PNG per scenario (what docs/world.md shows).
matplotlib (Agg backend) is imported only here.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ros_mmfusion.core import labels as L
from ros_mmfusion.core.codec.boxes import box_corners
from ros_mmfusion.core.sim.scenarios import SCENARIOS
from ros_mmfusion.core.sim.simulator import SimFrame, Simulation


def render_preview(frame: SimFrame, path: str | Path, title: str = "", bev_range: float = 40.0) -> Path:
    """Write the five-panel PNG of ``frame`` to ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cam = frame.camera
    fig, axes = plt.subplots(1, 5, figsize=(25, 4.6), dpi=80)
    axes[0].imshow(cam.rgb)
    axes[0].set_title("RGB (/camera/color/image_raw)")
    depth = np.where(np.isfinite(cam.depth), cam.depth, np.nan)
    im = axes[1].imshow(depth, cmap="turbo", vmin=0.0, vmax=max(float(np.nanmax(depth)) if np.isfinite(depth).any()
                                                               else 1.0, 1.0))
    axes[1].set_title("depth 32FC1, m (black: invalid)")
    axes[1].set_facecolor("black")
    fig.colorbar(im, ax=axes[1], fraction=0.035, pad=0.01)
    celsius = cam.thermal.astype(np.float32) / 100.0 - 273.15
    scene = cam.semantic != L.SKY  # the cold sky would squash the scene's contrast
    lo, hi = np.percentile(celsius[scene] if scene.any() else celsius, [1, 99.8])
    im = axes[2].imshow(celsius, cmap="inferno", vmin=lo, vmax=hi)
    axes[2].set_title("thermal mono16 (deg C; sky below scale)")
    fig.colorbar(im, ax=axes[2], fraction=0.035, pad=0.01)

    ax = axes[3]
    pts = frame.lidar.points
    colors = L.palette()[frame.lidar.labels] / 255.0
    colors[frame.lidar.labels == L.UNLABELED] = (1.0, 1.0, 1.0)
    ax.set_facecolor("black")
    ax.scatter(-pts["y"], pts["x"], s=0.4, c=colors, linewidths=0)
    if frame.boxes:
        corners = box_corners(np.array([b.center for b in frame.boxes]), np.array([b.size for b in frame.boxes]),
                              np.array([b.yaw for b in frame.boxes]))
        for box, c in zip(frame.boxes, corners, strict=True):
            ring = c[[0, 1, 2, 3, 0]]
            ax.plot(-ring[:, 1], ring[:, 0], color=np.array(L.LABELS[box.class_id].color) / 255.0 * 0.5 + 0.5, lw=1)
    ax.plot([0], [0], marker="^", color="yellow")
    ax.set_xlim(-bev_range, bev_range)
    ax.set_ylim(-bev_range * 0.5, bev_range * 1.5)
    ax.set_aspect("equal")
    ax.set_title(f"LiDAR BEV, class colours, GT boxes ({len(pts)} pts)")
    axes[4].imshow(L.colorize(cam.semantic))
    axes[4].set_title("labels (/ground_truth/semantic)")
    for a in axes[[0, 1, 2, 4]]:
        a.set_xticks([])
        a.set_yticks([])
    present = sorted(set(np.unique(cam.semantic)) | set(np.unique(frame.lidar.labels)))
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.array(L.LABELS[i].color) / 255.0) for i in present]
    fig.legend(handles, [L.LABELS[i].name for i in present], loc="lower center", ncol=len(present), fontsize=9,
               frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img", help="output directory (default docs/img)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frame", type=int, help="frame index to show (default: 60 outdoors, 15 indoors)")
    parser.add_argument("--scenario", action="append", help="scenario(s) to render (default: all)")
    args = parser.parse_args(argv)
    for name in args.scenario or list(SCENARIOS):
        sim = Simulation(name, seed=args.seed, size=(640, 480), beams=32)
        index = args.frame if args.frame is not None else (60 if sim.world.outdoor else 15)
        frame = sim.frame(index)
        out = render_preview(frame, Path(args.out) / f"sim_{name}.png",
                             title=f"{name} (seed {args.seed}, frame {index}): {sim.scenario.description}",
                             bev_range=40.0 if sim.world.outdoor else 15.0)
        print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
