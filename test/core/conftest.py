"""Fixtures shared by the core tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def torch_single_thread():
    """PyTorch on one thread for the module, restored after: on the shared 2-core machines, intra-op threads that
    compete with other jobs make small CPU inferences many times slower (measured: 1 s -> 28 s for one test)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def network_onnx(tmp_path_factory):
    """``network_onnx(name)``: the registry network ``name`` exported the way the suite exports it (seed 0, deployed,
    small inputs unless its size is fixed), once per session: the TensorRT graph tests share these exports."""
    import torch

    from ros_mmfusion.core.models.registry import network
    from ros_mmfusion.core.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("network_onnx")
    done: dict[str, object] = {}

    def export(name: str, size: tuple[int, int] = (64, 96)):
        if name not in done:
            spec = network(name)
            torch.manual_seed(0)
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                module = spec.build()
                module = spec.deploy(module) if spec.deploy else module
                done[name] = export_onnx(module, spec.example(1, spec.default_size if spec.fixed_size else size),
                                         folder / f"{name}.onnx", spec.input_names, spec.output_names,
                                         spec.dynamic_axes)
            finally:
                torch.set_num_threads(previous)
        return done[name]

    return export
