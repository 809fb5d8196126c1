"""Where commands write their results: never touch a file the suite did not write, never leave half-written output.

Every ``mmfusion`` command that writes files goes through this module (ROS-free, stdlib only):

* :class:`OutputFile` -- one file named by the user (``export --out F.onnx``). An existing file is replaced only with
  ``overwrite`` (the user named it); a directory where a file is expected is an error.
* :class:`OutputDirectory` -- a directory the command writes named entries into (``eval --out DIR`` writes
  ``metrics.json``, ``report.md``, ``outputs/`` ...). The rules:

  1. ``DIR`` absent, or empty: it is created.
  2. ``DIR`` not empty: refused unless ``overwrite`` -- or ``reuse`` and the directory's marker says this very command
     wrote into it before (``mmfusion demo`` reruns into ``demo_out/`` this way).
  3. Even with ``overwrite``, an entry is replaced only if an earlier mmfusion run wrote it: the marker file
     ``DIR/.mmfusion-output`` (JSON, ``{"entries": {name: command}}``) lists every entry a command wrote there.
     A user's file or bag under a name the command would write is refused, never deleted; files not named by the
     command are never touched. Entries this command wrote in an earlier run and does not write again are removed
     (a stale plot of an earlier report must not sit beside a new one).
  4. ``exclusive`` directories (a rosbag2 directory) must hold nothing but entries an earlier run of the command wrote.
  5. The command writes into a staging directory (``DIR/.mmfusion-tmp-PID/DIR_NAME`` when ``DIR`` exists, else a
     sibling ``.DIR_NAME.mmfusion-tmp-PID/DIR_NAME``) and the entries are renamed into place only when it succeeded,
     so a failure or Ctrl-C leaves ``DIR`` as it was. The staging directory has ``DIR``'s own name, so files that
     are named after their directory (a rosbag2's ``NAME.mcap``) come out right.

All checks run in the constructor, before the command does any work; a violated rule raises ``ConfigError`` whose
text names the option, the path and the reason (the CLI prints it as one line).
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from ros_mmfusion.core.errors import ConfigError

MARKER = ".mmfusion-output"
"""File in an output directory listing the entries mmfusion commands wrote there (and which command)."""
STAGING = ".mmfusion-tmp-"
"""Name part of staging directories and temporary files (``...mmfusion-tmp-PID``)."""


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _check_parents(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` must be a directory (``--out notes.txt/report`` is an error)."""
    for parent in path.absolute().parents:
        if _exists(parent):
            if not parent.is_dir():
                raise ConfigError(f"{option} {path}: {parent} is a file, not a directory")
            return


def _same_or_inside(inner: Path, outer: Path) -> bool:
    inner, outer = inner.resolve(), outer.resolve()
    return inner == outer or outer in inner.parents


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif _exists(path):
        path.unlink()


def _missing_parents(path: Path) -> list[Path]:
    """The ancestors of ``path`` that do not exist yet, deepest first (created for the output, removed on failure)."""
    return [p for p in path.absolute().parents if not _exists(p)]


def _remove_empty(directories: list[Path]) -> None:
    for directory in directories:  # deepest first; stop at the first one something else was put into
        try:
            directory.rmdir()
        except OSError:
            break


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_marker(directory: Path) -> dict[str, str]:
    """``{entry name: command}`` of ``directory``'s marker; empty when there is none or it is unreadable."""
    try:
        data = json.loads((Path(directory) / MARKER).read_text())
        entries = data.get("entries", {}) if isinstance(data, dict) else {}
        return {str(k): str(v) for k, v in entries.items() if "/" not in str(k) and str(k) not in ("", ".", "..")}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_marker(directory: Path, entries: dict[str, str]) -> None:
    tmp = directory / f"{MARKER}{STAGING}{os.getpid()}"
    tmp.write_text(json.dumps({"written_by": "ros_mmfusion", "entries": dict(sorted(entries.items()))}, indent=1)
                   + "\n")
    os.replace(tmp, directory / MARKER)


