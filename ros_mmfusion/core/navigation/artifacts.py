"""ViNT's model artifacts, the one place that resolves them: weights -> network -> ONNX -> INT8 -> a Backend.

* :class:`NavigationModel` / :func:`navigation_model`: the ViNT a model package (``task: navigation``) or a node's
  parameters name (variant with the package's config, input size and frame rate applied, weights, waypoint spacing);
* :func:`build_vint`: the network of a variant with weights loaded (our state_dict or the released ``vint.pth``),
  seeded random weights when none are given;
* :func:`vint_onnx`: its fp32 ONNX export (dynamic batch), cached under a name hashed from the variant and weights;
* :func:`vint_int8_onnx`: its INT8 (QDQ) model in this CPU's format, calibrated on first use with
  :func:`ros_mmfusion.core.navigation.quantize.vint_samples` (contexts fed through the pipeline's own stages) and
  cached beside the fp32 file with a sidecar (``core/inference/engine_cache.py``);
* :func:`build_backend`: the Backend a :class:`~ros_mmfusion.core.navigation.pipeline.NavigationPolicy` receives,
  on any backend of :data:`BACKENDS` (``tensorrt``: an engine with a batch profile over the localisation window,
  :func:`engine_profile`).
* :func:`vint_split_onnx` / :func:`build_split_backend`: the network split in two graphs (frame encoder, goal
  encoder + transformer) so the pipeline encodes each context frame once (what the node runs).

Usage (nodes, CLI, tests)::

    backend = build_backend("onnxruntime", variant="vint_default", weights="vint.pth")
    policy = NavigationPolicy(topomap, backend, variant="vint_default", radius=4)
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.base import Backend
from ros_mmfusion.core.inference.engine_cache import EngineCache
from ros_mmfusion.core.inference.factory import create_backend
from ros_mmfusion.core.inference.int8 import TENSORRT_INT8, Int8Settings, quantized_model
from ros_mmfusion.core.inference.tensorrt_support import Profile, leading_axis_profile
from ros_mmfusion.core.model_package import (
    ModelPackage,
    WeightsOrigin,
    check_package_params,
    read_package,
    resolve_package_dir,
    weights_origin,
)
from ros_mmfusion.core.models.vint import (
    FRAME_ENCODER_INPUT_NAMES,
    FRAME_ENCODER_OUTPUT_NAMES,
    GOAL_DECODER_INPUT_NAMES,
    GOAL_DECODER_OUTPUT_NAMES,
    ONNX_INPUT_NAMES,
    ONNX_OUTPUT_NAMES,
    ViNT,
    ViNTVariant,
    load_checkpoint,
    load_released_checkpoint,
    vint_onnx_spec,
    vint_split_onnx_specs,
)
from ros_mmfusion.core.navigation.pipeline import SplitViNTBackend, vint_variant
from ros_mmfusion.core.navigation.quantize import (
    EVALUATION_START,
    NavigationInt8Report,
    compare_vint_int8,
    describe,
    split_feeds,
    vint_samples,
)

UNTRAINED_SEED = 0
"""Seed of the random weights used when no weights file is given (so every process builds the same network)."""
DEFAULT_VARIANT = "vint_default"
"""The variant a node runs when neither ``model_package`` nor ``variant`` names one."""
DEFAULT_WAYPOINT_SPACING = 0.05
"""Metres per normalised waypoint unit of the released deployment (``max_v / frame_rate`` = 0.2 m/s / 4 Hz)."""
BACKENDS = ("onnxruntime", "onnxruntime-int8", "torch", "tensorrt", "onnxruntime-cuda", "torch-cuda")
"""Backends ViNT runs on (``tensorrt``, ``onnxruntime-cuda``, ``torch-cuda``: on a CUDA device, ``core/inference``)."""
DEFAULT_WINDOW = 9
"""Topomap nodes scored in one batch by default: the localisation window of the default radius 4 (2 * 4 + 1)."""
PACKAGE_REPLACES = ("weights", "variant")
"""The vint_navigation parameters a model package replaces: setting one beside ``model_package`` is a ConfigError."""


@dataclass(frozen=True)
class NavigationModel:
    """The ViNT a node runs: ``name`` (the variant's, for logs and cache names), ``variant`` (the resolved
    :class:`ViNTVariant`: network configuration, input size (w, h), frame rate), ``weights`` ("" = random from
    ``UNTRAINED_SEED``), ``waypoint_spacing`` (metres per normalised unit the model was trained with) and the
    ``package`` it came from (None: a named variant)."""

    name: str
    variant: ViNTVariant
    weights: str = ""
    waypoint_spacing: float = DEFAULT_WAYPOINT_SPACING
    package: ModelPackage | None = field(default=None, compare=False, repr=False)

    @classmethod
    def named(cls, name: str = "", weights: str = "") -> NavigationModel:
        """Variant ``name`` (empty: ``DEFAULT_VARIANT``) with ``weights``."""
        name = name or DEFAULT_VARIANT
        return cls(name, vint_variant(name), weights)

    @classmethod
    def from_package(cls, directory: str | Path) -> NavigationModel:
        """The navigation model package in ``directory`` (``task: navigation``): ``variant`` (a ``VINT_VARIANTS``
        name), ``weights``, and optionally ``config`` (ViNTConfig fields overriding the variant's), ``image_size``
        [w, h], ``frame_rate_hz`` and ``waypoint_spacing`` (m per unit)."""
        package = read_package(directory, "navigation")
        where = package.directory / "model.yaml"
        base = vint_variant(package.variant)
        try:
            config = dataclasses.replace(base.config, **package.value("config", dict, {}))
        except TypeError as exc:
            raise ConfigError(f"{where}: field 'config': {exc}") from None
        size = package.value("image_size", list, list(base.image_size))
        if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 16 for v in size):
            raise ConfigError(f"{where}: image_size must be [width, height] in pixels (>= 16), got {size}")
        rate = package.value("frame_rate_hz", float, base.frame_rate_hz)
        spacing = package.value("waypoint_spacing", float, DEFAULT_WAYPOINT_SPACING)
        if not (rate > 0 and spacing > 0):
            raise ConfigError(f"{where}: frame_rate_hz ({rate}) and waypoint_spacing ({spacing}) must be positive")
        variant = dataclasses.replace(base, config=config, image_size=(size[0], size[1]), frame_rate_hz=rate,
                                      weights=f"model package {package.name}")
        return cls(package.variant, variant, package.weights, spacing, package)

    @property
    def origin(self) -> WeightsOrigin:
        """Where the weights come from (trained package, file, fixture or random), with their sha256."""
        return weights_origin(self.weights, self.package, UNTRAINED_SEED)


def navigation_model(params: Mapping[str, Any], owner: str = "") -> NavigationModel:
    """The ViNT a ``vint_navigation`` node's parameters name; the node and ``mmfusion eval`` both read it here.
    ``model_package`` set: the package decides (``weights`` and ``variant`` must be empty: ConfigError naming both);
    else ``variant`` (empty: ``DEFAULT_VARIANT``) and ``weights``."""
    check_package_params(params, PACKAGE_REPLACES, owner)
    if params.get("model_package"):
        return NavigationModel.from_package(resolve_package_dir(params["model_package"]))
    return NavigationModel.named(str(params.get("variant") or ""), str(params.get("weights") or ""))


def build_vint(variant: str | ViNTVariant = "vint_default", weights: str = "") -> ViNT:
    """The ViNT network of ``variant`` in eval mode with ``weights`` loaded, or seeded random weights when empty.

    ``weights`` may be our plain state_dict or a released ``vint.pth`` training checkpoint (read without the
    upstream package, see ``models.vint.load_released_checkpoint``). ConfigError for a missing or unfit file.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        model = ViNT(vint_variant(variant).config)
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"ViNT weights file not found: {path}")
        try:
            state = load_released_checkpoint(path)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
            raise ConfigError(f"cannot read ViNT weights {path}: {exc}") from None
        load_checkpoint(model, state, allow_missing=model.unused_state_keys())
    return model.eval()


