"""``mmfusion demo``: generate the embedded default data (a synthetic-world bag) and run the suite on it.

Replays the bag through the ``demo`` preset's nodes over real DDS, records what they publish, prints a summary
(messages, rates, latency) and writes a picture of one output frame. ``make demo`` runs this.

``--out`` (default ``demo_out/``) follows :mod:`ros_mmfusion.core.outputs`, with one addition so that ``make demo``
can be rerun: a directory whose ``.mmfusion-output`` marker says ``mmfusion demo`` wrote into it is reused without
``--overwrite`` (its bag is replayed again, its picture replaced). Any other non-empty directory needs
``--overwrite``, and even then only the demo's own entries (``SCENARIO_bag/``, ``demo_SCENARIO.png``) are written,
never over a file mmfusion did not write.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

IMAGE_OUTPUTS = ("/camera/color/image_raw", "/lidar/depth_image", "/segmentation/labels", "/segmentation/color")

HELP = "generate the default synthetic bag and run the demo preset on it, printing what was published"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output directory (bag, picture, summary)")
    parser.add_argument("--scenario", default="urban_night", help="synthetic-world scenario of the generated bag")
    parser.add_argument("--frames", type=int, default=40, help="frames to generate (10 Hz)")
    parser.add_argument("--size", default="640x480", help="camera size WxH")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--regenerate", action="store_true", help="generate the bag even if it exists")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out that no earlier `mmfusion demo` wrote into (only the "
                             "demo's bag and picture; a file mmfusion did not write is never replaced)")


def _is_old_demo_dir(directory: Path) -> bool:
    """A demo directory written before output markers existed: only demo bags and demo pictures."""
    from ros_mmfusion.core.sim.recorder import is_simulated_bag

    entries = list(directory.iterdir())
    return bool(entries) and all((p.is_dir() and p.name.endswith("_bag") and is_simulated_bag(p))
                                 or (p.is_file() and p.name.startswith("demo_") and p.suffix == ".png")
                                 for p in entries)


def ensure_bag(output, scenario: str, frames: int, size: tuple[int, int], seed: int, regenerate: bool) -> Path:
    """The demo bag: the one in ``output`` (an ``OutputDirectory``) if complete, else generated into its stage."""
    from ros_mmfusion.core.sim.recorder import is_simulated_bag, record

    name = f"{scenario}_bag"
    existing = output.path / name
    if is_simulated_bag(existing) and (existing / "calibration.yaml").is_file() and not regenerate:
        print(f"using existing bag {existing} (--regenerate to make it again)")
        output.keep(name)
        return existing
    bag = output.stage / name
    print(f"generating {frames} frames of '{scenario}' at {size[0]}x{size[1]} into {output.path / name} ...",
          flush=True)

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            print(f"  {done}/{total} frames", flush=True)

    summary = record(scenario, bag, frames, seed=seed, size=size, progress=progress)
    print(f"  wrote {sum(summary.messages.values())} messages on {len(summary.messages)} topics, "
          f"{summary.bytes / 1e6:.0f} MB in {summary.seconds:.1f} s")
    return bag


def _depth_colours(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BGR turbo colours of a sparse depth image (near = red) dilated to visible dots, and the dot mask."""
    import cv2

    valid = depth > 0
    scaled = np.zeros(depth.shape, np.uint8)
    if np.any(valid):
        near, far = np.percentile(depth[valid], [2, 98])
        scaled[valid] = np.clip(255 * (1 - (depth[valid] - near) / max(far - near, 1e-3)), 0, 255).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    colour = cv2.dilate(cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO), kernel)
    return colour, cv2.dilate(valid.astype(np.uint8), kernel).astype(bool)


