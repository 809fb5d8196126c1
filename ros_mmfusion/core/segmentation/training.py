"""Train an RGB-X CMX model on the synthetic world or on users' bags and write a model package.

The recipe follows CMX's published training (SegFormer-style): AdamW, linear warm-up then polynomial decay (power
0.9), pixel-wise cross-entropy that ignores the ``unlabeled`` class, and the augmentations of its data loader: random
scale (0.5 .. 1.75 of the training size), random crop back to the training size (padding where the scaled image is
smaller: images with the normalisation mean, labels with the ignored class) and horizontal flip. Beyond upstream:
a brightness gain on RGB (0.6 .. 1.4) and **modality dropout** (X replaced by the encoder's neutral image on a
fraction of the samples), so the model degrades gracefully when X stops arriving; validation reports mIoU with X
and with the neutral X.

Data:

* the synthetic world (:mod:`ros_mmfusion.core.sim`): frames of each scenario and seed rendered at the training
  size, X encoded by :func:`~ros_mmfusion.core.segmentation.preprocess.encode_x` (the node's own encoder);
* rosbag2 bags (``bags``): a colour topic (Image or CompressedImage), an X topic registered to it (thermal ``mono16``,
  depth ``32FC1``/``16UC1``) and a ``mono8`` label topic in the model's class ids, matched by header stamp (each label
  with the nearest image and X within ``sync_tolerance``), resized to the training size (colour bilinear, X and
  labels nearest), with the colour ``CameraInfo`` for HHA.

``--init`` starts from a segmentation model package (same variant) or a checkpoint (ours, or an upstream CMX
``.pth``/``.npz`` through :func:`~ros_mmfusion.core.models.cmx.convert_upstream_checkpoint`); tensors whose shapes
differ (a classifier of another class count, a decoder of another width) keep their fresh initialisation, and the
log says which. The loop (schedule, validation curve, resumable checkpoints, progress) is
:func:`ros_mmfusion.core.training.fit`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.modalities.encoders import make_encoder
from ros_mmfusion.core.model_package import PACKAGE_FILES
from ros_mmfusion.core.segmentation.metrics import ConfusionAccumulator
from ros_mmfusion.core.segmentation.preprocess import RGBXNormalization, encode_x, rgbx_inputs
from ros_mmfusion.core.stamps import nearest_stamp
from ros_mmfusion.core.training import Log, LoopConfig, check_data_sources, check_positive_ints

MAX_DATASET_BYTES = 8 * 2**30
"""Upper bound (bytes) of the training + validation frames held in memory."""
TRAINABLE_X = ("thermal", "depth", "depth_hha")
"""X modalities the trainer reads from camera images (LiDAR-as-X is projected at run time; not trained yet)."""
SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
"""CMX's ``train_scale_array``: the random scale factors of the scale-and-crop augmentation."""
DEFAULT_X_TOPICS = {"thermal": "/thermal/image_raw", "depth": "/camera/depth/image_rect_raw",
                    "depth_hha": "/camera/depth/image_rect_raw"}
THERMAL_PARAMS = {"window_k": [263.0, 318.0], "kelvin_per_count": 0.01}
"""The thermal encoder settings of the synthetic world's mono16 centikelvin camera."""


def default_x_params(modality: str) -> dict[str, Any]:
    """The X encoder parameters the synthetic world's sensors need (thermal: its window and centikelvin counts; HHA:
    the scheme, written into the package so that it keeps its encoding when the default changes)."""
    if modality == "depth_hha":
        return {"hha_scheme": "gupta"}
    return dict(THERMAL_PARAMS) if modality == "thermal" else {}