def require_file(path: str | Path, option: str, *, allow_empty: bool = False) -> Path:
    """``path`` as an existing, non-empty regular file, else ConfigError naming ``option`` and the reason."""
    path = Path(path)
    if not _exists(path):
        raise ConfigError(f"{option} {path}: no such file")
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory, not a file")
    if not path.is_file():
        raise ConfigError(f"{option} {path}: not a regular file")
    if not allow_empty and path.stat().st_size == 0:
        raise ConfigError(f"{option} {path}: the file is empty")
    return path


def check_directory_option(path: str | Path, option: str) -> Path:
    """``path`` must be a directory or not exist yet (``build-engine --cache-dir``); ConfigError otherwise."""
    path = Path(path)
    if _exists(path) and not path.is_dir():
        raise ConfigError(f"{option} {path} exists and is not a directory")
    _check_parents(path, option)
    return path


class OutputFile:
    """A single output file; use as ``with OutputFile(out, overwrite=...) as tmp: write(tmp)``.

    ``tmp`` is a sibling of ``path`` with the same suffix; it is renamed onto ``path`` when the block succeeds and
    removed when it fails. ``inputs``: files the command reads, which ``path`` must not be.
    """

    def __init__(self, path: str | Path, *, overwrite: bool, inputs: Iterable[str | Path] = (),
                 option: str = "--out") -> None:
        self.path = Path(path)
        self.option = option
        if self.path.is_dir():
            raise ConfigError(f"{option} {self.path} is a directory; name the file to write")
        _check_parents(self.path, option)
        for source in inputs:
            if _exists(Path(source)) and _same_or_inside(self.path, Path(source)):
                raise ConfigError(f"{option} {self.path} is the input {source}; the input is never overwritten")
        if _exists(self.path) and not overwrite:
            raise ConfigError(f"{option} {self.path} exists; pass --overwrite to replace it")
        self.tmp = self.path.with_name(f".{self.path.name}{STAGING}{os.getpid()}{self.path.suffix}")
        self._created: list[Path] = []

    def __enter__(self) -> Path:
        self._created = _missing_parents(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _remove(self.tmp)
        return self.tmp

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None:
                if not _exists(self.tmp):
                    raise ConfigError(f"{self.option} {self.path}: the command wrote nothing")
                if self.path.is_dir():
                    raise ConfigError(f"{self.option} {self.path} became a directory while the command ran")
                os.replace(self.tmp, self.path)
        finally:
            _remove(self.tmp)
            if kind is not None:
                _remove_empty(self._created)


class OutputDirectory:
    """An output directory following the module's rules; use as ``with OutputDirectory(...) as stage: ...``.

    ``writes``: the entry names the command may write (checked against the directory before any work; the staged
    entries are checked again at commit). ``keep(name)`` declares an existing entry of an earlier run that this run
    reuses instead of writing again (it is neither removed nor re-checked). ``inputs``: paths the command reads;
    none may lie at or under an entry the command writes. ``recognise(directory)``: True for a directory this command
    wrote before markers existed (its entries then count as written by the command). ``what`` names the directory in
    messages ("bag", "report directory"). ``prune=False`` keeps the entries an earlier run of the command wrote and
    this run does not write again (``mmfusion demo`` keeps the bags of other scenarios).
    """

    def __init__(self, path: str | Path, command: str, *, overwrite: bool, writes: Iterable[str] = (),
                 reuse: bool = False, exclusive: bool = False, marker: bool = True, prune: bool = True,
                 recognise: Callable[[Path], bool] | None = None, inputs: Iterable[str | Path] = (),
                 option: str = "--out", what: str = "output directory") -> None:
        self.path = Path(path)
        self.command, self.option, self.what = command, option, what
        self.writes = tuple(writes)
        self.exclusive, self.marker, self.prune = exclusive, marker, prune
        self.kept: set[str] = set()
        # recognised once, before the staging directory (an entry of its own) exists
        recognised = recognise is not None and self.path.is_dir() and recognise(self.path)
        self._recognised = set(self.entries()) if recognised else set()
        self._root: Path | None = None
        self._created: list[Path] = []
        if _exists(self.path) and not self.path.is_dir():
            raise ConfigError(f"{option} {self.path} exists and is not a directory")
        _check_parents(self.path, option)
        for source in inputs:
            source = Path(source)
            if not _exists(source):
                continue
            hit = [n for n in self.writes if _same_or_inside(source, self.path / n)]
            if hit or (exclusive and _same_or_inside(source, self.path)):
                target = self.path / hit[0] if hit else self.path
                raise ConfigError(f"{option} {self.path}: the command would write {target}, which holds the input "
                                  f"{source}; choose another {option}")
        entries = self.entries()
        if not entries:
            return
        owned = self.owned()
        ours = command in read_marker(self.path).values() or bool(self._recognised)
        if not overwrite and not (reuse and ours):
            raise ConfigError(f"{option} {self.path} exists and is not an empty directory; pass --overwrite to "
                              f"replace what an earlier mmfusion {command} run wrote there (nothing else is "
                              "touched), or choose another directory")
        if exclusive and set(entries) - owned:
            foreign = sorted(set(entries) - owned)
            raise ConfigError(f"{option} {self.path} is not a {what} written by mmfusion {command} (it holds "
                              f"{', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}); refusing to touch it")
        self._check_collisions(self.writes, owned)

    def entries(self) -> list[str]:
        """Names in the directory, leaving out the marker and staging directories."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name != MARKER and STAGING not in p.name)

    def owned(self) -> set[str]:
        """Entries an earlier mmfusion run wrote (listed in the marker, or all of a recognised directory)."""
        names = set(read_marker(self.path))
        return names | self._recognised

    def _owned_by_command(self) -> set[str]:
        names = {n for n, c in read_marker(self.path).items() if c == self.command}
        return names | self._recognised

    def _check_collisions(self, names: Iterable[str], owned: set[str]) -> None:
        for name in names:
            if _exists(self.path / name) and name not in owned:
                raise ConfigError(f"{self.option} {self.path}: {self.path / name} exists and was not written by "
                                  f"mmfusion (not listed in {MARKER}); refusing to replace it -- move it or choose "
                                  "another directory")

    def keep(self, name: str) -> None:
        """Reuse the existing entry ``name`` (written by an earlier run) instead of writing it again."""
        self.kept.add(name)

    @property
    def stage(self) -> Path:
        """The staging directory (named like the output directory) the command writes into."""
        if self._root is None:
            raise RuntimeError("OutputDirectory.stage is only available inside the with block")
        return self._root / self.path.name

    def __enter__(self) -> Path:
        pid = os.getpid()
        if self.path.is_dir():
            self._root = self.path / f"{STAGING}{pid}"
        else:
            self._created = _missing_parents(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._root = self.path.parent / f".{self.path.name}{STAGING}{pid}"
        _remove(self._root)
        self.stage.mkdir(parents=True)
        return self.stage

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._root is not None
        try:
            if kind is None:
                self._commit()
        finally:
            _remove(self._root)
            if kind is not None or not _exists(self.path):
                _remove_empty(self._created)

    def _commit(self) -> None:
        stage = self.stage
        written = sorted(p.name for p in stage.iterdir())
        if not _exists(self.path):
            if self.marker:
                _write_marker(stage, dict.fromkeys(written, self.command))
            os.rename(stage, self.path)
            return
        owned = self.owned()
        self._check_collisions(written, owned)  # again: the directory may have changed while the command ran
        previous = read_marker(self.path)
        stale = self._owned_by_command() - set(written) - self.kept if self.prune else set()
        replaced = self._root / ".replaced"  # type: ignore[operator]
        replaced.mkdir()
        for name in sorted(stale):
            if _exists(self.path / name):
                os.rename(self.path / name, replaced / name)
        for name in written:
            if _exists(self.path / name):
                os.rename(self.path / name, replaced / name)
            os.rename(stage / name, self.path / name)
        if self.marker:
            entries = {n: c for n, c in previous.items() if _exists(self.path / n) and n not in stale}
            entries.update(dict.fromkeys(written, self.command))
            _write_marker(self.path, entries)
        for leftover in self.path.iterdir():  # staging directories of runs that were killed
            pid = leftover.name.rpartition(STAGING)[2]
            if STAGING in leftover.name and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                _remove(leftover)