def demo_picture(rgb: np.ndarray, path: Path, depth: np.ndarray | None = None,
                 segmentation: np.ndarray | None = None) -> Path:
    """One row: the camera image (brightened for night scenes) with LiDAR depth dots, and the segmentation colours
    blended over the camera image, whichever of the two were published."""
    import cv2

    bgr = cv2.convertScaleAbs(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), alpha=3.0, beta=20)
    panels = []
    if depth is not None:
        colour, dots = _depth_colours(depth)
        with_dots = bgr.copy()
        with_dots[dots] = colour[dots]
        panels.append(with_dots)
    if segmentation is not None:
        seg_bgr = cv2.cvtColor(np.ascontiguousarray(segmentation), cv2.COLOR_RGB2BGR)
        panels.append(cv2.addWeighted(bgr, 0.4, seg_bgr, 0.6, 0.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate(panels or [bgr], axis=1))
    return path


def run(args: argparse.Namespace) -> int:
    from ros_mmfusion.cli.main import UserError

    if not 0 < args.frames <= 10_000:
        raise UserError(f"--frames must be in 1..10000, got {args.frames}")
    if not 0.01 <= args.rate <= 100:
        raise UserError(f"--rate must be in [0.01, 100], got {args.rate}")
    from ros_mmfusion.core.outputs import OutputDirectory
    from ros_mmfusion.core.sim import parse_size
    from ros_mmfusion.core.sim.scenarios import get_scenario

    size = parse_size(args.size)
    scenario = get_scenario(args.scenario).name
    picture_name = f"demo_{scenario}.png"
    output = OutputDirectory(args.out, "demo", overwrite=args.overwrite, reuse=True, prune=False,
                             writes=(f"{scenario}_bag", picture_name), recognise=_is_old_demo_dir)
    with output as stage:
        _demo(args, output, stage, scenario, size, picture_name)
    print(f"picture of the last frame (camera + LiDAR depth | segmentation): {output.path / picture_name}")
    return 0


def _demo(args: argparse.Namespace, output, stage: Path, scenario: str, size: tuple[int, int],
          picture_name: str) -> None:
    """Generate (or reuse) the bag, replay it through the demo preset and write the picture into ``stage``."""
    from ros_mmfusion.cli.main import UserError

    bag = ensure_bag(output, scenario, args.frames, size, args.seed, args.regenerate)

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float64

    import ros_mmfusion.ros  # noqa: F401  (DDS profile)
    from ros_mmfusion import presets
    from ros_mmfusion.launcher import replay_in_process
    from ros_mmfusion.ros.image import image_to_numpy
    from ros_mmfusion.ros.tap import TopicTap

    preset = presets.load("demo", {"bag": str(bag)}, {"bag_player": {"rate": args.rate}})
    workers = [launch.name for launch in preset.nodes if launch.key != "bag_player"]
    outputs: dict[str, type] = {topic: Image for topic in IMAGE_OUTPUTS}
    for name in workers:
        outputs[f"/{name}/debug/processing_time_ms"] = Float64
        outputs[f"/{name}/debug/pipeline_latency_ms"] = Float64
    outputs["/diagnostics"] = DiagnosticArray
    rclpy.init()
    try:
        tap = TopicTap(outputs, keep=20)
        print(f"replaying {bag} through: {', '.join(n.name for n in preset.nodes)}", flush=True)
        nodes, elapsed = replay_in_process(preset, extra_nodes=[tap], grace=2.0)
        by_name = dict(zip((launch.name for launch in preset.nodes), nodes, strict=True))
        player = by_name["bag_player"]
        replayed = [f"{t} {n}" for t, n in sorted(player.published.items())
                    if t.startswith(("/camera/color/image", "/lidar", "/thermal/image"))]
        print(f"\nreplayed in {elapsed:.1f} s: " + ", ".join(replayed))
        print(f"{'published topic':45s} {'messages':>8s} {'rate Hz':>8s}")
        for topic, rec in tap.records.items():
            print(f"{topic:45s} {rec.count:8d} {rec.rate_hz():8.1f}")
        for name in workers:
            latency = np.array(tap.records[f"/{name}/debug/pipeline_latency_ms"].values)
            processing = np.array(tap.records[f"/{name}/debug/processing_time_ms"].values)
            node = by_name[name]
            if latency.size:
                print(f"{name}: processing p50 {np.median(processing):.1f} ms, pipeline latency p50 "
                      f"{np.median(latency):.1f} ms p95 {np.percentile(latency, 95):.1f} ms; frames processed "
                      f"{node.frames_processed}, skipped {node.frames_skipped}")
            else:
                print(f"{name}: published nothing (frames skipped {node.frames_skipped})")
        rgb_rec = tap.records["/camera/color/image_raw"]
        depth_rec, seg_rec = tap.records["/lidar/depth_image"], tap.records["/segmentation/color"]
        common = sorted(set(rgb_rec.history) & (set(depth_rec.history) | set(seg_rec.history)))
        if not common:
            raise UserError("the demo published no output matching a camera frame")
        stamp = common[-1]
        depth = depth_rec.history.get(stamp)
        seg = seg_rec.history.get(stamp)
        demo_picture(image_to_numpy(rgb_rec.history[stamp]), stage / picture_name,
                     image_to_numpy(depth) if depth is not None else None,
                     image_to_numpy(seg) if seg is not None else None)
    finally:
        rclpy.try_shutdown()