def _cache_name(variant: str | ViNTVariant, weights: str, graph: str) -> Path:
    """Cache path of one exported graph of ``variant`` + ``weights``: named after the variant (a
    :class:`ViNTVariant`, a package's, by its configuration and input size) and a hash of the weights file (or of
    the untrained seed); ``graph`` "" is the whole network, else a part's suffix."""
    from ros_mmfusion.core.onnx_export import cache_dir

    resolved = vint_variant(variant)
    key = variant if isinstance(variant, str) else f"custom/{resolved.config!r}/{resolved.image_size}"
    name = variant if isinstance(variant, str) else "vint_package"
    digest = hashlib.sha256(f"{key}/dynamic-batch/untrained-seed{UNTRAINED_SEED}".encode())
    if weights:
        if not Path(weights).is_file():
            raise ConfigError(f"ViNT weights file not found: {weights}")
        digest.update(Path(weights).read_bytes())
    return cache_dir() / "onnx" / f"{name}-{digest.hexdigest()[:16]}{graph}.onnx"


def vint_onnx(variant: str | ViNTVariant = "vint_default", weights: str = "", onnx: str = "") -> Path:
    """The ONNX file of ``variant`` + ``weights``: ``onnx`` when given (exported there when missing), else one in the
    cache directory named after the variant and a hash of the weights file (or of the untrained seed); a
    :class:`ViNTVariant` (a package's) is named by its configuration and input size."""
    from ros_mmfusion.core.onnx_export import export_once, export_onnx

    resolved = vint_variant(variant)
    path = Path(onnx) if onnx else _cache_name(variant, weights, "")

    def export(tmp: Path) -> None:
        model = build_vint(resolved, weights)
        export_onnx(model, path=tmp, **vint_onnx_spec(model, image_size=resolved.image_size))

    return export_once(path, export)


