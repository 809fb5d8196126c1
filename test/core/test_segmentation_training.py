"""The segmentation trainer's pieces: scale-and-crop augmentation, padding, modality dropout, stamp pairing and
``--init`` loading."""
from __future__ import annotations

import numpy as np
import pytest

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.segmentation.preprocess import RGBXNormalization, rgbx_inputs
from ros_mmfusion.core.segmentation.training import (
    Augmentation,
    SegTrainConfig,
    initial_model,
    pad_colours,
)


def _frame(h: int = 24, w: int = 32):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    x = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    labels = np.zeros((h, w), np.uint8)
    labels[:, : w // 2] = 1
    labels[:, w // 2:] = 4
    return rgb, x, labels


def test_identity_augmentation_changes_nothing():
    rgb, x, labels = _frame()
    neutral = np.full_like(x, 7)
    out = Augmentation().apply(rgb, x, labels, neutral, pad_colours(RGBXNormalization(rgb_order="rgb")))
    for got, want in zip(out, (rgb, x, labels), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("scale", [0.5, 0.75, 1.25, 1.75])
@pytest.mark.parametrize("where", [(0.0, 0.0), (1.0, 1.0), (0.3, 0.8)])
def test_scale_and_crop_keep_the_size_and_pad_labels_with_ignore(scale, where):
    rgb, x, labels = _frame()
    pad = pad_colours(RGBXNormalization(rgb_order="rgb"))
    out_rgb, out_x, out_labels = Augmentation(scale=scale, crop=where).apply(rgb, x, labels, x, pad)
    assert out_rgb.shape == rgb.shape and out_x.shape == x.shape and out_labels.shape == labels.shape
    assert set(np.unique(out_labels)) <= {0, 1, 4}, "nearest-neighbour labels: no invented class ids"
    padded = out_labels == 0
    if scale < 1:
        # a smaller image sits inside the window: the rest is ignored (label 0) and padded with the mean colour
        assert padded.sum() == labels.size - round(24 * scale) * round(32 * scale)
        assert (out_rgb[padded] == pad[0]).all() and (out_x[padded] == pad[1]).all()
    else:
        assert not padded.any(), "an enlarged image covers the whole window"


def test_padding_normalises_to_zero():
    for order in ("rgb", "bgr"):
        norm = RGBXNormalization(rgb_order=order)
        rgb_pad, x_pad = pad_colours(norm)
        r, xx = rgbx_inputs(np.broadcast_to(rgb_pad, (4, 4, 3)).copy(), np.broadcast_to(x_pad, (4, 4, 3)).copy(),
                            norm)
        assert np.abs(r).max() < 0.01 and np.abs(xx).max() < 0.01


def test_flip_gain_and_modality_dropout():
    rgb, x, labels = _frame()
    neutral = np.full_like(x, 7)
    out_rgb, out_x, out_labels = Augmentation(flip=True, gain=0.5, drop_x=True).apply(
        rgb, x, labels, neutral, pad_colours(RGBXNormalization()))
    np.testing.assert_array_equal(out_labels, labels[:, ::-1])
    np.testing.assert_array_equal(out_x, neutral)
    np.testing.assert_array_equal(out_rgb, (rgb[:, ::-1].astype(np.float32) * 0.5).astype(np.uint8))


def test_drawn_augmentations_use_cmx_scales_and_the_dropout_rate():
    rng = np.random.default_rng(1)
    drawn = [Augmentation.draw(rng, True, 0.25) for _ in range(2000)]
    assert {a.scale for a in drawn} == {0.5, 0.75, 1.0, 1.25, 1.5, 1.75}
    assert 0.2 < np.mean([a.drop_x for a in drawn]) < 0.3
    assert {a.scale for a in (Augmentation.draw(rng, False, 0.0) for _ in range(50))} == {1.0}


def test_pairing_needs_stamps_within_the_tolerance():
    from ros_mmfusion.core.stamps import nearest_stamp as _nearest

    stamps = np.array([100, 200, 300], np.int64)
    assert _nearest(stamps, 205, 10) == 1
    assert _nearest(stamps, 251, 10) is None
    assert _nearest(stamps, 0, 100) == 0 and _nearest(stamps, 10_000, 100) is None
    assert _nearest(np.zeros(0, np.int64), 5, 100) is None


def test_init_from_another_variant_is_refused(tmp_path):
    import torch

    from ros_mmfusion.core.models.cmx import build_cmx

    path = tmp_path / "b1.pt"
    torch.save(build_cmx("cmx_mit_b1", num_classes=15, decoder_embed_dim=64).state_dict(), path)
    with pytest.raises(ConfigError, match="backbone does not fit cmx_mit_b0"):
        initial_model(SegTrainConfig(init=str(path), decoder_embed_dim=64), 15, log=lambda _: None)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=f"--init {path}"):
        initial_model(SegTrainConfig(init=str(path)), 15, log=lambda _: None)
