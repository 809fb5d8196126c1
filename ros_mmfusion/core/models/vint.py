"""ViNT, the Visual Navigation Transformer (Shah et al., 2023), compatible with the released checkpoint.

Inputs (see ``ros_mmfusion.core.navigation.preprocess`` for how camera frames become these tensors):

* ``obs_img`` ``[B, 3 * (context_size + 1), 64, 85]``: the past ``context_size`` frames and the current frame, oldest
  first, each ImageNet-normalised R,G,B; the current frame is the last three channels.
* ``goal_img`` ``[B, 3, 64, 85]``: the goal image (a topological-map node), normalised the same way.

Pipeline, as in the paper's figure:

1. every observation frame through an EfficientNet-B0 (``obs_encoder``), pooled to 1280-d and compressed by a linear
   layer to ``obs_encoding_size`` (one token per frame);
2. the current frame and the goal stacked to 6 channels through a second EfficientNet-B0 (``goal_encoder``; "early
   fusion"), compressed the same way (the goal token);
3. ``context_size + 2`` tokens + sinusoidal positional encoding through a pre-norm transformer encoder, flattened and
   reduced by a Linear+ReLU chain to 32-d (``MultiLayerDecoder``);
4. a temporal-distance head (``dist``, [B, 1]: predicted number of frames to reach the goal) and an action head that
   predicts ``len_traj_pred`` waypoints ``(x, y, cos yaw, sin yaw)`` ([B, 5, 4]): the network's raw (x, y) are
   per-step displacements, summed cumulatively here, and (cos, sin) are normalised to unit length.

For streaming (one new frame per step) the network splits exactly in two (:class:`ViNTFrameEncoder`,
:class:`ViNTGoalDecoder`): step 1 sees one frame at a time, so a frame's token is computed once and reused while the
frame stays in the context; steps 2-4 depend on the current frame and the goal together (the goal encoder fuses their
channels in its first convolution) and run once per (step, goal). Only that first convolution is linear in the goal
image, so the node's share of it could be cached too: about 3 % of the goal encoder's work, not worth a third graph.

Waypoint units and frame: ``base_link`` of the robot at the current frame (x forward, y left). The released model was
trained with normalised actions, so x, y are in units of the *waypoint spacing*: the deployment
(``deployment/src/navigate.py``) multiplies them by ``MAX_V / RATE`` (robot top speed / control rate; 0.2 m/s / 4 Hz
= 0.05 m in its ``robot.yaml``) to get metres. :func:`waypoints_to_metric` does that scaling.

Checkpoints: the release ships ``vint.pth``, a pickled training dictionary whose ``"model"`` entry is the whole
``ViNT`` module object (possibly wrapped in ``nn.DataParallel``). :func:`load_released_checkpoint` reads it without the
upstream packages installed, :func:`convert_upstream_checkpoint` turns any of the accepted forms into a plain
state_dict, and :func:`load_checkpoint` loads it with a readable report of what does not fit.
"""
from __future__ import annotations

import math
import pickle
import types
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.models.checkpoints import LoadReport, load_state
from ros_mmfusion.core.models.efficientnet import EFFICIENTNET_VARIANTS, EfficientNet, efficientnet
from ros_mmfusion.core.models.imagenet import IMAGENET_MEAN, IMAGENET_STD

VINT_IMAGE_SIZE = (85, 64)
"""(width, height) of every ViNT input frame; tensors are ``[..., 64, 85]``."""


