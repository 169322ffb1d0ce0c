"""The kernels on a CUDA GPU: the cases of tests/kernels/ in fp32 and bf16 against an fp64 reference.

Every test here is marked `gpu` and skips without CUDA, so CI stays green. Run them in a pytest process
of their own (tests/kernels/triton turns the Triton interpreter on for the whole process it is collected
in):

    pytest tests/kernels/gpu -k small     # short sequences, odd sizes: quick, and quick under compute-sanitizer
    pytest tests/kernels/gpu -k large     # T = 16384 and the shapes of benchmarks/kernels.py

Tolerances (relative, against the fp64 reference on the same rounded inputs): fp32 1e-3; bf16 2e-2 for
outputs and final states, 5e-2 for gradients. A gradient that is zero in the math is compared absolutely.
"""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def on_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("the Triton interpreter is on in this process (tests/kernels/triton was collected): "
                    "run tests/kernels/gpu in a pytest process of its own")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this folder's tests `gpu` (the hook sees every collected item, so only those under here)."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.gpu)
