"""Model packages (ROS-free): the one on-disk form of trained weights every task reads and ``mmfusion train`` writes.

A package is a directory holding ``model.yaml`` (format ``ros_mmfusion/model/v1``, ``task``, ``variant``, the
task's fields), the weights it names (fp16 ``weights.pt``, a state_dict) and ``metrics.json`` (how it was trained
and validated: data, seeds, iterations, device, time, date, validation metrics, learning curve).

:func:`weights_origin` says where a node's weights came from (trained package, a weights file, a test fixture or
random initialisation), with the weights' SHA-256, so nodes can warn about untrained weights and reports can name
what produced their numbers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ros_mmfusion.core.errors import ConfigError

PACKAGE_FORMAT = "ros_mmfusion/model/v1"
PACKAGE_FILES = ("model.yaml", "weights.pt", "metrics.json")
"""What :func:`write_package` writes (``mmfusion train`` lists them in its output marker)."""
TASKS = ("segmentation", "detection3d", "navigation")
RANDOM = "random"
FIXTURE = "fixture"
TRAINED = "trained"
FILE = "file"


@dataclass(frozen=True)
class ModelPackage:
    """A read package: its directory, the ``model.yaml`` mapping, and the weights file path ("" when none)."""

    directory: Path
    data: dict[str, Any]
    weights: str

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def variant(self) -> str:
        return str(self.data["variant"])

    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` beside ``model.yaml`` ({} when absent or unreadable)."""
        try:
            return json.loads((self.directory / "metrics.json").read_text())
        except (OSError, ValueError):
            return {}


def read_package(directory: str | Path, task: str) -> ModelPackage:
    """The package in ``directory`` for ``task``; ConfigError naming the file and the problem otherwise."""
    import yaml

    directory = Path(directory)
    path = directory / "model.yaml"
    if not path.is_file():
        raise ConfigError(f"model package {directory}: no model.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not readable YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("format") != PACKAGE_FORMAT:
        raise ConfigError(f"{path}: not a ros_mmfusion model package (format {PACKAGE_FORMAT})")
    if data.get("task") != task:
        raise ConfigError(f"{path}: a {data.get('task')!r} model package, not {task!r}")
    if not isinstance(data.get("variant"), str):
        raise ConfigError(f"{path}: missing field 'variant'")
    weights = ""
    if data.get("weights"):
        weights_path = directory / str(data["weights"])
        if not weights_path.is_file():
            raise ConfigError(f"{path}: weights file {weights_path} does not exist")
        weights = str(weights_path)
    return ModelPackage(directory, data, weights)


def half_state(state: dict) -> dict:
    """A state_dict with floating-point tensors in fp16 (packages ship fp16; loading casts back)."""
    return {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()) for k, v in state.items()}


def write_package(out: Path, task: str, variant: str, fields: dict[str, Any], state: dict, metrics: dict) -> None:
    """Write ``model.yaml`` (``fields`` after format, task, variant and weights), fp16 ``weights.pt`` and
    ``metrics.json`` into ``out`` (created when missing; callers that must not touch a user's directory pass a
    staging directory, as ``mmfusion train`` does)."""
    import torch
    import yaml

    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {TASKS}")
    out.mkdir(parents=True, exist_ok=True)
    torch.save(half_state(state), out / "weights.pt")
    package = {"format": PACKAGE_FORMAT, "task": task, "variant": variant, "weights": "weights.pt", **fields}
    (out / "model.yaml").write_text(yaml.safe_dump(package, sort_keys=False))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))


@dataclass(frozen=True)
class WeightsOrigin:
    """Where weights came from: ``kind`` one of trained (a package trained by ``mmfusion train``), file (weights a
    user named: upstream checkpoint or state_dict), fixture (a test fixture: random weights saved to a file) or
    random (initialised from a seed); ``sha256`` of the weights file ("" for random); ``package`` its directory name
    ("" outside a package); ``description`` one human line."""

    kind: str
    sha256: str = ""
    package: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.kind in (TRAINED, FILE)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "sha256": self.sha256, "package": self.package, "description": self.description}


def _looks_like_fixture(path: Path) -> bool:
    parts = {p.lower() for p in path.parts}
    return "fixtures" in parts or path.name.startswith("state_") and "fp16" in path.name


def weights_origin(weights: str | Path = "", package: ModelPackage | None = None, seed: int | None = None
                   ) -> WeightsOrigin:
    """Describe the weights a node runs: from ``package`` (its weights file), else the file ``weights``, else random
    initialisation from ``seed``. Test fixtures (a path under a ``fixtures`` directory, or ``state_*fp16*``) are
    random weights saved to a file: kind ``fixture``."""
    from ros_mmfusion.core.inference.engine_cache import file_sha256

    if package is not None and package.weights:
        path = Path(package.weights)
        trained_on = str(package.data.get("trained_on", "")) or "trained weights"
        kind = FIXTURE if _looks_like_fixture(path) else TRAINED
        return WeightsOrigin(kind, file_sha256(path), package.name, f"model package {package.name}: {trained_on}")
    if weights:
        path = Path(weights)
        digest = file_sha256(path) if path.is_file() else ""
        if _looks_like_fixture(path):
            return WeightsOrigin(FIXTURE, digest, "", f"test fixture {path.name}: random weights, not trained")
        return WeightsOrigin(FILE, digest, "", f"weights file {path.name}")
    return WeightsOrigin(RANDOM, "", "", f"random weights (seed {seed if seed is not None else 0}), not trained: "
                                         "outputs mean nothing")
