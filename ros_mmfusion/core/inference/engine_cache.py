"""A cache of built inference artifacts (TensorRT engines, ONNX Runtime optimized or INT8 models), keyed by what
decides their content, with a sidecar JSON describing each build.

The key hashes the ONNX file's content, the precision, the builder and its version, the device name, the profile
shapes and the builder options that change the artifact. An artifact lives beside its ONNX file (default) or in a
cache directory as ``<onnx stem>.<builder>-<precision>.<key[:16]><suffix>`` with ``<artifact>.json`` beside it.

- A changed key (new ONNX, precision, builder version, device, shapes or options) names a different file: it is
  built, and entries of the same ONNX stem, builder and precision built for another key are reported (what
  changed) and removed.
- A corrupt artifact (checksum differs from its sidecar) or one the loader rejects (incompatible, truncated) is
  reported with the reason and rebuilt; a freshly built artifact that does not load raises.
- Writes are atomic (temporary file, then rename; the sidecar last), and builds are serialized by an exclusive
  ``flock`` on ``<artifact>.lock``, so two processes starting together build once and the second loads the result.

The cache knows nothing about TensorRT or ONNX Runtime: callers pass ``build(tmp_path)`` and ``load(path)``.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generic, TypeVar

SCHEMA = "ros_mmfusion/engine-cache/v1"
T = TypeVar("T")
_LOG = logging.getLogger(__name__)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo``), else the platform's processor string."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _jsonable(value: Any) -> Any:
    """Tuples become lists, mappings get string keys: the form the sidecar stores, so identities compare equal."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class BuildSpec:
    """What an artifact is built from and with. ``shapes``: per input, the (min, opt, max) profile shapes or a fixed
    shape; ``options``: builder settings that change the artifact (workspace, quantization settings, ...);
    ``notes``: recorded in the sidecar but not part of the key (for example where calibration data came from)."""

    onnx: Path
    precision: str
    builder: str
    builder_version: str
    device: str
    shapes: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    suffix: str = ".engine"
    notes: Mapping[str, Any] = field(default_factory=dict)

    def identity(self, onnx_sha256: str) -> dict[str, Any]:
        return _jsonable({"onnx_sha256": onnx_sha256, "precision": self.precision, "builder": self.builder,
                          "builder_version": self.builder_version, "device": self.device, "shapes": self.shapes,
                          "options": self.options})


