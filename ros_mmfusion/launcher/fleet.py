"""Fleet evaluation (``mmfusion eval --bags``): score many bags, each in its own process with its own DDS domain, on
this machine (``local`` engine: a pool of ``num_cpus`` concurrent bag processes) or on a Ray cluster (``ray`` engine:
one Ray task per bag, on an existing cluster at ``address`` or on a local Ray started and stopped here), and merge
the results (:mod:`ros_mmfusion.core.evaluation.fleet` and ``.merge``).

Isolation: every bag is evaluated by ``python -m ros_mmfusion.launcher.fleet`` (:func:`worker_main`), a fresh
process that takes the lowest free ROS domain id of this machine (:func:`acquire_domain`: a lock file per id, held
for the process's lifetime and released by the kernel even when it is killed) and discovers only on localhost
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), so the graphs of concurrent bags never see each other's messages. The
engines run :func:`run_bag_job`, which starts that process with a time limit and turns whatever happens to it (a
ConfigError, a crash, a kill, a timeout) into one line in the bag's result; the other bags go on.

On a Ray cluster each task runs :func:`run_bag_job` in its own Ray worker process (``max_calls=1``: a worker is
never reused), which starts the bag's process on that node; the bags must be readable at the same path on every
node and ros_mmfusion installed there (docs/evaluation.md). Results come back to the driver through Ray; only the
driver writes the report directory.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ros_mmfusion.core.errors import ConfigError

ENGINES = ("local", "ray")
RAY_INSTALL_HINT = ("--engine ray needs Ray, an optional extra: pip install 'ros_mmfusion[fleet]' (or pip install "
                    "-r requirements/fleet.txt)")
FLEET_FILES = ("fleet_metrics.json", "fleet_report.md")
"""What ``eval --bags`` writes into the report directory besides the per-bag cache (``bags/``)."""
CACHE_MARKER = ".mmfusion-fleet-cache"
"""File in ``OUT/bags`` saying the directory is mmfusion's per-bag cache."""
DOMAIN_IDS = tuple(range(101, 0, -1))
"""ROS domain ids a bag process may take, highest first (0-101 are the ids safe on Linux; users mostly run 0)."""
DOMAIN_LOCK_DIR = Path(tempfile.gettempdir()) / f"ros_mmfusion-domains-{os.getuid()}"
WORKER_MODULE = "ros_mmfusion.launcher.fleet"
RAY_OBJECT_STORE_BYTES = 200 * 1024 * 1024
"""Object store of a local Ray started by the command: results are small JSON documents."""


# -- the bag process ----------------------------------------------------------------------------------------------
def acquire_domain(lock_dir: Path = DOMAIN_LOCK_DIR, avoid: int | None = None) -> tuple[int, int]:
    """The highest free domain id of :data:`DOMAIN_IDS` on this machine (skipping ``avoid``) and the file descriptor
    whose lock holds it (released when the process exits, however). ConfigError when all are taken."""
    import fcntl

    lock_dir.mkdir(parents=True, exist_ok=True)
    for domain in DOMAIN_IDS:
        if domain == avoid:
            continue
        fd = os.open(lock_dir / f"{domain}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                continue
            raise
        return domain, fd
    raise ConfigError(f"no free ROS domain id on {socket.gethostname()}: {len(DOMAIN_IDS)} bag evaluations already "
                      "run here")


_HELD_LOCKS: list[int] = []  # descriptors whose locks hold this process's domain until it exits


def own_domain_unless_set() -> int | None:
    """For offline commands (eval, closed-loop, bench-graph, demo): when ``ROS_DOMAIN_ID`` is unset, claim a free
    domain id on this machine (:func:`acquire_domain`, held until the process exits) and set it for this process and
    its children, so that two runs at once do not hear each other's topics (a replayed camera topic in one run fed
    the other's nodes). Returns that domain; None when the user set ``ROS_DOMAIN_ID`` (theirs is used)."""
    if os.environ.get("ROS_DOMAIN_ID", "").strip():
        return None
    domain, fd = acquire_domain()
    _HELD_LOCKS.append(fd)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    return domain


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux); exit now if it already has."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(3)


def settings_from_json(data: dict[str, Any]) -> Any:
    """``EvaluationSettings`` from :func:`settings_to_json` data."""
    from ros_mmfusion.launcher.evaluation import EvaluationSettings

    data = dict(data)
    data["iou_thresholds"] = tuple(data["iou_thresholds"])
    return EvaluationSettings(**data)


