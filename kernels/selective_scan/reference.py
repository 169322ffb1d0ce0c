"""Mamba-1 selective scan in plain PyTorch: the ground truth for the Triton kernels.

Shapes (B batch, T time, Dc channels, N state size, G groups of B/C with Dc % G == 0):

    u, delta, z   [B, T, Dc]    delta > 0 (already through softplus)
    A             [Dc, N]       < 0
    B, C          [B, T, N] (one group) or [B, T, G, N]; channel d reads group d // (Dc // G)
    D             [Dc]
    state         [B, Dc, N]    fp32 (fp64 for fp64 inputs)

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t
    y_t = C_t · h_t + D u_t,    then y_t ← y_t · silu(z_t) when z is given

The state is diagonal per (channel, state) pair, so there is no cheap quadratic form as in SSD, and a
parallel scan over [B, T, Dc, N] moves far more memory than the recurrence needs. `selective_scan_blocked`,
the training path, walks time in blocks of L tokens: per block it forms the decays and inputs at once
([B, L, Dc, N], small enough to stay in cache), runs the recurrence with one fused multiply-add per token,
and reads out y with one contraction. It keeps only the state entering each block; its backward (written
by hand) walks the blocks in reverse, recomputes each block's states from there, and takes the gradients
block by block, so nothing of size [B, T, Dc, N] is ever held and the Python loop costs one small op per
token each way. On a 2-core CPU (B=8, T=256, Dc=256, N=16)
forward + backward takes about a quarter of the log-depth parallel scan's time.
`selective_scan_recurrent` walks one token at a time through autograd and is what the tests trust;
`selective_scan_step` is one token, for decoding. All compute in fp32 (fp64 for fp64 inputs, the tests'
ground truth) and return y in the dtype of u.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels._precision import compute_dtype

Tensor = torch.Tensor


def selective_scan_blocked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_state: Tensor | None = None,
    block_size: int = 16,
) -> tuple[Tensor, Tensor]:
    """Blocked sequential scan. Returns `(y [B, T, Dc], final_state [B, Dc, N] fp32)`."""
    b, _, Dc = u.shape
    N = A.shape[-1]
    acc = compute_dtype(u)
    state = u.new_zeros(b, Dc, N, dtype=acc) if initial_state is None else initial_state.to(acc)
    y, final = _BlockedScan.apply(
        u.to(acc), delta.to(acc), A.to(acc), _grouped(B).to(acc), _grouped(C).to(acc), state, block_size
    )
    return _skip_and_gate(y, u.to(acc), D, z).to(u.dtype), final


class _BlockedScan(torch.autograd.Function):
    """(y_t = C_t · h_t, h_T) for h_t = a_t ⊙ h_{t-1} + b_t, a_t = exp(Δ_t A), b_t = Δ_t u_t B_t."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, h0, L):
        b, T, Dc = u.shape
        y = u.new_empty(b, T, Dc)
        starts = []  # the state entering each block: the backward recomputes the block's states from it
        h = h0
        for s in range(0, T, L):
            t = slice(s, min(s + L, T))
            starts.append(h)
            hs = _block_states(u[:, t], delta[:, t], A, B[:, t], h)[2]  # [B, l, Dc, N]
            # y_t = C_t · h_t within each group: [B, l, G, Dc/G, N] · [B, l, G, N]
            y[:, t] = _read(hs, C[:, t])
            h = hs[:, -1]
        ctx.save_for_backward(u, delta, A, B, C, torch.stack(starts, dim=1))
        ctx.L = L
        return y, h.clone()

    @staticmethod
    def backward(ctx, dy, dh_last):
        u, delta, A, B, C, starts = ctx.saved_tensors
        L = ctx.L
        T = u.shape[1]
        G = B.shape[2]
        d_u, d_delta, dB, dC = (torch.empty_like(x) for x in (u, delta, B, C))
        dA = torch.zeros_like(A)
        g = dh_last if dh_last is not None else torch.zeros_like(starts[:, 0])  # dL/dh_t, future included
        a_next = torch.ones_like(g)  # a_{t+1}: carries g to h_t (past the last token: dL/dh_T as given)
        for k, s in reversed(list(enumerate(range(0, T, L)))):
            t = slice(s, min(s + L, T))
            a, _, hs = _block_states(u[:, t], delta[:, t], A, B[:, t], starts[:, k])
            # direct gradient of each h_t through y_t: dy_t ⊗ C_t per group
            gh = (dy[:, t].unflatten(2, (G, -1))[..., None] * C[:, t, :, None, :]).flatten(2, 3)  # [B, l, Dc, N]
            for i in reversed(range(a.shape[1])):
                g, a_next = gh[:, i].addcmul_(a_next, g), a[:, i]
            h_prev = torch.cat([starts[:, k, None], hs[:, :-1]], dim=1)
            ga = gh * h_prev * a  # dL/d(Δ_t A)
            dA += torch.einsum("bldn,bld->dn", ga, delta[:, t])
            gb = _read(gh, B[:, t])  # dL/d(Δu)_t
            du_t = delta[:, t] * u[:, t]
            dB[:, t] = _weigh(gh, du_t, G)
            dC[:, t] = _weigh(hs, dy[:, t], G)
            d_delta[:, t] = (ga * A).sum(-1) + gb * u[:, t]
            d_u[:, t] = gb * delta[:, t]
        return d_u, d_delta, dA, dB, dC, g * a_next, None


