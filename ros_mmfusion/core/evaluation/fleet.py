"""Fleet evaluation bookkeeping (ROS-free): which bags ``mmfusion eval --bags`` scores, their recording conditions,
the per-bag result cache that makes a run resumable, progress and throughput, and the merged report.

* **Bags**: ``--bags`` takes directories and globs; a rosbag2 directory (one holding ``metadata.yaml``) is a bag,
  any other directory is searched for bags below it (:func:`find_bags`).
* **Conditions** (:func:`bag_conditions`): ``scenario``, ``weather`` and ``time_of_day`` from the bag's
  ``scenario.yaml`` where it has one: top-level keys of those names (or a ``conditions`` mapping) as a recorder of a
  real fleet or CARLA writes them; for a bag of ``mmfusion sim`` the weather and time of day are read off the named
  scenario's lighting (fog density > 0: fog; indoor world: indoor; no sun: night; sun below 10 degrees: dusk).
* **Cache** (:class:`ResultCache`): one JSON file per bag under ``OUT/bags/``, written atomically when the bag's
  evaluation ends. Its key (:func:`cache_key`) hashes the evaluation settings, the model and data files the preset's
  nodes read (weights, model packages, topomaps: their content), the bag's own files (names, sizes, modification
  times) and :data:`CACHE_VERSION`; a bag whose entry has the same key and scored is not evaluated again. Failed
  bags are evaluated again on the next run.
* **Report** (:func:`fleet_report`): per-bag rows, overall metrics from the merged statistics
  (:mod:`.merge`), per-condition breakdowns merged the same way, the failed bags with their one-line errors, and the
  run's progress and throughput (bags per hour per core).
"""
from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.evaluation.merge import EvaluationStatistics, headline, merge_all

CACHE_VERSION = 1
"""Part of every cache key: raise it when what a cached entry holds changes meaning."""
CACHE_DIR = "bags"
"""Sub-directory of the report directory holding one cache entry per bag."""
CONDITION_KEYS = ("scenario", "weather", "time_of_day")
SIM_GENERATOR = "ros_mmfusion sim"
"""``generator`` of a ``scenario.yaml`` written by ``mmfusion sim`` (core/sim/recorder.py ``GENERATOR``)."""


def is_bag(path: Path) -> bool:
    """A rosbag2 directory: one holding ``metadata.yaml``."""
    return path.is_dir() and (path / "metadata.yaml").is_file()


def _bags_under(root: Path) -> list[Path]:
    if is_bag(root):
        return [root]
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if is_bag(here):
            found.append(here)
            dirnames[:] = []  # a bag's sub-directories are not bags of their own
        else:
            dirnames.sort()
    return sorted(found)


def find_bags(patterns: Sequence[str], option: str = "--bags") -> list[Path]:
    """The bags named by ``patterns`` (directories or globs; ``**`` recurses), in order, each once. ConfigError (one
    line) for a pattern that names nothing, or a directory without a bag in or under it."""
    bags: dict[Path, None] = {}
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(pattern), recursive=True))]
            found = [b for m in matches if m.is_dir() for b in _bags_under(m)]
            if not found:
                raise ConfigError(f"{option} {pattern}: matches no rosbag2 directory (one holding metadata.yaml)")
        else:
            root = Path(os.path.expanduser(pattern))
            if not root.exists():
                raise ConfigError(f"{option} {pattern}: no such directory")
            if not root.is_dir():
                raise ConfigError(f"{option} {pattern}: not a directory (give a rosbag2 directory or a directory "
                                  "of them)")
            found = _bags_under(root)
            if not found:
                raise ConfigError(f"{option} {pattern}: no rosbag2 directory (one holding metadata.yaml) in it")
        for bag in found:
            bags.setdefault(bag.absolute(), None)
    return list(bags)


