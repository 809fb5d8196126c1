"""The segmentation model's artifacts: model package -> PyTorch module -> ONNX -> INT8 (QDQ) ONNX or TensorRT engine
-> a :class:`~ros_mmfusion.core.inference.base.Backend`. The one place that resolves model packages and model files
and builds the backend a :class:`~ros_mmfusion.core.segmentation.pipeline.FusionSegmenter` receives:

    spec = load_package("models/cmx_b0_rgbt_synthetic")        # relative: to the package share directory
    segmenter = FusionSegmenter(spec, build_backend(spec, "onnxruntime", threads=2))

Files are cached (``core/onnx_export.cache_dir``, engine cache sidecars beside the ONNX file): the fp32 ONNX is
exported on first use, the INT8 model quantized on first use with frames of the synthetic world
(``quantize.py``); ``mmfusion build-engine --precision int8 --calib BAG`` writes the same cache entry from a real
recording instead, and the pipeline then uses that one.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ros_mmfusion.core.inference.base import Backend
from ros_mmfusion.core.inference.engine_cache import EngineCache
from ros_mmfusion.core.inference.factory import create_backend
from ros_mmfusion.core.inference.int8 import TENSORRT_INT8, Int8Settings, quantized_model
from ros_mmfusion.core.onnx_export import cache_dir, export_once, export_onnx
from ros_mmfusion.core.segmentation.pipeline import INPUTS, OUTPUTS, SegmentationModelSpec
from ros_mmfusion.core.segmentation.quantize import LabelledFrame, describe_source, feeds_of, frames_from

DEFAULT_PACKAGE = "models/cmx_b0_rgbt_synthetic_320"
"""The suite's default segmentation model package, relative to the package share directory."""


def load_package(package: str | Path = DEFAULT_PACKAGE) -> SegmentationModelSpec:
    """The spec of the model package directory ``package``: absolute, or relative to the package share directory
    (``core.model_package.resolve_package_dir``), as the node's ``model_package`` parameter names it."""
    from ros_mmfusion.core.model_package import resolve_package_dir

    return SegmentationModelSpec.from_package(resolve_package_dir(package))


def build_module(spec: SegmentationModelSpec, deploy: bool = True, onnxruntime: bool = False):
    """The PyTorch CMX model of ``spec`` with its weights loaded (strict); with ``deploy`` its decoder is folded
    for inference (:func:`~ros_mmfusion.core.models.cmx.fold_for_inference`: same logits, far less compute), and
    with ``onnxruntime`` too its attention exports as ONNX Runtime's fused operator (for ONNX Runtime only)."""
    from ros_mmfusion.core.models import cmx
    from ros_mmfusion.core.models.checkpoints import load_weights_file

    model = cmx.build_cmx(spec.variant, num_classes=spec.num_classes, decoder_embed_dim=spec.decoder_embed_dim)
    if spec.weights:
        cmx.load_checkpoint(model, load_weights_file(spec.weights), strict=True)
    return cmx.fold_for_inference(model, onnxruntime=onnxruntime) if deploy else model.eval()


def export_model(spec: SegmentationModelSpec, out: str | Path, onnxruntime: bool = False) -> None:
    """Write the deployed network of ``spec`` to the ONNX file ``out`` (inputs ``rgb``, ``x``, output ``logits``;
    batch, height and width dynamic; traced at ``spec.input_size``); ``onnxruntime``: the graph for ONNX Runtime
    alone (fused attention, see :func:`build_module`), else standard opset-17 operators only."""
    import torch

    h, w = spec.input_size
    axes = {0: "batch", 2: "height", 3: "width"}
    example = (torch.zeros(1, 3, h, w), torch.zeros(1, 3, h, w))
    export_onnx(build_module(spec, onnxruntime=onnxruntime), example, Path(out), INPUTS, OUTPUTS,
                {name: axes for name in (*INPUTS, *OUTPUTS)})


DEPLOY_GRAPH = "deploy-v2"
"""Version of the exported graph's structure, part of the cache key: bumped when the export changes (v2: Mix-FFN on
the feature map, ONNX Runtime's fused attention in the ``onnxruntime`` graph)."""


