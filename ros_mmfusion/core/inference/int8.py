"""CPU INT8: ONNX Runtime static quantization to a QDQ model, calibrated on sample inputs, and its accuracy check.

The QDQ file keeps the fp32 graph and adds QuantizeLinear/DequantizeLinear pairs around the quantized operators;
ONNX Runtime's CPU provider fuses them into integer kernels (VNNI where the CPU has it).

Two presets: ``CPU_INT8`` (the default) has unsigned asymmetric 8-bit activations and signed symmetric per-channel
weights ("U8S8"), the combination ONNX Runtime's x86 kernels are fastest with (measured: docs/backends.md);
``TENSORRT_INT8`` has signed symmetric activations (zero point 0), the only form TensorRT's explicit quantization
accepts, so that file can be given to ``mmfusion build-engine --precision int8`` on a GPU machine.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ros_mmfusion.core.inference.engine_cache import BuildSpec, CacheResult, EngineCache

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class Int8Settings:
    """``calibration``: how activation ranges are chosen from the samples (ONNX Runtime's MinMax, Percentile or
    Entropy); ``op_types``: operator types to quantize (empty: every type ONNX Runtime can quantize);
    ``exclude_nodes``: node names kept in float."""

    per_channel: bool = True
    activations: str = "uint8"
    symmetric_activations: bool = False
    calibration: str = "minmax"
    op_types: tuple[str, ...] = ("Conv", "MatMul", "Gemm")
    exclude_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {CALIBRATION_METHODS}, got {self.calibration!r}")
        if self.activations not in ("uint8", "int8"):
            raise ValueError(f"activations must be uint8 or int8, got {self.activations!r}")

    def as_dict(self) -> dict:
        return asdict(self)


CPU_INT8 = Int8Settings()
TENSORRT_INT8 = Int8Settings(activations="int8", symmetric_activations=True)


def is_quantized(onnx: str | Path) -> bool:
    """True when the graph already holds QuantizeLinear/DequantizeLinear nodes."""
    from ros_mmfusion.core.onnx_export import op_types

    return bool(op_types(onnx) & QDQ_OPS)


class _FeedReader:
    """ONNX Runtime's CalibrationDataReader protocol over an iterable of feeds (``get_next() -> dict | None``)."""

    def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]], names: Sequence[str]) -> None:
        self._it: Iterator[Mapping[str, np.ndarray]] = iter(feeds)
        self.names = tuple(names)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self._it, None)
        if feed is None:
            return None
        self.count += 1
        return {n: np.ascontiguousarray(feed[n], dtype=np.float32) for n in self.names}

    def rewind(self) -> None:  # part of the protocol; one pass is all a static calibration needs
        raise NotImplementedError


def quantize_int8(onnx: str | Path, out: str | Path, feeds: Iterable[Mapping[str, np.ndarray]],
                  settings: Int8Settings = CPU_INT8) -> dict:
    """Write the QDQ INT8 model of ``onnx`` to ``out``, calibrated on ``feeds`` ({input name: float32 array});
    returns facts for the record (samples used, settings, quantizer version, seconds)."""
    import tempfile

    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ros_mmfusion.core.errors import ConfigError

    started = time.perf_counter()
    names = [i.name for i in ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).get_inputs()]
    base = _FeedReader(feeds, names)

    class Reader(CalibrationDataReader):
        def get_next(self):  # noqa: ANN201 - ONNX Runtime's signature
            return base.get_next()

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    extra = {"ActivationSymmetric": settings.symmetric_activations, "WeightSymmetric": True}
    with tempfile.TemporaryDirectory(prefix="mmfusion_int8_") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(onnx), str(prepared), skip_symbolic_shape=True)  # ONNX shape inference + fusions
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(settings.op_types) or None, per_channel=settings.per_channel,
                        activation_type=QuantType.QUInt8 if settings.activations == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(settings.exclude_nodes) or None,
                        calibrate_method=methods[settings.calibration], extra_options=extra)
    if base.count == 0:
        raise ConfigError("INT8 calibration needs at least one sample input; none was given")
    return {"calibration_samples": base.count, "settings": settings.as_dict(), "quantizer": f"onnxruntime "
            f"{ort.__version__}", "quantize_seconds": round(time.perf_counter() - started, 2)}


def int8_spec(onnx: str | Path, settings: Int8Settings = CPU_INT8) -> BuildSpec:
    """Cache identity of the INT8 model of ``onnx``: the calibration data is recorded, not keyed, so a model
    calibrated from a real recording (``mmfusion build-engine --calib BAG``) is the one every later user finds.
    The activation type is in the precision label ("int8-u8s8", "int8-s8s8"), so that the CPU and the TensorRT
    variants of one ONNX file are two entries rather than each other's stale entry."""
    import onnxruntime as ort

    precision = "int8-u8s8" if settings.activations == "uint8" else "int8-s8s8"
    return BuildSpec(Path(onnx), precision, "onnxruntime-qdq", ort.__version__, "any", options=settings.as_dict(),
                     suffix=".onnx")


def _check_loads(path: Path) -> Path:
    import onnxruntime as ort

    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return path


