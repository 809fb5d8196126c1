"""Where a segmentation node's frame goes: per-stage milliseconds of ``fusion_segmentation``'s work on a bag's frames.

    python tools/segmentation_profile.py --bag DIR [--package models/cmx_b0_rgbt_synthetic_320] [--frames 20]

Decodes the bag's colour and thermal images as the node does (``ros/image.py``), then times each stage the node runs
per frame with the real components: X encoding, pre-processing (resize, normalisation), the network alone (its ONNX
Runtime session on the prepared inputs: the "network's own latency" that ``mmfusion bench-graph`` figures are
compared with), post-processing with and without the confidence output, colours and the output messages. Medians
over the frames after two warm-up frames. No ROS graph: ``mmfusion bench-graph`` times the node end to end.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

RGB_TOPIC, X_TOPIC = "/camera/color/image_raw", "/thermal/image_raw"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bag", required=True)
    parser.add_argument("--package", default="")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from ros_mmfusion.core.bagio import BagSource
    from ros_mmfusion.core.bench import machine
    from ros_mmfusion.core.modalities.encoders import make_encoder
    from ros_mmfusion.core.segmentation.artifacts import DEFAULT_PACKAGE, build_backend, load_package
    from ros_mmfusion.core.segmentation.pipeline import FusionSegmenter, class_colours, postprocess
    from ros_mmfusion.core.segmentation.preprocess import encode_x
    from ros_mmfusion.paths import share_dir
    from ros_mmfusion.ros.image import numpy_to_image, plane_from_msg, rgb_from_msg

    messages: dict[str, list] = {RGB_TOPIC: [], X_TOPIC: []}
    with BagSource(args.bag) as source:
        for m in source.messages(list(messages)):
            messages[m.topic].append(deserialize_message(m.data, Image))
    pairs = list(zip(messages[RGB_TOPIC], messages[X_TOPIC], strict=False))
    if not pairs:
        raise SystemExit(f"{args.bag}: no {RGB_TOPIC} + {X_TOPIC} frames")
    spec = load_package(args.package or str(share_dir() / DEFAULT_PACKAGE))
    encoder = make_encoder(spec.x_modality, spec.x_params)
    segmenter = FusionSegmenter(spec, build_backend(spec, "onnxruntime", threads=args.threads))
    palette = spec.palette()
    times: dict[str, list[float]] = {}

    def timed(stage: str, fn: Callable, *a, **kw):
        start = time.perf_counter()
        out = fn(*a, **kw)
        times.setdefault(stage, []).append((time.perf_counter() - start) * 1e3)
        return out

    for i in range(args.frames + 2):
        rgb_msg, x_msg = pairs[i % len(pairs)]
        rgb = timed("decode colour image", rgb_from_msg, rgb_msg)
        raw, encoding = timed("decode thermal image", plane_from_msg, x_msg)
        x = timed("encode X", encode_x, encoder, spec.x_modality, raw, rgb.shape[:2], encoding=encoding)
        feeds = timed("pre-process (resize, normalise)", segmenter.preprocess, rgb, x)
        logits = timed("network (ONNX Runtime)", segmenter.backend.run, feeds)["logits"][0]
        result = timed("post-process, labels only", postprocess, logits, rgb.shape[:2], confidence=False)
        timed("post-process with confidence", postprocess, logits, rgb.shape[:2])
        timed("labels message", numpy_to_image, result.labels, "mono8", rgb_msg.header)
        colour = timed("colours", class_colours, result.labels, palette)
        timed("colour message", numpy_to_image, colour, "rgb8", rgb_msg.header)
    height, width = pairs[0][0].height, pairs[0][0].width
    print(f"{spec.variant} {spec.x_modality} X, network input {spec.input_size[1]}x{spec.input_size[0]}, camera "
          f"{width}x{height}, {args.frames} frames, {machine()}")
    medians = {stage: statistics.median(values[2:]) for stage, values in times.items()}
    for stage, ms in medians.items():
        print(f"  {stage:34s} {ms:8.2f} ms")
    labels_path = sum(ms for stage, ms in medians.items() if "confidence" not in stage and "colour" not in stage)
    print(f"  {'labels output, all stages':34s} {labels_path:8.2f} ms "
          f"({labels_path / medians['network (ONNX Runtime)']:.2f}x the network)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