def onnx_for(spec: SegmentationModelSpec, onnxruntime: bool = False) -> Path:
    """The ONNX file of ``spec``: the configured one (exported there on first use when missing), or one exported
    into the cache directory, named from the variant, classes, input size, the weights' content hash and the target:
    ``onnxruntime`` the graph for ONNX Runtime alone (fused attention), else the portable one (TensorRT, INT8). A
    configured file may serve any backend: it is always the portable graph."""
    if spec.onnx:
        path = Path(spec.onnx)
        onnxruntime = False
    else:
        target = "-ort" if onnxruntime else ""
        key = f"{DEPLOY_GRAPH}{target}/{spec.variant}/{spec.num_classes}/{spec.decoder_embed_dim}/{spec.input_size}"
        digest = hashlib.sha256(key.encode())
        if spec.weights:
            digest.update(Path(spec.weights).read_bytes())
        path = cache_dir() / "onnx" / f"{spec.variant}{target}-{digest.hexdigest()[:16]}.onnx"
    # atomic: concurrent nodes never read half a file
    return export_once(path, lambda tmp: export_model(spec, tmp, onnxruntime))


def int8_onnx_for(spec: SegmentationModelSpec, source: str | Path | None = None, count: int = 24, stride: int = 1,
                  settings: Int8Settings | None = None, cache: EngineCache | None = None, force: bool = False,
                  log: Callable[[str], None] | None = None, tensorrt: bool = False) -> Path:
    """The INT8 (QDQ) model of ``spec``: from the cache beside its fp32 ONNX, else quantized now with frames of
    ``source`` (a bag, or the synthetic world when None). ``tensorrt``: the symmetric variant TensorRT accepts
    (``TENSORRT_INT8``) instead of this CPU's format (``int8.cpu_int8_settings``), unless ``settings`` are given."""
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


def onnx_path_for(spec: SegmentationModelSpec, backend: str, precision: str = "fp32",
                  cache: EngineCache | None = None) -> Path | None:
    """The ONNX file ``backend`` runs: the INT8 (QDQ) model for onnxruntime-int8 and TensorRT int8
    (:func:`int8_onnx_for`), the fp32 export for onnxruntime (its own graph, fused attention), onnxruntime-cuda and
    tensorrt (the portable graph), none for torch."""
    if backend == "onnxruntime-int8" or (backend == "tensorrt" and precision == "int8"):
        return int8_onnx_for(spec, tensorrt=backend == "tensorrt", cache=cache)
    if backend == "onnxruntime":
        return onnx_for(spec, onnxruntime=True)
    return onnx_for(spec) if backend in ("onnxruntime-cuda", "tensorrt") else None


def build_backend(spec: SegmentationModelSpec, backend: str = "onnxruntime", device: str = "cpu",
                  precision: str = "fp32", threads: int = 0, cache_dir: str | Path | None = None) -> Backend:
    """The backend ``backend`` (a name of ``inference.base.BACKENDS``) running the network of ``spec`` at
    ``spec.input_size`` (TensorRT: one engine per input size), its model files resolved, exported or quantized on
    first use; engines and converted models in ``cache_dir`` (empty: beside the ONNX file)."""
    if backend == "tensorrt":  # before any export: one clear line where TensorRT cannot run
        from ros_mmfusion.core.errors import ConfigError
        from ros_mmfusion.core.inference.tensorrt_support import tensorrt_unavailable

        reason = tensorrt_unavailable()
        if reason:
            raise ConfigError(f"backend tensorrt: {reason}")
    cache = EngineCache(cache_dir) if cache_dir else None
    return create_backend(
        backend, input_names=INPUTS, output_names=OUTPUTS, module_factory=lambda: build_module(spec),
        onnx_path=onnx_path_for(spec, backend, precision, cache), device=device, precision=precision,
        threads=threads, shapes={name: (1, 3, *spec.input_size) for name in INPUTS}, cache_dir=cache_dir)
