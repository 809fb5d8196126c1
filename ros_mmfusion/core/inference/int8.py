"""CPU INT8: ONNX Runtime static quantization to a QDQ model, calibrated on sample inputs, and its accuracy check;
which INT8 format this CPU gets, and whether INT8 is used on it at all.

The QDQ file keeps the fp32 graph and adds QuantizeLinear/DequantizeLinear pairs around the quantized operators;
ONNX Runtime's CPU provider fuses them into integer kernels. Which format is accurate and fast depends on the
instruction set (``cpu_features.py``):

- ``CPU_INT8`` ("u8s8": unsigned asymmetric activations, signed symmetric per-channel weights) is exact and fastest
  where the CPU has VNNI or AMX (and on aarch64's dot product);
- on x86 without VNNI (AVX2, AVX-512F/BW) ONNX Runtime's U8S8 kernels add pairs of products in saturating 16-bit
  lanes (``vpmaddubsw``), which costs accuracy on large activations; ``U8S8_REDUCED`` ("u8s8-rr": weights in 7 bits,
  ``reduce_range``) cannot saturate and runs the same kernels; ``U8U8`` is exact too but slower (measured:
  docs/backends.md);
- ``TENSORRT_INT8`` ("s8s8", symmetric activations, zero point 0) is the only form TensorRT's explicit quantization
  accepts: a GPU artifact, the same on every CPU.

:func:`int8_plan` is the one decision, per model family and CPU class, of the format and of whether INT8 pays at all
(it is declined where it was measured slower than fp32 or not accurate enough); nodes (through
:func:`choose_backend`), ``mmfusion doctor`` and ``mmfusion bench-network`` all ask it. ``MMFUSION_INT8`` overrides it
for experts: ``off`` declines INT8 everywhere, a format name (``u8s8``, ``u8s8-rr``, ``u8u8``, ``s8s8``) forces INT8 in
that format.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ros_mmfusion.core.inference import cpu_features as isa_
from ros_mmfusion.core.inference.cpu_features import CpuIsa, cpu_isa
from ros_mmfusion.core.inference.engine_cache import BuildSpec, CacheResult, EngineCache

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
TARGETS = ("cpu", "tensorrt")
OVERRIDE_ENV = "MMFUSION_INT8"
MODEL_FAMILIES = ("segmentation", "navigation", "detection3d")


@dataclass(frozen=True)
class Int8Settings:
    """``activations``/``weights``: "uint8" or "int8"; ``reduce_range``: weights in 7 bits (no 16-bit saturation in
    ONNX Runtime's x86 U8S8 kernels without VNNI); ``calibration``: how activation ranges are chosen from the
    samples (ONNX Runtime's MinMax, Percentile or Entropy); ``op_types``: operator types to quantize (empty: every
    type ONNX Runtime can quantize); ``exclude_nodes``: node names kept in float; ``target``: "cpu" (ONNX Runtime,
    cached per CPU class) or "tensorrt" (a GPU artifact, the same whatever CPU made it)."""

    per_channel: bool = True
    activations: str = "uint8"
    symmetric_activations: bool = False
    weights: str = "int8"
    reduce_range: bool = False
    calibration: str = "minmax"
    op_types: tuple[str, ...] = ("Conv", "MatMul", "Gemm")
    exclude_nodes: tuple[str, ...] = ()
    target: str = "cpu"

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {CALIBRATION_METHODS}, got {self.calibration!r}")
        if self.activations not in ("uint8", "int8"):
            raise ValueError(f"activations must be uint8 or int8, got {self.activations!r}")
        if self.weights not in ("uint8", "int8"):
            raise ValueError(f"weights must be uint8 or int8, got {self.weights!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")

    @property
    def label(self) -> str:
        """ONNX Runtime's name of the format: activation and weight types ("u8s8", "u8u8", "s8s8"), plus "-rr" when
        the weights use 7 of their 8 bits (``reduce_range``)."""
        kind = "".join("u8" if t == "uint8" else "s8" for t in (self.activations, self.weights))
        return kind + ("-rr" if self.reduce_range else "")

    def as_dict(self) -> dict:
        return asdict(self)


CPU_INT8 = Int8Settings()
U8S8_REDUCED = Int8Settings(reduce_range=True)
U8U8 = Int8Settings(weights="uint8")
S8S8 = Int8Settings(activations="int8")
TENSORRT_INT8 = Int8Settings(activations="int8", symmetric_activations=True, target="tensorrt")
CPU_FORMATS = {s.label: s for s in (CPU_INT8, U8S8_REDUCED, U8U8, S8S8)}
"""The CPU formats by name ("u8s8", "u8s8-rr", "u8u8", "s8s8"): ``MMFUSION_INT8`` and ``mmfusion bench-network
--int8-format`` take these names."""

_SATURATES = "U8S8 kernels saturate without VNNI, so the weights use 7 bits"
_EXACT = "exact 8-bit dot products"
# Per CPU class: the format, and why. Measured classes name their figures in docs/backends.md.
_FORMAT_OF = {
    isa_.X86_AMX: (CPU_INT8, f"AMX/VNNI: {_EXACT}"),
    isa_.X86_AVX512_VNNI: (CPU_INT8, f"VNNI: {_EXACT}"),
    isa_.X86_AVX_VNNI: (CPU_INT8, f"AVX-VNNI: {_EXACT}"),
    isa_.X86_AVX512: (U8S8_REDUCED, _SATURATES),
    isa_.X86_AVX2: (U8S8_REDUCED, _SATURATES),
    isa_.X86_BASELINE: (U8U8, "no AVX2: no fast integer kernels"),
    isa_.ARM64_DOTPROD: (CPU_INT8, f"dot-product extension: {_EXACT} (not measured here)"),
    isa_.ARM64: (CPU_INT8, "aarch64 widening multiplies, no saturation (not measured here)"),
    isa_.UNKNOWN: (U8U8, "unknown architecture"),
}
# (CPU class, model family or None for every family) -> why INT8 is declined there.
_CMX_AVX2 = ("U8S8 saturates, and the reduced-range format it needs was 0.9x of fp32 for CMX-b0 at 480x640 with "
             "97.9 % argmax agreement")
_DECLINED = {
    (isa_.X86_AVX2, "segmentation"): _CMX_AVX2,
    (isa_.X86_AVX512, "segmentation"): _CMX_AVX2.replace("was", "was, on AVX2,"),
    (isa_.X86_BASELINE, None): "no AVX2: ONNX Runtime's integer kernels are slower than fp32",
    (isa_.UNKNOWN, None): "INT8 was never measured on this architecture",
    # on every CPU: quantizing ViNT's transformer and heads breaks localisation with trained weights (closest-node
    # agreement with fp32 14.5 % on 55 held-out corridor steps, waypoints 0.19 m off; docs/benchmarks.md)
    (None, "navigation"): "ViNT INT8 agreed with fp32 on the closest node for 14.5 % of held-out corridor steps "
                          "(trained vint_reduced_corridor)",
}


@dataclass(frozen=True)
class Int8Plan:
    """What the suite does about CPU INT8 for ``model`` (one of ``MODEL_FAMILIES``) on ``isa``: ``settings`` is
    this CPU's format (what a quantized model of it is made with, also where INT8 is declined); ``use_int8``
    whether nodes run INT8 when asked to; ``reason`` why, in a few words; ``forced``: set by ``MMFUSION_INT8``."""

    model: str
    isa: CpuIsa
    settings: Int8Settings
    use_int8: bool
    reason: str
    forced: bool = False

    def message(self) -> str:
        """One line for logs and ``mmfusion doctor``."""
        where = f"{self.isa.description} ({self.isa.name})"
        if not self.use_int8:
            how = "" if self.forced else f"; {OVERRIDE_ENV}={self.settings.label} forces INT8"
            return (f"INT8 declined for {self.model} on this CPU ({where}: {self.reason}); using fp32 ONNX Runtime"
                    f"{how}")
        return f"INT8 {self.settings.label} for {self.model} on this CPU ({where}: {self.reason})"

    def as_dict(self) -> dict:
        return {"model": self.model, "isa": self.isa.name, "cpu": self.isa.model, "format": self.settings.label,
                "use_int8": self.use_int8, "reason": self.reason, "forced": self.forced, "message": self.message()}


def _override(override: str | None) -> str:
    """The expert override (``override``, else ``$MMFUSION_INT8``) normalised: "" (none), "off" or a format name;
    ``ConfigError`` for anything else."""
    from ros_mmfusion.core.errors import ConfigError

    forced = (os.environ.get(OVERRIDE_ENV, "") if override is None else override).strip().lower()
    forced = "" if forced == "auto" else forced
    if forced not in ("", "off", *CPU_FORMATS):
        raise ConfigError(f"{OVERRIDE_ENV}={forced!r}: expected auto, off or one of {', '.join(CPU_FORMATS)}")
    return forced


def cpu_int8_settings(isa: CpuIsa | None = None, override: str | None = None) -> Int8Settings:
    """The INT8 format CPU models are quantized with on ``isa`` (default: this machine's): the class's own, or the
    one ``override`` (default ``$MMFUSION_INT8``) names."""
    forced = _override(override)
    return CPU_FORMATS[forced] if forced in CPU_FORMATS else _FORMAT_OF[(isa or cpu_isa()).name][0]


def int8_plan(model: str, isa: CpuIsa | None = None, override: str | None = None) -> Int8Plan:
    """The INT8 decision for the model family ``model`` on ``isa`` (default: this machine's), with the expert
    ``override`` (default: ``$MMFUSION_INT8``; "" or "auto": none; "off"; or a name of ``CPU_FORMATS``). A pure
    function of its arguments when both are given. ``ValueError`` for an unknown family, ``ConfigError`` for an
    unknown override."""
    if model not in MODEL_FAMILIES:
        raise ValueError(f"model family must be one of {MODEL_FAMILIES}, got {model!r}")
    isa = isa or cpu_isa()
    forced = _override(override)
    settings = cpu_int8_settings(isa, forced)
    if forced == "off":
        return Int8Plan(model, isa, settings, False, f"{OVERRIDE_ENV}=off", forced=True)
    if forced:
        return Int8Plan(model, isa, settings, True, f"forced by {OVERRIDE_ENV}={forced}", forced=True)
    declined = _DECLINED.get((isa.name, model)) or _DECLINED.get((None, model)) or _DECLINED.get((isa.name, None))
    return Int8Plan(model, isa, settings, declined is None, declined or _FORMAT_OF[isa.name][1])


@dataclass(frozen=True)
class BackendChoice:
    """The backend and precision a node runs after :func:`choose_backend`; ``plan``: the INT8 decision when INT8
    was asked for (None otherwise); ``declined``: INT8 was asked for and this CPU runs fp32 instead."""

    backend: str
    precision: str
    plan: Int8Plan | None = None

    @property
    def declined(self) -> bool:
        return self.plan is not None and not self.plan.use_int8

    def log_line(self) -> str:
        """What a node logs at start-up about INT8 ("" when INT8 was not asked for)."""
        return self.plan.message() if self.plan is not None else ""


def choose_backend(backend: str, model: str, precision: str = "fp32", isa: CpuIsa | None = None,
                   override: str | None = None) -> BackendChoice:
    """The backend a node of ``model`` asked for ``backend``/``precision`` runs: ``onnxruntime-int8`` stays INT8
    where :func:`int8_plan` uses it and becomes fp32 ``onnxruntime`` where it declines; every other backend
    (TensorRT INT8 included: a GPU path) is returned unchanged."""
    if backend != "onnxruntime-int8":
        return BackendChoice(backend, precision)
    plan = int8_plan(model, isa, override)
    return BackendChoice(backend, precision, plan) if plan.use_int8 else BackendChoice("onnxruntime", "fp32", plan)


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
                        weight_type=QuantType.QUInt8 if settings.weights == "uint8" else QuantType.QInt8,
                        reduce_range=settings.reduce_range,
                        nodes_to_exclude=list(settings.exclude_nodes) or None,
                        calibrate_method=methods[settings.calibration], extra_options=extra)
    if base.count == 0:
        raise ConfigError("INT8 calibration needs at least one sample input; none was given")
    return {"calibration_samples": base.count, "settings": settings.as_dict(), "quantizer": f"onnxruntime "
            f"{ort.__version__}", "quantize_seconds": round(time.perf_counter() - started, 2)}


def int8_spec(onnx: str | Path, settings: Int8Settings | None = None, isa: CpuIsa | None = None) -> BuildSpec:
    """Cache identity of the INT8 model of ``onnx`` in ``settings`` (default: this CPU's format).

    The format is in the precision label ("int8-u8s8", "int8-u8s8-rr", "int8-s8s8" ...), so that the CPU and the
    TensorRT variants of one ONNX file are two entries rather than each other's stale entry. A CPU model's device
    is the CPU class it was made for (``cpu:x86-avx2``; ``isa``, default this machine's), so an entry made on one
    class is rebuilt, not reused, on another; a TensorRT file's is "any" (a GPU artifact). The calibration data is
    recorded, not keyed, so a model calibrated from a real recording (``mmfusion build-engine --quantize-from BAG``) is
    the one every later user finds. The sidecar's notes name the CPU class, its model name and the format."""
    import onnxruntime as ort

    isa = isa or cpu_isa()
    settings = settings or cpu_int8_settings(isa)
    if settings.target == "tensorrt":
        device, notes = "any", {"int8_format": settings.label}
    else:
        device = f"cpu:{isa.name}"
        notes = {"int8_format": settings.label, "cpu_isa": isa.name, "cpu_isa_description": isa.description,
                 "cpu_model": isa.model}
    return BuildSpec(Path(onnx), f"int8-{settings.label}", "onnxruntime-qdq", ort.__version__, device,
                     options=settings.as_dict(), suffix=".onnx", notes=notes)


def _check_loads(path: Path) -> Path:
    import onnxruntime as ort

    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return path


def quantized_model(onnx: str | Path, feeds: Callable[[], Iterable[Mapping[str, np.ndarray]]],
                    settings: Int8Settings | None = None, cache: EngineCache | None = None, force: bool = False,
                    notes_of: Callable[[], Mapping] | None = None, isa: CpuIsa | None = None) -> CacheResult[Path]:
    """The cached INT8 model of ``onnx`` (beside it unless ``cache`` says otherwise) in ``settings`` (default: the
    format of the CPU class ``isa``, default this machine's), quantized on first use or when ``force``d with the
    samples ``feeds()`` yields; ``notes_of()`` adds facts (such as the calibration source) to the sidecar after
    the build."""
    if is_quantized(onnx):
        return CacheResult(Path(onnx), Path(onnx), "hit", "the ONNX file is already quantized")
    isa = isa or cpu_isa()
    settings = settings or cpu_int8_settings(isa)  # resolved once: the identity and the build use the same format
    spec = int8_spec(onnx, settings, isa)

    def build(tmp: Path) -> dict:
        facts = quantize_int8(onnx, tmp, feeds(), settings)
        return {**facts, **(notes_of() if notes_of else {})}

    return (cache or EngineCache()).get_or_build(spec, build, _check_loads, force=force)


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
