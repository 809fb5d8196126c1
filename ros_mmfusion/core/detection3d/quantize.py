"""PointPillars INT8 quantization: both graphs calibrated on clouds of the synthetic world's ``urban_day``, and the
accuracy check.

The pillar encoder is calibrated on the decorated pillars of the clouds (``input_features``, as many pillars as each
cloud has); the backbone/head on the BEV canvases the **fp32** encoder makes of them, so that each graph's ranges are
those of its fp32 inputs. Both feeds come from the fp32 pipeline's own stages (``PillarDetector.network_inputs``).
``quantize_graphs`` writes the INT8 (QDQ) models, in this CPU's format (``int8.cpu_int8_settings``) unless told
otherwise, into the engine cache beside the fp32 exports (``artifacts.int8_onnx_files`` resolves them). On the CPU
the pillar encoder stays fp32 (``encoder_int8``): its input holds absolute coordinates (tens of metres) beside
centimetre offsets from the pillar's mean and centre in one tensor, and one per-tensor 8-bit scale erases the
offsets (a step of ~0.4 m at the KITTI range): quantizing it cost the trained lite package up to 6 points of cyclist
BEV AP at the KITTI range, against under 1 point for the backbone+head alone (docs/benchmarks.md), and the encoder
is under a tenth of a frame. TensorRT's explicitly quantized models keep both graphs quantized.
``compare_pillars_int8`` measures the head outputs' relative error and how many boxes the INT8 detector agrees on
(BEV IoU >= 0.5, same class) with the fp32 one.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros_mmfusion.core.detection3d.nms import rotated_iou_matrix
from ros_mmfusion.core.detection3d.pipeline import PillarDetector
from ros_mmfusion.core.detection3d.postprocess import Detections
from ros_mmfusion.core.inference.engine_cache import EngineCache
from ros_mmfusion.core.inference.int8 import Int8Comparison, Int8Settings, quantized_model

SCENARIO = "urban_day"
SIM_SEED = 900  # neither a training nor a validation seed
CALIBRATION_START = 0
EVALUATION_START = 300  # frames (30 s at 10 Hz): another stretch of the ring road
MATCH_IOU = 0.5
CONFIDENT_SCORE = 0.3


def clouds_from_simulation(count: int = 16, start: int = CALIBRATION_START, stride: int = 5,
                           scenario: str = SCENARIO, seed: int = SIM_SEED, beams: int = 32) -> list[np.ndarray]:
    """``count`` structured LiDAR clouds (x, y, z, intensity 0..255) of ``scenario``, frames ``start``,
    ``start + stride``, ..."""
    from ros_mmfusion.core.sim import Simulation

    sim = Simulation(scenario, seed=seed, size=(64, 48), beams=beams)
    return [sim.frame(start + i * stride).lidar.points for i in range(count)]


def describe(count: int, start: int = CALIBRATION_START) -> str:
    return f"{count} clouds of the synthetic world ({SCENARIO}, seed {SIM_SEED}, from frame {start})"


LIDAR_TOPIC = "/lidar/points"


def clouds_from_bag(bag: str | Path, count: int = 16, topic: str = LIDAR_TOPIC, stride: int = 1) -> list[np.ndarray]:
    """Up to ``count`` structured clouds (the fields the detector reads) of ``topic`` in the rosbag2 ``bag``, every
    ``stride``-th message; ConfigError for a bag without the topic or without a cloud."""
    from ros_mmfusion.core.bagio import BagSource
    from ros_mmfusion.core.codec.pointcloud import decode_cloud
    from ros_mmfusion.core.errors import ConfigError

    clouds: list[np.ndarray] = []
    with BagSource(bag) as source:
        if topic not in source.topics:
            raise ConfigError(f"bag {bag} has no topic {topic}; it has {sorted(source.topics)}")
        for i, message in enumerate(source.messages([topic])):
            if i % stride:
                continue
            m = source.deserialize(message)
            clouds.append(decode_cloud(m.height, m.width, m.fields, m.is_bigendian, m.point_step, m.row_step, m.data))
            if len(clouds) >= count:
                break
    if not clouds:
        raise ConfigError(f"bag {bag}: no message on {topic}")
    return clouds


def calibration_clouds(source: str | Path | None, count: int = 16) -> tuple[list[np.ndarray], str]:
    """``(clouds, description)`` for INT8 calibration: ``count`` clouds of the synthetic world (``source`` None or
    "sim") or of the rosbag2 directory ``source``."""
    if source is None or str(source) == "sim":
        return clouds_from_simulation(count), describe(count)
    clouds = clouds_from_bag(source, count)
    return clouds, f"{len(clouds)} clouds of bag {Path(source).resolve()} ({LIDAR_TOPIC})"


def quantize_graphs(encoder: Path, backbone_head: Path, fp32: Callable[[], PillarDetector], count: int = 16,
                    settings: Int8Settings | None = None, cache: EngineCache | None = None,
                    force: bool = False, source: str | Path | None = None,
                    encoder_int8: bool | None = None) -> tuple[Path, Path]:
    """``(encoder, backbone_head)`` INT8 (QDQ) models of the fp32 ONNX files ``encoder`` and ``backbone_head``: the
    cached ones, else quantized now in ``settings`` (default: this CPU's format; ``int8.TENSORRT_INT8`` for TensorRT)
    on ``count`` clouds of ``source`` (``calibration_clouds``: ``urban_day`` by default, or a bag) fed through the
    detector ``fp32()`` (built only when quantizing; it runs those very files). ``encoder_int8`` (default: only for
    TensorRT): quantize the pillar encoder too; otherwise the fp32 ``encoder`` itself is returned (module docstring).

    The calibration data (and the detector's ``intensity_scale``) is recorded in the sidecars, not keyed: a later
    detector with another ``intensity_scale`` finds the same entries (``force`` requantizes)."""
    feeds: list[tuple[dict, dict]] = []
    detector: list[PillarDetector] = []
    described: list[str] = []

    def fp32_detector() -> PillarDetector:
        if not detector:
            detector.append(fp32())
        return detector[0]

    def samples() -> list[tuple[dict, dict]]:
        if not feeds:
            clouds, text = calibration_clouds(source, count)
            described.append(text)
            feeds.extend(fp32_detector().network_inputs(c) for c in clouds)
        return feeds

    def encoder_feeds() -> Iterator[dict[str, np.ndarray]]:
        yield from (f[0] for f in samples() if len(f[0]["input_features"]))

    def head_feeds() -> Iterator[dict[str, np.ndarray]]:
        yield from (f[1] for f in samples())

    def notes() -> dict:
        return {"calibration": described[0] if described else describe(count),
                "intensity_scale": fp32_detector().intensity_scale}

    cache = cache or EngineCache()
    if encoder_int8 is None:
        encoder_int8 = settings is not None and settings.target == "tensorrt"
    return (quantized_model(encoder, encoder_feeds, settings, cache, force, notes).artifact if encoder_int8 else
            encoder, quantized_model(backbone_head, head_feeds, settings, cache, force, notes).artifact)


@dataclass
class PillarsInt8Report(Int8Comparison):
    """INT8 against fp32 PointPillars on the same clouds. ``head_relative_rmse``: per head output, RMS of the INT8
    error over RMS of the fp32 values (both graphs INT8, end to end); ``matched``: fp32 detections with an INT8
    detection of the same class at BEV IoU >= ``MATCH_IOU`` (greedy by fp32 score); ``confident_*``: the same for
    the fp32 detections scoring at least ``confident_score``, matched against every INT8 detection (a box near the
    score threshold may fall on either side of it); ``latency``: median per cloud of the two graphs (encoder +
    backbone/head), ms."""

    clouds: int
    head_relative_rmse: dict[str, float]
    detections_fp32: int
    detections_int8: int
    matched: int
    matched_mean_iou: float
    confident_score: float
    confident_fp32: int
    confident_matched: int
    latency_fp32_ms: float = 0.0
    latency_int8_ms: float = 0.0

    @property
    def recall(self) -> float:
        """Fraction of fp32 detections INT8 reproduces."""
        return self.matched / self.detections_fp32 if self.detections_fp32 else float("nan")

    @property
    def confident_recall(self) -> float:
        """Fraction of the confident fp32 detections INT8 reproduces."""
        return self.confident_matched / self.confident_fp32 if self.confident_fp32 else float("nan")

    @property
    def precision(self) -> float:
        """Fraction of INT8 detections fp32 also has."""
        return self.matched / self.detections_int8 if self.detections_int8 else float("nan")

    def as_dict(self) -> dict:
        return {**super().as_dict(), "recall": self.recall, "precision": self.precision,
                "confident_recall": self.confident_recall}

    def summary(self) -> str:
        rel = ", ".join(f"{k} {100 * v:.2f} %" for k, v in self.head_relative_rmse.items())
        return (f"PointPillars INT8 vs fp32 on {self.clouds} clouds: head relative RMSE {rel}; detections fp32 "
                f"{self.detections_fp32}, int8 {self.detections_int8}, matched {self.matched} (IoU >= {MATCH_IOU}, "
                f"mean IoU {self.matched_mean_iou:.3f}): recall {100 * self.recall:.1f} %, precision "
                f"{100 * self.precision:.1f} %; confident (score >= {self.confident_score}) fp32 detections "
                f"{self.confident_fp32}, matched {self.confident_matched} ({100 * self.confident_recall:.1f} %); "
                f"median latency of the graphs fp32 {self.latency_fp32_ms:.1f} ms, int8 {self.latency_int8_ms:.1f} ms "
                f"({self.speedup:.2f}x)")


def match_detections(a: Detections, b: Detections, iou: float = MATCH_IOU) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matches ``(i, j, IoU)`` of ``a``'s boxes (by descending score) to ``b``'s of the same label
    at BEV IoU >= ``iou``."""
    if not len(a) or not len(b):
        return []
    ious = rotated_iou_matrix(a.boxes, b.boxes)
    ious[a.labels[:, None] != b.labels[None, :]] = 0.0
    taken: set[int] = set()
    out = []
    for i in np.argsort(-a.scores, kind="stable"):
        for j in np.argsort(-ious[i], kind="stable"):
            if ious[i, j] < iou:
                break
            if int(j) not in taken:
                taken.add(int(j))
                out.append((int(i), int(j), float(ious[i, j])))
                break
    return out


def compare_pillars_int8(fp32: PillarDetector, int8: PillarDetector, clouds: Sequence[np.ndarray],
                         timing_runs: int = 5, confident_score: float = CONFIDENT_SCORE) -> PillarsInt8Report:
    """Run the ``fp32`` and ``int8`` ``PillarDetector``s on ``clouds`` and compare head outputs (each detector on its
    own encoder's canvas: both graphs INT8, end to end) and detections."""
    err: dict[str, float] = {}
    ref: dict[str, float] = {}
    n32 = n8 = matched = n_conf = conf_matched = 0
    ious: list[float] = []
    for cloud in clouds:
        maps32 = fp32.backbone_head.run(fp32.network_inputs(cloud)[1])
        maps8 = int8.backbone_head.run(int8.network_inputs(cloud)[1])
        for name in maps32:
            a, b = maps32[name].astype(np.float64), maps8[name].astype(np.float64)
            err[name] = err.get(name, 0.0) + float(((a - b) ** 2).sum())
            ref[name] = ref.get(name, 0.0) + float((a ** 2).sum())
        d32, d8 = fp32(cloud).detections, int8(cloud).detections
        pairs = match_detections(d32, d8)
        n32, n8, matched = n32 + len(d32), n8 + len(d8), matched + len(pairs)
        ious.extend(p[2] for p in pairs)
        confident = d32.scores >= confident_score
        n_conf += int(confident.sum())
        conf_matched += len(match_detections(_subset(d32, confident), d8))
    report = PillarsInt8Report(len(clouds), {k: float(np.sqrt(err[k] / max(ref[k], 1e-30))) for k in err}, n32, n8,
                               matched, float(np.mean(ious)) if ious else float("nan"), confident_score, n_conf,
                               conf_matched)
    if timing_runs and clouds:
        enc, head = fp32.network_inputs(clouds[0])
        times = np.empty((timing_runs, 2))
        for detector in (fp32, int8):
            detector.encoder.run(enc), detector.backbone_head.run(head)
        for i in range(timing_runs):
            for j, detector in enumerate((fp32, int8)):
                started = time.perf_counter()
                detector.encoder.run(enc)
                detector.backbone_head.run(head)
                times[i, j] = (time.perf_counter() - started) * 1e3
        report.latency_fp32_ms, report.latency_int8_ms = (float(v) for v in np.median(times, axis=0))
    return report


def _subset(detections: Detections, keep: np.ndarray) -> Detections:
    return Detections(boxes=detections.boxes[keep], scores=detections.scores[keep], labels=detections.labels[keep])