@dataclass
class SegTrainConfig:
    variant: str = "cmx_mit_b0"
    decoder_embed_dim: int = 128
    width: int = 320
    height: int = 240
    scenarios: tuple[str, ...] = ("urban_day", "urban_night", "fog")
    train_seeds: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    val_seeds: tuple[int, ...] = (101, 102)
    frames_per_seed: int = 40
    val_frames_per_seed: int = 20
    frame_stride: int = 2
    bags: tuple[str, ...] = ()
    val_bags: tuple[str, ...] = ()
    image_topic: str = "/camera/color/image_raw"
    x_topic: str = ""
    """The X image topic of bags ("" : the synthetic world's topic of ``x_modality``)."""
    labels_topic: str = "/ground_truth/semantic"
    camera_info_topic: str = "/camera/color/camera_info"
    sync_tolerance: float = 0.02
    """Seconds between a label's stamp and the image's and X's it is paired with."""
    x_modality: str = "thermal"
    x_params: dict = field(default_factory=lambda: dict(THERMAL_PARAMS))
    batch: int = 8
    modality_dropout: float = 0.2
    scale_crop: bool = True
    init: str = ""
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(iterations=2000, lr=6e-4, warmup=100,
                                                                schedule="poly", validate_every=500))

    @property
    def bag_x_topic(self) -> str:
        return self.x_topic or DEFAULT_X_TOPICS.get(self.x_modality, "")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loop": asdict(self.loop)}

    def check(self) -> None:
        """ConfigError naming the first unusable setting (names as ``mmfusion train``'s options); cheap, so callers
        run it before any work. The rendered data set must fit in ``MAX_DATASET_BYTES``."""
        from ros_mmfusion.core.limits import check_image_size
        from ros_mmfusion.core.models.mit import MIT_VARIANTS

        self.loop.check()
        variants = [f"cmx_{name}" for name in MIT_VARIANTS]
        if self.variant not in variants:
            raise ConfigError(f"variant {self.variant!r} is not one of {', '.join(variants)}")
        check_image_size(self.height, self.width, "training size", minimum=32)
        check_positive_ints(self, ("batch", "frames_per_seed", "val_frames_per_seed", "decoder_embed_dim",
                                   "frame_stride"))
        if self.decoder_embed_dim > 4096:
            raise ConfigError(f"decoder_embed_dim must be <= 4096, got {self.decoder_embed_dim}")
        if not 0.0 <= self.modality_dropout <= 1.0:
            raise ConfigError(f"modality_dropout must be in [0, 1], got {self.modality_dropout}")
        if not (math.isfinite(self.sync_tolerance) and 0 <= self.sync_tolerance <= 10):
            raise ConfigError(f"sync_tolerance must be 0..10 s, got {self.sync_tolerance}")
        if self.x_modality not in TRAINABLE_X:
            raise ConfigError(f"x_modality {self.x_modality!r} is not trainable ({', '.join(TRAINABLE_X)})")
        check_data_sources(self.scenarios, self.train_seeds, self.val_seeds, self.bags, self.val_bags, self.init)
        if not ((self.scenarios and self.val_seeds) or self.val_bags):
            raise ConfigError("no validation data: give --val-seeds with --scenario, or --val-bag")
        frames = len(self.scenarios) * (len(self.train_seeds) * self.frames_per_seed
                                        + len(self.val_seeds) * self.val_frames_per_seed)
        rendered = len(self.scenarios) * len(self.train_seeds) * self.frames_per_seed
        if self.scenarios and not self.bags and self.batch > rendered:
            raise ConfigError(f"batch {self.batch} exceeds the {rendered} training frames")
        if frames * self.frame_bytes > MAX_DATASET_BYTES:
            raise ConfigError(f"{frames} frames of {self.width}x{self.height} need "
                              f"{frames * self.frame_bytes / 2**30:.1f} GiB in memory, more than "
                              f"{MAX_DATASET_BYTES / 2**30:.0f} GiB: lower frames_per_seed or the size")

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 7  # rgb + encoded x (3 bytes each) + labels


# ------------------------------------------------------------------------------------------------------------ data


@dataclass
class Dataset:
    rgb: np.ndarray  # (N, H, W, 3) uint8
    x: np.ndarray  # (N, H, W, 3) uint8 encoded X
    labels: np.ndarray  # (N, H, W) uint8
    source: np.ndarray  # (N,) index into ``names``
    names: list[str]

    def __len__(self) -> int:
        return len(self.rgb)


class _Frames:
    """Frames collected into lists, with the memory bound checked as they come."""

    def __init__(self, cfg: SegTrainConfig) -> None:
        self.cfg = cfg
        self.rgb: list[np.ndarray] = []
        self.x: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.source: list[int] = []
        self.names: list[str] = []

    def add(self, rgb: np.ndarray, x: np.ndarray, labels: np.ndarray, name: str) -> None:
        if (len(self.rgb) + 1) * self.cfg.frame_bytes > MAX_DATASET_BYTES:
            raise ConfigError(f"more than {len(self.rgb)} frames of {self.cfg.width}x{self.cfg.height} exceed "
                              f"{MAX_DATASET_BYTES / 2**30:.0f} GiB in memory: use fewer or shorter bags")
        if name not in self.names:
            self.names.append(name)
        self.rgb.append(rgb)
        self.x.append(x)
        self.labels.append(labels)
        self.source.append(self.names.index(name))

    def dataset(self) -> Dataset:
        h, w = self.cfg.height, self.cfg.width
        if not self.rgb:
            return Dataset(np.zeros((0, h, w, 3), np.uint8), np.zeros((0, h, w, 3), np.uint8),
                           np.zeros((0, h, w), np.uint8), np.zeros(0, int), [])
        return Dataset(np.stack(self.rgb), np.stack(self.x), np.stack(self.labels), np.asarray(self.source),
                       self.names)


