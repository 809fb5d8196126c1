"""Frames for INT8 calibration and accuracy checks of the segmentation model: from a rosbag2 recording or from the
synthetic world, encoded exactly as the segmentation node encodes them, plus ground truth when the source has it.

``int8_onnx_for(spec)`` is the segmentation pipeline's INT8 model: the fp32 ONNX of ``spec`` quantized (QDQ, in
this CPU's format) with frames of the synthetic world, cached beside it; ``mmfusion build-engine --precision int8
--calib BAG`` writes the same cache entry from a real recording instead, and the pipeline then uses that one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.engine_cache import EngineCache
from ros_mmfusion.core.inference.int8 import TENSORRT_INT8, Int8Settings, quantized_model

#: topics of a bag written by ``mmfusion sim`` (``core/sim/recorder.py``)
RGB_TOPIC = "/camera/color/image_raw"
CAMERA_INFO_TOPIC = "/camera/color/camera_info"
GT_TOPIC = "/ground_truth/semantic"
X_TOPICS = {"thermal": "/thermal/image_raw", "depth": "/camera/depth/image_rect_raw",
            "depth_hha": "/camera/depth/image_rect_raw", "lidar": "/lidar/points"}
SIM_SCENARIOS = ("urban_day", "urban_night", "fog")
SIM_SEED = 900  # not among the training (1-6) or validation (101, 102) seeds of core/training/segmentation.py


@dataclass
class LabelledFrame:
    rgb: np.ndarray  # (H, W, 3) uint8, R,G,B
    x: np.ndarray  # (H, W, 3) uint8, encoded X aligned with rgb
    labels: np.ndarray | None  # (H, W) uint8 class ids, or None when the source has no ground truth


def _preprocess(spec, rgb: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    from ros_mmfusion.core.segmentation import FusionSegmenter

    # FusionSegmenter.preprocess reads only ``self.spec``: reuse it without building a backend.
    holder = FusionSegmenter.__new__(FusionSegmenter)
    holder.spec = spec
    return holder.preprocess(rgb, x)


def feeds_of(spec, frames: list[LabelledFrame]) -> list[dict[str, np.ndarray]]:
    """Network inputs (``rgb``, ``x``; batch 1 at ``spec.input_size``) of ``frames``, as the pipeline makes them."""
    return [_preprocess(spec, f.rgb, f.x) for f in frames]


def frames_from_simulation(spec, count: int = 24, scenarios: tuple[str, ...] = SIM_SCENARIOS, seed: int = SIM_SEED,
                           stride: int = 3) -> list[LabelledFrame]:
    """``count`` frames of the synthetic world at the model's input size, spread over ``scenarios``."""
    from ros_mmfusion.core.modalities.encoders import make_encoder
    from ros_mmfusion.core.sim import Simulation
    from ros_mmfusion.core.training.segmentation import raw_x

    if spec.x_modality == "lidar":
        raise ConfigError("calibrating a LiDAR-X model from the synthetic world is not supported; pass a bag")
    encoder = make_encoder(spec.x_modality, spec.x_params)
    h, w = spec.input_size
    frames: list[LabelledFrame] = []
    per = -(-count // len(scenarios))
    for scenario in scenarios:
        sim = Simulation(scenario, seed=seed, size=(w, h), beams=16)
        camera = sim.rig.color.camera if spec.x_modality == "depth_hha" else None
        for k in range(min(per, count - len(frames))):
            frame = sim.frame(k * stride)
            raw, encoding = raw_x(frame, spec.x_modality)
            frames.append(LabelledFrame(frame.camera.rgb, encoder.encode(raw, camera, encoding=encoding),
                                        frame.camera.semantic))
    return frames


def frames_from_bag(spec, bag: str | Path, count: int = 24, stride: int = 1, rgb_topic: str = RGB_TOPIC,
                    x_topic: str | None = None, gt_topic: str = GT_TOPIC,
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
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
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
            if spec.x_modality == "lidar":
                if camera is None:
                    raise ConfigError(f"bag {bag}: no {camera_info_topic} before the first LiDAR scan")
                cloud = decode_cloud(xm.height, xm.width, xm.fields, xm.is_bigendian, xm.point_step, xm.row_step,
                                     xm.data)
                x = encoder.encode(cloud, camera, camera_from_lidar=camera_from_lidar)
            else:
                raw = decode_image(xm.height, xm.width, xm.encoding, xm.is_bigendian, xm.step, xm.data)
                x = encoder.encode(raw, camera if spec.x_modality == "depth_hha" else None, encoding=xm.encoding)
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


def frames_from(spec, source: str | Path | None, count: int = 24, stride: int = 1) -> list[LabelledFrame]:
    """Frames from a bag directory, or from the synthetic world when ``source`` is None or "sim"."""
    if source is None or str(source) == "sim":
        return frames_from_simulation(spec, count)
    return frames_from_bag(spec, source, count, stride)


def describe_source(source: str | Path | None, frames: list[LabelledFrame]) -> str:
    if source is None or str(source) == "sim":
        return f"{len(frames)} frames of the synthetic world ({', '.join(SIM_SCENARIOS)}, seed {SIM_SEED})"
    return f"{len(frames)} frames of bag {Path(source).resolve()}"


def int8_onnx_for(spec, source: str | Path | None = None, count: int = 24, stride: int = 1,
                  settings: Int8Settings | None = None, cache: EngineCache | None = None, force: bool = False,
                  log: Callable[[str], None] | None = None, tensorrt: bool = False) -> Path:
    """The INT8 (QDQ) model of the segmentation ``spec``: from the cache beside its fp32 ONNX, else quantized now
    with frames of ``source`` (a bag, or the synthetic world when None). ``tensorrt``: the symmetric variant
    TensorRT accepts (``TENSORRT_INT8``) instead of this CPU's format (``int8.cpu_int8_settings``), unless
    ``settings`` are given."""
    from ros_mmfusion.core.segmentation import onnx_for

    fp32 = onnx_for(spec)
    frames: list[LabelledFrame] = []

    def feeds() -> Iterator[dict[str, np.ndarray]]:
        frames.extend(frames_from(spec, source, count, stride))
        (log or print)(f"calibrating INT8 on {describe_source(source, frames)}")
        yield from feeds_of(spec, frames)

    chosen = settings or (TENSORRT_INT8 if tensorrt else None)  # None: this CPU's format
    result = quantized_model(fp32, feeds, chosen, cache or EngineCache(log=log), force=force,
                             notes_of=lambda: {"calibration": describe_source(source, frames)})
    return result.artifact