@dataclass(frozen=True)
class ViNTConfig:
    """Constructor arguments, named as in the upstream training config (``train/config/vint.yaml``)."""

    context_size: int = 5
    len_traj_pred: int = 5
    learn_angle: bool = True
    obs_encoder: str = "efficientnet-b0"
    obs_encoding_size: int = 512
    late_fusion: bool = False
    mha_num_attention_heads: int = 4
    mha_num_attention_layers: int = 4
    mha_ff_dim_factor: int = 4

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ViNTConfig:
        """The model fields of an upstream config dictionary; training-only keys (batch size, ...) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class ViNTVariant:
    """A named configuration with what its weights expect (input size, normalisation, resampling) and their origin."""

    config: ViNTConfig
    image_size: tuple[int, int] = VINT_IMAGE_SIZE  # (width, height)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic (PIL)"
    frame_rate_hz: float = 4.0  # rate at which context frames are sampled in the deployment
    weights: str = ""
    notes: dict[str, str] = field(default_factory=dict)


VINT_VARIANTS: dict[str, ViNTVariant] = {
    "vint_default": ViNTVariant(
        ViNTConfig(),
        weights="released deployment/model_weights/vint.pth (robodhruv/visualnav-transformer); "
                "read with load_released_checkpoint",
    ),
    "vint_reduced": ViNTVariant(
        ViNTConfig(obs_encoding_size=256, mha_num_attention_layers=2),
        weights="a reduced variant of the released architecture (256-d tokens, 2 attention layers; 10.9 M used "
                "parameters, 21 MB in fp16): the test fixture state_vint_reduced_fp16.npz (random weights, not "
                "trained) and the packages `mmfusion train navigation` writes by default",
    ),
}


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal encoding (sin on even, cos on odd features), stored as the buffer ``pos_enc`` [1, L, D]."""

    def __init__(self, d_model: int, max_seq_len: int) -> None:
        super().__init__()
        if d_model % 2:
            raise ConfigError(f"positional encoding needs an even model width, got {d_model}")
        position = torch.arange(0, max_seq_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        angles = position * div_term
        table = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(max_seq_len, d_model)
        self.register_buffer("pos_enc", table.unsqueeze(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos_enc[:, : x.shape[1]]


class MultiLayerDecoder(nn.Module):
    """Token sequence -> positional encoding -> pre-norm transformer -> flatten -> Linear+ReLU chain.

    ``sa_layer`` is the template layer that ``nn.TransformerEncoder`` deep-copies into ``sa_decoder.layers.N``; it is
    kept (unused in ``forward``) because the released checkpoint holds its parameters.
    """

    def __init__(self, embed_dim: int, seq_len: int, output_layers: Iterable[int], nhead: int, num_layers: int,
                 ff_dim_factor: int) -> None:
        super().__init__()
        self.positional_encoding = PositionalEncoding(embed_dim, max_seq_len=seq_len)
        self.sa_layer = nn.TransformerEncoderLayer(d_model=embed_dim, nhead=nhead,
                                                   dim_feedforward=ff_dim_factor * embed_dim, activation="gelu",
                                                   batch_first=True, norm_first=True)
        self.sa_decoder = nn.TransformerEncoder(self.sa_layer, num_layers=num_layers, enable_nested_tensor=False)
        widths = [seq_len * embed_dim, embed_dim, *output_layers]
        self.output_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.positional_encoding(tokens)
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            # PyTorch's fused eval-mode encoder kernel ("fast path") has no ONNX form: trace the plain math instead.
            fastpath = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
            try:
                x = self.sa_decoder(x)
            finally:
                torch.backends.mha.set_fastpath_enabled(fastpath)
        else:
            x = self.sa_decoder(x)
        x = x.flatten(start_dim=1)
        for layer in self.output_layers:
            x = F.relu(layer(x))
        return x


def waypoints_from_raw(action_raw: torch.Tensor, len_traj_pred: int, learn_angle: bool = True) -> torch.Tensor:
    """Action-head output [B, T * P] -> waypoints [B, T, P]: cumulative (x, y), unit-length (cos, sin).

    Built with ``cat`` rather than slice assignment so that the exported graph has no ScatterND.
    """
    steps = action_raw.reshape(action_raw.shape[0], len_traj_pred, -1)
    xy = torch.cumsum(steps[:, :, :2], dim=1)
    if not learn_angle:
        return xy
    return torch.cat([xy, F.normalize(steps[:, :, 2:], dim=-1)], dim=-1)


class ViNT(nn.Module):
    """ViNT with the upstream module names; ``forward(obs_img, goal_img) -> (dist [B, 1], waypoints [B, T, 4])``."""

    def __init__(self, config: ViNTConfig = ViNTConfig()) -> None:
        super().__init__()
        self.config = config
        if config.obs_encoder not in EFFICIENTNET_VARIANTS:
            raise ConfigError(f"obs_encoder {config.obs_encoder!r}: only EfficientNet variants are supported "
                              f"({sorted(EFFICIENTNET_VARIANTS)})")
        self.context_size = config.context_size
        self.len_traj_pred = config.len_traj_pred
        self.num_action_params = 4 if config.learn_angle else 2
        self.obs_encoding_size = config.obs_encoding_size

        self.obs_encoder: EfficientNet = efficientnet(config.obs_encoder, in_channels=3)
        self.goal_encoder: EfficientNet = efficientnet("efficientnet-b0", in_channels=3 if config.late_fusion else 6)
        size = config.obs_encoding_size
        obs_width, goal_width = self.obs_encoder.num_features, self.goal_encoder.num_features
        self.compress_obs_enc = nn.Linear(obs_width, size) if obs_width != size else nn.Identity()
        self.compress_goal_enc = nn.Linear(goal_width, size) if goal_width != size else nn.Identity()
        self.decoder = MultiLayerDecoder(size, seq_len=config.context_size + 2, output_layers=[256, 128, 64, 32],
                                         nhead=config.mha_num_attention_heads,
                                         num_layers=config.mha_num_attention_layers,
                                         ff_dim_factor=config.mha_ff_dim_factor)
        self.dist_predictor = nn.Sequential(nn.Linear(32, 1))
        self.action_predictor = nn.Sequential(nn.Linear(32, self.len_traj_pred * self.num_action_params))

    @staticmethod
    def _pooled(encoder: EfficientNet, x: torch.Tensor) -> torch.Tensor:
        return encoder.forward_head(encoder.forward_features(x), pre_logits=True)

    def observation_features(self, obs_img: torch.Tensor) -> torch.Tensor:
        """[B, 3(C+1), H, W] -> pooled features [(C+1) * B, 1280], frame-major (row = t * B + b)."""
        frames = torch.cat(torch.split(obs_img, 3, dim=1), dim=0)
        return self._pooled(self.obs_encoder, frames)

    def goal_features(self, obs_img: torch.Tensor, goal_img: torch.Tensor) -> torch.Tensor:
        """Pooled goal-encoder features [B, 1280] of the current frame stacked with the goal (or the goal alone).
        ``obs_img`` is the whole context [B, 3(C+1), H, W] or the current frame alone [B, 3, H, W] (its last three
        channels are the current frame either way)."""
        x = goal_img if self.config.late_fusion else torch.cat([obs_img[:, -3:], goal_img], dim=1)
        return self._pooled(self.goal_encoder, x)

    def frame_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """Observation tokens [B, E] of single frames [B, 3, H, W]: the obs encoder and its compression, which see one
        frame at a time, so a frame's token is the same at every step it stays in the context."""
        return self.compress_obs_enc(self._pooled(self.obs_encoder, frames))

    def tokens(self, obs_features: torch.Tensor, goal_features: torch.Tensor) -> torch.Tensor:
        """Transformer input [B, C+2, E] (before positional encoding): frame tokens oldest first, then the goal."""
        obs_tokens = self.compress_obs_enc(obs_features)
        obs_tokens = obs_tokens.reshape(self.context_size + 1, -1, self.obs_encoding_size).transpose(0, 1)
        goal_token = self.compress_goal_enc(goal_features).unsqueeze(1)
        return torch.cat([obs_tokens, goal_token], dim=1)

    def forward_intermediates(self, obs_img: torch.Tensor, goal_img: torch.Tensor,
                              context_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every stage's output: obs_features, goal_features, tokens, final_repr, action_raw, dist, action.

        ``context_index`` (``[B]`` int64, optional) pairs goal ``b`` with context ``obs_img[context_index[b]]``, so
        several goals share one context whose frames are encoded once (training with several goals per context
        and scoring a map window do this); without it goal ``b`` pairs with context ``b``."""
        out: dict[str, torch.Tensor] = {}
        out["obs_features"] = self.observation_features(obs_img)
        obs_features = out["obs_features"]
        if context_index is not None:
            obs_img = obs_img[context_index]
            width = obs_features.shape[-1]
            obs_features = obs_features.reshape(self.context_size + 1, -1, width)[:, context_index].reshape(-1, width)
        out["goal_features"] = self.goal_features(obs_img, goal_img)
        out["tokens"] = self.tokens(obs_features, out["goal_features"])
        out.update(self.decode(out["tokens"]))
        return out

    def decode(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Transformer and heads over tokens [B, C+2, E]: final_repr [B, 32], dist [B, 1], action_raw, action."""
        out = {"final_repr": self.decoder(tokens)}
        out["dist"] = self.dist_predictor(out["final_repr"])
        out["action_raw"] = self.action_predictor(out["final_repr"])
        out["action"] = waypoints_from_raw(out["action_raw"], self.len_traj_pred, self.config.learn_angle)
        return out

    def forward(self, obs_img: torch.Tensor, goal_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.forward_intermediates(obs_img, goal_img)
        return out["dist"], out["action"]

    def unused_state_keys(self) -> list[str]:
        """state_dict keys that ``forward`` never reads (ImageNet classifiers, the decoder's template layer)."""
        return [k for k in self.state_dict()
                if k.startswith(("obs_encoder._fc.", "goal_encoder._fc.", "decoder.sa_layer."))]


class ViNTFrameEncoder(nn.Module):
    """The first half of ViNT split for streaming: ``forward(frame_img [B, 3, H, W]) -> frame_token [B, E]``, one
    observation token per camera frame (:meth:`ViNT.frame_tokens`). ViNT encodes every context frame on its own, so a
    navigation pipeline encodes each frame once, when it enters the context, and reuses its token at the following
    ``context_size`` steps. Shares ``vint``'s weights (its state_dict is unchanged)."""

    def __init__(self, vint: ViNT) -> None:
        super().__init__()
        self.vint = vint

    def forward(self, frame_img: torch.Tensor) -> torch.Tensor:
        return self.vint.frame_tokens(frame_img)


class ViNTGoalDecoder(nn.Module):
    """The second half: ``forward(context_tokens [B, C+1, E], current_img [B, 3, H, W], goal_img [B, 3, H, W]) ->
    (dist [B, 1], action [B, T, 4])``: the goal encoder over the current frame stacked with the goal (early fusion,
    so it runs for every (step, goal) pair; ``current_img`` is unused with ``late_fusion``), then the transformer and
    heads over the context's cached tokens (oldest first) and the goal token. With :class:`ViNTFrameEncoder` it
    computes exactly what ``ViNT.forward`` does (up to float rounding)."""

    def __init__(self, vint: ViNT) -> None:
        super().__init__()
        self.vint = vint

    def forward(self, context_tokens: torch.Tensor, current_img: torch.Tensor,
                goal_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vint = self.vint
        goal_token = vint.compress_goal_enc(vint.goal_features(current_img, goal_img)).unsqueeze(1)
        out = vint.decode(torch.cat([context_tokens, goal_token], dim=1))
        return out["dist"], out["action"]


def create_vint(name: str = "vint_default") -> ViNT:
    """A named variant, randomly initialised, in eval mode; load weights with :func:`load_checkpoint`."""
    if name not in VINT_VARIANTS:
        raise ConfigError(f"unknown ViNT variant {name!r}; known: {sorted(VINT_VARIANTS)}")
    return ViNT(VINT_VARIANTS[name].config).eval()


def waypoints_to_metric(waypoints: np.ndarray | torch.Tensor, waypoint_spacing_m: float):
    """Normalised waypoints [..., 4] or [..., 2] -> x, y in metres (``base_link``); cos, sin are left as they are.

    ``waypoint_spacing_m`` is the deployment's ``MAX_V / RATE`` (metres travelled per context frame at top speed).
    """
    scale = [waypoint_spacing_m, waypoint_spacing_m] + [1.0] * (waypoints.shape[-1] - 2)
    if isinstance(waypoints, torch.Tensor):
        return waypoints * waypoints.new_tensor(scale)
    return np.asarray(waypoints) * np.asarray(scale, dtype=np.asarray(waypoints).dtype)


ONNX_INPUT_NAMES = ("obs_img", "goal_img")
ONNX_OUTPUT_NAMES = ("dist", "action")


def vint_onnx_spec(model: ViNT, batch: int = 1, image_size: tuple[int, int] = VINT_IMAGE_SIZE) -> dict[str, Any]:
    """Keyword arguments for ``ros_mmfusion.core.onnx_export.export_onnx``: example inputs, names, dynamic batch.

    The batch axis is dynamic because topological-map localisation scores one context against several goal images
    at once (the context repeated per candidate node).
    """
    width, height = image_size
    obs = torch.zeros(batch, 3 * (model.context_size + 1), height, width)
    goal = torch.zeros(batch, 3, height, width)
    names = (*ONNX_INPUT_NAMES, *ONNX_OUTPUT_NAMES)
    return {"example_inputs": (obs, goal), "input_names": ONNX_INPUT_NAMES, "output_names": ONNX_OUTPUT_NAMES,
            "dynamic_axes": {name: {0: "batch"} for name in names}}


FRAME_ENCODER_INPUT_NAMES = ("frame_img",)
FRAME_ENCODER_OUTPUT_NAMES = ("frame_token",)
GOAL_DECODER_INPUT_NAMES = ("context_tokens", "current_img", "goal_img")
GOAL_DECODER_OUTPUT_NAMES = ONNX_OUTPUT_NAMES


def vint_split_onnx_specs(model: ViNT, image_size: tuple[int, int] = VINT_IMAGE_SIZE
                          ) -> tuple[tuple[nn.Module, dict[str, Any]], tuple[nn.Module, dict[str, Any]]]:
    """``(module, export_onnx keyword arguments)`` of the two graphs of the split ViNT (:class:`ViNTFrameEncoder`,
    :class:`ViNTGoalDecoder`), each with a dynamic batch: the frames entering the context at one step, and the goals
    of the localisation window."""
    width, height = image_size
    frames = torch.zeros(1, 3, height, width)
    tokens = torch.zeros(1, model.context_size + 1, model.obs_encoding_size)
    encoder_names = (*FRAME_ENCODER_INPUT_NAMES, *FRAME_ENCODER_OUTPUT_NAMES)
    decoder_names = (*GOAL_DECODER_INPUT_NAMES, *GOAL_DECODER_OUTPUT_NAMES)
    return ((ViNTFrameEncoder(model).eval(),
             {"example_inputs": (frames,), "input_names": FRAME_ENCODER_INPUT_NAMES,
              "output_names": FRAME_ENCODER_OUTPUT_NAMES, "dynamic_axes": {n: {0: "batch"} for n in encoder_names}}),
            (ViNTGoalDecoder(model).eval(),
             {"example_inputs": (tokens, frames, frames), "input_names": GOAL_DECODER_INPUT_NAMES,
              "output_names": GOAL_DECODER_OUTPUT_NAMES, "dynamic_axes": {n: {0: "batch"} for n in decoder_names}}))


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # nn.DataParallel / DistributedDataParallel, torch.compile


class _StandIn:
    """Takes the place of any class or callable a checkpoint names that is not on the allow-list.

    It is never the real thing: calling it or building it only records the arguments and state, so nothing from the
    pickle runs. A pickled ``nn.Module`` becomes a stand-in whose ``__dict__`` holds ``_parameters``, ``_buffers``
    and ``_modules``, which is all :func:`convert_upstream_checkpoint` needs.
    """

    qualified_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _StandIn:
        obj = object.__new__(cls)
        obj.__dict__["_stand_in_args"] = args
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
            for part in state:
                self.__dict__.update(part or {})
        elif isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_stand_in_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_stand_in_items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("_stand_in_list", []).append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.__dict__.setdefault("_stand_in_list", []).extend(values)

    def __repr__(self) -> str:
        return f"<stand-in for {self.qualified_name}>"


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "bytearray"),
    ("_codecs", "encode"),  # how protocol 2 spells a bytes object
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"), ("torch", "device"),
}


class _CheckpointUnpickler(pickle.Unpickler):
    """Resolves only tensors, dtypes and plain containers; every other global becomes a :class:`_StandIn`."""

    _stand_ins: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins"}.get(module, module)  # protocol-2 pickles use Python 2 names
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout,
                                                                         torch.memory_format)):
            return getattr(torch, name)
        qualified = f"{module}.{name}"
        if qualified not in self._stand_ins:
            self._stand_ins[qualified] = type(name, (_StandIn,), {"qualified_name": qualified, "__module__": __name__})
        return self._stand_ins[qualified]


def _checkpoint_pickle_module() -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load`` (which keeps its own storage handling on top of our ``find_class``)."""
    module = types.ModuleType("ros_mmfusion_checkpoint_pickle")
    module.Unpickler = _CheckpointUnpickler
    module.load = lambda file, **kwargs: _CheckpointUnpickler(file, **kwargs).load()
    module.__dict__.update(UnpicklingError=pickle.UnpicklingError)
    return module


def load_released_checkpoint(path: str | Path) -> OrderedDict[str, torch.Tensor]:
    """The plain state_dict of a released ViNT ``.pth`` (a pickled training dict holding the module object).

    Neither the upstream training package (``vint_train``) nor ``efficientnet_pytorch`` is needed or imported: their
    classes are replaced by inert stand-ins, and only tensors, dtypes and containers are reconstructed, so loading a
    checkpoint executes none of its code. Tensors land on the CPU. Save the result with ``torch.save`` to get a
    checkpoint that ``torch.load(..., weights_only=True)`` accepts.
    """
    obj = torch.load(str(path), map_location="cpu", pickle_module=_checkpoint_pickle_module(), weights_only=False)
    return convert_upstream_checkpoint(obj)


def _is_tensor_like(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _module_tree_state(node: Any, prefix: str, out: OrderedDict[str, torch.Tensor]) -> None:
    """state_dict of an unpickled module stand-in: parameters, persistent buffers, then children, recursively."""
    attrs = vars(node)
    for name, value in (attrs.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = value.detach()
    skip = attrs.get("_non_persistent_buffers_set") or set()
    for name, value in (attrs.get("_buffers") or {}).items():
        if value is not None and name not in skip:
            out[prefix + name] = value.detach()
    for name, child in (attrs.get("_modules") or {}).items():
        if child is not None:
            _module_tree_state(child, f"{prefix}{name}.", out)


def _strip_wrapper_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for p in _WRAPPER_PREFIXES:
            if key.startswith(p):
                key, stripped = key[len(p):], True
    return key


def convert_upstream_checkpoint(obj: Any) -> OrderedDict[str, torch.Tensor]:
    """Any accepted checkpoint form -> a plain ``{key: tensor}`` state_dict with this module's key names.

    Accepted: a bare state_dict (tensors or numpy arrays); a dict holding one under ``"model"`` or ``"state_dict"``;
    a module object (an ``nn.Module`` or the stand-in tree :func:`load_released_checkpoint` unpickles), possibly
    wrapped in ``nn.DataParallel``. ``module.`` / ``_orig_mod.`` prefixes are removed. ViNT's key names equal
    upstream's, so no renaming is needed; numpy arrays become tensors, dtypes are kept.
    """
    if isinstance(obj, nn.Module):
        raw: Mapping[str, Any] = obj.state_dict()
    elif isinstance(obj, _StandIn) and "_modules" in vars(obj):
        raw = OrderedDict()
        _module_tree_state(obj, "", raw)
    elif isinstance(obj, Mapping) and obj and all(_is_tensor_like(v) for v in obj.values()):
        raw = obj
    elif isinstance(obj, Mapping) and ("model" in obj or "state_dict" in obj):
        return convert_upstream_checkpoint(obj["model"] if "model" in obj else obj["state_dict"])
    else:
        what = f"a mapping with keys {sorted(map(str, obj))[:10]}" if isinstance(obj, Mapping) else repr(type(obj))
        raise ConfigError(f"checkpoint: expected a state_dict, a dict with 'model' or 'state_dict', or a module "
                          f"object; got {what}")
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in raw.items():
        state[_strip_wrapper_prefixes(key)] = torch.as_tensor(value) if isinstance(value, np.ndarray) else value
    return state


def load_checkpoint(model: nn.Module, obj: Any, strict: bool = True, allow_missing: Iterable[str] = ()) -> LoadReport:
    """Load any form :func:`convert_upstream_checkpoint` accepts into ``model``; floats are cast to the model's dtype.

    ``strict`` raises ``ConfigError`` naming every missing key (except those in ``allow_missing``, e.g.
    ``model.unused_state_keys()`` for a checkpoint that dropped them), every unexpected key and every shape mismatch
    (usually the wrong variant: ``vint_default`` has 512-d tokens and 4 layers).
    """
    return load_state(model, convert_upstream_checkpoint(obj), strict, allow_missing)


__all__ = ["FRAME_ENCODER_INPUT_NAMES", "FRAME_ENCODER_OUTPUT_NAMES", "GOAL_DECODER_INPUT_NAMES",
           "GOAL_DECODER_OUTPUT_NAMES", "LoadReport", "MultiLayerDecoder", "ONNX_INPUT_NAMES", "ONNX_OUTPUT_NAMES",
           "PositionalEncoding", "VINT_VARIANTS", "ViNT", "ViNTConfig", "ViNTFrameEncoder", "ViNTGoalDecoder",
           "ViNTVariant", "convert_upstream_checkpoint", "create_vint", "load_checkpoint", "load_released_checkpoint",
           "vint_onnx_spec", "vint_split_onnx_specs", "waypoints_from_raw", "waypoints_to_metric"]