def raw_x(frame, modality: str):
    """The raw X of a simulated frame as a driver would publish it, with its ROS encoding."""
    cams = frame.camera
    if modality == "thermal":
        return cams.thermal, "mono16"
    if modality in ("depth", "depth_hha"):
        return cams.depth, "32FC1"
    raise ValueError(f"x_modality {modality!r} is not trainable from camera frames yet")


def render_frames(cfg: SegTrainConfig, seeds: Sequence[int], frames_per_seed: int, into: _Frames,
                  log: Log = print) -> None:
    """Frames of every scenario and seed rendered at the training size, X encoded as the node encodes it."""
    from ros_mmfusion.core.sim import Simulation

    encoder = make_encoder(cfg.x_modality, cfg.x_params)
    for scenario in cfg.scenarios:
        t0 = time.time()
        for seed in seeds:
            sim = Simulation(scenario, seed=int(seed), size=(cfg.width, cfg.height), beams=16)
            for k in range(frames_per_seed):
                frame = sim.frame(k * cfg.frame_stride)
                raw, encoding = raw_x(frame, cfg.x_modality)
                x = encode_x(encoder, cfg.x_modality, raw, (cfg.height, cfg.width), camera=sim.rig.color.camera,
                             encoding=encoding)
                into.add(frame.camera.rgb, x, frame.camera.semantic, scenario)
        log(f"  {scenario}: {len(seeds) * frames_per_seed} frames ({time.time() - t0:.0f} s)")


