"""Input checks shared by the public kernel functions: one sentence that names the argument."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def shape_text(dims: str, sizes: Sequence[int | None]) -> str:
    """`shape_text("B T H", (2, 37, None))` -> `"[B=2, T=37, H]"`; a `None` size is free."""
    return "[" + ", ".join(d if s is None else f"{d}={s}" for d, s in zip(dims.split(), sizes)) + "]"


def check_shape(op: str, name: str, tensor: torch.Tensor, dims: str, sizes: Sequence[int | None]) -> None:
    """Raise `ValueError` unless `tensor` has one dimension per letter of `dims`, of the given sizes."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    shape = tuple(tensor.shape)
    if len(shape) != len(sizes) or any(s is not None and s != n for s, n in zip(sizes, shape)):
        raise ValueError(
            f"{op}: {name} must have shape {shape_text(dims, sizes)}, got {list(shape)}"
        )


def check_tokens(op: str, name: str, T: int) -> None:
    if T < 1:
        raise ValueError(f"{op}: {name} must hold at least one token (T ≥ 1), got T={T}")


def check_chunk_size(op: str, chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{op}: chunk_size must be a positive integer, got {chunk_size!r}")


def check_tensors(op: str, x_name: str, tensors: dict[str, torch.Tensor | None]) -> None:
    """Raise unless every given tensor is floating point, on the device of the first one (`x_name`)
    and without an empty dimension. A `None` (an optional input left out) is skipped."""
    device = tensors[x_name].device
    for name, t in tensors.items():
        if t is None:
            continue
        if not t.is_floating_point():
            raise TypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")
        if t.device != device:
            raise ValueError(
                f"{op}: {name} is on {t.device} but {x_name} is on {device}; put every input on one device"
            )
        if t.numel() == 0:
            raise ValueError(f"{op}: {name} must have no empty dimension, got {list(t.shape)}")


TRITON_DTYPES = (torch.float32, torch.bfloat16)


def check_triton_dtypes(op: str, tensors: dict[str, torch.Tensor | None]) -> None:
    """Raise `TypeError` unless every given tensor is fp32 or bf16, the dtypes the Triton kernels take."""
    for name, t in tensors.items():
        if t is not None and t.dtype not in TRITON_DTYPES:
            raise TypeError(
                f"{op}: backend='triton' takes float32 or bfloat16 tensors, but {name} is {t.dtype}; "
                "cast it, or use backend='reference'"
            )
