"""The segmentation pipeline: weights load, torch and onnxruntime backends agree, resizing and confidence are right."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ros_mmfusion.core.errors import ConfigError, MessageFormatError
from ros_mmfusion.core.geometry import R_OPTICAL_FROM_BODY, PinholeCamera, Transform
from ros_mmfusion.core.modalities.encoders import make_encoder
from ros_mmfusion.core.segmentation.artifacts import build_backend, build_module
from ros_mmfusion.core.segmentation.pipeline import FusionSegmenter, SegmentationModelSpec, postprocess
from ros_mmfusion.core.segmentation.preprocess import encode_x


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
    results = {b: FusionSegmenter(auto, build_backend(auto, b, threads=1))(rgb, x) for b in ("torch", "onnxruntime")}
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
    seg = FusionSegmenter(spec, build_backend(spec, "onnxruntime", threads=1))
    with pytest.raises(MessageFormatError, match="RGB image must be"):
        seg(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8))
    with pytest.raises(MessageFormatError, match="X image must be uint8 and the RGB image's size"):
        seg(np.zeros((10, 10, 3), np.uint8), np.zeros((12, 10), np.uint8))
    with pytest.raises(ConfigError, match="weights file not found"):
        build_module(SegmentationModelSpec(weights="/nonexistent.pt"))
    with pytest.raises(ConfigError, match="backend must be one of"):
        build_backend(spec, "tensorflow")


def test_network_inputs_are_the_pipeline_s_own_preprocessing_and_need_no_backend(spec):
    """INT8 calibration feeds what the running pipeline feeds: the same stage, built without a backend."""
    rng = np.random.default_rng(3)
    samples = [(rng.integers(0, 255, (128, 192, 3), dtype=np.uint8), rng.integers(0, 255, (128, 192, 3),
                                                                                  dtype=np.uint8)) for _ in range(2)]
    inputs_only = FusionSegmenter(spec)
    fed = list(inputs_only.network_inputs(iter(samples)))
    running = FusionSegmenter(spec, build_backend(spec, "onnxruntime", threads=1))
    assert len(fed) == 2
    for feed, (rgb, x) in zip(fed, samples, strict=True):
        want = running.preprocess(rgb, x)
        assert feed.keys() == want.keys() == {"rgb", "x"} and feed["rgb"].shape == (1, 3, 64, 96)
        assert all(np.array_equal(feed[k], want[k]) for k in feed)
    with pytest.raises(ConfigError, match="without a backend"):
        inputs_only(*samples[0])


def test_encode_x_is_the_one_x_encoding_choice_of_node_and_calibration():
    size = (60, 80)
    camera = PinholeCamera.from_fov(160, 120, np.radians(70.0))  # calibrated at twice the RGB resolution
    depth = np.full(size, 4.0, np.float32)
    depth_encoder, hha_encoder = make_encoder("depth"), make_encoder("depth_hha")
    assert np.array_equal(encode_x(depth_encoder, "depth", depth, size, camera=camera, encoding="32FC1"),
                          depth_encoder.encode(depth, None, encoding="32FC1"))
    assert np.array_equal(encode_x(depth_encoder, "depth", None, size), depth_encoder.neutral(*size))
    with pytest.raises(MessageFormatError, match="register X to the colour camera"):
        encode_x(depth_encoder, "depth", np.zeros((30, 40), np.float32), size, encoding="32FC1")
    with pytest.raises(MessageFormatError, match="HHA needs the intrinsics"):
        encode_x(hha_encoder, "depth_hha", depth, size, encoding="32FC1")
    hha_camera = camera.scaled(80, 60)
    assert np.array_equal(encode_x(hha_encoder, "depth_hha", depth, size, camera=hha_camera, encoding="32FC1"),
                          hha_encoder.encode(depth, hha_camera, encoding="32FC1"))
    # LiDAR: projected with the camera rescaled to the RGB image (a wall of points 5 m ahead)
    ys, zs = np.meshgrid(np.linspace(-3, 3, 120), np.linspace(-1, 1, 60))
    points = np.stack([np.full(ys.size, 5.0), ys.ravel(), zs.ravel()], axis=1).astype(np.float32)
    lidar = make_encoder("lidar")
    camera_from_lidar = Transform(R_OPTICAL_FROM_BODY, np.zeros(3))
    got = encode_x(lidar, "lidar", points, size, camera=camera, camera_from_lidar=camera_from_lidar)
    assert got.shape == (*size, 3) and got.any()
    assert np.array_equal(got, lidar.encode(points, camera.scaled(80, 60), camera_from_lidar=camera_from_lidar))
    with pytest.raises(MessageFormatError, match="cannot project LiDAR"):
        encode_x(lidar, "lidar", points, size, camera_from_lidar=camera_from_lidar)