SPLIT_GRAPHS = ("-frame-encoder", "-goal-decoder")
"""Name suffixes of the split network's two ONNX files (``models.vint.ViNTFrameEncoder``, ``ViNTGoalDecoder``)."""


def vint_split_onnx(variant: str | ViNTVariant = "vint_default", weights: str = "") -> tuple[Path, Path]:
    """The split network's ONNX files ``(frame encoder, goal decoder)`` of ``variant`` + ``weights`` in the cache
    (exported on first use, beside the whole network's file, same naming)."""
    from ros_mmfusion.core.onnx_export import export_once, export_onnx

    resolved = vint_variant(variant)
    paths = tuple(_cache_name(variant, weights, graph) for graph in SPLIT_GRAPHS)

    def exporter(part: int):
        def export(tmp: Path) -> None:
            module, spec = vint_split_onnx_specs(build_vint(resolved, weights), resolved.image_size)[part]
            export_onnx(module, path=tmp, **spec)
        return export

    return export_once(paths[0], exporter(0)), export_once(paths[1], exporter(1))


def vint_int8_onnx(variant: str | ViNTVariant = "vint_default", weights: str = "", onnx: str = "", count: int = 16,
                   settings: Int8Settings | None = None, cache: EngineCache | None = None,
                   force: bool = False, source: str | Path | None = None) -> Path:
    """The INT8 (QDQ) model of ViNT ``variant`` + ``weights`` (its fp32 ONNX from ``vint_onnx``): the cached one,
    else quantized now on ``count`` contexts of ``source`` (None or "sim": ``indoor_corridor``; else a bag's camera
    images, ``quantize.vint_samples_from_bag``) in ``settings`` (default: this CPU's format;
    ``int8.TENSORRT_INT8`` for TensorRT)."""
    from ros_mmfusion.core.navigation.quantize import vint_samples_from_bag

    fp32 = vint_onnx(variant, weights, onnx)
    from_sim = source is None or str(source) == "sim"
    text = describe(count) if from_sim else f"{count} contexts of bag {Path(str(source)).resolve()}"

    def feeds() -> Iterator[dict[str, np.ndarray]]:
        yield from (vint_samples(variant, count) if from_sim else vint_samples_from_bag(variant, source, count))

    return quantized_model(fp32, feeds, settings, cache or EngineCache(), force=force,
                           notes_of=lambda: {"calibration": text}).artifact


