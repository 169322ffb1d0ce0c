"""Mamba-1 selective scan: the public function and its dispatch. See `reference.py` for the recurrence."""

from __future__ import annotations

import torch

from kernels._backend import resolve_backend
from kernels._checks import check_shape, check_tensors, check_tokens, check_triton_dtypes, shape_text
from kernels.selective_scan.reference import selective_scan_blocked, selective_scan_step

__all__ = ["selective_scan", "selective_scan_step"]


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba-1 selective scan: h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t, y_t = C_t · h_t + D u_t.

    Args:
        u: `[B, T, Dc]` fp32 or bf16.
        delta: `[B, T, Dc]` step sizes, positive (already through softplus).
        A: `[Dc, N]` negative decay rates.
        B, C: `[B, T, N]`, or `[B, T, G, N]` with G dividing Dc; channel d reads group d // (Dc // G).
        D: `[Dc]` skip connection, optional.
        z: `[B, T, Dc]` gate, optional: y ← y · silu(z).
        initial_state: `[B, Dc, N]`, optional (zeros).
        return_final_state: also return the state after the last token.
        backend: None (Triton for CUDA tensors, else the reference), "reference" or "triton".

    Returns:
        y `[B, T, Dc]` in the dtype of u, or `(y, final_state [B, Dc, N] fp32)`.

    Raises:
        ValueError: a shape that does not fit, an empty dimension, inputs on different devices.
        TypeError: a tensor that is not floating point; for the Triton kernels, one that is not fp32/bf16.
    """
    op = "selective_scan"
    check_shape(op, "u", u, "B T Dc", (None,) * 3)
    b, T, Dc = u.shape
    check_tokens(op, "u", T)
    check_shape(op, "delta", delta, "B T Dc", (b, T, Dc))
    check_shape(op, "A", A, "Dc N", (Dc, None))
    N = A.shape[1]
    if not isinstance(B, torch.Tensor) or not (
        B.shape == (b, T, N) or (B.ndim == 4 and B.shape[:2] == (b, T) and B.shape[3] == N)
    ):
        got = list(B.shape) if isinstance(B, torch.Tensor) else type(B).__name__
        raise ValueError(
            f"{op}: B must have shape {shape_text('B T N', (b, T, N))} "
            f"or {shape_text('B T G N', (b, T, None, N))}, got {got}"
        )
    grouped = B.ndim == 4
    check_shape(op, "C", C, "B T G N" if grouped else "B T N", tuple(B.shape))
    G = B.shape[2] if grouped else 1
    if Dc % G != 0:
        raise ValueError(f"{op}: the Dc={Dc} channels must split evenly into the G={G} groups of B and C")
    if D is not None:
        check_shape(op, "D", D, "Dc", (Dc,))
    if z is not None:
        check_shape(op, "z", z, "B T Dc", (b, T, Dc))
    if initial_state is not None:
        check_shape(op, "initial_state", initial_state, "B Dc N", (b, Dc, N))

    tensors = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "initial_state": initial_state}
    check_tensors(op, "u", tensors)

    if resolve_backend(backend, u, op=op, has_triton=True) == "triton":
        from kernels.selective_scan.triton import selective_scan_triton

        check_triton_dtypes(op, tensors)
        y, final_state = selective_scan_triton(u, delta, A, B, C, D=D, z=z, initial_state=initial_state)
    else:
        y, final_state = selective_scan_blocked(u, delta, A, B, C, D=D, z=z, initial_state=initial_state)
    return (y, final_state) if return_final_state else y
