"""Every network the suite can export or benchmark: how to build it and feed it example inputs (pure data), and the
named 3D detectors (``detectors()``: two graphs each, built and timed as pipelines by ``core/detection3d``)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ros_mmfusion.core.errors import ConfigError

if TYPE_CHECKING:
    from ros_mmfusion.core.models.centerpoint import DynamicPillarsConfig
    from ros_mmfusion.core.models.pointpillars import PointPillarsConfig


@dataclass(frozen=True)
class NetworkSpec:
    """``build()`` returns an eval-mode ``nn.Module`` (random weights unless a loader fills them);
    ``example(batch, (height, width))`` returns its positional inputs; names follow the ONNX files."""

    name: str
    build: Callable[[], object]
    example: Callable[[int, tuple[int, int]], tuple]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    default_size: tuple[int, int]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    fixed_size: bool = False
    deploy: Callable[[object], object] | None = None
    """Exact rewrite of the reference module for deployment (exported graphs use it), e.g. CMX's folded decoder."""
    deploy_onnxruntime: Callable[[object], object] | None = None
    """The deployment rewrite for graphs that only ONNX Runtime runs (may use its ``com.microsoft`` operators);
    None: ``deploy``."""


def _cmx(variant: str) -> NetworkSpec:
    def build():
        from ros_mmfusion.core.models.cmx import build_cmx

        return build_cmx(variant, num_classes=40).eval()

    def example(batch: int, size: tuple[int, int]):
        import torch

        return torch.randn(batch, 3, *size), torch.randn(batch, 3, *size)

    def deploy(module):
        from ros_mmfusion.core.models.cmx import fold_for_inference

        return fold_for_inference(module)

    def deploy_onnxruntime(module):
        from ros_mmfusion.core.models.cmx import fold_for_inference

        return fold_for_inference(module, onnxruntime=True)

    axes = {0: "batch", 2: "height", 3: "width"}
    return NetworkSpec(variant, build, example, ("rgb", "x"), ("logits",), (480, 640),
                       {"rgb": axes, "x": axes, "logits": axes}, deploy=deploy, deploy_onnxruntime=deploy_onnxruntime)


def _vint(variant: str) -> NetworkSpec:
    def build():
        from ros_mmfusion.core.models.vint import create_vint

        return create_vint(variant).eval()

    def example(batch: int, size: tuple[int, int]):
        import torch

        from ros_mmfusion.core.models.vint import VINT_VARIANTS

        context = VINT_VARIANTS[variant].config.context_size
        return torch.randn(batch, 3 * (context + 1), *size), torch.randn(batch, 3, *size)

    names = ("obs_img", "goal_img", "dist", "action")
    return NetworkSpec(variant, build, example, names[:2], names[2:], (64, 85), {n: {0: "batch"} for n in names},
                       fixed_size=True)


NETWORKS: dict[str, Callable[[], NetworkSpec]] = {
    **{f"cmx_mit_b{i}": (lambda v=f"cmx_mit_b{i}": _cmx(v)) for i in range(6)},
    "vint": lambda: _vint("vint_default"),
    "vint_reduced": lambda: _vint("vint_reduced"),
}


def network(name: str) -> NetworkSpec:
    if name not in NETWORKS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(NETWORKS)}")
    return NETWORKS[name]()


# ---------------------------------------------------------------------------------------------- 3D detectors
# A pillar detector is two graphs with a scatter between them, not one ``NetworkSpec``: it is named here by its
# configuration, and ``core/detection3d`` builds and times it as a whole pipeline.

DETECTOR_ALIASES = {"pointpillars": "pointpillars_kitti"}
"""Command-line names of detectors that are not variant names (``mmfusion bench --model pointpillars``)."""


def detectors(aliases: bool = True) -> dict[str, PointPillarsConfig | DynamicPillarsConfig]:
    """Every named 3D detector configuration: the variants of ``core/models/pointpillars.py`` (static pillars), then
    those of ``core/models/centerpoint.py`` (dynamic pillars: ``centerpoint_pillar_nuscenes``), followed by
    ``DETECTOR_ALIASES`` unless ``aliases`` is false."""
    from ros_mmfusion.core.models.centerpoint import VARIANTS as DYNAMIC
    from ros_mmfusion.core.models.pointpillars import VARIANTS

    return {**VARIANTS, **DYNAMIC, **({a: VARIANTS[n] for a, n in DETECTOR_ALIASES.items()} if aliases else {})}


def detector(name: str) -> PointPillarsConfig | DynamicPillarsConfig:
    """The detector configuration named ``name`` (a variant or an alias); ConfigError naming the known ones."""
    known = detectors()
    if name not in known:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(known)}")
    return known[name]