# Small contractions as broadcast multiply-and-sum: as batched GEMMs they would be thousands of tiny
# [Dc/G, N] @ [N] products, which the CPU runs far slower than one pass over the block.
def _read(h: Tensor, C: Tensor) -> Tensor:
    """y[b, l, c] = Σ_n h[b, l, c, n] · C[b, l, group(c), n]: h [B, l, Dc, N], C [B, l, G, N] -> [B, l, Dc]."""
    G = C.shape[2]
    return (h.unflatten(2, (G, -1)) * C[:, :, :, None, :]).sum(-1).flatten(2)


def _weigh(h: Tensor, w: Tensor, G: int) -> Tensor:
    """out[b, l, g, n] = Σ_{c in g} h[b, l, c, n] · w[b, l, c]: h [B, l, Dc, N], w [B, l, Dc] -> [B, l, G, N]."""
    return (h * w[..., None]).unflatten(2, (G, -1)).sum(3)


def _block_states(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Decays a = exp(Δ A), inputs b = Δ u B and states h_t of one block, each [B, l, Dc, N].

    u/delta [B, l, Dc], B [B, l, G, N], h [B, Dc, N] the state entering the block.
    """
    a = torch.exp(delta[..., None] * A)
    G = B.shape[2]
    bx = ((delta * u).unflatten(2, (G, -1))[..., None] * B[:, :, :, None, :]).flatten(2, 3)
    hs = torch.empty_like(bx)
    for i in range(a.shape[1]):
        h = torch.addcmul(bx[:, i], a[:, i], h, out=hs[:, i])
    return a, bx, hs


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
    """One token at a time; same arguments and results as `selective_scan_blocked`."""
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
    acc = compute_dtype(u)
    Bg, Cg = _grouped(B, time=False).to(acc), _grouped(C, time=False).to(acc)  # [B, G, N]
    G = Bg.shape[1]
    if state is None:
        state = u.new_zeros(b, Dc, N, dtype=acc)
    delta = delta.to(acc)
    decay = torch.exp(delta[..., None] * A.to(acc))  # [B, Dc, N]
    bx = ((delta * u.to(acc)).unflatten(1, (G, -1, 1)) * Bg[:, :, None, :]).flatten(1, 2)  # [B, Dc, N]
    state = decay * state.to(acc) + bx
    y = torch.einsum("bgrn,bgn->bgr", state.unflatten(1, (G, -1)), Cg).flatten(1)  # [B, Dc]
    return _skip_and_gate(y, u.to(acc), D, z).to(u.dtype), state


def _grouped(BC: Tensor, time: bool = True) -> Tensor:
    """[B, T, N] -> [B, T, 1, N] (one group); [B, T, G, N] as it is. `time=False`: [B, N] -> [B, 1, N]."""
    return BC.unsqueeze(-2) if BC.ndim == (3 if time else 2) else BC


def _skip_and_gate(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    if D is not None:
        y = y + D.to(u.dtype) * u  # D [Dc] against [..., Dc]
    if z is not None:
        y = y * F.silu(z.to(u.dtype))
    return y