def cache_key(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(_jsonable(identity), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CachePaths:
    key: str
    identity: dict[str, Any]
    artifact: Path
    sidecar: Path
    lock: Path


@dataclass(frozen=True)
class CacheResult(Generic[T]):
    """``status``: "hit" (loaded from the cache), "built" (nothing usable was there) or "rebuilt" (an entry was there
    but stale, corrupt or incompatible: ``reason`` says which)."""

    value: T
    artifact: Path
    status: str
    reason: str = ""


class EngineCache:
    """Artifacts beside their ONNX file (``directory`` None) or in ``directory``. ``log`` receives one line per
    notable event (rebuild reasons, waiting for another builder); default: this module's logger at WARNING."""

    def __init__(self, directory: str | Path | None = None, log: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        self.log = log or _LOG.warning

    def paths(self, spec: BuildSpec) -> CachePaths:
        onnx = Path(spec.onnx)
        if not onnx.is_file():
            raise FileNotFoundError(f"ONNX file not found: {onnx}")
        identity = spec.identity(file_sha256(onnx))
        key = cache_key(identity)
        folder = self.directory or onnx.resolve().parent
        artifact = folder / f"{self._prefix(spec)}{key[:16]}{spec.suffix}"
        return CachePaths(key, identity, artifact, artifact.with_name(artifact.name + ".json"),
                          artifact.with_name(artifact.name + ".lock"))

    @staticmethod
    def _prefix(spec: BuildSpec) -> str:
        return f"{Path(spec.onnx).stem}.{spec.builder}-{spec.precision}."

    def lookup(self, spec: BuildSpec) -> Path | None:
        """The cached artifact of ``spec`` when one is present and intact (checksum only; not loaded), else None."""
        paths = self.paths(spec)
        return paths.artifact if self._check(paths) is None else None

    def get_or_build(self, spec: BuildSpec, build: Callable[[Path], Mapping[str, Any] | None],
                     load: Callable[[Path], T], *, force: bool = False) -> CacheResult[T]:
        """Load the cached artifact of ``spec``, or build it first.

        ``build(path)`` writes the artifact to ``path`` (a temporary name; the cache renames it) and may return
        extra facts for the sidecar; ``load(path)`` returns the usable object and raises when the artifact is
        unusable. ``force`` rebuilds even when a valid entry exists.
        """
        paths = self.paths(spec)
        paths.artifact.parent.mkdir(parents=True, exist_ok=True)
        reason = "rebuild forced" if force and self._check(paths) is None else ""
        if not force and self._check(paths) is None:  # fast path, no lock: complete entries are never rewritten
            value, error = self._try_load(load, paths)
            if error is None:
                return CacheResult(value, paths.artifact, "hit")
        with self._locked(paths):
            problem = None if force else self._check(paths)
            if not force and problem is None:
                value, error = self._try_load(load, paths)
                if error is None:
                    return CacheResult(value, paths.artifact, "hit")
                problem = f"{paths.artifact.name} is corrupt or incompatible ({error})"
            if problem and problem != "missing":
                reason = problem
                self.log(f"engine cache: {problem}; rebuilding")
            stale = self._stale_entries(spec, paths)
            if stale and not reason:
                reason = "; ".join(stale)
            started = time.perf_counter()
            tmp = paths.artifact.with_name(f".{paths.artifact.name}.tmp{os.getpid()}")
            try:
                extra = build(tmp) or {}
                if not tmp.is_file():
                    raise RuntimeError(f"the builder wrote nothing to {tmp}")
                self._remove(paths.sidecar)  # an artifact never sits beside another artifact's sidecar
                os.replace(tmp, paths.artifact)
            finally:
                self._remove(tmp)
            sidecar = {
                "schema": SCHEMA, "key": paths.key, "identity": paths.identity, "onnx": str(Path(spec.onnx).resolve()),
                "artifact": paths.artifact.name, "artifact_sha256": file_sha256(paths.artifact),
                "artifact_bytes": paths.artifact.stat().st_size,
                "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "build_seconds": round(time.perf_counter() - started, 3), "host": platform.node(),
                "notes": _jsonable(spec.notes), "build": _jsonable(extra),
            }
            _atomic_write(paths.sidecar, json.dumps(sidecar, indent=2, sort_keys=True).encode())
            value = load(paths.artifact)  # a fresh artifact that does not load is a real error: raise it
            return CacheResult(value, paths.artifact, "rebuilt" if reason else "built", reason)

    def _check(self, paths: CachePaths) -> str | None:
        """None when the entry is complete and intact, else what is wrong with it ("missing" when absent)."""
        if not paths.artifact.is_file() or not paths.sidecar.is_file():
            return "missing"
        try:
            meta = json.loads(paths.sidecar.read_text())
        except (OSError, ValueError) as exc:
            return f"sidecar {paths.sidecar.name} is unreadable ({exc})"
        if not isinstance(meta, dict) or meta.get("schema") != SCHEMA or meta.get("key") != paths.key:
            return f"sidecar {paths.sidecar.name} does not describe this build"
        size = paths.artifact.stat().st_size
        if size != meta.get("artifact_bytes") or file_sha256(paths.artifact) != meta.get("artifact_sha256"):
            return f"{paths.artifact.name} is corrupt (size or checksum differs from its sidecar)"
        return None

    def _try_load(self, load: Callable[[Path], T], paths: CachePaths) -> tuple[Any, str | None]:
        try:
            return load(paths.artifact), None
        except Exception as exc:  # noqa: BLE001 - any loader failure means "rebuild"
            return None, f"{type(exc).__name__}: {exc}".strip()

    def _stale_entries(self, spec: BuildSpec, paths: CachePaths) -> list[str]:
        """Report and remove entries of the same ONNX stem, builder and precision built for another key."""
        found = []
        for sidecar in sorted(paths.artifact.parent.glob(f"{self._prefix(spec)}*{spec.suffix}.json")):
            if sidecar == paths.sidecar:
                continue
            try:
                old = json.loads(sidecar.read_text()).get("identity", {})
            except (OSError, ValueError, AttributeError):
                old = {}
            changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in paths.identity.items()
                       if k != "onnx_sha256" and old.get(k) != v]
            if old.get("onnx_sha256") != paths.identity["onnx_sha256"]:
                changed.insert(0, "the ONNX file changed")
            what = ", ".join(changed) or "its key differs"
            line = f"{sidecar.name[:-5]} was built for another configuration ({what})"
            self.log(f"engine cache: {line}; removing it and rebuilding")
            found.append(line)
            self._remove(sidecar.with_name(sidecar.name[:-5]))
            self._remove(sidecar)
        return found

    @contextlib.contextmanager
    def _locked(self, paths: CachePaths) -> Iterator[None]:
        with open(paths.lock, "a+b") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.log(f"engine cache: another process is building {paths.artifact.name}; waiting for it")
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _remove(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
