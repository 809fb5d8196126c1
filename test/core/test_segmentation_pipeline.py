"""The segmentation pipeline: weights load, torch and onnxruntime backends agree, resizing and confidence are right."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.segmentation import FusionSegmenter, SegmentationModelSpec, build_module, postprocess


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("seg")
    base = SegmentationModelSpec(num_classes=5, decoder_embed_dim=32, input_size=(64, 96))
    weights = tmp / "weights.pt"
    torch.save(build_module(base, deploy=False).state_dict(), weights)
    return SegmentationModelSpec(num_classes=5, decoder_embed_dim=32, input_size=(64, 96), weights=str(weights),
                                 onnx=str(tmp / "model.onnx"))


def test_torch_and_onnxruntime_backends_give_the_same_segmentation(spec, monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (128, 192, 3), dtype=np.uint8)
    x = rng.integers(0, 255, (128, 192, 3), dtype=np.uint8)
    auto = SegmentationModelSpec(**{**spec.__dict__, "onnx": ""})  # exported on first use into the cache
    results = {b: FusionSegmenter(auto, backend=b, threads=1)(rgb, x) for b in ("torch", "onnxruntime")}
    assert list(tmp_path.glob("onnx/cmx_mit_b0-*.onnx")), "the ONNX file is cached"
    a, b = results["torch"], results["onnxruntime"]
    assert a.labels.shape == (128, 192) and a.labels.dtype == np.uint8
    assert np.mean(a.labels == b.labels) > 0.999
    assert np.allclose(a.confidence, b.confidence, atol=1e-4)
    assert 1.0 / 5 <= a.confidence.min() and a.confidence.max() <= 1.0


def test_postprocess_resizes_logits_and_reports_softmax_confidence():
    logits = np.zeros((3, 2, 2), np.float32)
    logits[2, 0, 0] = 10.0
    logits[1, 1, 1] = np.log(2.0)  # p = 2 / (1 + 2 + 1)
    out = postprocess(logits, (2, 2))
    assert out.labels.tolist() == [[2, 0], [0, 1]]
    assert out.confidence[1, 1] == pytest.approx(0.5) and out.confidence[0, 1] == pytest.approx(1 / 3)
    big = postprocess(logits, (8, 8))
    assert big.labels.shape == (8, 8) and big.labels[0, 0] == 2 and big.labels[7, 7] == 1


def test_bad_inputs_and_missing_weights_are_clear_errors(spec):
    seg = FusionSegmenter(spec, backend="onnxruntime", threads=1)
    with pytest.raises(MessageFormatError, match="RGB image must be"):
        seg(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8))
    with pytest.raises(MessageFormatError, match="X image must be uint8 and the RGB image's size"):
        seg(np.zeros((10, 10, 3), np.uint8), np.zeros((12, 10), np.uint8))
    with pytest.raises(ConfigError, match="weights file not found"):
        build_module(SegmentationModelSpec(weights="/nonexistent.pt"))
    with pytest.raises(ConfigError, match="backend must be one of"):
        FusionSegmenter(spec, backend="tensorflow")