def engine_profile(onnx: str | Path, window: int = DEFAULT_WINDOW) -> Profile:
    """The TensorRT optimization profile of a ViNT ONNX file: batch 1..``window`` (the topomap nodes scored at once,
    ``2 * radius + 1``; a single goal image is batch 1), kernels tuned for the full window. A larger window at run
    time (the radius raised) runs in chunks of ``window`` (``split_batch``)."""
    return leading_axis_profile(onnx, 1, max(1, window), max(1, window))


def build_backend(backend: str = "onnxruntime", variant: str | ViNTVariant = "vint_default", weights: str = "",
                  onnx: str = "", device: str = "cpu", threads: int = 0, precision: str = "fp32",
                  cache_dir: str | Path | None = None, window: int = DEFAULT_WINDOW,
                  calibration: str | Path | None = None) -> Backend:
    """The ViNT backend ``backend`` for ``variant`` + ``weights``: ``onnxruntime`` (and ``onnxruntime-cuda``; fp16:
    its fp16 copy) runs the fp32 export (``onnx``, or the cached one), ``onnxruntime-int8`` its INT8 (QDQ) model
    (calibrated on ``indoor_corridor`` contexts on first use, then cached beside it), ``torch``/``torch-cuda`` the
    network itself, ``tensorrt`` an engine of the export with batch profile 1..``window`` (int8: of the
    ``TENSORRT_INT8`` model calibrated on ``calibration``, None for the synthetic world, or a bag). Engines and
    converted models go to ``cache_dir`` (empty: beside the ONNX file). ConfigError for an unknown variant or
    backend, or an unusable weights file."""
    vint_variant(variant)
    if backend not in BACKENDS:
        raise ConfigError(f"ViNT runs on {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "tensorrt":  # before any export: one clear line where TensorRT cannot run
        from ros_mmfusion.core.inference.tensorrt_support import tensorrt_unavailable

        reason = tensorrt_unavailable()
        if reason:
            raise ConfigError(f"backend tensorrt: {reason}")
    cache = EngineCache(cache_dir) if cache_dir else None
    onnx_path = None
    if backend in ("onnxruntime", "onnxruntime-cuda") or (backend == "tensorrt" and precision != "int8"):
        onnx_path = vint_onnx(variant, weights, onnx)
    elif backend == "onnxruntime-int8":
        onnx_path = vint_int8_onnx(variant, weights, onnx, cache=cache, source=calibration)
    elif backend == "tensorrt":
        onnx_path = vint_int8_onnx(variant, weights, onnx, settings=TENSORRT_INT8, cache=cache, source=calibration)
    shapes = engine_profile(onnx_path, window) if backend == "tensorrt" and onnx_path is not None else None
    return create_backend(backend, input_names=ONNX_INPUT_NAMES, output_names=ONNX_OUTPUT_NAMES,
                          module_factory=lambda: build_vint(variant, weights), onnx_path=onnx_path, device=device,
                          threads=threads, precision=precision, shapes=shapes, cache_dir=cache_dir,
                          split_batch=True)


def vint_split_int8_onnx(variant: str | ViNTVariant = "vint_default", weights: str = "", count: int = 16,
                        settings: Int8Settings | None = None, cache: EngineCache | None = None,
                        force: bool = False) -> tuple[Path, Path]:
    """The INT8 (QDQ) models of the split network's two graphs (:func:`vint_split_onnx`), cached beside them: the
    frame encoder calibrated on the frames of ``count`` ``indoor_corridor`` contexts, the goal decoder on the same
    contexts' goals with the fp32 encoder's tokens (``quantize.split_feeds``)."""
    from ros_mmfusion.core.onnx_export import ort_session

    paths = vint_split_onnx(variant, weights)
    samples: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def prepared() -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        if not samples:  # rendered and encoded once, for both graphs, only when one needs quantizing
            encoder = ort_session(paths[0])
            samples.extend(split_feeds(feed, lambda frames: encoder.run(None, {"frame_img": frames})[0])
                           for feed in vint_samples(variant, count))
        return samples

    return tuple(quantized_model(path, lambda part=part: (s[part] for s in prepared()), settings,
                                 cache or EngineCache(), force=force,
                                 notes_of=lambda: {"calibration": describe(count)}).artifact
                 for part, path in enumerate(paths))


def build_split_backend(backend: str = "onnxruntime", variant: str | ViNTVariant = "vint_default", weights: str = "",
                        device: str = "cpu", threads: int = 0) -> SplitViNTBackend:
    """The split ViNT (frame encoder + goal decoder, :class:`SplitViNTBackend`) on ``backend``: ``onnxruntime``
    runs :func:`vint_split_onnx`'s fp32 files, ``onnxruntime-int8`` their INT8 models (:func:`vint_split_int8_onnx`,
    calibrated on first use), ``torch`` the two halves of one network (shared weights). ConfigError for another
    backend, an unknown variant or an unusable weights file."""
    from ros_mmfusion.core.models.vint import ViNTFrameEncoder, ViNTGoalDecoder

    if backend not in SPLIT_BACKENDS:
        raise ConfigError(f"the split ViNT runs on {' or '.join(SPLIT_BACKENDS)}, not {backend!r}")
    vint_variant(variant)
    paths: tuple[Path | None, Path | None] = (None, None)
    model: list[ViNT] = []  # the torch halves share one network, built once

    def network() -> ViNT:
        if not model:
            model.append(build_vint(variant, weights))
        return model[0]

    if backend == "onnxruntime":
        paths = vint_split_onnx(variant, weights)
    elif backend == "onnxruntime-int8":
        paths = vint_split_int8_onnx(variant, weights)
    encoder = create_backend(backend, input_names=FRAME_ENCODER_INPUT_NAMES, output_names=FRAME_ENCODER_OUTPUT_NAMES,
                             module_factory=lambda: ViNTFrameEncoder(network()), onnx_path=paths[0], device=device,
                             threads=threads)
    decoder = create_backend(backend, input_names=GOAL_DECODER_INPUT_NAMES, output_names=GOAL_DECODER_OUTPUT_NAMES,
                             module_factory=lambda: ViNTGoalDecoder(network()), onnx_path=paths[1], device=device,
                             threads=threads)
    return SplitViNTBackend(encoder, decoder)


SPLIT_BACKENDS = ("onnxruntime", "onnxruntime-int8", "torch")
"""The backends :func:`build_split_backend` builds; the node runs the whole network on the others."""


def measure_int8(variant: str | ViNTVariant = "vint_default", weights: str = "", count: int = 16, threads: int = 0,
                 timing_runs: int = 20) -> NavigationInt8Report:
    """Quantize (or reuse) and compare on ``count`` evaluation contexts (docs/backends.md's ViNT INT8 line)."""
    int8 = vint_int8_onnx(variant, weights, count=count)
    return compare_vint_int8(vint_onnx(variant, weights), int8, vint_samples(variant, count, EVALUATION_START),
                             threads=threads, timing_runs=timing_runs)
