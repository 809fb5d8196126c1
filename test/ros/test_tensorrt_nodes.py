"""Every node that runs a network accepts ``backend: tensorrt`` and, where TensorRT is absent (as on these
machines), refuses at start-up in one line naming it, before exporting anything (issue 19)."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.parameter import Parameter

from ros_mmfusion.core.errors import ConfigError
from ros_mmfusion.core.inference.tensorrt_support import tensorrt_unavailable

pytestmark = pytest.mark.skipif(not tensorrt_unavailable(), reason="TensorRT is installed here: the refusal is moot")


def _goal_image(tmp_path):
    import cv2

    path = tmp_path / "goal.png"
    cv2.imwrite(str(path), np.full((48, 64, 3), 120, np.uint8))
    return str(path)


@pytest.mark.parametrize("node", ["fusion_segmentation", "detection3d", "vint_navigation"])
def test_backend_tensorrt_is_one_line_at_start_up_without_tensorrt(graph, node, tmp_path, monkeypatch):
    import importlib

    from ros_mmfusion.nodes.registry import NODES

    monkeypatch.setenv("MMFUSION_CACHE_DIR", str(tmp_path / "cache"))
    module, class_name = NODES[node][:2]
    cls = getattr(importlib.import_module(module), class_name)
    params = {"backend": "tensorrt"}
    if node == "vint_navigation":
        params["goal_image"] = _goal_image(tmp_path)
    with pytest.raises(ConfigError) as info:
        cls(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    text = str(info.value)
    assert "backend tensorrt: TensorRT is not installed" in text and "\n" not in text, text
    assert not (tmp_path / "cache").exists(), "refused before exporting anything"
