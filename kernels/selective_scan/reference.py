"""Mamba-1 selective scan in plain PyTorch: the ground truth for the Triton kernels.

Shapes (B batch, T time, Dc channels, N state size, G groups of B/C with Dc % G == 0):

    u, delta, z   [B, T, Dc]    delta > 0 (already through softplus)
    A             [Dc, N]       < 0
    B, C          [B, T, N] (one group) or [B, T, G, N]; channel d reads group d // (Dc // G)
    D             [Dc]
    state         [B, Dc, N]    always fp32

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t
    y_t = C_t · h_t + D u_t,    then y_t ← y_t · silu(z_t) when z is given

The state is diagonal per (channel, state) pair, so there is no cheap quadratic form as in SSD.
`selective_scan_chunked` is the training path: h_t = a_t h_{t-1} + b_t is a composition of affine maps,
scanned in log depth (Hillis–Steele) inside chunks of L tokens, with a Python loop only over the chunks.
It multiplies decays a_t ≤ 1 and never takes exp of a positive cumulative sum, which would overflow.
`selective_scan_recurrent` walks one token at a time and is what the tests trust;
`selective_scan_step` is one token, for decoding. All compute in fp32 and return y in the dtype of u.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

Tensor = torch.Tensor


def selective_scan_chunked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_state: Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Chunked parallel scan. Returns `(y [B, T, Dc], final_state [B, Dc, N] fp32)`."""
    b, T, Dc = u.shape
    N = A.shape[-1]
    Bg, Cg = _grouped(B).float(), _grouped(C).float()  # [B, T, G, N]
    G = Bg.shape[2]
    A, delta = A.float(), delta.float()
    du = (delta * u.float()).unflatten(2, (G, -1)).unsqueeze(-1)  # [B, T, G, Dc/G, 1]
    state = u.new_zeros(b, Dc, N, dtype=torch.float32) if initial_state is None else initial_state.float()

    ys = []
    for start in range(0, T, chunk_size):
        t = slice(start, start + chunk_size)
        # recomputed in backward: the scan would otherwise keep ~2 log2(L) tensors of [B, L, Dc, N]
        y, state = checkpoint(
            _scan_chunk, delta[:, t], du[:, t], A, Bg[:, t], Cg[:, t], state, use_reentrant=False
        )
        ys.append(y)

    y = torch.cat(ys, dim=1)  # [B, T, Dc]
    return _skip_and_gate(y, u.float(), D, z).to(u.dtype), state


def _scan_chunk(
    delta: Tensor, du: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor
) -> tuple[Tensor, Tensor]:
    """One chunk of L tokens: delta [B, L, Dc], du [B, L, G, Dc/G, 1], B/C [B, L, G, N], state [B, Dc, N]."""
    a = torch.exp(delta[..., None] * A)  # [B, L, Dc, N]
    bx = (du * B[:, :, :, None, :]).flatten(2, 3)  # [B, L, Dc, N]
    a, bx = _affine_scan(a, bx)  # token t of the chunk now holds steps 0..t composed
    h = bx + a * state[:, None]  # [B, L, Dc, N]
    y = torch.einsum("blgrn,blgn->blgr", h.unflatten(2, (B.shape[2], -1)), C)  # [B, L, G, Dc/G]
    return y.flatten(2), h[:, -1]


def _affine_scan(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Inclusive scan of the maps h ↦ a_t h + b_t along dim 1, in ⌈log2 L⌉ steps (Hillis–Steele).

    After the step with offset k, position t holds the composition of the maps t-2k+1 … t (clipped at 0).
    Returns (a_0 ⋯ a_t, the h_t reached from h_{-1} = 0).
    """
    k = 1
    while k < a.shape[1]:
        # (a_t, b_t) ∘ (a_{t-k}, b_{t-k}) = (a_t a_{t-k}, a_t b_{t-k} + b_t)
        b = torch.cat([b[:, :k], a[:, k:] * b[:, :-k] + b[:, k:]], dim=1)
        a = torch.cat([a[:, :k], a[:, k:] * a[:, :-k]], dim=1)
        k *= 2
    return a, b


def selective_scan_recurrent(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One token at a time; same arguments and results as `selective_scan_chunked`."""
    state = initial_state
    ys = []
    for t in range(u.shape[1]):
        y, state = selective_scan_step(
            u[:, t], delta[:, t], A, B[:, t], C[:, t], state, D=D, z=None if z is None else z[:, t]
        )
        ys.append(y)
    return torch.stack(ys, dim=1), state


def selective_scan_step(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    state: Tensor | None,
    *,
    D: Tensor | None = None,
    z: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One token: u/delta/z [B, Dc], B/C [B, N] or [B, G, N], state [B, Dc, N] or None (zeros).

    Returns `(y [B, Dc] in the dtype of u, new_state [B, Dc, N] fp32)`.
    """
    b, Dc = u.shape
    N = A.shape[-1]
    Bg, Cg = _grouped(B, time=False).float(), _grouped(C, time=False).float()  # [B, G, N]
    G = Bg.shape[1]
    if state is None:
        state = u.new_zeros(b, Dc, N, dtype=torch.float32)
    delta = delta.float()
    decay = torch.exp(delta[..., None] * A.float())  # [B, Dc, N]
    bx = ((delta * u.float()).unflatten(1, (G, -1, 1)) * Bg[:, :, None, :]).flatten(1, 2)  # [B, Dc, N]
    state = decay * state.float() + bx
    y = torch.einsum("bgrn,bgn->bgr", state.unflatten(1, (G, -1)), Cg).flatten(1)  # [B, Dc]
    return _skip_and_gate(y, u.float(), D, z).to(u.dtype), state


def _grouped(BC: Tensor, time: bool = True) -> Tensor:
    """[B, T, N] -> [B, T, 1, N] (one group); [B, T, G, N] as it is. `time=False`: [B, N] -> [B, 1, N]."""
    return BC.unsqueeze(-2) if BC.ndim == (3 if time else 2) else BC


def _skip_and_gate(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    if D is not None:
        y = y + D.float() * u  # D [Dc] against [..., Dc]
    if z is not None:
        y = y * F.silu(z.float())
    return y
