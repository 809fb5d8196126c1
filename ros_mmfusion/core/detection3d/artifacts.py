"""The detector's model artifacts (ROS-free): weights -> the two ONNX graphs -> INT8 -> the pipeline's backends.

The one place that resolves a pillar detector's files and builds its backends:

* ``DetectorSpec.from_package`` / ``detector_spec``: the detector a model package (``task: detection3d``) or a node's
  parameters name; the package decides the variant, weights and painted classes (``core/model_package.py``).
* ``build_module``: the PyTorch ``PointPillars`` of a ``DetectorSpec`` with its weights (an OpenPCDet checkpoint
  ``{'model_state': ...}``, our state_dict or an ``.npz`` of one; painted weights widened from unpainted ones; without
  weights random ones drawn from ``seed``: tests and timing only).
* ``onnx_files``: Autoware's two-graph split, ``pillar_encoder.onnx`` (dynamic pillar count) and
  ``backbone_head.onnx``, exported on first use into ``onnx_dir`` or the cache (``core/onnx_export.cache_dir``), named
  by the configuration and the weights' content.
* ``int8_onnx_files``: their INT8 (QDQ) models, quantized by ``quantize.py`` on first use and cached beside them
  (``core/inference/engine_cache.py``, with a sidecar).
* ``build_backends`` -> ``PillarBackends`` for every backend of ``PIPELINE_BACKENDS``: ``tensorrt`` builds (or
  loads from the engine cache) an engine per graph, the pillar encoder's with an optimization profile over the
  number of pillars (``engine_profiles``), the backbone+head's at its fixed canvas; ``build_detector``: those
  backends in a ``PillarDetector``.
* Dynamic-pillar detectors (``centerpoint_pillar_nuscenes``, ``core/models/centerpoint.py``): the same path with
  ``pillar_vfe.npz`` (the numpy encoder's folded weights, ``dynamic.py``) in place of ``pillar_encoder.onnx``, and a
  ``DynamicPillarDetector``; backends ``DYNAMIC_BACKENDS`` (no INT8 yet).

Import order (no cycles): ``preprocess`` <- ``pipeline`` <- ``quantize``, ``dynamic`` <- ``artifacts``.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion.core.detection3d.dynamic import VFE_WEIGHTS, DynamicPillarDetector, DynamicPillarEncoder, vfe_arrays
from ros_mmfusion.core.detection3d.painting import paint_class_ids, painted_config, painted_state_dict
from ros_mmfusion.core.detection3d.pipeline import PillarBackends, PillarDetector, with_range
from ros_mmfusion.core.detection3d.quantize import quantize_graphs
from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference import create_backend
from ros_mmfusion.core.inference.engine_cache import EngineCache
from ros_mmfusion.core.inference.int8 import TENSORRT_INT8, Int8Settings, is_quantized
from ros_mmfusion.core.inference.tensorrt_support import Profile, leading_axis_profile
from ros_mmfusion.core.model_package import (
    ModelPackage,
    WeightsOrigin,
    check_package_params,
    read_package,
    resolve_package_dir,
    weights_origin,
)
from ros_mmfusion.core.models.centerpoint import DynamicPillarsConfig
from ros_mmfusion.core.models.pointpillars import BackboneHead, PillarEncoder, PointPillarsConfig
from ros_mmfusion.core.models.registry import detector
from ros_mmfusion.core.onnx_export import cache_dir, export_once

PIPELINE_BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "tensorrt", "onnxruntime-cuda", "torch-cuda")
"""Backends both graphs run on (``onnxruntime-int8``: the backbone+head quantized, calibrated on synthetic
``urban_day`` clouds on first use, the pillar encoder fp32 ONNX Runtime, see ``quantize.py``; ``tensorrt``,
``onnxruntime-cuda``, ``torch-cuda``: on a CUDA device, ``core/inference``)."""
DYNAMIC_BACKENDS = ("torch", "onnxruntime", "tensorrt", "onnxruntime-cuda", "torch-cuda")
"""Backends of the dense graph of a dynamic-pillar detector (its encoder is numpy on all of them); TensorRT fp32/fp16
only (written, not run here)."""
DYNAMIC_INTENSITY_SCALE = 1.0
"""The intensity factor of the dynamic-pillar (nuScenes) detectors while neither a parameter nor a package sets one:
nuScenes models take the raw 0..255 intensity."""
ENCODER_ONNX = "pillar_encoder.onnx"
BACKBONE_HEAD_ONNX = "backbone_head.onnx"
_ONNX_CACHE_VERSION = "pillars-v2"
DEFAULT_DETECTOR = "pointpillars_synthetic"
"""The detector a node runs when neither ``model_package`` nor ``model`` names one."""
PACKAGE_REPLACES = ("weights", "model")
"""The detection3d node parameters a model package replaces: setting one beside ``model_package`` is a ConfigError."""


@dataclass(frozen=True)
class DetectorSpec:
    """Which detector, its weights and its deployment files.

    ``config``: the unpainted detector. ``weights``: a checkpoint file (OpenPCDet ``.pth`` with ``model_state``, our
    state_dict ``.pt``/``.pth``, or an ``.npz`` of key -> array); painted or unpainted (an unpainted one is widened
    with zero weights for the painted channels, see ``painting.py``); empty means random weights drawn from ``seed``.
    ``paint_channels``: number of PointPainting score channels (0: unpainted). ``onnx_dir``: a directory holding, or
    to receive on first use, ``pillar_encoder.onnx`` and ``backbone_head.onnx``; empty means the cache.
    ``paint_classes``: the suite's label names painted, one channel each (as many as ``paint_channels`` when given).
    ``package``: the model package the spec was read from (None: named in code or by node parameters).
    """

    config: PointPillarsConfig | DynamicPillarsConfig
    weights: str = ""
    seed: int = 0
    paint_channels: int = 0
    onnx_dir: str = ""
    paint_classes: tuple[str, ...] = ()
    package: ModelPackage | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_package(cls, directory: str | Path, **kwargs) -> DetectorSpec:
        """The spec of the detection model package in ``directory`` (``task: detection3d``): ``variant`` (a name of
        ``core/models/pointpillars.VARIANTS``), ``weights``, optional ``paint_classes`` (label names; absent or empty:
        unpainted) and ``class_names`` (checked against the variant's). ``kwargs``: ``seed``, ``onnx_dir``."""
        package = read_package(directory, "detection3d")
        where = package.directory / "model.yaml"
        config = detector(package.variant)
        names = package.value("class_names", list)
        if names is not None and tuple(names) != tuple(config.class_names):
            raise ConfigError(f"{where}: class_names {names} differ from variant {package.variant}'s "
                              f"{list(config.class_names)}")
        paint = tuple(str(n) for n in package.value("paint_classes", list, []))
        if paint and is_dynamic(config):
            raise ConfigError(f"{where}: paint_classes: {package.variant} (dynamic pillars) is not painted")
        try:
            paint_class_ids(paint)
        except ConfigError as exc:
            raise ConfigError(f"{where}: paint_classes: {exc}") from None
        return cls(config, weights=package.weights, paint_channels=len(paint), paint_classes=paint, package=package,
                   **kwargs)

    @classmethod
    def named(cls, name: str, **kwargs) -> DetectorSpec:
        """The spec of the detector ``name`` (``core/models/registry.detectors()``: a variant or an alias)."""
        return cls(detector(name), **kwargs)

    @property
    def dynamic(self) -> bool:
        """A dynamic-pillar detector (``DynamicPillarsConfig``: numpy encoder, ``DynamicPillarDetector``)."""
        return is_dynamic(self.config)

    @property
    def intensity_scale(self) -> float | None:
        """The intensity factor the spec carries: its package's ``intensity_scale``, else for a dynamic-pillar
        (nuScenes) detector ``DYNAMIC_INTENSITY_SCALE``; None: none (the caller's own default applies)."""
        value = self.package_value("intensity_scale", float)
        return DYNAMIC_INTENSITY_SCALE if value is None and self.dynamic else value

    @property
    def model_config(self) -> PointPillarsConfig | DynamicPillarsConfig:
        """The configuration of the network that runs (painted when ``paint_channels`` > 0)."""
        return self.config if self.dynamic else painted_config(self.config, self.paint_channels)

    @property
    def origin(self) -> WeightsOrigin:
        """Where the weights come from (trained package, file, fixture or random from ``seed``), with their sha256."""
        return weights_origin(self.weights, self.package, self.seed)

    def package_value(self, name: str, kind: type) -> Any:
        """Field ``name`` of the package's ``model.yaml`` (None without a package or the field)."""
        return None if self.package is None else self.package.value(name, kind)


def is_dynamic(config: object) -> bool:
    """Whether ``config`` is a dynamic-pillar detector's (``DynamicPillarsConfig``)."""
    return isinstance(config, DynamicPillarsConfig)


def detector_spec(params: Mapping[str, Any], owner: str = "") -> DetectorSpec:
    """The detector a ``detection3d`` node's parameters name; the node and ``mmfusion eval`` both read it here.

    ``model_package`` set: the package decides the variant, weights and painted classes (``weights`` and ``model``
    must be empty: ConfigError naming both); a painted package with ``painting`` off still runs, every point with the
    no-score value; ``painting`` on with an unpainted package is a ConfigError. Otherwise ``model`` (empty:
    ``DEFAULT_DETECTOR``), ``weights`` (empty: random from ``seed``) and, with ``painting``, ``paint_classes``.
    Then ``point_cloud_range`` (all 0: the model's) and ``max_pillars`` (0: the model's). ``owner`` prefixes errors.
    A dynamic-pillar detector has no pillar limit and is not painted: ``max_pillars`` or ``painting`` set with it is a
    ConfigError.
    """
    check_package_params(params, PACKAGE_REPLACES, owner)
    prefix = f"{owner}: " if owner else ""
    painting = bool(params.get("painting", False))
    common = {"seed": int(params.get("seed", 0)), "onnx_dir": str(params.get("onnx_dir", ""))}
    if params.get("model_package"):
        spec = DetectorSpec.from_package(resolve_package_dir(params["model_package"]), **common)
        if painting and not spec.paint_channels:
            raise ConfigError(f"{prefix}parameter 'painting' is true but model package {spec.package.name} is "
                              "unpainted (no paint_classes): use a painted package or set painting false")
    else:
        paint = tuple(params.get("paint_classes") or ()) if painting else ()
        spec = DetectorSpec(detector(str(params.get("model") or DEFAULT_DETECTOR)), weights=str(params.get("weights",
                            "")), paint_channels=len(paint), paint_classes=paint, **common)
    config = spec.config
    if spec.dynamic and painting:
        raise ConfigError(f"{prefix}parameter 'painting' is true but {config.name} (dynamic pillars) is not painted: "
                          "set painting false")
    if spec.dynamic and params.get("max_pillars"):
        raise ConfigError(f"{prefix}parameter 'max_pillars' ({params['max_pillars']}) does not apply to "
                          f"{config.name}: dynamic pillars have no pillar limit; leave it 0")
    if any(params.get("point_cloud_range") or ()):
        config = with_range(config, params["point_cloud_range"])  # type: ignore[arg-type] - shared fields only
    if params.get("max_pillars"):
        config = dataclasses.replace(config, max_pillars=int(params["max_pillars"]))
    return dataclasses.replace(spec, config=config)


def read_checkpoint(path: str | Path) -> Mapping:
    """The mapping stored in a checkpoint file: ``.npz`` through numpy (key -> array), anything else with
    :func:`~ros_mmfusion.core.models.checkpoints.load_weights_file` (``torch.load``, weights only)."""
    from ros_mmfusion.core.models.checkpoints import load_weights_file

    path = Path(path)
    if path.suffix != ".npz":
        return load_weights_file(path)
    if not path.is_file():
        raise ConfigError(f"weights file not found: {path}")
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - numpy raises many types for a bad file
        raise ConfigError(f"cannot read weights {path}: {exc}") from None


def build_module(spec: DetectorSpec):
    """The eval-mode ``PointPillars`` (``CenterPointPillar`` for a dynamic-pillar spec) of ``spec`` with its weights
    loaded (strict)."""
    import torch

    from ros_mmfusion.core.models.pointpillars import build_model, convert_upstream_checkpoint, load_checkpoint

    if spec.dynamic:
        from ros_mmfusion.core.models import centerpoint

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            module = centerpoint.build_model(spec.config)
        if spec.weights:
            centerpoint.load_checkpoint(module, read_checkpoint(spec.weights), strict=True)
        return module.eval()
    state: Mapping[str, torch.Tensor]
    if spec.weights:
        state = convert_upstream_checkpoint(read_checkpoint(spec.weights))
    else:
        with torch.random.fork_rng(devices=[]):  # reproducible weights without touching the caller's generator
            torch.manual_seed(spec.seed)
            state = build_model(spec.config).state_dict()
    if spec.paint_channels:
        state = painted_state_dict(state, spec.config, spec.paint_channels)
    model = build_model(spec.model_config)
    load_checkpoint(model, state, strict=True)
    return model.eval()


def export_dynamic(module, directory: str | Path) -> tuple[Path, Path]:
    """A ``CenterPointPillar``'s deployment files in ``directory``: ``pillar_vfe.npz`` (``dynamic.vfe_arrays``) and
    ``backbone_head.onnx`` (``export_dense``, the configured canvas)."""
    from ros_mmfusion.core.models.centerpoint import export_dense

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vfe = module.config.vfe
    np.savez(directory / VFE_WEIGHTS, **vfe_arrays(module.state_dict(), len(vfe.num_filters), vfe.use_norm))
    return directory / VFE_WEIGHTS, export_dense(module, directory / BACKBONE_HEAD_ONNX)


def onnx_files(spec: DetectorSpec) -> tuple[Path, Path]:
    """``(pillar_encoder.onnx, backbone_head.onnx)`` of ``spec``, exported on first use (a dynamic-pillar spec:
    ``(pillar_vfe.npz, backbone_head.onnx)``).

    Without ``onnx_dir`` they live in ``<cache>/onnx/<name>-<hash>/``, the hash covering the configuration and the
    weights' content (or the seed of random weights).
    """
    from ros_mmfusion.core.models.pointpillars import export_split

    if spec.onnx_dir:
        directory = Path(spec.onnx_dir)
    else:
        digest = hashlib.sha256(f"{_ONNX_CACHE_VERSION}/{spec.model_config!r}".encode())
        digest.update(Path(spec.weights).read_bytes() if spec.weights else f"seed={spec.seed}".encode())
        directory = cache_dir() / "onnx" / f"{spec.model_config.name}-{digest.hexdigest()[:16]}"
    encoder = VFE_WEIGHTS if spec.dynamic else ENCODER_ONNX
    files = (directory / encoder, directory / BACKBONE_HEAD_ONNX)
    if directory.exists() and not all(f.is_file() for f in files):
        raise ConfigError(f"ONNX directory {directory} lacks {encoder} or {BACKBONE_HEAD_ONNX}")
    export = export_dynamic if spec.dynamic else export_split
    export_once(directory, lambda tmp: export(build_module(spec), tmp))
    return files


def int8_onnx_files(spec: DetectorSpec, intensity_scale: float = 1.0, count: int = 16,
                    settings: Int8Settings | None = None, cache: EngineCache | None = None,
                    force: bool = False, source: str | Path | None = None) -> tuple[Path, Path]:
    """``(encoder, backbone_head)`` INT8 (QDQ) files of ``spec`` (on the CPU the encoder is the fp32 export:
    ``quantize.py``): the cached ones beside the fp32 exports, else quantized now (``quantize.quantize_graphs``) on
    ``count`` clouds of ``source`` (None: ``urban_day``; or a bag) through the fp32 ONNX Runtime detector, intensity
    times ``intensity_scale`` (as the detector sees them), in ``settings`` (default: this CPU's format;
    ``int8.TENSORRT_INT8`` for TensorRT)."""
    encoder, head = onnx_files(spec)
    return quantize_graphs(encoder, head, lambda: build_detector(spec, "onnxruntime", intensity_scale=intensity_scale),
                           count, settings, cache, force, source)


def pillar_count_bounds(config: PointPillarsConfig) -> tuple[int, int, int]:
    """``(min, opt, max)`` pillars the encoder's engine profile covers: at most ``max_pillars``, and never more than
    the cells of the point cloud range's grid (nx * ny); kernels are tuned for half the maximum (a busy frame:
    the synthetic world's 32-beam clouds occupy a few thousand pillars of KITTI's 16000/40000). More pillars than
    the maximum cannot occur (the pipeline truncates at ``max_pillars``)."""
    nx, ny, _ = config.grid.grid_size
    hi = max(1, min(int(config.max_pillars), nx * ny))
    return 1, max(1, hi // 2), hi


def engine_profiles(spec: DetectorSpec) -> tuple[Profile, Profile]:
    """The TensorRT optimization profiles of ``(pillar_encoder.onnx, backbone_head.onnx)`` of ``spec``: the encoder's
    ``input_features`` over ``pillar_count_bounds`` pillars, the backbone+head's canvas at its fixed shape."""
    encoder, head = onnx_files(spec)
    config = spec.model_config
    ny, nx = config.grid.bev_shape
    canvas = (1, config.num_bev_features, ny, nx)
    return (leading_axis_profile(encoder, *pillar_count_bounds(config)),
            {"spatial_features": (canvas, canvas, canvas)})


def build_backends(spec: DetectorSpec, backend: str = "onnxruntime", device: str = "cpu", precision: str = "fp32",
                   threads: int = 0, intensity_scale: float = 1.0, cache_dir: str | Path | None = None,
                   calibration: str | Path | None = None) -> PillarBackends:
    """The two graphs of ``spec`` on ``backend`` (one of ``PIPELINE_BACKENDS``): the PyTorch modules for ``torch`` and
    ``torch-cuda``, the fp32 exports for ``onnxruntime`` and ``onnxruntime-cuda`` (fp16: their fp16 copies), their
    INT8 models for ``onnxruntime-int8`` (calibrated with intensities times ``intensity_scale`` when quantized now),
    TensorRT engines for ``tensorrt`` (profiles ``engine_profiles``; int8 builds the explicitly quantized
    ``TENSORRT_INT8`` models, calibrated on ``calibration``: None for the synthetic world, or a bag). Engines and
    converted models go to ``cache_dir`` (empty: beside the ONNX files)."""
    if backend not in PIPELINE_BACKENDS:
        raise ConfigError(f"the detection pipeline runs on {' or '.join(PIPELINE_BACKENDS)}, not {backend!r}")
    if spec.dynamic:
        return _dynamic_backends(spec, backend, device, precision, threads, cache_dir)
    if backend == "tensorrt":  # before any export: one clear line where TensorRT cannot run
        from ros_mmfusion.core.inference.tensorrt_support import tensorrt_unavailable

        reason = tensorrt_unavailable()
        if reason:
            raise ConfigError(f"backend tensorrt: {reason}")
    module = build_module(spec) if backend in ("torch", "torch-cuda") else None
    encoder, backbone_head = module.split() if module is not None else (None, None)
    encoder_path: Path | None = None
    head_path: Path | None = None
    profiles: tuple[Profile, Profile] | tuple[None, None] = (None, None)
    cache = EngineCache(cache_dir) if cache_dir else None
    if backend in ("onnxruntime", "onnxruntime-cuda") or (backend == "tensorrt" and precision != "int8"):
        encoder_path, head_path = onnx_files(spec)
    elif backend == "onnxruntime-int8":
        encoder_path, head_path = int8_onnx_files(spec, intensity_scale, cache=cache, source=calibration)
    elif backend == "tensorrt":
        encoder_path, head_path = int8_onnx_files(spec, intensity_scale, settings=TENSORRT_INT8, cache=cache,
                                                  source=calibration)
    if backend == "tensorrt":
        profiles = engine_profiles(spec)
    common = {"device": device, "precision": precision, "threads": threads, "cache_dir": cache_dir}
    # INT8 on the CPU keeps the pillar encoder in float (quantize.py): that graph runs on fp32 ONNX Runtime
    float_encoder = backend == "onnxruntime-int8" and encoder_path is not None and not is_quantized(encoder_path)
    return PillarBackends(
        encoder=create_backend(
            "onnxruntime" if float_encoder else backend, input_names=PillarEncoder.input_names,
            output_names=PillarEncoder.output_names,
            module_factory=lambda: encoder, onnx_path=encoder_path, shapes=profiles[0], split_batch=True,
            **{**common, "precision": "fp32" if float_encoder else precision}),
        backbone_head=create_backend(
            backend, input_names=BackboneHead.input_names,
            output_names=backbone_head.output_names if backbone_head is not None else (),
            module_factory=lambda: backbone_head, onnx_path=head_path, shapes=profiles[1], **common))


def _dynamic_backends(spec: DetectorSpec, backend: str, device: str, precision: str, threads: int,
                      cache_dir: str | Path | None) -> PillarBackends:
    """``build_backends`` of a dynamic-pillar spec: the numpy encoder (weights from ``pillar_vfe.npz``, or the torch
    module's for ``torch``/``torch-cuda``) and the dense graph on ``backend`` (one of ``DYNAMIC_BACKENDS``)."""
    if backend not in DYNAMIC_BACKENDS or precision == "int8":
        raise ConfigError(f"{spec.config.name} (dynamic pillars) runs on {' or '.join(DYNAMIC_BACKENDS)} (not INT8), "
                          f"not {backend!r} {precision}")
    if backend == "tensorrt":
        from ros_mmfusion.core.inference.tensorrt_support import tensorrt_unavailable

        reason = tensorrt_unavailable()
        if reason:
            raise ConfigError(f"backend tensorrt: {reason}")
    common = {"device": device, "precision": precision, "threads": threads, "cache_dir": cache_dir}
    if backend in ("torch", "torch-cuda"):
        module = build_module(spec)
        vfe = spec.config.vfe
        encoder = DynamicPillarEncoder(vfe_arrays(module.state_dict(), len(vfe.num_filters), vfe.use_norm))
        dense = module.dense()
        head = create_backend(backend, input_names=BackboneHead.input_names, output_names=dense.output_names,
                              module_factory=lambda: dense, **common)
        return PillarBackends(encoder=encoder, backbone_head=head)
    vfe_path, head_path = onnx_files(spec)
    ny, nx = spec.config.grid.bev_shape
    canvas = (1, spec.config.num_bev_features, ny, nx)
    shapes = {"spatial_features": (canvas, canvas, canvas)} if backend == "tensorrt" else None
    return PillarBackends(
        encoder=DynamicPillarEncoder.from_file(vfe_path),
        backbone_head=create_backend(backend, input_names=BackboneHead.input_names, output_names=(),
                                     onnx_path=head_path, shapes=shapes, **common))


def build_detector(spec: DetectorSpec, backend: str = "onnxruntime", device: str = "cpu", precision: str = "fp32",
                   threads: int = 0, intensity_scale: float = 1.0,
                   score_thresholds: float | Sequence[float] | None = None,
                   cache_dir: str | Path | None = None) -> PillarDetector:
    """``PillarDetector`` of ``spec`` on ``build_backends(spec, backend, ...)``; arguments as there and in
    ``PillarDetector``."""
    backends = build_backends(spec, backend, device, precision, threads, intensity_scale, cache_dir)
    if spec.dynamic:
        return DynamicPillarDetector(spec.config, backends, intensity_scale=intensity_scale,
                                     score_thresholds=score_thresholds)
    return PillarDetector(spec.config, backends, paint_channels=spec.paint_channels, intensity_scale=intensity_scale,
                          score_thresholds=score_thresholds)
