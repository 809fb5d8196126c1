"""The training loop every task shares (ROS-free): schedule, progress with ETA, periodic validation, resumable
checkpoints, and the record of a run (date, device, hardware, time) that goes into a package's ``metrics.json``.

Each task (``core/<task>/training.py``) brings its data, its loss step and its validation; :func:`fit` runs them:

* learning rate: linear warm-up over ``warmup`` iterations, then polynomial decay (power 0.9) to 0, or a one-cycle
  cosine (``schedule="cosine"``); AdamW;
* every ``validate_every`` iterations (and at the end) ``validate(model)`` -> a metrics dict, kept in the history (the
  learning curve written to ``metrics.json``);
* every ``checkpoint_every`` iterations the model, optimiser, iteration, random state and history go to
  ``checkpoint_dir/last.pt`` (written under a temporary name, then renamed); ``resume=True`` continues from it when its
  ``identity`` (the run's configuration) matches, so an interrupted training picks up where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion.core.errors import ConfigError

Log = Callable[[str], None]


@dataclass
class LoopConfig:
    """The settings :func:`fit` needs; tasks embed one in their ``TrainConfig``."""

    iterations: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 50
    schedule: str = "poly"
    validate_every: int = 250
    checkpoint_every: int = 100
    grad_clip: float = 10.0
    log_every: int = 20
    device: str = "cpu"
    threads: int = 1
    seed: int = 0

    def check(self) -> None:
        """ConfigError naming the first unusable setting (names as ``mmfusion train``'s options)."""
        check_positive_ints(self, ("iterations", "validate_every", "checkpoint_every", "log_every", "threads"))
        if self.threads > 1024 or self.iterations > 10_000_000:
            raise ConfigError(f"threads must be <= 1024 and iterations <= 10000000, got {self.threads}, "
                              f"{self.iterations}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"warmup must be a non-negative integer, got {self.warmup!r}")
        if not (math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0 and math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ConfigError(f"lr and grad_clip must be positive and weight_decay >= 0, got {self.lr}, "
                              f"{self.grad_clip}, {self.weight_decay}")
        if self.schedule not in ("poly", "cosine"):
            raise ConfigError(f"schedule must be poly or cosine, got {self.schedule!r}")
        check_device(self.device)

    def lr_at(self, iteration: int) -> float:
        warm = min(1.0, (iteration + 1) / self.warmup) if self.warmup else 1.0
        progress = min(1.0, iteration / self.iterations)
        if self.schedule == "cosine":
            return self.lr * warm * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr * warm * (1.0 - progress) ** 0.9


def check_positive_ints(config: Any, names: Sequence[str]) -> None:
    """ConfigError naming the first of ``config``'s fields ``names`` that is not a positive integer (bools are not)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def check_data_sources(scenarios: Sequence[str], train_seeds: Sequence[int], val_seeds: Sequence[int],
                       bags: Sequence[str], val_bags: Sequence[str], init: str = "") -> None:
    """ConfigError naming the first unusable data setting every task shares: some training data (``--scenario``
    with ``--seeds``, or ``--bag``), known scenarios, non-negative seeds, validation seeds and bags held out from
    training, existing bags and ``--init``."""
    from ros_mmfusion.core.sim.scenarios import get_scenario

    if not scenarios and not bags:
        raise ConfigError("no training data: give --scenario or --bag")
    if scenarios and not train_seeds:
        raise ConfigError("--scenario needs at least one training seed (--seeds)")
    for name in scenarios:
        get_scenario(name)  # ConfigError naming the known ones
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in (*train_seeds, *val_seeds)):
        raise ConfigError("seeds must be non-negative integers")
    overlap = set(train_seeds) & set(val_seeds)
    if scenarios and overlap:
        raise ConfigError(f"seeds {sorted(overlap)} are both training and validation seeds: validation must be "
                          "held out")
    overlap_bags = {str(Path(b).resolve()) for b in bags} & {str(Path(b).resolve()) for b in val_bags}
    if overlap_bags:
        raise ConfigError(f"bag(s) {sorted(overlap_bags)} are both training and validation bags")
    for bag in (*bags, *val_bags):
        if not Path(bag).is_dir():
            raise ConfigError(f"bag not found: {bag}")
    if init and not Path(init).exists():
        raise ConfigError(f"--init {init}: no such file or model package directory")


@dataclass(frozen=True)
class InitSource:
    """What ``--init`` names: the weights file, one line saying where it comes from, and the package (None for a
    checkpoint file)."""

    path: Path
    description: str
    package: Any = None


def init_source(init: str | Path, task: str) -> InitSource:
    """``--init`` resolved: a model package of ``task`` (its weights file) or a checkpoint file as it is."""
    from ros_mmfusion.core.model_package import read_package

    path = Path(init)
    if path.is_dir():
        package = read_package(path, task)
        return InitSource(Path(package.weights), f"model package {package.name}", package)
    return InitSource(path, f"checkpoint {path.name}")


def read_init_weights(path: Path, load: Callable[[Path], Any]) -> Any:
    """The contents of a weights file: ``{name: array}`` of an ``.npz`` (no pickles), else ``load(path)``."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    return load(path)


def check_device(device: str) -> None:
    """ConfigError unless ``device`` is cpu, or cuda[:N] with a CUDA device present."""
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"device must be cpu or cuda, got {device!r}")
    if device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: no CUDA device is available here (this torch build "
                              f"{'has no CUDA' if torch.version.cuda is None else 'sees no GPU'}); use cpu")


def hardware(device: str) -> str:
    """One line naming what trained: the GPU for cuda, else the CPU model and its ISA class."""
    if device != "cpu":
        import torch

        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA {torch.version.cuda})"
    from ros_mmfusion.core.inference.cpu_features import cpu_isa

    return f"{cpu_isa()}, {os.cpu_count()} logical CPUs"


def run_record(loop: LoopConfig, started: float) -> dict[str, Any]:
    """The facts of a run every package's ``metrics.json`` carries."""
    import torch

    return {"date": date.today().isoformat(), "device": loop.device, "hardware": hardware(loop.device),
            "threads": loop.threads, "torch": torch.__version__, "python": platform.python_version(),
            "train_seconds": round(time.time() - started, 1)}


def config_identity(config: Any) -> str:
    """A short hash of a configuration's JSON form (what a checkpoint must match to be resumed)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_checkpoint_dir(out: str | Path, identity: str) -> Path:
    """Where checkpoints of a training into ``out`` go: the suite's cache (never beside the user's files)."""
    from ros_mmfusion.core.onnx_export import cache_dir

    return cache_dir() / "train" / f"{Path(out).resolve().name}-{identity}"


class Checkpoints:
    """``last.pt`` in ``directory``: model, optimiser, iteration, history and random state of a run."""

    def __init__(self, directory: Path, identity: str) -> None:
        self.directory, self.identity = Path(directory), identity

    @property
    def path(self) -> Path:
        return self.directory / "last.pt"

    def save(self, state: dict[str, Any]) -> None:
        import torch

        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"identity": self.identity, **state}, tmp)
        os.replace(tmp, self.path)

    def load(self) -> dict[str, Any] | None:
        """The saved state when it exists and belongs to this run's configuration, else None."""
        import torch

        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - a damaged checkpoint is ignored (training starts over), never fatal
            return None
        return state if isinstance(state, dict) and state.get("identity") == self.identity else None


