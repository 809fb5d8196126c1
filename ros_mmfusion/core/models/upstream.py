"""Upstream checkpoint conversion for every architecture: read the released file, map its keys onto ours, check it
against our model strictly, and write a plain state_dict (what ``mmfusion convert-checkpoint`` does).

Each architecture file owns its pure key mapping (``convert_upstream_checkpoint``); this module only picks the file
reader and infers the variant from the checkpoint's own keys and shapes. It sits above the model files in the import
graph (they import :mod:`.checkpoints`, never this module).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.models.checkpoints import describe_load_failure, load_weights_file

ARCHITECTURES = ("cmx", "vint", "pointpillars", "centerpoint")
"""``centerpoint``: OpenPCDet's dynamic-pillar CenterPoint (``core/models/centerpoint.py``, nuScenes)."""


@dataclass
class Converted:
    architecture: str
    variant: str
    state: dict
    details: dict


def read_checkpoint(path: str | Path, architecture: str):
    """The checkpoint object of ``path``; released ViNT files are pickled training objects, read without the
    upstream package (``vint.load_released_checkpoint``); the others with :func:`load_weights_file`."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if architecture == "vint":
        from ros_mmfusion.core.models.vint import load_released_checkpoint

        try:
            return load_released_checkpoint(path)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - unpickling a foreign or broken file raises many kinds
            raise ConfigError(f"cannot read checkpoint {path}: {describe_load_failure(exc)}") from None
    return load_weights_file(path)


def _shape(state: Mapping, key: str) -> tuple[int, ...]:
    if key not in state:
        raise ConfigError(f"checkpoint has no {key!r}: is it a checkpoint of this architecture?")
    return tuple(state[key].shape)


def _cmx_variant(state: Mapping) -> tuple[str, dict]:
    """Backbone from the number of blocks per stage and the stage widths; classes and decoder width from shapes."""
    from ros_mmfusion.core.models.mit import MIT_VARIANTS

    num_classes = _shape(state, "decode_head.linear_pred.weight")[0]
    embed = _shape(state, "decode_head.linear_pred.weight")[1]
    depths = tuple(len({k.split(".")[2] for k in state if k.startswith(f"backbone.block{i}.")}) for i in range(1, 5))
    dims = tuple(_shape(state, f"backbone.patch_embed{i}.proj.weight")[0] for i in range(1, 5))
    for name, variant in MIT_VARIANTS.items():
        if tuple(variant.depths) == depths and tuple(variant.embed_dims) == dims:
            return f"cmx_{name}", {"num_classes": num_classes, "decoder_embed_dim": embed}
    raise ConfigError(f"no MiT variant has depths {depths} and widths {dims}")


def convert(path: str | Path, architecture: str, variant: str | None = None) -> Converted:
    """Read, convert and strictly check an upstream checkpoint; ConfigError naming any mismatch."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    obj = read_checkpoint(path, architecture)
    if architecture == "cmx":
        from ros_mmfusion.core.models import cmx

        state = cmx.convert_upstream_checkpoint(obj)
        inferred, kwargs = _cmx_variant(state)
        name = variant or inferred
        model = cmx.build_cmx(name, **kwargs)
        report = cmx.load_checkpoint(model, state, strict=True)
        return Converted("cmx", name, model.state_dict(), {**kwargs, "loaded": len(report.loaded)})
    if architecture == "vint":
        from ros_mmfusion.core.models import vint

        state = vint.convert_upstream_checkpoint(obj)
        name = variant or "vint_default"
        model = vint.create_vint(name)
        report = vint.load_checkpoint(model, state, strict=True)
        return Converted("vint", name, model.state_dict(), {"loaded": len(report.loaded)})
    # OpenPCDet detectors: both files map OpenPCDet's own key names onto identically named modules.
    from ros_mmfusion.core.models import centerpoint, pointpillars

    module, default = {"pointpillars": (pointpillars, "pointpillars_kitti"),
                       "centerpoint": (centerpoint, "centerpoint_pillar_nuscenes")}[architecture]
    state = module.convert_upstream_checkpoint(obj)
    name = variant or default
    model = module.build_model(name)
    report = module.load_checkpoint(model, state, strict=True)
    return Converted(architecture, name, model.state_dict(), {"loaded": len(report.loaded)})
