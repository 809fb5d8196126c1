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