def _sim_conditions(name: str) -> dict[str, str | None]:
    """Weather and time of day of a named ``mmfusion sim`` scenario, read off its lighting (module docstring)."""
    from ros_mmfusion.core.sim.scenarios import get_scenario

    try:
        scenario = get_scenario(name)
    except ConfigError:
        return {}
    c = scenario.conditions
    if scenario.world == "indoor":
        return {"weather": "indoor", "time_of_day": None}
    weather = "fog" if c.fog_density > 0 else "clear"
    if c.sun_direction is None:
        time_of_day = "night"
    else:
        time_of_day = "dusk" if math.degrees(math.asin(max(-1.0, min(1.0, c.sun_direction[2])))) < 10.0 else "day"
    return {"weather": weather, "time_of_day": time_of_day}


def bag_conditions(bag: Path) -> dict[str, str | None]:
    """``{"scenario", "weather", "time_of_day"}`` of a bag from its ``scenario.yaml`` (module docstring); None for
    what the bag does not say (no file, an unreadable one, or keys it lacks)."""
    import yaml

    conditions: dict[str, str | None] = dict.fromkeys(CONDITION_KEYS)
    try:
        data = yaml.safe_load((Path(bag) / "scenario.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return conditions
    if not isinstance(data, dict):
        return conditions
    nested = data.get("conditions")
    given = {**(nested if isinstance(nested, dict) else {}), **data}
    if isinstance(data.get("scenario"), str) and data.get("generator") == SIM_GENERATOR:
        conditions.update(_sim_conditions(data["scenario"]))
    for key in CONDITION_KEYS:
        if isinstance(given.get(key), str | int | float) and not isinstance(given.get(key), bool):
            conditions[key] = str(given[key])
    return conditions


def bag_fingerprint(bag: Path) -> dict[str, Any]:
    """The bag's files (relative name -> [size, mtime ns]): cheap to take, changes when the recording does."""
    files = {}
    for path in sorted(Path(bag).rglob("*")):
        if path.is_file():
            st = path.stat()
            files[str(path.relative_to(bag))] = [st.st_size, st.st_mtime_ns]
    return files


_HASHES: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of a file's content, remembered per (path, size, mtime) for this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def content_digest(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (relative names and contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{item.relative_to(path)}\0{file_digest(item)}\n".encode())
    return digest.hexdigest()


def cache_key(settings: Mapping[str, Any], models: Mapping[str, str], bag: Path) -> str:
    """SHA-256 over the evaluation ``settings`` (JSON-ready), ``models`` (what -> content digest of the files the
    preset's nodes read) and the bag's fingerprint (:func:`bag_fingerprint`), with :data:`CACHE_VERSION`."""
    text = json.dumps({"version": CACHE_VERSION, "settings": settings, "models": dict(sorted(models.items())),
                       "bag": bag_fingerprint(bag)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def entry_name(bag: Path) -> str:
    """The cache file name of ``bag``: its directory name (safe characters) and a hash of its absolute path."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(bag).name)[:60] or "bag"
    return f"{slug}-{hashlib.sha256(str(Path(bag).absolute()).encode()).hexdigest()[:10]}.json"


@dataclass
class BagResult:
    """One bag's outcome: ``status`` ``ok`` (with ``statistics`` and ``row``, its own headline metrics) or
    ``failed`` (with ``error``, one line). ``seconds``: wall time of its evaluation; ``host`` where it ran;
    ``models``: the network each node reported (``metrics.json``'s ``models``); ``notes`` of the run; ``domain``
    the ROS domain id its process used."""

    bag: str
    status: str
    key: str = ""
    error: str | None = None
    seconds: float = 0.0
    host: str = ""
    conditions: dict[str, str | None] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    statistics: EvaluationStatistics | None = None
    cached: bool = False
    domain: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"bag": self.bag, "status": self.status, "key": self.key, "error": self.error,
                "seconds": round(self.seconds, 2), "host": self.host, "conditions": self.conditions,
                "models": self.models, "notes": self.notes, "domain": self.domain,
                "statistics": None if self.statistics is None else self.statistics.to_state()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BagResult:
        stats = data.get("statistics")
        return cls(str(data["bag"]), str(data["status"]), str(data.get("key", "")), data.get("error"),
                   float(data.get("seconds", 0.0)), str(data.get("host", "")), dict(data.get("conditions") or {}),
                   dict(data.get("models") or {}), list(data.get("notes") or []),
                   None if stats is None else EvaluationStatistics.from_state(stats), False, data.get("domain"))


class ResultCache:
    """Per-bag results under ``directory`` (module docstring): :meth:`get` a scored entry of the same key, or None;
    :meth:`put` writes one atomically (temporary file, then rename), so a killed run leaves whole entries only."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, bag: Path) -> Path:
        return self.directory / entry_name(bag)

    def get(self, bag: Path, key: str) -> BagResult | None:
        try:
            data = json.loads(self.path(bag).read_text())
            result = BagResult.from_json(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, half-written by an older version, or not ours: evaluate again
        if result.status != "ok" or result.key != key or result.statistics is None:
            return None
        result.cached = True
        return result

    def put(self, result: BagResult) -> None:
        from ros_mmfusion.core.evaluation.report import metrics_json

        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(Path(result.bag))
        temporary = target.with_name(f".{target.name}.mmfusion-tmp-{os.getpid()}")
        temporary.write_text(metrics_json(result.to_json()))
        os.replace(temporary, target)


@dataclass
class Progress:
    """Progress of a fleet run: ``total`` bags, ``cached`` ones taken from the cache, those ``done`` (scored) and
    ``failed`` in this run, the wall time since ``started`` (``time.monotonic()``), and the ETA of the rest (the mean
    wall time per finished bag of this run times the bags left)."""

    total: int
    cached: int = 0
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        return self.cached + self.done + self.failed

    def eta_s(self, now: float | None = None) -> float | None:
        ran = self.done + self.failed
        if not ran:
            return None
        elapsed = (time.monotonic() if now is None else now) - self.started
        return elapsed / ran * (self.total - self.finished)

    def line(self, now: float | None = None) -> str:
        eta = self.eta_s(now)
        return (f"{self.finished}/{self.total} bags ({self.done} scored, {self.cached} cached, {self.failed} failed)"
                f", ETA {'-' if eta is None else format_duration(eta)}")


def format_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def throughput(progress: Progress, wall_s: float, cores: float) -> dict[str, Any]:
    """The run's throughput: bags evaluated in this run (scored or failed, not cached) per hour of wall time, and
    per hour per core (``cores``: CPUs the engine had); None where nothing ran."""
    ran = progress.done + progress.failed
    per_hour = ran / (wall_s / 3600.0) if ran and wall_s > 0 else None
    return {"bags_evaluated": ran, "wall_s": round(wall_s, 1), "cores": cores,
            "bags_per_hour": None if per_hour is None else round(per_hour, 1),
            "bags_per_hour_per_core": None if per_hour is None or not cores else round(per_hour / cores, 2)}


def _breakdowns(results: Sequence[BagResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per condition key and value (``unknown`` where a bag does not say): bags, and the headline metrics of their
    merged statistics."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key in CONDITION_KEYS:
        groups: dict[str, list[BagResult]] = {}
        for r in results:
            groups.setdefault(r.conditions.get(key) or "unknown", []).append(r)
        if set(groups) == {"unknown"}:
            continue
        section = {}
        for value, members in sorted(groups.items()):
            merged = merge_all(r.statistics for r in members if r.statistics is not None)
            section[value] = {"bags": len(members), **(headline(merged.metrics()) if merged is not None else {})}
        out[key] = section
    return out


def fleet_report(results: Sequence[BagResult], run: Mapping[str, Any], progress: Progress,
                 wall_s: float, cores: float) -> dict[str, Any]:
    """The merged report (``fleet_metrics.json``): ``run`` (what was evaluated, how), ``progress``, ``throughput``,
    ``overall`` (metric sections of every scored bag's statistics merged), ``by_condition``, ``bags`` (one row per
    bag: status, conditions, headline metrics, seconds, host, cached), ``failed`` (bag and one-line error), and
    ``models`` (every network record seen, with the bags that reported it)."""
    scored = [r for r in results if r.status == "ok" and r.statistics is not None]
    merged = merge_all(r.statistics for r in scored if r.statistics is not None)
    rows: list[dict[str, Any]] = []
    models: dict[str, dict[str, Any]] = {}
    for r in results:
        row: dict[str, Any] = {"bag": r.bag, "status": r.status, **{k: r.conditions.get(k) for k in CONDITION_KEYS},
                               "seconds": round(r.seconds, 2), "host": r.host, "domain": r.domain,
                               "cached": r.cached}
        if r.statistics is not None:
            row.update(headline(r.statistics.metrics()))
        if r.error:
            row["error"] = r.error
        rows.append(row)
        for node, record in r.models.items():
            key = f"{node} {record.get('sha256', '')}"
            models.setdefault(key, {"node": node, **record, "bags": 0})["bags"] += 1
    notes = []
    by_node: dict[str, int] = {}
    for entry in models.values():
        by_node[entry["node"]] = by_node.get(entry["node"], 0) + 1
    for node, count in by_node.items():
        if count > 1:
            notes.append(f"{node} ran {count} different networks across the bags: the overall figures mix them")
    return {"run": dict(run), "progress": {"total": progress.total, "scored": progress.done + progress.cached,
                                           "scored_this_run": progress.done, "cached": progress.cached,
                                           "failed": progress.failed},
            "throughput": throughput(progress, wall_s, cores),
            "overall": merged.metrics() if merged is not None else {},
            "overall_headline": headline(merged.metrics()) if merged is not None else {},
            "by_condition": _breakdowns(scored), "bags": rows,
            "failed": [{"bag": r.bag, "error": r.error} for r in results if r.status != "ok"],
            "models": list(models.values()), "notes": notes}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return lines


def fleet_markdown(report: Mapping[str, Any]) -> str:
    """``fleet_report.md``: the summary, overall headline metrics, per-condition tables, the per-bag table, failures."""
    run, progress, tp = report["run"], report["progress"], report["throughput"]
    md = [f"# mmfusion eval --bags: preset {run.get('preset', '?')} on {progress['total']} bags", "",
          f"- engine: {run.get('engine_detail') or run.get('engine')}; settings key "
          f"{run.get('settings_hash', '')[:12]}; {run.get('cpu', '?')}, {run.get('date', '?')}",
          f"- bags: {progress['scored']} scored ({progress['cached']} from the cache), {progress['failed']} failed",
          f"- wall time {_fmt(tp['wall_s'])} s, {tp['bags_evaluated']} bags evaluated: "
          f"{_fmt(tp['bags_per_hour'])} bags/hour, {_fmt(tp['bags_per_hour_per_core'])} bags/hour/core", ""]
    overall = report.get("overall_headline") or {}
    if overall:
        md += ["## Overall (merged statistics)", ""] + _table([overall], list(overall)) + [""]
    for key, section in (report.get("by_condition") or {}).items():
        rows = [{key: value, **values} for value, values in section.items()]
        columns = [key, "bags"] + [c for c in overall if any(c in r for r in rows)]
        md += [f"## By {key.replace('_', ' ')}", ""] + _table(rows, columns) + [""]
    metric_columns = [c for c in overall]
    md += ["## Bags", ""] + _table(report["bags"], ["bag", "status", *CONDITION_KEYS, *metric_columns, "seconds",
                                                     "cached"]) + [""]
    if report["failed"]:
        md += ["## Failed bags", ""] + [f"- {f['bag']}: {f['error']}" for f in report["failed"]] + [""]
    if report.get("notes"):
        md += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(md)
