from __future__ import annotations

import pytest
import rclpy

import ros_mmfusion.ros  # noqa: F401  (DDS profile before init)

from .harness import Graph


@pytest.fixture
def graph():
    rclpy.init()
    g = Graph()
    try:
        yield g
    finally:
        g.close()
        rclpy.try_shutdown()


@pytest.fixture(scope="module")
def tiny_thermal_package(tmp_path_factory) -> str:
    """A thermal segmentation model package with random (seeded) weights at 32x48 input, ONNX exported beside it on
    first use: small enough for a node test, real enough to run every stage."""
    import torch
    import yaml

    from ros_mmfusion.core import labels
    from ros_mmfusion.core.segmentation.artifacts import build_module
    from ros_mmfusion.core.segmentation.pipeline import SegmentationModelSpec

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pkg")
    spec = SegmentationModelSpec(num_classes=len(labels.LABELS), decoder_embed_dim=16, input_size=(32, 48))
    torch.save(build_module(spec, deploy=False).state_dict(), root / "weights.pt")
    (root / "model.yaml").write_text(yaml.safe_dump({
        "format": "ros_mmfusion/model/v1", "task": "segmentation", "variant": "cmx_mit_b0",
        "num_classes": len(labels.LABELS), "decoder_embed_dim": 16, "input_size": [32, 48], "rgb_order": "rgb",
        "weights": "weights.pt", "onnx": "model.onnx", "class_names": labels.label_names(),
        "x_modality": {"name": "thermal", "params": {"window_k": [263.0, 318.0], "kelvin_per_count": 0.01}}}))
    return str(root)
