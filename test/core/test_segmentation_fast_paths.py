"""The segmentation node's per-frame arithmetic, made cheap, gives what the plain formulas give: normalisation through
a look-up table bit for bit, labels of upsampled logits without a full per-pixel argmax, colours through cv2.LUT, and
no confidence computed unless asked for."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ros_mmfusion.core.segmentation.pipeline import class_colours, postprocess, upsampled_labels
from ros_mmfusion.core.segmentation.preprocess import UPSTREAM_CMX, RGBXNormalization, rgb_input, x_input


def reference_normalize(image: np.ndarray, mean, std) -> np.ndarray:
    """The per-pixel float64 formula the look-up table replaces."""
    out = (image.astype(np.float64) / 255.0 - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None], dtype=np.float32)


def reference_postprocess(logits: np.ndarray, size: tuple[int, int]):
    """The plain formulas: bilinear resize of the logits (none at the same size), argmax, softmax of the top."""
    h, w = size
    c = logits.shape[0]
    chw = logits
    if logits.shape[1:] != size:
        hwc = cv2.resize(np.ascontiguousarray(logits.transpose(1, 2, 0)), (w, h), interpolation=cv2.INTER_LINEAR)
        chw = hwc.reshape(h, w, c).transpose(2, 0, 1)
    top = np.max(chw, axis=0)
    return np.argmax(chw, axis=0).astype(np.uint8), (1.0 / np.sum(np.exp(chw - top[None]), axis=0)).astype(np.float32)


def smooth_logits(classes: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """Logits with regions and boundaries, like a network's: coarse noise upsampled."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((classes, size[0] // 8, size[1] // 8)).astype(np.float32) * 4
    return np.stack([cv2.resize(p, (size[1], size[0]), interpolation=cv2.INTER_CUBIC) for p in coarse])


def test_normalisation_by_look_up_table_is_bit_identical_to_the_float64_formula():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    rgb[0, :3] = [[0, 0, 0], [255, 255, 255], [128, 1, 254]]
    for norm in (UPSTREAM_CMX, RGBXNormalization(rgb_order="rgb")):
        fed = rgb[..., ::-1] if norm.rgb_order == "bgr" else rgb
        assert np.array_equal(rgb_input(rgb, norm), reference_normalize(fed, norm.rgb_mean, norm.rgb_std))
    plane = rgb[..., 1]
    expected = reference_normalize(np.repeat(plane[..., None], 3, axis=2), UPSTREAM_CMX.x_mean, UPSTREAM_CMX.x_std)
    assert np.array_equal(x_input(plane), expected)
    assert np.array_equal(x_input(plane[..., None]), expected)
    assert np.array_equal(x_input(rgb), reference_normalize(rgb, UPSTREAM_CMX.x_mean, UPSTREAM_CMX.x_std))
    with pytest.raises(ValueError, match="uint8"):
        x_input(plane.astype(np.uint16))


@pytest.mark.parametrize("size", [(96, 128), (97, 131), (48, 64), (40, 50)])  # 2x, odd upsampling, same, downsampling
def test_labels_of_resized_logits_equal_the_full_argmax(size):
    for seed, classes in ((0, 15), (1, 2), (2, 40)):
        logits = smooth_logits(classes, (48, 64), seed)
        labels, confidence = reference_postprocess(logits, size)
        full = postprocess(logits, size)
        assert np.array_equal(full.labels, labels)
        assert np.array_equal(full.confidence, confidence)
        lean = postprocess(logits, size, confidence=False)
        assert lean.confidence is None and np.array_equal(lean.labels, labels)
    noise = np.random.default_rng(9).standard_normal((15, 48, 64)).astype(np.float32)  # boundaries everywhere
    assert np.array_equal(postprocess(noise, size, confidence=False).labels, reference_postprocess(noise, size)[0])


def test_upsampled_labels_looks_at_the_resized_logits_only_near_class_boundaries():
    logits = np.zeros((3, 8, 8), np.float32)
    logits[1, :, :4] = 5.0  # class 1 on the left, class 2 on the right
    logits[2, :, 4:] = 5.0
    resized = cv2.resize(np.ascontiguousarray(logits.transpose(1, 2, 0)), (16, 16), interpolation=cv2.INTER_LINEAR)
    poisoned = resized.copy()
    poisoned[:, :4, 0] = 100.0  # far from the boundary: the low-resolution argmax decides, these are not read
    poisoned[:, 7:9, 0] = 100.0  # at the boundary: read
    labels = upsampled_labels(logits, (16, 16), poisoned)
    assert (labels[:, :4] == 1).all() and (labels[:, 7:9] == 0).all() and (labels[:, 12:] == 2).all()
    assert np.array_equal(upsampled_labels(logits, (16, 16)), np.argmax(resized, axis=2))  # interpolated itself


@pytest.mark.parametrize("size", [(480, 640), (97, 131), (49, 64), (48, 200)])
def test_labels_interpolated_at_class_boundaries_equal_the_argmax_of_cv2_resize(size):
    """Without the resized logits, the boundary pixels are interpolated from their 2x2 sources with cv2's weights
    (half-pixel centres, clamped borders): the same labels as the argmax of cv2.resize, here on regions and on noise
    (boundaries everywhere), for 2x, odd and one-axis upsampling."""
    for seed, classes in ((0, 15), (1, 2), (2, 40)):
        for logits in (smooth_logits(classes, (48, 64), seed),
                       np.random.default_rng(seed).standard_normal((classes, 48, 64)).astype(np.float32)):
            labels, expected = upsampled_labels(logits, size), reference_postprocess(logits, size)[0]
            resized = cv2.resize(np.ascontiguousarray(logits.transpose(1, 2, 0)), (size[1], size[0]),
                                 interpolation=cv2.INTER_LINEAR).reshape(size[0], size[1], classes)
            rows, cols = np.nonzero(labels != expected)
            picked, best = resized[rows, cols, labels[rows, cols]], resized[rows, cols, expected[rows, cols]]
            assert rows.size <= 2 and np.all(best - picked <= 1e-6 * np.maximum(1.0, np.abs(best))), \
                (rows.size, best - picked)  # only exact ties within float rounding may go the other way


def test_class_colours_are_the_palette_rows():
    rng = np.random.default_rng(4)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    labels = rng.integers(0, 256, (31, 17), dtype=np.uint8)
    assert np.array_equal(class_colours(labels, palette), palette[labels])
    with pytest.raises(ValueError, match="palette"):
        class_colours(labels, palette[:15])
