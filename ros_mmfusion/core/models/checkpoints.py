"""Upstream checkpoint conversion for every architecture: read the released file, map its keys onto ours, check it
against our model strictly, and write a plain state_dict (what ``mmfusion convert-checkpoint`` does).

Each architecture file owns its pure key mapping (``convert_upstream_checkpoint``); this module only picks the file
reader and infers the variant from the checkpoint's own keys and shapes.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ros_mmfusion.core.errors import ConfigError

ARCHITECTURES = ("cmx", "vint", "pointpillars")


def _listed(keys: Iterable[str], limit: int = 12) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_state` found: keys loaded, keys the model has and the checkpoint lacks (``missing``), the
    reverse (``unexpected``), and shape mismatches as (key, checkpoint shape, model shape)."""

    loaded: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self, allow_missing: Iterable[str] = ()) -> list[str]:
        allowed = set(allow_missing)
        missing = [k for k in self.missing if k not in allowed]
        out = []
        if missing:
            out.append(f"missing keys ({len(missing)}): {_listed(missing)}")
        if self.unexpected:
            out.append(f"unexpected keys ({len(self.unexpected)}): {_listed(self.unexpected)}")
        if self.mismatched:
            out.append(f"shape mismatches ({len(self.mismatched)}): " + _listed(
                f"{k} (checkpoint {list(c)}, model {list(m)})" for k, c, m in self.mismatched))
        return out

    def __str__(self) -> str:
        return f"{len(self.loaded)} tensors loaded; " + ("; ".join(self.problems()) or "nothing left out")


def load_state(model, state: Mapping, strict: bool = True, allow_missing: Iterable[str] = ()) -> LoadReport:
    """Load a converted state_dict into ``model``; floating tensors are cast to the model's dtypes.

    ``strict``: any missing (except ``allow_missing``), unexpected or mis-shaped key raises ConfigError naming them
    all, and nothing is loaded. Otherwise the fitting tensors are loaded and the report says what was left out.
    """
    own = model.state_dict()
    mismatched = tuple((k, tuple(state[k].shape), tuple(own[k].shape)) for k in state
                       if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    bad = {k for k, _, _ in mismatched}
    report = LoadReport(loaded=tuple(k for k in own if k in state and k not in bad),
                        missing=tuple(k for k in own if k not in state),
                        unexpected=tuple(k for k in state if k not in own), mismatched=mismatched)
    problems = report.problems(allow_missing)
    if strict and problems:
        raise ConfigError(f"checkpoint does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict({k: (state[k].to(own[k].dtype) if state[k].is_floating_point() else state[k])
                           for k in report.loaded}, strict=False)
    return report


@dataclass
class Converted:
    architecture: str
    variant: str
    state: dict
    details: dict


def load_weights_file(path: str | Path):
    """``torch.load`` of a weights file with ``weights_only=True`` (no code runs); clear errors for a missing or
    unreadable file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before failing on them
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad or foreign file
        raise ConfigError(f"cannot read weights {path}: {_load_failure(exc)}") from None


def _load_failure(exc: BaseException) -> str:
    """Why ``torch.load`` failed, in one short line (torch's weights-only message is a paragraph of advice)."""
    text = " ".join(str(exc).split())
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation")[0].strip()
        return f"not a plain PyTorch weights file (it holds pickled objects, not only tensors: {detail})"
    if isinstance(exc, EOFError) or "Ran out of input" in text:
        return "the file is empty or truncated"
    return f"not a PyTorch checkpoint ({type(exc).__name__}: {text[:200]})" if text else \
        f"not a PyTorch checkpoint ({type(exc).__name__})"


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
            raise ConfigError(f"cannot read checkpoint {path}: {_load_failure(exc)}") from None
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
    from ros_mmfusion.core.models import pointpillars

    state = pointpillars.convert_upstream_checkpoint(obj)
    name = variant or "pointpillars_kitti"
    model = pointpillars.build_model(name)
    report = pointpillars.load_checkpoint(model, state, strict=True)
    return Converted("pointpillars", name, model.state_dict(), {"loaded": len(report.loaded)})
