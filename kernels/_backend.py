"""Which implementation of an op runs: `backend=None` picks Triton for CUDA tensors, the reference otherwise,
unless `KERNELS_BACKEND` (read at each call) names one for every op that has it: a whole model on the Triton
kernels under the interpreter, say (`KERNELS_BACKEND=triton TRITON_INTERPRET=1`)."""

from __future__ import annotations

import os
from typing import Literal

import torch

Backend = Literal["reference", "triton"]
BACKENDS: tuple[str, ...] = ("reference", "triton")


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str | None, x: torch.Tensor, *, op: str, has_triton: bool = True) -> Backend:
    """Return the backend that runs `op` on tensors like `x`.

    `has_triton=False` marks an op whose Triton kernels do not exist yet: `None` then means the reference.
    """
    if backend is None:
        forced = os.environ.get("KERNELS_BACKEND")
        if forced and forced not in BACKENDS:
            raise ValueError(f"KERNELS_BACKEND={forced!r} is not a backend; use one of {', '.join(BACKENDS)}")
        if not forced or not has_triton:
            return "triton" if x.is_cuda and has_triton and triton_available() else "reference"
        backend = forced
    if backend not in BACKENDS:
        raise ValueError(f"{op}: unknown backend {backend!r}; use one of {', '.join(BACKENDS)} or None")
    if backend == "triton":
        if not has_triton:
            raise NotImplementedError(f"{op}: there is no Triton implementation yet; use backend='reference'")
        if not triton_available():
            raise RuntimeError(f"{op}: backend='triton' needs the triton package (pip install triton)")
        if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError(
                f"{op}: backend='triton' on CPU tensors runs only under the Triton interpreter; "
                "set TRITON_INTERPRET=1 before Python starts"
            )
    return backend  # type: ignore[return-value]
