"""The Triton kernels on the CPU, under the Triton interpreter, which is how CI tests them.

`TRITON_INTERPRET=1` must hold when a `@triton.jit` function is defined (it decides then whether it
compiles for a GPU or interprets): ours, and those of triton's own standard library (tl.cumsum,
tl.sigmoid, ...), defined when triton is first imported. So it is set here, when pytest collects this
folder, before its test modules import the kernels. Whatever was defined earlier for the GPU, because
another test imported triton or a kernel module first in the same process, is defined again. The
variable holds while the tests of this folder run and is put back as it was after each module.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest

_BEFORE = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"



def _redefine_for_the_interpreter() -> None:
    if "triton" in sys.modules:
        import triton.language as tl
        import triton.language.standard as standard
        from triton.runtime.interpreter import InterpretedFunction

        if not isinstance(standard.cumsum, InterpretedFunction):
            before = dict(vars(standard))
            importlib.reload(standard)
            for name, value in vars(standard).items():
                if name in vars(tl) and vars(tl)[name] is before.get(name):
                    setattr(tl, name, value)
    ops = ("ssd", "mlstm", "selective_scan", "delta", "conv1d")
    for name in ("kernels._triton", *(f"kernels.{op}.triton" for op in ops)):
        if name in sys.modules:
            importlib.reload(sys.modules[name])


_redefine_for_the_interpreter()


def _restore() -> None:
    if _BEFORE is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _BEFORE


def pytest_configure(config) -> None:
    """In pytest-xdist's controller, which loads this file when the folder is named on the command line but collects
    nothing: the environment put back at once, or the workers it starts, and every process they start, would inherit
    the variable (and `benchmarks/compile_sm90.py`, started by tests/test_benchmarks.py, compile interpreted
    functions). The workers set it again when they load this file."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        _restore()


def pytest_collection_finish(session) -> None:
    """Collected: the tests of other folders that run before these (and the processes they start) see the
    environment as it was; the fixture below sets the variable again for these."""
    _restore()


@pytest.fixture(autouse=True, scope="module")
def triton_interpreter():
    os.environ["TRITON_INTERPRET"] = "1"
    yield
    _restore()
