"""Mamba-2 SSD: the public function and its dispatch. See `reference.py` for the recurrence."""

from __future__ import annotations

import torch

from kernels._backend import resolve_backend
from kernels._checks import check_chunk_size, check_shape, check_tensors, check_tokens, check_triton_dtypes
from kernels.ssd.reference import ssd_chunked
from kernels.ssd.reference import ssd_step as ssd_step_reference

__all__ = ["ssd", "ssd_step"]


def ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    chunk_size: int | None = None,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba-2 state-space dual layer: h_t = exp(dt_t A) h_{t-1} + dt_t x_t ⊗ B_t, y_t = h_t C_t + D x_t.

    Args:
        x: `[B, T, H, P]` fp32 or bf16.
        dt: `[B, T, H]` step sizes, positive (already through softplus).
        A: `[H]` negative decay rates.
        B, C: `[B, T, G, N]`, G dividing H; head h reads group h // (H // G).
        D: `[H]` skip connection, optional.
        z: `[B, T, H, P]` gate, optional: y ← y · silu(z).
        initial_state: `[B, H, P, N]`, optional (zeros).
        return_final_state: also return the state after the last token.
        chunk_size: tokens per chunk, default 64; any T works. The Triton backend runs at most 64.
        backend: None (Triton for CUDA tensors, else the reference), "reference" or "triton".

    Returns:
        y `[B, T, H, P]` in the dtype of x, or `(y, final_state [B, H, P, N] fp32)`.

    Raises:
        ValueError: a shape that does not fit, an empty dimension, inputs on different devices.
        TypeError: a tensor that is not floating point; for the Triton kernels, one that is not fp32/bf16.
    """
    check_shape("ssd", "x", x, "B T H P", (None,) * 4)
    b, T, H, P = x.shape
    check_tokens("ssd", "x", T)
    check_shape("ssd", "dt", dt, "B T H", (b, T, H))
    check_shape("ssd", "A", A, "H", (H,))
    check_shape("ssd", "B", B, "B T G N", (b, T, None, None))
    G, N = B.shape[2:]
    check_shape("ssd", "C", C, "B T G N", (b, T, G, N))
    if H % G != 0:
        raise ValueError(f"ssd: the H={H} heads must split evenly into the G={G} groups of B and C")
    if D is not None:
        check_shape("ssd", "D", D, "H", (H,))
    if z is not None:
        check_shape("ssd", "z", z, "B T H P", (b, T, H, P))
    if initial_state is not None:
        check_shape("ssd", "initial_state", initial_state, "B H P N", (b, H, P, N))
    chunk_size = 64 if chunk_size is None else chunk_size
    check_chunk_size("ssd", chunk_size)
    tensors = {"x": x, "dt": dt, "A": A, "B": B, "C": C, "D": D, "z": z, "initial_state": initial_state}
    check_tensors("ssd", "x", tensors)

    if resolve_backend(backend, x, op="ssd", has_triton=True) == "triton":
        from kernels.ssd.triton import ssd_triton

        check_triton_dtypes("ssd", tensors)
        y, final_state = ssd_triton(
            x, dt, A, B, C, D=D, z=z, initial_state=initial_state, chunk_size=chunk_size
        )
    else:
        y, final_state = ssd_chunked(
            x, dt, A, B, C, D=D, z=z, initial_state=initial_state, chunk_size=chunk_size
        )
    return (y, final_state) if return_final_state else y


def ssd_step(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    state: torch.Tensor | None,
    *,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    inplace: bool = False,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of `ssd` (decoding): h = exp(dt A) h + dt x ⊗ B, y = h C + D x, y ← y·silu(z).

    Args:
        x: `[B, H, P]`; dt: `[B, H]`; A: `[H]`; B, C: `[B, G, N]`; D: `[H]`; z: `[B, H, P]` (as `ssd`, one token).
        state: `[B, H, P, N]`, or None (zeros).
        inplace: advance `state` where it lies and return it (a captured decode step keeps its buffers);
            it must then be a contiguous fp32 tensor.
        backend: None (Triton for CUDA tensors, else the reference), "reference" or "triton". The Triton
            step is one kernel that reads and writes the state once; it takes no gradient (inputs that want
            one, with grad enabled, run on the reference).

    Returns:
        `(y [B, H, P] in the dtype of x, new state [B, H, P, N] fp32)`.
    """
    op = "ssd_step"
    check_shape(op, "x", x, "B H P", (None,) * 3)
    b, H, P = x.shape
    check_shape(op, "dt", dt, "B H", (b, H))
    check_shape(op, "A", A, "H", (H,))
    check_shape(op, "B", B, "B G N", (b, None, None))
    G, N = B.shape[1:]
    check_shape(op, "C", C, "B G N", (b, G, N))
    if H % G != 0:
        raise ValueError(f"{op}: the H={H} heads must split evenly into the G={G} groups of B and C")
    if D is not None:
        check_shape(op, "D", D, "H", (H,))
    if z is not None:
        check_shape(op, "z", z, "B H P", (b, H, P))
    if state is not None:
        check_shape(op, "state", state, "B H P N", (b, H, P, N))
    elif inplace:
        raise ValueError(f"{op}: inplace=True needs a state to advance; pass state=torch.zeros(B, H, P, N)")
    if inplace and (state.dtype != torch.float32 or not state.is_contiguous()):
        raise ValueError(f"{op}: inplace=True keeps the state as it lies, so it must be a contiguous float32 "
                         f"tensor (got {state.dtype}, contiguous={state.is_contiguous()}); pass such a state "
                         "or inplace=False")
    tensors = {"x": x, "dt": dt, "A": A, "B": B, "C": C, "D": D, "z": z, "state": state}
    check_tensors(op, "x", tensors)

    wants_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors.values())
    if resolve_backend(backend, x, op=op) == "triton" and not wants_grad:
        from kernels.ssd.triton import ssd_step_triton

        check_triton_dtypes(op, tensors)
        if inplace:
            work = state
        elif state is None:
            work = x.new_zeros(b, H, P, N, dtype=torch.float32)
        else:  # the kernel advances what it is given: a fresh fp32 copy, made once
            work = state.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
        return ssd_step_triton(x, dt, A, B, C, work, D=D, z=z), work
    y, new_state = ssd_step_reference(x, dt, A, B, C, state, D=D, z=z)
    if inplace:
        state.copy_(new_state)
        new_state = state
    return y, new_state