class Progress:
    """Progress lines: iteration, smoothed loss (and its parts), iterations per second and the ETA."""

    def __init__(self, total: int, log: Log, every: int, start: int = 0) -> None:
        self.total, self.log, self.every, self.start = total, log, every, start
        self.t0 = time.time()
        self.window: list[dict[str, float]] = []

    def step(self, iteration: int, losses: dict[str, float]) -> None:
        self.window.append(losses)
        done = iteration + 1
        if done % self.every and done != self.total and done != self.start + 1:
            return
        mean = {k: float(np.mean([w[k] for w in self.window if k in w])) for k in self.window[-1]}
        self.window = []
        rate = (done - self.start) / max(time.time() - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        parts = " ".join(f"{k} {v:.3f}" for k, v in mean.items())
        self.log(f"  [{done}/{self.total}] {parts} | {rate:.2f} it/s, ETA {format_seconds(eta)}")


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def fit(model, loss_step: Callable[[int, np.random.Generator], dict], validate: Callable[[Any], dict],
        loop: LoopConfig, checkpoints: Checkpoints | None = None, resume: bool = False, log: Log = print,
        parameters=None) -> dict[str, Any]:
    """Train ``model`` for ``loop.iterations``; returns the history ``{"loss": [[it, loss], ...],
    "validation": [{"iteration": it, ...metrics}, ...]}``.

    ``loss_step(iteration, rng)`` draws a batch, runs the model in train mode and returns a dict whose ``"loss"`` is
    the scalar tensor to minimise (other entries: floats or tensors logged as its parts). ``validate(model)`` returns
    a metrics dict (the model in eval mode; called under ``torch.inference_mode``). ``parameters``: the parameters to
    optimise (default all of ``model``'s)."""
    import torch

    loop.check()
    torch.manual_seed(loop.seed)
    torch.set_num_threads(loop.threads)
    rng = np.random.default_rng(loop.seed)
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=loop.lr, weight_decay=loop.weight_decay)
    history: dict[str, Any] = {"loss": [], "validation": []}
    start = 0
    saved = checkpoints.load() if (checkpoints is not None and resume) else None
    if checkpoints is not None and saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        history, start = saved["history"], int(saved["iteration"])
        log(f"resumed from {checkpoints.path} at iteration {start}")

    def run_validation(iteration: int) -> None:
        model.eval()
        with torch.inference_mode():
            metrics = validate(model)
        history["validation"].append({"iteration": iteration, **metrics})
        log(f"  validation at {iteration}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float))))

    progress = Progress(loop.iterations, log, loop.log_every, start)
    window: list[float] = []
    for it in range(start, loop.iterations):
        model.train()
        for group in opt.param_groups:
            group["lr"] = loop.lr_at(it)
        out = loss_step(it, rng)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise ConfigError(f"training diverged at iteration {it + 1} (loss {loss.item()}): lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, loop.grad_clip)
        opt.step()
        parts = {k: float(v.detach() if hasattr(v, "detach") else v) for k, v in out.items()}
        window.append(parts["loss"])
        progress.step(it, parts)
        if (it + 1) % loop.log_every == 0 or it + 1 == loop.iterations:
            history["loss"].append([it + 1, float(np.mean(window))])
            window = []
        if (it + 1) % loop.validate_every == 0 and it + 1 != loop.iterations:
            run_validation(it + 1)
        if checkpoints is not None and ((it + 1) % loop.checkpoint_every == 0 or it + 1 == loop.iterations):
            checkpoints.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": it + 1,
                              "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                              "history": history})
    if not history["validation"] or history["validation"][-1]["iteration"] != loop.iterations:
        run_validation(loop.iterations)
    return history
