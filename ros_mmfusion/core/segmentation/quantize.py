"""Frames for INT8 calibration and accuracy checks of the segmentation model: from a rosbag2 recording or from the
synthetic world, X encoded by the node's own :func:`~ros_mmfusion.core.segmentation.preprocess.encode_x`, plus
ground truth when the source has it; network inputs made by the pipeline's own stages
(:meth:`FusionSegmenter.network_inputs <ros_mmfusion.core.segmentation.pipeline.FusionSegmenter.network_inputs>`).

``artifacts.int8_onnx_for(spec)`` quantizes the fp32 ONNX of ``spec`` with these frames; :func:`compare_int8` checks
an INT8 model against its fp32 original on held-out frames (logits, argmax agreement, mIoU against ground truth).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.int8 import AccuracyReport, interleaved_latency
from ros_mmfusion.core.segmentation.metrics import ConfusionAccumulator
from ros_mmfusion.core.segmentation.pipeline import FusionSegmenter, SegmentationModelSpec
from ros_mmfusion.core.segmentation.preprocess import X_NEEDS_CAMERA, encode_x
from ros_mmfusion.core.stamps import stamp_to_ns

#: topics of a bag written by ``mmfusion sim`` (``core/sim/recorder.py``)
RGB_TOPIC = "/camera/color/image_raw"
CAMERA_INFO_TOPIC = "/camera/color/camera_info"
GT_TOPIC = "/ground_truth/semantic"
X_TOPICS = {"thermal": "/thermal/image_raw", "depth": "/camera/depth/image_rect_raw",
            "depth_hha": "/camera/depth/image_rect_raw", "lidar": "/lidar/points"}
SIM_SCENARIOS = ("urban_day", "urban_night", "fog")
SIM_SEED = 900  # not among the training (1-6) or validation (101, 102) seeds of training.py


@dataclass
class LabelledFrame:
    rgb: np.ndarray  # (H, W, 3) uint8, R,G,B
    x: np.ndarray  # (H, W, 3) uint8, encoded X aligned with rgb
    labels: np.ndarray | None  # (H, W) uint8 class ids, or None when the source has no ground truth


def feeds_of(spec: SegmentationModelSpec, frames: list[LabelledFrame]) -> list[dict[str, np.ndarray]]:
    """Network inputs (``rgb``, ``x``; batch 1 at ``spec.input_size``) of ``frames``, as the pipeline makes them."""
    return list(FusionSegmenter(spec).network_inputs((f.rgb, f.x) for f in frames))


def frames_from_simulation(spec: SegmentationModelSpec, count: int = 24, scenarios: tuple[str, ...] = SIM_SCENARIOS,
                           seed: int = SIM_SEED, stride: int = 3) -> list[LabelledFrame]:
    """``count`` frames of the synthetic world at the model's input size, spread over ``scenarios``."""
    from ros_mmfusion.core.modalities.encoders import make_encoder
    from ros_mmfusion.core.segmentation.training import raw_x
    from ros_mmfusion.core.sim import Simulation

    if spec.x_modality == "lidar":
        raise ConfigError("calibrating a LiDAR-X model from the synthetic world is not supported; pass a bag")
    encoder = make_encoder(spec.x_modality, spec.x_params)
    h, w = spec.input_size
    frames: list[LabelledFrame] = []
    per = -(-count // len(scenarios))
    for scenario in scenarios:
        sim = Simulation(scenario, seed=seed, size=(w, h), beams=16)
        for k in range(min(per, count - len(frames))):
            frame = sim.frame(k * stride)
            raw, encoding = raw_x(frame, spec.x_modality)
            x = encode_x(encoder, spec.x_modality, raw, (h, w), camera=sim.rig.color.camera, encoding=encoding)
            frames.append(LabelledFrame(frame.camera.rgb, x, frame.camera.semantic))
    return frames


def frames_from_bag(spec: SegmentationModelSpec, bag: str | Path, count: int = 24, stride: int = 1,
                    rgb_topic: str = RGB_TOPIC, x_topic: str | None = None, gt_topic: str = GT_TOPIC,
                    camera_info_topic: str = CAMERA_INFO_TOPIC) -> list[LabelledFrame]:
    """Up to ``count`` RGB/X(/ground-truth) frames of a rosbag2, every ``stride``-th set of messages with the same
    header stamp, X encoded with the model's encoder (LiDAR X needs the bag's ``calibration.yaml``)."""
    from ros_mmfusion.core.bagio import BagSource
    from ros_mmfusion.core.codec.camera import intrinsics_from_fields
    from ros_mmfusion.core.codec.image import decode_image, decode_rgb
    from ros_mmfusion.core.codec.pointcloud import decode_cloud
    from ros_mmfusion.core.modalities.encoders import make_encoder

    if count <= 0 or stride <= 0:
        raise ConfigError("count and stride must be positive")
    encoder = make_encoder(spec.x_modality, spec.x_params)
    x_topic = x_topic or X_TOPICS.get(spec.x_modality)
    if x_topic is None:
        raise ConfigError(f"no default X topic for x_modality {spec.x_modality!r}; pass x_topic")
    camera_from_lidar = None
    if spec.x_modality == "lidar":
        from ros_mmfusion.core.calibration import load_calibration

        calib = Path(bag) / "calibration.yaml"
        if not calib.is_file():
            raise ConfigError(f"{bag}: a LiDAR-X model needs {calib.name} (camera <- LiDAR extrinsics) in the bag")
        camera_from_lidar = load_calibration(calib).camera_from_lidar("color")
    with BagSource(bag) as source:
        available = source.topics
        wanted = [t for t in (rgb_topic, x_topic, gt_topic, camera_info_topic) if t in available]
        for topic in (rgb_topic, x_topic):
            if topic not in available:
                raise ConfigError(f"bag {bag} has no topic {topic}; it has {sorted(available)}")
        camera = None
        pending: dict[int, dict[str, Any]] = {}  # stamp -> topic -> rosbags message
        frames: list[LabelledFrame] = []
        seen = 0

        def complete(parts: dict[str, Any]) -> bool:
            return rgb_topic in parts and x_topic in parts and (gt_topic not in available or gt_topic in parts)

        for message in source.messages(wanted):
            msg = source.deserialize(message)
            if message.topic == camera_info_topic:
                camera = intrinsics_from_fields(msg.height, msg.width, msg.distortion_model, msg.d, msg.k, msg.r,
                                                msg.p, msg.binning_x, msg.binning_y, msg.roi,
                                                msg.header.frame_id).pinhole()
                continue
            stamp = stamp_to_ns(msg.header.stamp)
            parts = pending.setdefault(stamp, {})
            parts[message.topic] = msg
            if not complete(parts):
                continue
            del pending[stamp]
            for old in [s for s in pending if s < stamp]:  # sets that can no longer complete
                del pending[old]
            seen += 1
            if (seen - 1) % stride:
                continue
            m = parts[rgb_topic]
            rgb = decode_rgb(m.height, m.width, m.encoding, m.is_bigendian, m.step, m.data)
            xm = parts[x_topic]
            if camera is None and spec.x_modality in X_NEEDS_CAMERA:
                first = "LiDAR scan" if spec.x_modality == "lidar" else "depth image (HHA needs the intrinsics)"
                raise ConfigError(f"bag {bag}: no {camera_info_topic} before the first {first}")
            if spec.x_modality == "lidar":
                raw = decode_cloud(xm.height, xm.width, xm.fields, xm.is_bigendian, xm.point_step, xm.row_step,
                                   xm.data)
            else:
                raw = decode_image(xm.height, xm.width, xm.encoding, xm.is_bigendian, xm.step, xm.data)
            x = encode_x(encoder, spec.x_modality, raw, rgb.shape[:2], camera=camera,
                         encoding=getattr(xm, "encoding", ""), camera_from_lidar=camera_from_lidar)
            labels = None
            if gt_topic in parts:
                g = parts[gt_topic]
                labels = np.array(decode_image(g.height, g.width, g.encoding, g.is_bigendian, g.step, g.data))
            frames.append(LabelledFrame(np.ascontiguousarray(rgb), x, labels))
            if len(frames) >= count:
                break
    if not frames:
        raise ConfigError(f"bag {bag}: no frame with both {rgb_topic} and {x_topic} at the same stamp")
    return frames


def frames_from(spec: SegmentationModelSpec, source: str | Path | None, count: int = 24,
                stride: int = 1) -> list[LabelledFrame]:
    """Frames from a bag directory, or from the synthetic world when ``source`` is None or "sim"."""
    if source is None or str(source) == "sim":
        return frames_from_simulation(spec, count)
    return frames_from_bag(spec, source, count, stride)


def describe_source(source: str | Path | None, frames: list[LabelledFrame]) -> str:
    """One line naming where ``frames`` came from (for logs, sidecar notes and reports)."""
    if source is None or str(source) == "sim":
        return f"{len(frames)} frames of the synthetic world ({', '.join(SIM_SCENARIOS)}, seed {SIM_SEED})"
    return f"{len(frames)} frames of bag {Path(source).resolve()}"


def compare_int8(fp32_onnx: str | Path, int8_onnx: str | Path, feeds: Sequence[Mapping[str, np.ndarray]],
                 output: str | None = None, labels: Sequence[np.ndarray | None] | None = None,
                 num_classes: int = 0, ignore_index: int | None = 0, threads: int = 0,
                 timing_runs: int = 5,
                 label_of: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None) -> AccuracyReport:
    """Run both models on ``feeds`` and compare ``output`` (default: the first output), class axis 1.

    ``labels``: ground truth per feed (``(H, W)`` class ids, or None); ``label_of(output, (H, W))`` maps one feed's
    output to a label image of the ground truth's size (default: argmax over axis 1 of batch item 0, which must
    match). ``timing_runs``: median of that many runs of the first feed per model, after one warm-up (0: none).
    """
    from ros_mmfusion.core.onnx_export import ort_session

    s32, s8 = ort_session(fp32_onnx, threads), ort_session(int8_onnx, threads)
    name = output or s32.get_outputs()[0].name
    agree = total = 0
    max_err, abs_sum, sq_err, sq_ref, count = 0.0, 0.0, 0.0, 0.0, 0
    acc32 = ConfusionAccumulator(num_classes, ignore_index) if num_classes else None
    acc8 = ConfusionAccumulator(num_classes, ignore_index) if num_classes else None
    to_label = label_of or (lambda out, size: out.argmax(1)[0])
    for i, feed in enumerate(feeds):
        a = s32.run([name], dict(feed))[0].astype(np.float64)
        b = s8.run([name], dict(feed))[0].astype(np.float64)
        diff = np.abs(a - b)
        max_err = max(max_err, float(diff.max()))
        abs_sum += float(diff.sum())
        sq_err += float((diff ** 2).sum())
        sq_ref += float((a ** 2).sum())
        count += diff.size
        if a.ndim >= 2:
            same = a.argmax(1) == b.argmax(1)
            agree += int(same.sum())
            total += same.size
        gt = labels[i] if labels is not None and i < len(labels) else None
        if gt is not None and acc32 is not None and acc8 is not None:
            acc32.add(gt, to_label(a, gt.shape[:2]))
            acc8.add(gt, to_label(b, gt.shape[:2]))
    report = AccuracyReport(len(feeds), agree / total if total else float("nan"), max_err,
                            abs_sum / max(count, 1), float(np.sqrt(sq_err / max(sq_ref, 1e-30))))
    if acc32 is not None and acc8 is not None and acc32.frames:
        report.miou_fp32, report.miou_int8 = acc32.scores().miou, acc8.scores().miou
    if timing_runs and feeds:
        report.latency_fp32_ms, report.latency_int8_ms = interleaved_latency(s32, s8, dict(feeds[0]), timing_runs)
    return report