def settings_to_json(settings: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def evaluate_bag(spec: dict[str, Any]) -> dict[str, Any]:
    """Evaluate one bag in this process (the bag process's work): a :class:`BagResult` as JSON data, ``failed`` with
    the one-line reason for what a user can cause (an unreadable bag, a missing topic ...)."""
    from ros_mmfusion.core.errors import MessageFormatError, one_line
    from ros_mmfusion.core.evaluation.fleet import BagResult
    from ros_mmfusion.core.evaluation.merge import statistics_of_run
    from ros_mmfusion.launcher.evaluation import evaluate, prepare

    started = time.monotonic()
    bag = spec["bag"]
    try:
        evaluation = prepare(settings_from_json(spec["settings"]), bag)
        result = evaluate(evaluation)
        notes = list(result.metrics["notes"])
        stats = statistics_of_run(result.session, result.series, result.metrics["latency"], evaluation.names,
                                  evaluation.facts.counts, [])
        outcome = BagResult(bag, "ok", spec["key"], None, time.monotonic() - started, socket.gethostname(),
                            spec.get("conditions", {}), result.metrics.get("models", {}), notes, stats)
    except (ConfigError, MessageFormatError, OSError) as exc:
        outcome = BagResult(bag, "failed", spec["key"], one_line(exc), time.monotonic() - started,
                            socket.gethostname(), spec.get("conditions", {}))
    domain = os.environ.get("ROS_DOMAIN_ID", "")
    outcome.domain = int(domain) if domain.isdigit() else None
    return outcome.to_json()


def worker_main(argv: Sequence[str]) -> int:
    """``python -m ros_mmfusion.launcher.fleet SPEC RESULT [BAG]``: evaluate the bag of the JSON file SPEC and write
    the result to RESULT (atomically). BAG is only there so that ``ps`` shows which bag a process evaluates."""
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    _die_with_parent(int(spec.get("parent", os.getppid())))
    avoid = spec.get("avoid_domain")
    domain, _lock = acquire_domain(avoid=None if avoid is None else int(avoid))
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    print(f"bag {spec['bag']}: ROS domain {domain}, localhost discovery", flush=True)
    data = evaluate_bag(spec)
    temporary = result_path.with_name(result_path.name + ".tmp")
    from ros_mmfusion.core.evaluation.report import metrics_json

    temporary.write_text(metrics_json(data))
    os.replace(temporary, result_path)
    return 0


# -- one bag, as the engines run it -------------------------------------------------------------------------------
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def failed_result(spec: dict[str, Any], error: str, seconds: float = 0.0) -> dict[str, Any]:
    from ros_mmfusion.core.evaluation.fleet import BagResult

    return BagResult(spec["bag"], "failed", spec["key"], error, seconds, socket.gethostname(),
                     spec.get("conditions", {})).to_json()


def run_bag_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Evaluate ``spec["bag"]`` in a new process (module docstring) and give its result as JSON data; a process
    that is killed, crashes or runs past ``spec["timeout_s"]`` gives a ``failed`` result naming what happened."""
    from ros_mmfusion.ros.runtime import child_environment

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mmfusion-fleet-") as tmp:
        work = Path(tmp)
        spec_path, result_path, log_path = work / "spec.json", work / "result.json", work / "log.txt"
        spec_path.write_text(json.dumps({**spec, "parent": os.getpid()}))
        env = child_environment(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(work / "ros_log"),
                                PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, str(spec_path), str(result_path),
                                     spec["bag"]], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        with _LIVE_LOCK:
            _LIVE.add(proc)
        timeout = spec.get("timeout_s")
        try:
            rc = proc.wait(timeout=timeout)
            error = None
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc, error = proc.wait(), f"evaluation ran past --bag-timeout ({timeout:g} s) and was stopped"
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
            _kill_group(proc)  # the bag's node processes (--processes), should any outlive it
        seconds = time.monotonic() - started
        if error is None and rc == 0 and result_path.is_file():
            data = json.loads(result_path.read_text())
            data["seconds"] = round(seconds, 2)
            return data
        if error is None:
            if rc < 0:
                error = f"its process was killed by {signal.Signals(-rc).name}; rerun to evaluate it"
            else:
                error = f"its process exited with status {rc}: {_last_line(log_path) or 'no output'}"
        return failed_result(spec, error, seconds)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_all() -> None:
    with _LIVE_LOCK:
        for proc in list(_LIVE):
            _kill_group(proc)


# -- engines ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class EngineRun:
    """What an engine ran on: ``cores`` (CPUs it schedules bags on) and a description."""

    cores: float
    description: str


def run_local(specs: list[dict[str, Any]], num_cpus: int, on_result: Callable[[dict[str, Any]], None]) -> EngineRun:
    """Evaluate the bags ``num_cpus`` at a time, each in its own process on this machine."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, num_cpus), thread_name_prefix="bag")
    try:
        futures = [pool.submit(run_bag_job, spec) for spec in specs]
        for future in concurrent.futures.as_completed(futures):
            on_result(future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_all()
        raise
    pool.shutdown(wait=True)
    return EngineRun(max(1, num_cpus), f"local: {max(1, num_cpus)} concurrent bag processes on {socket.gethostname()}")


def import_ray() -> Any:
    """The ``ray`` module; ConfigError with the install line when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_INSTALL_HINT) from None
    return ray


def run_ray(specs: list[dict[str, Any]], address: str | None, num_cpus: int,
            on_result: Callable[[dict[str, Any]], None]) -> EngineRun:
    """One Ray task per bag (one CPU each, a fresh worker process each, no retries: a lost bag is reported and a
    rerun evaluates it), on the cluster at ``address`` or on a local Ray of ``num_cpus`` CPUs started and stopped
    here."""
    import logging

    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=max(1, num_cpus), object_store_memory=RAY_OBJECT_STORE_BYTES, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--engine ray: cannot {'connect to ' + address if address else 'start a local Ray'}: "
                          f"{exc}") from None
    try:
        cores = float(ray.cluster_resources().get("CPU", num_cpus))
        task = ray.remote(num_cpus=1, max_calls=1, max_retries=0)(run_bag_job)
        pending = {task.remote(spec): spec for spec in specs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                spec = pending.pop(ref)
                try:
                    data = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    from ros_mmfusion.core.errors import one_line

                    first = one_line(str(exc).strip().splitlines()[0] if str(exc).strip() else "")[:200]
                    data = failed_result(spec, f"its Ray task failed ({type(exc).__name__}: {first}); rerun to "
                                               "evaluate it")
                on_result(data)
        where = address or f"a local Ray of {max(1, num_cpus)} CPUs"
        return EngineRun(cores, f"ray: {where}, {cores:g} CPUs")
    finally:
        ray.shutdown()


# -- the whole run ------------------------------------------------------------------------------------------------
def _param_paths(value: Any) -> Iterator[Path]:
    """Existing files or directories a node parameter value names (strings that look like paths: absolute, or
    relative to the package share directory or the working directory)."""
    from ros_mmfusion.paths import share_dir

    values = value if isinstance(value, list | tuple) else [value]
    for v in values:
        if not isinstance(v, str) or not v.strip() or v.strip() in (".", "..", "/"):
            continue
        if "/" not in v and "." not in Path(v).name:
            continue  # a frame id, a topic or a name, not a path
        path = Path(os.path.expanduser(v))
        for candidate in ([path] if path.is_absolute() else [share_dir() / path, Path.cwd() / path]):
            if candidate.exists():
                yield candidate
                break


def model_digests(settings: Any, bag: Path) -> dict[str, str]:
    """``node.param -> SHA-256`` of every file or directory a parameter of the preset's nodes names (weights, model
    packages, topomaps ...) when evaluating ``bag`` (the player's are the bag itself: left out)."""
    from ros_mmfusion.core.evaluation.fleet import content_digest
    from ros_mmfusion.launcher.evaluation import _load_preset, _node_params

    digests = {}
    for launch in _load_preset(settings, bag).nodes:
        if launch.key == "bag_player":
            continue
        for name, value in sorted(_node_params(launch).items()):
            for path in _param_paths(value):
                digests[f"{launch.name}.{name}"] = content_digest(path)
    return digests


def _cache_only(directory: Path) -> bool:
    """A report directory holding only the cache of an earlier ``eval --bags`` run that was stopped before its
    report was written (recognised as that command's)."""
    names = {p.name for p in directory.iterdir() if ".mmfusion-tmp-" not in p.name and p.name != ".mmfusion-output"}
    return names == {"bags"} and (directory / "bags" / CACHE_MARKER).is_file()


@dataclasses.dataclass
class FleetOptions:
    """How ``eval --bags`` runs: ``engine`` (local | ray), ``address`` (an existing Ray cluster), ``num_cpus`` (bags
    at a time: the local pool, or the CPUs of the local Ray), ``force`` (evaluate cached bags again), ``timeout_s``
    per bag (None: none), ``overwrite`` (the report directory rule of core.outputs)."""

    engine: str = "local"
    address: str | None = None
    num_cpus: int = 1
    force: bool = False
    timeout_s: float | None = None
    overwrite: bool = False


def run_fleet(settings: Any, bags: list[Path], out: Path, options: FleetOptions,
              log: Callable[[str], None] = print) -> tuple[dict[str, Any], Path]:
    """Evaluate ``bags`` (cached ones not again), merge, and write ``fleet_metrics.json`` and ``fleet_report.md``
    into ``out``; returns (the report mapping, the report directory). ConfigError (one line) before anything runs
    for a bad report directory, preset or engine."""
    from ros_mmfusion import __version__
    from ros_mmfusion.core.evaluation.fleet import (
        CACHE_DIR,
        BagResult,
        Progress,
        ResultCache,
        bag_conditions,
        cache_key,
        fleet_markdown,
        fleet_report,
    )
    from ros_mmfusion.core.evaluation.report import metrics_json
    from ros_mmfusion.core.outputs import OutputDirectory

    if options.engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {options.engine!r}")
    if options.engine == "ray":
        import_ray()
    settings = dataclasses.replace(settings, no_record=True)  # no outputs bag per bag in a fleet run
    output = OutputDirectory(out, "eval-fleet", overwrite=options.overwrite, reuse=True, writes=FLEET_FILES,
                             inputs=bags, recognise=_cache_only, what="report directory")
    cache_dir = Path(out) / CACHE_DIR
    if cache_dir.exists() and not (cache_dir / CACHE_MARKER).is_file():
        raise ConfigError(f"--out {out}: {cache_dir} exists and is not mmfusion's per-bag cache (no {CACHE_MARKER}); "
                          "refusing to write into it -- move it or choose another directory")
    output.keep(CACHE_DIR)
    settings_json = settings_to_json(settings)
    model_digests(settings, bags[0])  # a bad preset or parameter is one error now, not one per bag
    settings_key = {"settings": settings_json, "version": __version__}

    cache = ResultCache(cache_dir)
    progress = Progress(len(bags))
    results: dict[str, BagResult] = {}
    specs = []
    avoid = os.environ.get("ROS_DOMAIN_ID")
    for bag in bags:
        conditions = bag_conditions(bag)
        try:
            key = cache_key(settings_key, model_digests(settings, bag), bag)
        except ConfigError:
            key = cache_key(settings_key, {}, bag)  # the bag's own process reports what is wrong
        hit = None if options.force else cache.get(bag, key)
        if hit is not None:
            hit.conditions = conditions
            results[str(bag)] = hit
            progress.cached += 1
            continue
        specs.append({"bag": str(bag), "key": key, "settings": settings_json, "conditions": conditions,
                      "timeout_s": options.timeout_s,
                      "avoid_domain": int(avoid) if avoid and avoid.isdigit() else None})
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / CACHE_MARKER).write_text("per-bag results of `mmfusion eval --bags` (one JSON file per bag)\n")
    log(f"fleet: {len(bags)} bags, {progress.cached} already scored with these settings and models"
        f"{' (--force: evaluating all)' if options.force else ''}, {len(specs)} to evaluate on engine "
        f"{options.engine}")

    def on_result(data: dict[str, Any]) -> None:
        result = BagResult.from_json(data)
        cache.put(result)
        results[result.bag] = result
        if result.status == "ok":
            progress.done += 1
            figures = ", ".join(f"{k} {v:.3f}" for k, v in _headline(result).items())
            log(f"  ok     {result.bag} ({result.seconds:.1f} s{', ' + figures if figures else ''}) | "
                f"{progress.line()}")
        else:
            progress.failed += 1
            log(f"  FAILED {result.bag}: {result.error} | {progress.line()}")

    started = time.monotonic()
    progress.started = started
    engine_run = EngineRun(float(options.num_cpus), "nothing to evaluate")
    if specs:
        if options.engine == "ray":
            engine_run = run_ray(specs, options.address, options.num_cpus, on_result)
        else:
            engine_run = run_local(specs, options.num_cpus, on_result)
    wall = time.monotonic() - started
    ordered = [results[str(bag)] for bag in bags if str(bag) in results]
    run = {"preset": settings.preset, "engine": options.engine, "engine_detail": engine_run.description,
           "bags": [str(b) for b in bags], "settings": settings_json, "settings_hash": _settings_hash(settings_key),
           "ros_mmfusion": __version__, "cpu": _cpu_model(), "date": time.strftime("%Y-%m-%d")}
    report = fleet_report(ordered, run, progress, wall, engine_run.cores)
    with output as stage:
        (stage / FLEET_FILES[0]).write_text(metrics_json(report))
        (stage / FLEET_FILES[1]).write_text(fleet_markdown(report))
    return report, output.path


def _headline(result: Any) -> dict[str, float]:
    from ros_mmfusion.core.evaluation.merge import headline

    row = headline(result.statistics.metrics()) if result.statistics is not None else {}
    return {k: v for k, v in row.items() if isinstance(v, float) and k in ("mIoU", "bev_mAP@0.5",
                                                                          "localisation_accuracy", "ADE_m")}


def _settings_hash(settings_key: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(settings_key, sort_keys=True).encode()).hexdigest()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