def _resize(image: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """``image`` at ``size`` (height, width): bilinear, or nearest for labels and raw X (no invented values)."""
    import cv2

    if image.shape[:2] == size:
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def read_bag_frames(bag: str | Path, cfg: SegTrainConfig, into: _Frames, log: Log = print) -> int:
    """Labelled frames of ``bag`` (see the module docstring) added to ``into``; returns how many. ConfigError naming
    the bag for missing topics, undecodable messages and bags with no label matched to an image and X."""
    from ros_mmfusion.core.bagio import IMAGE_TYPES, open_bag, read_header_stamp, rgb_of_message, typestore
    from ros_mmfusion.core.codec.camera import intrinsics_from_fields
    from ros_mmfusion.core.codec.image import decode_image

    image_type = "sensor_msgs/msg/Image"
    store = typestore()
    size = (cfg.height, cfg.width)
    encoder = make_encoder(cfg.x_modality, cfg.x_params)
    wanted = {cfg.image_topic: IMAGE_TYPES, cfg.bag_x_topic: (image_type,), cfg.labels_topic: (image_type,)}
    images: dict[int, Any] = {}
    xs: dict[int, Any] = {}
    labels: dict[int, Any] = {}
    camera = None
    with open_bag(bag) as source:
        topics = source.topics
        for topic, types in wanted.items():
            if topics.get(topic) not in types:
                raise ConfigError(f"bag {bag} has no {' or '.join(t.rsplit('/', 1)[-1] for t in types)} topic "
                                  f"{topic!r}; image topics: "
                                  f"{sorted(t for t, m in topics.items() if m in IMAGE_TYPES) or 'none'}")
        read = list(wanted)
        if cfg.x_modality == "depth_hha":
            if topics.get(cfg.camera_info_topic) != "sensor_msgs/msg/CameraInfo":
                raise ConfigError(f"bag {bag}: HHA needs the colour CameraInfo {cfg.camera_info_topic!r}")
            read.append(cfg.camera_info_topic)
        for message in source.messages(read):
            # Messages are kept raw (bytes) until paired: a bag's unpaired images cost no decoding.
            if message.topic == cfg.camera_info_topic and message.topic not in wanted:
                if camera is None:
                    msg = store.deserialize_cdr(message.data, message.msgtype)
                    try:
                        camera = intrinsics_from_fields(msg.height, msg.width, msg.distortion_model, msg.d, msg.k,
                                                        msg.r, msg.p, msg.binning_x, msg.binning_y,
                                                        msg.roi).pinhole()
                    except MessageFormatError as exc:
                        raise ConfigError(f"bag {bag}: {cfg.camera_info_topic}: {exc}") from None
                continue
            stamp = read_header_stamp(message.data)
            if message.topic == cfg.labels_topic:
                labels[stamp] = message
            if message.topic == cfg.bag_x_topic:
                xs[stamp] = message
            if message.topic == cfg.image_topic:
                images[stamp] = message
    tolerance = int(cfg.sync_tolerance * 1e9)
    image_stamps, x_stamps = np.array(sorted(images), np.int64), np.array(sorted(xs), np.int64)
    added = 0
    name = f"bag:{Path(bag).resolve().name}"
    for stamp in sorted(labels):
        i, j = nearest_stamp(image_stamps, stamp, tolerance), nearest_stamp(x_stamps, stamp, tolerance)
        if i is None or j is None:
            continue
        try:
            rgb = rgb_of_message(store, images[int(image_stamps[i])])
            xmsg = store.deserialize_cdr(xs[int(x_stamps[j])].data, image_type)
            raw = decode_image(xmsg.height, xmsg.width, xmsg.encoding, xmsg.is_bigendian, xmsg.step, xmsg.data)
            lmsg = store.deserialize_cdr(labels[stamp].data, image_type)
            if lmsg.encoding != "mono8":
                raise MessageFormatError(f"labels must be mono8 class ids, got {lmsg.encoding!r}")
            label = decode_image(lmsg.height, lmsg.width, lmsg.encoding, lmsg.is_bigendian, lmsg.step, lmsg.data)
            if raw.shape[:2] != rgb.shape[:2] or label.shape[:2] != rgb.shape[:2]:
                raise MessageFormatError(f"image {rgb.shape[1]}x{rgb.shape[0]}, X {raw.shape[1]}x{raw.shape[0]} "
                                         f"and labels {label.shape[1]}x{label.shape[0]} differ: register X and "
                                         "labels to the colour camera")
            cam = camera.scaled(cfg.width, cfg.height) if camera is not None else None
            x = encode_x(encoder, cfg.x_modality, _resize(np.ascontiguousarray(raw), size, nearest=True), size,
                         camera=cam, encoding=xmsg.encoding)
        except MessageFormatError as exc:
            raise ConfigError(f"bag {bag}: frame at {stamp / 1e9:.3f} s: {exc}") from None
        into.add(_resize(rgb, size, nearest=False), x, _resize(np.ascontiguousarray(label), size, nearest=True), name)
        added += 1
    if not added:
        raise ConfigError(f"bag {bag}: no {cfg.labels_topic} label has a {cfg.image_topic} image and a "
                          f"{cfg.bag_x_topic} X within {cfg.sync_tolerance:g} s")
    log(f"  {name}: {added} labelled frames")
    return added


def load_data(cfg: SegTrainConfig, seeds: Sequence[int], frames_per_seed: int, bags: Sequence[str],
              log: Log = print) -> Dataset:
    frames = _Frames(cfg)
    if cfg.scenarios and seeds:
        render_frames(cfg, seeds, frames_per_seed, frames, log)
    for bag in bags:
        read_bag_frames(bag, cfg, frames, log)
    return frames.dataset()


# ---------------------------------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class Augmentation:
    """The augmentations of one training sample (drawn by :meth:`draw`, applied by :meth:`apply`)."""

    scale: float = 1.0
    crop: tuple[float, float] = (0.5, 0.5)
    """Where the crop window sits, as fractions of the free room (0: top/left, 1: bottom/right)."""
    flip: bool = False
    gain: float = 1.0
    drop_x: bool = False

    @classmethod
    def draw(cls, rng: np.random.Generator, scale_crop: bool, dropout: float) -> Augmentation:
        return cls(scale=float(rng.choice(SCALES)) if scale_crop else 1.0,
                   crop=(float(rng.random()), float(rng.random())), flip=bool(rng.random() < 0.5),
                   gain=float(rng.uniform(0.6, 1.4)), drop_x=bool(rng.random() < dropout))

    def apply(self, rgb: np.ndarray, x: np.ndarray, labels: np.ndarray, neutral: np.ndarray,
              pad: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``rgb``, ``x`` (H, W, 3) uint8 and ``labels`` (H, W) scaled, cropped back to (H, W), flipped and gained;
        ``pad``: the uint8 colours of the padded border for rgb and x (the normalisation means: zero input)."""
        h, w = labels.shape
        if self.drop_x:
            x = neutral
        if self.scale != 1.0:
            size = (max(1, round(h * self.scale)), max(1, round(w * self.scale)))
            rgb, x = _resize(rgb, size, nearest=False), _resize(x, size, nearest=False)
            labels = _resize(labels, size, nearest=True)
            rgb, x, labels = (_crop(a, (h, w), self.crop, fill) for a, fill in
                              ((rgb, pad[0]), (x, pad[1]), (labels, np.uint8(0))))
        if self.flip:
            rgb, x, labels = rgb[:, ::-1], x[:, ::-1], labels[:, ::-1]
        if self.gain != 1.0:
            rgb = np.clip(rgb.astype(np.float32) * self.gain, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(rgb), np.ascontiguousarray(x), np.ascontiguousarray(labels)


def _crop(image: np.ndarray, size: tuple[int, int], where: tuple[float, float], fill) -> np.ndarray:
    """A ``size`` (H, W) window of ``image`` at ``where``; where ``image`` is smaller, padded with ``fill``."""
    h, w = size
    ih, iw = image.shape[:2]
    out = np.empty((h, w, *image.shape[2:]), image.dtype)
    out[...] = fill
    top, left = round((ih - h) * where[0]), round((iw - w) * where[1])  # negative: the image sits inside
    sy, sx = max(top, 0), max(left, 0)
    dy, dx = max(-top, 0), max(-left, 0)
    ch, cw = min(h - dy, ih - sy), min(w - dx, iw - sx)
    out[dy:dy + ch, dx:dx + cw] = image[sy:sy + ch, sx:sx + cw]
    return out


def pad_colours(norm: RGBXNormalization) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 colours that normalise to (about) zero for the rgb input (in the dataset's R,G,B order) and X."""
    rgb = np.round(np.asarray(norm.rgb_mean) * 255)
    if norm.rgb_order == "bgr":
        rgb = rgb[::-1]  # the network's first channel is blue: the stored R,G,B image pads with reversed means
    return rgb.astype(np.uint8), np.round(np.asarray(norm.x_mean) * 255).astype(np.uint8)


def batch_tensors(ds: Dataset, idx: Sequence[int], norm: RGBXNormalization,
                  augmentations: Sequence[Augmentation] | None = None, neutral: np.ndarray | None = None,
                  pad: tuple[np.ndarray, np.ndarray] | None = None):
    """Network inputs (rgb, x) and int64 targets of the frames ``idx``; ``augmentations`` (one per frame) for
    training; ``neutral`` without augmentations replaces every X (the neutral-X evaluation)."""
    import torch

    rgb_t, x_t, y_t = [], [], []
    for k, i in enumerate(idx):
        rgb, x, y = ds.rgb[i], ds.x[i], ds.labels[i]
        if augmentations is not None:
            assert neutral is not None and pad is not None
            rgb, x, y = augmentations[k].apply(rgb, x, y, neutral, pad)
        elif neutral is not None:
            x = neutral
        r, xx = rgbx_inputs(np.ascontiguousarray(rgb), np.ascontiguousarray(x), norm)
        rgb_t.append(r)
        x_t.append(xx)
        y_t.append(np.ascontiguousarray(y))
    return (torch.from_numpy(np.concatenate(rgb_t)), torch.from_numpy(np.concatenate(x_t)),
            torch.from_numpy(np.stack(y_t).astype(np.int64)))


# ------------------------------------------------------------------------------------------------------- validation


def evaluate(model, ds: Dataset, norm: RGBXNormalization, num_classes: int, neutral_x: np.ndarray | None = None,
             device: str = "cpu", batch: int = 8) -> dict:
    """mIoU/pixel accuracy over ``ds`` and per source (scenario or bag); ``neutral_x`` replaces every X when
    given."""
    import torch

    model.eval()
    per_source: dict[int, ConfusionAccumulator] = {}
    with torch.inference_mode():
        for start in range(0, len(ds), batch):
            idx = list(range(start, min(start + batch, len(ds))))
            rgb, x, y = batch_tensors(ds, idx, norm, neutral=neutral_x)
            pred = model(rgb.to(device), x.to(device)).argmax(1).cpu().numpy()
            for j, i in enumerate(idx):
                per_source.setdefault(int(ds.source[i]), ConfusionAccumulator(num_classes)).add(y[j].numpy(),
                                                                                                pred[j])
    total = sum(per_source.values(), ConfusionAccumulator(num_classes))
    return {"all": total.scores(), "by_source": {ds.names[k]: v.scores() for k, v in per_source.items()}}


def validation_metrics(model, ds: Dataset, norm: RGBXNormalization, neutral: np.ndarray, names: Sequence[str],
                       device: str) -> dict[str, Any]:
    """mIoU and pixel accuracy with X and with the neutral X, per class and per source."""
    with_x = evaluate(model, ds, norm, len(names), device=device)
    neutral_x = evaluate(model, ds, norm, len(names), neutral_x=neutral, device=device)
    return {"mIoU": with_x["all"].miou, "neutral_x_mIoU": neutral_x["all"].miou,
            "pixel_accuracy": with_x["all"].pixel_accuracy,
            "IoU": with_x["all"].as_dict(names)["IoU"], "neutral_x_IoU": neutral_x["all"].as_dict(names)["IoU"],
            "by_source": {k: {"mIoU": v.miou, "neutral_x_mIoU": neutral_x["by_source"][k].miou}
                          for k, v in with_x["by_source"].items()}}


# -------------------------------------------------------------------------------------------------- initial weights


def initial_model(cfg: SegTrainConfig, num_classes: int, log: Log = print):
    """The variant's network, seeded, with ``cfg.init`` loaded (a segmentation model package of the same variant,
    or a checkpoint: ours or upstream CMX ``.pth``/``.pt``/``.npz``). Tensors of other shapes keep their fresh
    initialisation; ConfigError when the backbone does not fit (another variant). Returns ``(model, description)``."""
    import torch

    from ros_mmfusion.core.models.checkpoints import load_state, load_weights_file
    from ros_mmfusion.core.models.cmx import build_cmx, convert_upstream_checkpoint
    from ros_mmfusion.core.training import init_source, read_init_weights

    torch.manual_seed(cfg.loop.seed)
    model = build_cmx(cfg.variant, num_classes=num_classes, decoder_embed_dim=cfg.decoder_embed_dim)
    if not cfg.init:
        return model, "random initialisation"
    source = init_source(cfg.init, "segmentation")
    if source.package is not None and source.package.variant != cfg.variant:
        raise ConfigError(f"--init {cfg.init}: a {source.package.variant} package, not {cfg.variant}")
    what = source.description
    try:
        obj = read_init_weights(source.path, load_weights_file)
        state = convert_upstream_checkpoint(obj)
    except ConfigError as exc:
        raise ConfigError(f"--init {cfg.init}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - numpy raises many types for a bad file
        raise ConfigError(f"--init {cfg.init}: cannot read CMX weights: {exc}") from None
    report = load_state(model, state, strict=False)
    backbone = [k for k in model.state_dict() if k.startswith("backbone.")]
    loaded = set(report.loaded)
    if sum(k in loaded for k in backbone) < len(backbone):
        raise ConfigError(f"--init {cfg.init}: its backbone does not fit {cfg.variant} "
                          f"({sum(k in loaded for k in backbone)} of {len(backbone)} backbone tensors fit)")
    fresh = sorted({k.rsplit(".", 1)[0] for k in (*report.missing, *(k for k, _, _ in report.mismatched))})
    log(f"initialised from {cfg.init}: {len(report.loaded)} tensors loaded"
        + (f"; trained afresh (other shape or absent): {', '.join(fresh)}" if fresh else ""))
    return model, f"fine-tuned from {what}" + (f" ({', '.join(fresh)} afresh)" if fresh else "")


# ---------------------------------------------------------------------------------------------------------- train


def train(cfg: SegTrainConfig, out: Path, log: Log = print, resume: bool = False,
          checkpoint_dir: Path | None = None) -> dict:
    """Train, validate and write the segmentation model package into ``out`` (``model.yaml``, fp16 ``weights.pt``,
    ``metrics.json``); returns the metrics. ``checkpoint_dir`` (default: the cache, named after ``out`` and the
    configuration) holds the resumable checkpoint; ``resume`` continues from it."""
    cfg.check()
    import torch

    from ros_mmfusion.core.labels import LABELS
    from ros_mmfusion.core.model_package import write_package
    from ros_mmfusion.core.training import Checkpoints, config_identity, default_checkpoint_dir, fit, run_record

    started = time.time()
    names = [label.name for label in LABELS]
    num_classes = len(names)
    norm = RGBXNormalization(rgb_order="rgb")
    encoder = make_encoder(cfg.x_modality, cfg.x_params)
    neutral = encoder.neutral(cfg.height, cfg.width)
    pad = pad_colours(norm)
    log("loading the training data ...")
    train_ds = load_data(cfg, cfg.train_seeds, cfg.frames_per_seed, cfg.bags, log)
    log("loading the validation data ...")
    val_ds = load_data(cfg, cfg.val_seeds, cfg.val_frames_per_seed, cfg.val_bags, log)
    if cfg.batch > len(train_ds):
        raise ConfigError(f"batch {cfg.batch} exceeds the {len(train_ds)} training frames")
    if int(train_ds.labels.max(initial=0)) >= num_classes:
        raise ConfigError(f"labels hold class id {int(train_ds.labels.max())}, but the label set has {num_classes} "
                          f"classes ({', '.join(names)})")
    model, init_description = initial_model(cfg, num_classes, log)
    device = cfg.loop.device
    model.to(device)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=0)

    def loss_step(iteration: int, rng: np.random.Generator) -> dict:
        idx = rng.choice(len(train_ds), cfg.batch, replace=False)
        augmentations = [Augmentation.draw(rng, cfg.scale_crop, cfg.modality_dropout) for _ in idx]
        rgb, x, y = batch_tensors(train_ds, idx, norm, augmentations, neutral, pad)
        return {"loss": loss_fn(model(rgb.to(device), x.to(device)), y.to(device))}

    def validate(m) -> dict:
        return validation_metrics(m, val_ds, norm, neutral, names, device)

    identity = config_identity(cfg.as_dict())
    checkpoints = Checkpoints(checkpoint_dir or default_checkpoint_dir(out, identity), identity)
    log(f"training {cfg.variant} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
        f"{init_description}) on {len(train_ds)} frames at {cfg.width}x{cfg.height}: {cfg.loop.iterations} "
        f"iterations of {cfg.batch} on {device}; checkpoints in {checkpoints.directory}")
    history = fit(model, loss_step, validate, cfg.loop, checkpoints, resume=resume, log=log)
    final = {k: v for k, v in history["validation"][-1].items() if k != "iteration"}
    record = run_record(cfg.loop, started)
    sources = ([f"synthetic {'+'.join(cfg.scenarios)} seeds {list(cfg.train_seeds)}"] if cfg.scenarios else []) + \
              ([f"bags {[Path(b).name for b in cfg.bags]}"] if cfg.bags else [])
    metrics = {**record, "variant": cfg.variant, "config": cfg.as_dict(), "init": init_description,
               "data": {"train_frames": len(train_ds), "validation_frames": len(val_ds), "train": train_ds.names,
                        "validation": val_ds.names, "size": [cfg.width, cfg.height]},
               "seeds": {"train": list(cfg.train_seeds), "validation": list(cfg.val_seeds)},
               "iterations": cfg.loop.iterations, "validation": final, "history": history}
    fields = {"num_classes": num_classes, "decoder_embed_dim": cfg.decoder_embed_dim,
              "input_size": [cfg.height, cfg.width], "rgb_order": norm.rgb_order, "class_names": names,
              "ignore_index": 0, "x_modality": {"name": cfg.x_modality, "params": cfg.x_params},
              "trained_on": f"ros_mmfusion {', '.join(sources)}, {cfg.width}x{cfg.height}, {cfg.loop.iterations} "
                            f"iterations of {cfg.batch}, {init_description}, {record['date']} on "
                            f"{record['hardware']}",
              "validation_mIoU": {"with_x": final["mIoU"], "neutral_x": final["neutral_x_mIoU"]}}
    write_package(Path(out), "segmentation", cfg.variant, fields, model.state_dict(), metrics)
    log(f"validation mIoU with X {final['mIoU']:.3f}, with neutral X {final['neutral_x_mIoU']:.3f}")
    return metrics


__all__ = ["PACKAGE_FILES", "SCALES", "Augmentation", "Dataset", "SegTrainConfig", "batch_tensors",
           "default_x_params", "evaluate", "initial_model", "load_data", "raw_x", "read_bag_frames",
           "render_frames", "train", "validation_metrics"]
