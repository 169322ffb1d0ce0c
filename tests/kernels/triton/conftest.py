"""The Triton kernels on the CPU, under the Triton interpreter, which is how CI tests them.

`TRITON_INTERPRET=1` must hold when a kernel module is imported (its `@triton.jit` decides then
whether it compiles for a GPU or interprets), so it is set here, when pytest collects this folder and
before its test modules import the kernels; importing triton itself earlier does not matter. A kernel
module that some other test imported earlier, decorated for the GPU, is imported again. The variable
holds while the tests of this folder run and is put back as it was after each module.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest

_BEFORE = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"

_KERNEL_MODULES = ("kernels._triton", "kernels.ssd.triton", "kernels.mlstm.triton", "kernels.selective_scan.triton")
for _name in _KERNEL_MODULES:
    if _name in sys.modules:
        importlib.reload(sys.modules[_name])


@pytest.fixture(autouse=True, scope="module")
def triton_interpreter():
    os.environ["TRITON_INTERPRET"] = "1"
    yield
    if _BEFORE is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _BEFORE