def quantized_model(onnx: str | Path, feeds: Callable[[], Iterable[Mapping[str, np.ndarray]]],
                    settings: Int8Settings = CPU_INT8, cache: EngineCache | None = None, force: bool = False,
                    notes_of: Callable[[], Mapping] | None = None) -> CacheResult[Path]:
    """The cached INT8 model of ``onnx`` (beside it unless ``cache`` says otherwise), quantized on first use or when
    ``force``d with the samples ``feeds()`` yields; ``notes_of()`` adds facts (such as the calibration source) to
    the sidecar after the build."""
    if is_quantized(onnx):
        return CacheResult(Path(onnx), Path(onnx), "hit", "the ONNX file is already quantized")

    def build(tmp: Path) -> dict:
        facts = quantize_int8(onnx, tmp, feeds(), settings)
        return {**facts, **(notes_of() if notes_of else {})}

    return (cache or EngineCache()).get_or_build(int8_spec(onnx, settings), build, _check_loads, force=force)


class Int8Comparison:
    """Shared by the INT8 comparison reports: their fp32/INT8 latencies (``latency_fp32_ms``, ``latency_int8_ms``,
    measured alternately in one run) give the speed-up; ``as_dict`` adds it to the fields."""

    latency_fp32_ms: float
    latency_int8_ms: float

    @property
    def speedup(self) -> float:
        return self.latency_fp32_ms / self.latency_int8_ms if self.latency_int8_ms else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "speedup": self.speedup}  # type: ignore[call-overload]


@dataclass
class AccuracyReport(Int8Comparison):
    """INT8 against fp32 on the same inputs. Logits errors are absolute (logit units); ``argmax_agreement`` is the
    fraction of pixels (or items) whose top class is the same; mIoU is against ground truth where it exists."""

    frames: int
    argmax_agreement: float
    logits_max_abs_error: float
    logits_mean_abs_error: float
    logits_relative_rmse: float
    miou_fp32: float | None = None
    miou_int8: float | None = None
    latency_fp32_ms: float = 0.0
    latency_int8_ms: float = 0.0
    notes: dict = field(default_factory=dict)


    def summary(self) -> str:
        lines = [f"INT8 vs fp32 on {self.frames} frames: argmax agreement {100 * self.argmax_agreement:.2f} %, "
                 f"logits |error| mean {self.logits_mean_abs_error:.4f} max {self.logits_max_abs_error:.3f}, "
                 f"relative RMSE {100 * self.logits_relative_rmse:.2f} %"]
        if self.miou_fp32 is not None and self.miou_int8 is not None:
            lines.append(f"mIoU vs ground truth: fp32 {self.miou_fp32:.4f}, int8 {self.miou_int8:.4f} "
                         f"({self.miou_int8 - self.miou_fp32:+.4f})")
        if self.latency_int8_ms:
            lines.append(f"median latency: fp32 {self.latency_fp32_ms:.1f} ms, int8 {self.latency_int8_ms:.1f} ms "
                         f"({self.speedup:.2f}x)")
        return "\n".join(lines)


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
    from ros_mmfusion.core.evaluation.segmentation import confusion_matrix, scores
    from ros_mmfusion.core.onnx_export import ort_session

    s32, s8 = ort_session(fp32_onnx, threads), ort_session(int8_onnx, threads)
    name = output or s32.get_outputs()[0].name
    agree = total = 0
    max_err, abs_sum, sq_err, sq_ref, count = 0.0, 0.0, 0.0, 0.0, 0
    cm32 = cm8 = None
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
        if gt is not None and num_classes:
            p32, p8 = to_label(a, gt.shape[:2]), to_label(b, gt.shape[:2])
            c32 = confusion_matrix(gt, p32, num_classes, ignore_index)
            c8 = confusion_matrix(gt, p8, num_classes, ignore_index)
            cm32 = c32 if cm32 is None else cm32 + c32
            cm8 = c8 if cm8 is None else cm8 + c8
    report = AccuracyReport(len(feeds), agree / total if total else float("nan"), max_err,
                            abs_sum / max(count, 1), float(np.sqrt(sq_err / max(sq_ref, 1e-30))))
    if cm32 is not None and cm8 is not None:
        report.miou_fp32 = scores(cm32, ignore_index).miou
        report.miou_int8 = scores(cm8, ignore_index).miou
    if timing_runs and feeds:
        report.latency_fp32_ms, report.latency_int8_ms = interleaved_latency(s32, s8, dict(feeds[0]), timing_runs)
    return report


def interleaved_latency(session_a, session_b, feed: Mapping[str, np.ndarray], runs: int) -> tuple[float, float]:
    """Median milliseconds of ``runs`` calls of each session on ``feed``, alternating a and b after one warm-up
    each, so that load from other processes on a shared machine falls on both alike."""
    times = np.empty((runs, 2))
    for session in (session_a, session_b):
        session.run(None, dict(feed))
    for i in range(runs):
        for j, session in enumerate((session_a, session_b)):
            started = time.perf_counter()
            session.run(None, dict(feed))
            times[i, j] = (time.perf_counter() - started) * 1e3
    return float(np.median(times[:, 0])), float(np.median(times[:, 1]))
