"""A trial that asked for a fraction of a GPU holds at most that fraction of its memory (on a CUDA GPU)."""

import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.gpu

CHILD = """
import torch
from nas.executor import hold_to_share
hold_to_share({share})
total = torch.cuda.get_device_properties(0).total_memory
x = torch.empty(int(total * {within}), dtype=torch.uint8, device="cuda")  # within the share: fits
del x
try:
    torch.empty(int(total * {beyond}), dtype=torch.uint8, device="cuda")
except torch.OutOfMemoryError:
    print("refused")
else:
    print("allowed")
"""


@pytest.mark.parametrize(("share", "beyond", "expect"), [(0.25, 0.4, "refused"), (1.0, 0.4, "allowed")])
def test_a_quarter_gpu_trial_cannot_take_the_memory_of_its_neighbours(share, beyond, expect):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    code = CHILD.format(share=share, within=0.2, beyond=beyond)  # a process of its own: the limit is per process
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [expect]
