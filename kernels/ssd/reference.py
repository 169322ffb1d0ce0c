"""Mamba-2 SSD (state-space duality) in plain PyTorch: the ground truth for the Triton kernels.

Shapes (B batch, T time, H heads, P head dim, G groups of B/C with H % G == 0, N state size):

    x      [B, T, H, P]     dt [B, T, H]  (> 0, already through softplus)     A [H]  (< 0)
    B, C   [B, T, G, N]     head h reads group h // (H // G)
    D      [H]              z  [B, T, H, P]
    state  [B, H, P, N]     fp32 (fp64 for fp64 inputs)

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t ⊗ B_t
    y_t = h_t C_t + D x_t,    then y_t ← y_t · silu(z_t) when z is given

`ssd_chunked` is the training path (after `ssd_minimal.py` of state-spaces/mamba): inside a chunk of L
tokens the recurrence is unrolled into a masked L × L decay matrix, and only the chunk-end states run
recurrently. `ssd_recurrent` walks one token at a time and is what the tests trust; `ssd_step` is one
token, for decoding. All three compute in fp32 (fp64 for fp64 inputs, the tests' ground truth) and
return y in the dtype of x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels._precision import compute_dtype

Tensor = torch.Tensor


def ssd_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_state: Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Chunked SSD. Returns `(y [B, T, H, P], final_state [B, H, P, N] fp32)`."""
    b, T, H, P = x.shape
    N = B.shape[-1]
    acc = compute_dtype(x)
    L = min(chunk_size, T)  # a short sequence is one chunk, not one padded to the chunk size
    pad = -T % L
    c = (T + pad) // L

    def chunked(t: Tensor) -> Tensor:  # [B, T, ...] -> [B, c, L, ...]
        # padded tokens get dt = 0: no decay and no input, so the final state is untouched
        t = F.pad(t.to(acc), (0, 0) * (t.ndim - 2) + (0, pad))
        return t.reshape(b, c, L, *t.shape[2:])

    xc, dtc = chunked(x), chunked(dt)  # [B, c, L, H, P], [B, c, L, H]
    Bc, Cc = chunked(_per_head(B, H)), chunked(_per_head(C, H))  # [B, c, L, H, N]
    xdt = xc * dtc[..., None]  # [B, c, L, H, P]
    a = (dtc * A.to(acc)).permute(0, 3, 1, 2)  # [B, H, c, L] log decay of each token
    a_cum = a.cumsum(-1)  # [B, H, c, L]

    # 1. inside each chunk: y_t = Σ_{s≤t} exp(a_{s+1} + … + a_t) (C_t·B_s) dt_s x_s
    scores = torch.einsum("bclhn,bcshn->bhcls", Cc, Bc) * torch.exp(segsum(a))  # [B, H, c, L, L]
    y = torch.einsum("bhcls,bcshp->bclhp", scores, xdt)  # [B, c, L, H, P]

    # 2. each chunk's own end state, started from zero
    to_end = torch.exp(a_cum[..., -1:] - a_cum).permute(0, 2, 3, 1)  # [B, c, L, H]
    chunk_states = torch.einsum("bclhn,bclhp->bchpn", Bc, xdt * to_end[..., None])  # [B, c, H, P, N]

    # 3. across chunks, recurrently: the state entering each chunk
    chunk_decay = torch.exp(a_cum[..., -1])  # [B, H, c]
    state = x.new_zeros(b, H, P, N, dtype=acc) if initial_state is None else initial_state.to(acc)
    entering = []
    for j in range(c):
        entering.append(state)
        state = chunk_decay[:, :, j, None, None] * state + chunk_states[:, j]  # [B, H, P, N]
    entering_states = torch.stack(entering, dim=1)  # [B, c, H, P, N]

    # 4. what the entering state adds to each token, decayed from the chunk start
    from_start = torch.exp(a_cum).permute(0, 2, 3, 1)  # [B, c, L, H]
    y = y + torch.einsum("bclhn,bchpn->bclhp", Cc * from_start[..., None], entering_states)

    y = y.reshape(b, c * L, H, P)[:, :T]  # [B, T, H, P]
    return _skip_and_gate(y, x.to(acc), D, z).to(x.dtype), state


def ssd_recurrent(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One token at a time; same arguments and results as `ssd_chunked`."""
    state = initial_state
    ys = []
    for t in range(x.shape[1]):
        y, state = ssd_step(
            x[:, t], dt[:, t], A, B[:, t], C[:, t], state, D=D, z=None if z is None else z[:, t]
        )
        ys.append(y)
    return torch.stack(ys, dim=1), state


def ssd_step(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    state: Tensor | None,
    *,
    D: Tensor | None = None,
    z: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One token: x [B, H, P], dt [B, H], B/C [B, G, N], z [B, H, P], state [B, H, P, N] or None (zeros).

    Returns `(y [B, H, P] in the dtype of x, new_state [B, H, P, N] fp32)`.
    """
    b, H, P = x.shape
    acc = compute_dtype(x)
    xf, dtf = x.to(acc), dt.to(acc)
    Bh, Ch = _per_head(B, H, dim=1).to(acc), _per_head(C, H, dim=1).to(acc)  # [B, H, N]
    if state is None:
        state = x.new_zeros(b, H, P, B.shape[-1], dtype=acc)
    decay = torch.exp(dtf * A.to(acc))  # [B, H]
    state = decay[..., None, None] * state.to(acc) + (dtf[..., None] * xf)[..., None] * Bh[:, :, None, :]
    y = torch.einsum("bhpn,bhn->bhp", state, Ch)  # [B, H, P]
    return _skip_and_gate(y, xf, D, z).to(x.dtype), state


def segsum(a: Tensor) -> Tensor:
    """[..., L] -> [..., L, L]: out[t, s] = a_{s+1} + … + a_t for s ≤ t, and -inf above the diagonal.

    Differences of one cumulative sum, masked before any exp: the upper triangle would hold positive
    sums whose exp overflows (and whose gradient would then be NaN).
    """
    L = a.shape[-1]
    a_cum = a.cumsum(-1)
    causal = torch.ones(L, L, dtype=torch.bool, device=a.device).tril()
    return (a_cum[..., :, None] - a_cum[..., None, :]).masked_fill(~causal, float("-inf"))


def _per_head(BC: Tensor, H: int, dim: int = 2) -> Tensor:
    """Repeat each of the G groups along `dim` for its H // G heads."""
    return BC.repeat_interleave(H // BC.shape[dim], dim=dim)


def _skip_and_gate(y: Tensor, x: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    if D is not None:
        y = y + D.to(x.dtype)[:, None] * x  # D [H] against [..., H, P]
    if z is not None:
        y = y * F.silu(z.to(x.dtype))
    return y
