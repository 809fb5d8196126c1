"""Model packages (ROS-free): the one on-disk form of trained weights every task reads and ``mmfusion train`` writes.

A package is a directory holding ``model.yaml`` (format ``ros_mmfusion/model/v1``, ``task``, ``variant``, the
task's fields), the weights it names (fp16 ``weights.pt``, a state_dict) and ``metrics.json`` (how it was trained
and validated: data, seeds, iterations, device, time, date, validation metrics, learning curve).

:func:`weights_origin` says where a node's weights came from (trained package, a weights file, a test fixture or
random initialisation), with the weights' SHA-256, so nodes can warn about untrained weights and reports can name
what produced their numbers; :func:`model_values` is the one record of a running network (weights origin, hash,
backend, hardware) that nodes publish in ``/diagnostics`` and ``mmfusion eval``/``bench-graph`` reports copy.

Nodes name a package with their ``model_package`` parameter (:func:`resolve_package_dir`: absolute, or relative to the
package share directory). A package decides the network and its weights, so the parameters that would name them
too (``weights``, ``model``/``variant``) must stay empty beside it (:func:`check_package_params`).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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

    def value(self, name: str, kind: type, default: Any = None) -> Any:
        """Field ``name`` of ``model.yaml`` as ``kind`` (``default`` when absent or null); ConfigError naming the file
        and the field when it has another type."""
        value = self.data.get(name)
        if value is None:
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ConfigError(f"{self.directory / 'model.yaml'}: field {name!r} must be a {kind.__name__}, "
                              f"got {value!r}")
        return value

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


def resolve_package_dir(value: str | Path) -> Path:
    """The directory a ``model_package`` parameter names: ``value`` when absolute, else relative to the package share
    directory (``ros_mmfusion.paths.share_dir``), as the param files and presets write it."""
    from ros_mmfusion.paths import share_dir

    path = Path(value)
    return path if path.is_absolute() else share_dir() / path


def check_package_params(params: Mapping[str, Any], explicit: Sequence[str], owner: str = "") -> None:
    """The rule between ``model_package`` and the parameters that name a network or weights themselves
    (``explicit``, e.g. ``weights``, ``model``): a package decides both, so with ``model_package`` set every one of
    them must be empty. ConfigError naming both parameters otherwise (``owner``: the node, for the message)."""
    if not params.get("model_package"):
        return
    clash = [name for name in explicit if params.get(name)]
    if clash:
        prefix = f"{owner}: " if owner else ""
        raise ConfigError(f"{prefix}parameters 'model_package' ({params['model_package']}) and "
                          f"{' and '.join(repr(n) for n in clash)} ({', '.join(str(params[n]) for n in clash)}) "
                          "are both set: the model package decides the network and its weights; clear one of them")


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

    def log_line(self, what: str) -> str:
        """The start-up line of a node running these weights for ``what`` (e.g. "3D detection"): a warning for
        random or fixture weights, else the package or file with the hash's first 12 hex digits."""
        if not self.trained:
            return (f"{what}: {self.description}, not trained: outputs mean nothing; set model_package to a trained "
                    "model package (mmfusion train, models/)")
        return f"{what}: {self.description} (sha256 {self.sha256[:12] or '-'})"


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
        declared = package.data.get("origin")  # a test package says what it holds: origin: random | fixture
        kind = declared if declared in (RANDOM, FIXTURE) else FIXTURE if _looks_like_fixture(path) else TRAINED
        if kind != TRAINED:
            return WeightsOrigin(kind, file_sha256(path), package.name,
                                 f"model package {package.name} (random weights)")
        return WeightsOrigin(kind, file_sha256(path), package.name, f"model package {package.name}: {trained_on}")
    if weights:
        path = Path(weights)
        digest = file_sha256(path) if path.is_file() else ""
        if _looks_like_fixture(path):
            return WeightsOrigin(FIXTURE, digest, "", f"test fixture {path.name} (random weights)")
        return WeightsOrigin(FILE, digest, "", f"weights file {path.name}")
    return WeightsOrigin(RANDOM, "", "", f"random weights (seed {seed if seed is not None else 0})")


MODEL_KEY_PREFIX = "model."
"""Prefix of the ``/diagnostics`` keys that describe a node's network (:func:`model_values`)."""


def hardware(device: str = "cpu") -> str:
    """What a network runs on: the CPU model and its ISA class (``cpu_features.cpu_isa``), and the GPU's name when
    ``device`` is cuda."""
    from ros_mmfusion.core.inference.cpu_features import cpu_isa

    cpu = str(cpu_isa())
    if device == "cpu":
        return cpu
    try:
        import torch

        gpu = torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() else "no CUDA device"
    except Exception as exc:  # noqa: BLE001 - a record line must not fail the node
        gpu = f"GPU unknown ({type(exc).__name__})"
    return f"{gpu}; CPU {cpu}"


def model_values(origin: WeightsOrigin, backend: str, device: str = "cpu") -> dict[str, str]:
    """The ``/diagnostics`` key/values naming a node's network: weights kind, package, full sha256, description,
    ``backend`` (its one-line detail) and :func:`hardware`; all keys start with ``MODEL_KEY_PREFIX``."""
    return {f"{MODEL_KEY_PREFIX}weights": origin.kind, f"{MODEL_KEY_PREFIX}package": origin.package,
            f"{MODEL_KEY_PREFIX}sha256": origin.sha256, f"{MODEL_KEY_PREFIX}description": origin.description,
            f"{MODEL_KEY_PREFIX}backend": backend, f"{MODEL_KEY_PREFIX}hardware": hardware(device)}


def model_of_values(values: Mapping[str, str]) -> dict[str, str] | None:
    """The network record (keys without the prefix) in a node's diagnostics ``values``; None when it has none."""
    record = {k[len(MODEL_KEY_PREFIX):]: v for k, v in values.items() if k.startswith(MODEL_KEY_PREFIX)}
    return record or None
