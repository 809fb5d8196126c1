"""Train an RGB-X CMX model on the synthetic world and write a model package (``model.yaml`` + ``weights.pt``).

No pretrained weights can be downloaded here, so the default segmentation weights are trained from scratch on
frames rendered by :mod:`ros_mmfusion.core.sim` (train seeds) and evaluated on other seeds (validation), with X
encoded by the same :mod:`ros_mmfusion.core.modalities` encoder the node uses. Modality dropout (X replaced by the
encoder's neutral image on a fraction of samples) trains the model to degrade gracefully when X stops arriving; the
evaluation reports mIoU with X, with the neutral X, per scenario.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.modalities.encoders import make_encoder
from ros_mmfusion.core.segmentation.metrics import ConfusionAccumulator
from ros_mmfusion.core.segmentation.preprocess import RGBXNormalization, encode_x, rgbx_inputs
from ros_mmfusion.core.training import check_positive_ints

PACKAGE_FILES = ("model.yaml", "weights.pt", "metrics.json")
"""What :func:`train` writes into its output directory."""
MAX_DATASET_BYTES = 8 * 2**30
"""Upper bound (bytes) of the rendered training + validation frames held in memory."""


@dataclass
class TrainConfig:
    variant: str = "cmx_mit_b0"
    decoder_embed_dim: int = 128
    width: int = 160
    height: int = 120
    iterations: int = 2000
    batch: int = 8
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup: int = 100
    scenarios: tuple[str, ...] = ("urban_day", "urban_night", "fog")
    train_seeds: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    val_seeds: tuple[int, ...] = (101, 102)
    frames_per_seed: int = 40
    frame_stride: int = 2
    x_modality: str = "thermal"
    x_params: dict = field(default_factory=lambda: {"window_k": [263.0, 318.0], "kelvin_per_count": 0.01})
    modality_dropout: float = 0.2
    threads: int = 1
    seed: int = 0
    device: str = "cpu"

    def check(self) -> None:
        """ConfigError naming the first unusable setting (field names as in ``mmfusion train``'s options); cheap,
        so callers run it before any work. The rendered data set must fit in ``MAX_DATASET_BYTES``."""
        from ros_mmfusion.core.limits import check_image_size
        from ros_mmfusion.core.models.mit import MIT_VARIANTS

        variants = [f"cmx_{name}" for name in MIT_VARIANTS]
        if self.variant not in variants:
            raise ConfigError(f"variant {self.variant!r} is not one of {', '.join(variants)}")
        check_image_size(self.height, self.width, "training size", minimum=32)
        check_positive_ints(self, ("iterations", "batch", "frames_per_seed", "decoder_embed_dim", "threads", "warmup",
                                   "frame_stride"))
        if self.decoder_embed_dim > 4096 or self.threads > 1024:
            raise ConfigError(f"decoder_embed_dim must be <= 4096 and threads <= 1024, got "
                              f"{self.decoder_embed_dim} and {self.threads}")
        if not (math.isfinite(self.lr) and self.lr > 0 and 0.0 <= self.modality_dropout <= 1.0):
            raise ConfigError(f"lr must be positive and modality_dropout in [0, 1], got {self.lr} and "
                              f"{self.modality_dropout}")
        if self.x_modality not in ("thermal", "depth", "depth_hha"):
            raise ConfigError(f"x_modality {self.x_modality!r} is not trainable (thermal, depth, depth_hha)")
        frames = len(self.scenarios) * len(self.train_seeds) * self.frames_per_seed
        if self.batch > frames:
            raise ConfigError(f"batch {self.batch} exceeds the {frames} training frames")
        total = frames + len(self.scenarios) * len(self.val_seeds) * self.frames_per_seed
        if total * self.width * self.height * 7 > MAX_DATASET_BYTES:  # rgb + x (3 bytes each) + labels
            raise ConfigError(f"{total} frames of {self.width}x{self.height} need "
                              f"{total * self.width * self.height * 7 / 2**30:.1f} GiB in memory, more than "
                              f"{MAX_DATASET_BYTES / 2**30:.0f} GiB: lower frames_per_seed or the size")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        if self.device != "cpu":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError(f"device {self.device!r}: no CUDA device is available here (this torch build "
                                  f"{'has no CUDA' if torch.version.cuda is None else 'sees no GPU'}); use cpu")


@dataclass
class Dataset:
    rgb: np.ndarray  # (N, H, W, 3) uint8
    x: np.ndarray  # (N, H, W, 3) uint8 encoded X
    labels: np.ndarray  # (N, H, W) uint8
    scenario: np.ndarray  # (N,) scenario index


def raw_x(frame, modality: str):
    """The raw X of a simulated frame as a driver would publish it, with its ROS encoding."""
    cams = frame.camera
    if modality == "thermal":
        return cams.thermal, "mono16"
    if modality in ("depth", "depth_hha"):
        return cams.depth, "32FC1"
    raise ValueError(f"x_modality {modality!r} is not trainable from camera frames yet")


def build_dataset(cfg: TrainConfig, seeds: tuple[int, ...], log: Callable[[str], None] = print) -> Dataset:
    from ros_mmfusion.core.sim import Simulation

    encoder = make_encoder(cfg.x_modality, cfg.x_params)
    rgbs, xs, labels, scen = [], [], [], []
    for si, scenario in enumerate(cfg.scenarios):
        for seed in seeds:
            sim = Simulation(scenario, seed=seed, size=(cfg.width, cfg.height), beams=16)
            for k in range(cfg.frames_per_seed):
                frame = sim.frame(k * cfg.frame_stride)
                raw, encoding = raw_x(frame, cfg.x_modality)
                rgbs.append(frame.camera.rgb)
                xs.append(encode_x(encoder, cfg.x_modality, raw, (cfg.height, cfg.width), camera=sim.rig.color.camera,
                                   encoding=encoding))
                labels.append(frame.camera.semantic)
                scen.append(si)
        log(f"  {scenario}: {len(seeds) * cfg.frames_per_seed} frames")
    return Dataset(np.stack(rgbs), np.stack(xs), np.stack(labels), np.asarray(scen))


def _batch_tensors(ds: Dataset, idx: np.ndarray, norm: RGBXNormalization, rng: np.random.Generator | None,
                   neutral: np.ndarray, dropout: float):
    import torch

    rgb_t, x_t, y_t = [], [], []
    for i in idx:
        rgb, x, y = ds.rgb[i], ds.x[i], ds.labels[i]
        if rng is not None:
            if rng.random() < 0.5:
                rgb, x, y = rgb[:, ::-1], x[:, ::-1], y[:, ::-1]
            gain = rng.uniform(0.6, 1.4)
            rgb = np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)
            if rng.random() < dropout:
                x = neutral
        r, xx = rgbx_inputs(np.ascontiguousarray(rgb), np.ascontiguousarray(x), norm)
        rgb_t.append(r)
        x_t.append(xx)
        y_t.append(np.ascontiguousarray(y))
    return (torch.from_numpy(np.concatenate(rgb_t)), torch.from_numpy(np.concatenate(x_t)),
            torch.from_numpy(np.stack(y_t).astype(np.int64)))


def evaluate(model, ds: Dataset, norm: RGBXNormalization, num_classes: int, neutral_x: np.ndarray | None = None,
             device: str = "cpu", batch: int = 8) -> dict:
    """mIoU/pixel accuracy over ``ds`` (and per scenario index); ``neutral_x`` replaces every X when given."""
    import torch

    model.eval()
    per_scenario: dict[int, ConfusionAccumulator] = {}
    with torch.inference_mode():
        for start in range(0, len(ds.rgb), batch):
            idx = np.arange(start, min(start + batch, len(ds.rgb)))
            view = ds if neutral_x is None else Dataset(ds.rgb, np.broadcast_to(neutral_x, ds.x.shape), ds.labels,
                                                         ds.scenario)
            rgb, x, y = _batch_tensors(view, idx, norm, None, neutral_x, 0.0)
            pred = model(rgb.to(device), x.to(device)).argmax(1).cpu().numpy()
            for j, i in enumerate(idx):
                per_scenario.setdefault(int(ds.scenario[i]), ConfusionAccumulator(num_classes)).add(y[j].numpy(),
                                                                                                    pred[j])
    total = sum(per_scenario.values(), ConfusionAccumulator(num_classes))
    return {"all": total.scores(), "by_scenario": {k: v.scores() for k, v in per_scenario.items()}}


def train(cfg: TrainConfig, out: Path, log: Callable[[str], None] = print) -> dict:
    """Train, evaluate and write ``out/model.yaml``, ``out/weights.pt`` and ``out/metrics.json``; returns metrics.

    ``cfg`` is checked first (:meth:`TrainConfig.check`); ``out`` is created if needed (callers that must not touch
    an existing directory pass a staging directory, as ``mmfusion train`` does)."""
    cfg.check()
    import torch
    import yaml

    from ros_mmfusion.core.labels import LABELS
    from ros_mmfusion.core.models.cmx import build_cmx

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    num_classes = len(LABELS)
    norm = RGBXNormalization(rgb_order="rgb")
    encoder = make_encoder(cfg.x_modality, cfg.x_params)
    neutral = encoder.neutral(cfg.height, cfg.width)
    started = time.time()
    log("rendering the training set ...")
    train_ds = build_dataset(cfg, cfg.train_seeds, log)
    log("rendering the validation set ...")
    val_ds = build_dataset(cfg, cfg.val_seeds, log)
    model = build_cmx(cfg.variant, num_classes=num_classes, decoder_embed_dim=cfg.decoder_embed_dim).to(cfg.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(it: int) -> float:
        warm = min(1.0, (it + 1) / cfg.warmup)
        return cfg.lr * warm * (1 - it / cfg.iterations) ** 0.9

    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=0)
    log(f"training {cfg.variant} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters) on "
        f"{len(train_ds.rgb)} frames for {cfg.iterations} iterations of {cfg.batch} ...")
    history = []
    for it in range(cfg.iterations):
        model.train()
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        idx = rng.choice(len(train_ds.rgb), cfg.batch, replace=False)
        rgb, x, y = _batch_tensors(train_ds, idx, norm, rng, neutral, cfg.modality_dropout)
        loss = loss_fn(model(rgb.to(cfg.device), x.to(cfg.device)), y.to(cfg.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item())
        if (it + 1) % 100 == 0 or it == 0:
            log(f"  iteration {it + 1}/{cfg.iterations} loss {np.mean(history[-100:]):.3f} "
                f"({time.time() - started:.0f} s)")
    names = [label.name for label in LABELS]
    with_x = evaluate(model, val_ds, norm, num_classes, device=cfg.device)
    without_x = evaluate(model, val_ds, norm, num_classes, neutral_x=neutral, device=cfg.device)
    metrics = {
        "date": date.today().isoformat(), "device": cfg.device, "train_seconds": round(time.time() - started, 1),
        "config": {**asdict(cfg), "scenarios": list(cfg.scenarios), "train_seeds": list(cfg.train_seeds),
                   "val_seeds": list(cfg.val_seeds)},
        "final_loss": float(np.mean(history[-100:])),
        "validation": {
            "with_x": with_x["all"].as_dict(names),
            "neutral_x": without_x["all"].as_dict(names),
            "by_scenario": {cfg.scenarios[k]: {"with_x_mIoU": v.miou,
                                               "neutral_x_mIoU": without_x["by_scenario"][k].miou}
                            for k, v in with_x["by_scenario"].items()},
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.cpu().state_dict().items()}
    torch.save(state, out / "weights.pt")
    package = {
        "format": "ros_mmfusion/model/v1", "task": "segmentation", "variant": cfg.variant,
        "num_classes": num_classes, "decoder_embed_dim": cfg.decoder_embed_dim,
        "input_size": [cfg.height, cfg.width], "rgb_order": "rgb", "weights": "weights.pt",
        "class_names": names, "ignore_index": 0,
        "x_modality": {"name": cfg.x_modality, "params": cfg.x_params},
        "trained_on": f"ros_mmfusion synthetic world {list(cfg.scenarios)} seeds {list(cfg.train_seeds)}, "
                      f"{cfg.width}x{cfg.height}, {cfg.iterations} iterations, {metrics['date']} on {cfg.device}",
        "validation_mIoU": {"with_x": with_x["all"].miou, "neutral_x": without_x["all"].miou},
    }
    (out / "model.yaml").write_text(yaml.safe_dump(package, sort_keys=False))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log(f"validation mIoU with X {with_x['all'].miou:.3f}, with neutral X {without_x['all'].miou:.3f}")
    return metrics
