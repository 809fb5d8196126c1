"""Loading weights into our models: read a weights file safely and load a state_dict strictly, reporting every
missing, unexpected or mis-shaped key.

Architecture-neutral: the model files import this module, never the reverse (the upstream conversion that picks an
architecture lives in :mod:`ros_mmfusion.core.models.upstream`, above the model files).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ros_mmfusion.core.errors import ConfigError


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
        raise ConfigError(f"cannot read weights {path}: {describe_load_failure(exc)}") from None


def describe_load_failure(exc: BaseException) -> str:
    """Why ``torch.load`` failed, in one short line (torch's weights-only message is a paragraph of advice)."""
    text = " ".join(str(exc).split())
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation")[0].strip()
        return f"not a plain PyTorch weights file (it holds pickled objects, not only tensors: {detail})"
    if isinstance(exc, EOFError) or "Ran out of input" in text:
        return "the file is empty or truncated"
    return f"not a PyTorch checkpoint ({type(exc).__name__}: {text[:200]})" if text else \
        f"not a PyTorch checkpoint ({type(exc).__name__})"
