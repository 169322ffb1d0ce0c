"""The gated delta rule (Gated DeltaNet; KDA with a channel-wise gate) in plain PyTorch: the ground truth
for the Triton kernels.

Shapes (B batch, T time, H heads, K key dim, V value dim):

    q, k   [B, T, H, K]  (L2-normalised by the layer)      v [B, T, H, V]
    g      [B, T, H] log decay ≤ 0 of each head (Gated DeltaNet), or [B, T, H, K] of each key channel (KDA)
    beta   [B, T, H] write strength in (0, 1)
    state  S [B, H, K, V], fp32 (fp64 for fp64 inputs); the empty state is zeros

    S_t = (I − β_t k_t k_tᵀ) (exp(g_t) ⊙ S_{t−1}) + β_t k_t v_tᵀ      (a [K] decay scales row i by exp(g_t[i]))
    o_t = scale · S_tᵀ q_t,    scale = 1/√K unless given

`gated_delta_chunked` is the training path, the WY (UT-transform) form of Yang et al.: inside a chunk of
L tokens, with b_t = Σ_{j≤t} g_j from the chunk start, the writes u_t = β_t (v_t − (e^{g_t} ⊙ S_{t−1})ᵀ k_t)
solve one unit-lower-triangular system (I + A) U = diag(β) (V − (K ⊙ e^b) S_0), where
A_ts = β_t Σ_i k_ti k_si e^{b_ti − b_si} (s < t); only the chunk-end states run recurrently. A scalar gate's
pairwise decay e^{b_t − b_s} is one [L, L] matrix; a channel-wise gate's is [L, L, K], formed pair by pair
with exponents ≤ 0 (e^{b_t} e^{−b_s} overflows once a chunk decays by more than e^{−88}), so its chunks
are at most 16 tokens. `gated_delta_recurrent` walks one token at a time and is what the tests trust;
`gated_delta_step` is one token, for decoding. All compute in fp32 (fp64 for fp64 inputs, the tests'
ground truth) and return o in the dtype of q.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels._precision import compute_dtype

Tensor = torch.Tensor
MAX_CHANNEL_CHUNK = 16  # a channel-wise gate's pairwise decays are [L, L, K] per chunk


def gated_delta_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    *,
    scale: float,
    initial_state: Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Chunked gated delta rule. Returns `(o [B, T, H, V], final_state [B, H, K, V] fp32)`."""
    b, T, H, K = q.shape
    V = v.shape[-1]
    acc = compute_dtype(q)
    channel = g.ndim == 4
    L = min(chunk_size, T, MAX_CHANNEL_CHUNK if channel else chunk_size)
    pad = -T % L
    c = (T + pad) // L

    def chunked(t: Tensor) -> Tensor:  # [B, T, H, ...] -> [B, H, c, L, ...]
        # padded tokens neither decay (g = 0) nor write (β = 0, k = 0): the final state is untouched
        t = F.pad(t.to(acc), (0, 0) * (t.ndim - 3) + (0, 0, 0, pad))
        return t.reshape(b, c, L, H, *t.shape[3:]).movedim(3, 1)

    qc, kc, vc = chunked(q), chunked(k), chunked(v)  # [B, H, c, L, K], [.., K], [.., V]
    beta_c = chunked(beta)[..., None]  # [B, H, c, L, 1]
    b_cum = chunked(g).cumsum(3)  # [B, H, c, L] or [B, H, c, L, K]
    bk = b_cum if channel else b_cum[..., None]  # broadcasts against [.., L, K]
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    if channel:
        log_decay = (bk[..., :, None, :] - bk[..., None, :, :]).masked_fill(~causal[..., None], float("-inf"))
        decay = torch.exp(log_decay)  # [B, H, c, L, L, K]
        kk = torch.einsum("...tk,...sk,...tsk->...ts", kc, kc, decay)
        qk = torch.einsum("...tk,...sk,...tsk->...ts", qc, kc, decay)
    else:
        decay = torch.exp((b_cum[..., :, None] - b_cum[..., None, :]).masked_fill(~causal, float("-inf")))
        kk = (kc @ kc.transpose(-1, -2)) * decay  # [B, H, c, L, L]
        qk = (qc @ kc.transpose(-1, -2)) * decay
    eye = torch.eye(L, dtype=acc, device=q.device)
    lower = eye + (beta_c * kk).tril(-1)  # I + A, unit lower triangular
    w = torch.linalg.solve_triangular(lower, beta_c * kc * torch.exp(bk), upper=False, unitriangular=True)
    u0 = torch.linalg.solve_triangular(lower, beta_c * vc, upper=False, unitriangular=True)  # [B, H, c, L, V]
    q_in = qc * torch.exp(bk)  # q reading the entering state, decayed from the chunk start
    b_last = bk[..., -1:, :]  # [B, H, c, 1, K or 1]
    k_out = kc * torch.exp(b_last - bk)  # k writing the chunk-end state

    S = q.new_zeros(b, H, K, V, dtype=acc) if initial_state is None else initial_state.to(acc)
    outs = []
    for j in range(c):
        u = u0[:, :, j] - w[:, :, j] @ S  # [B, H, L, V]
        outs.append(scale * (q_in[:, :, j] @ S + qk[:, :, j] @ u))
        S = torch.exp(b_last[:, :, j]).transpose(-1, -2) * S + k_out[:, :, j].transpose(-1, -2) @ u
    o = torch.stack(outs, dim=2)  # [B, H, c, L, V]
    o = o.movedim(1, 3).reshape(b, c * L, H, V)[:, :T]
    return o.to(q.dtype), S


def gated_delta_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    *,
    scale: float,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One token at a time; same arguments and results as `gated_delta_chunked`."""
    state = initial_state
    outs = []
    for t in range(q.shape[1]):
        o, state = gated_delta_step(q[:, t], k[:, t], v[:, t], g[:, t], beta[:, t], state, scale=scale)
        outs.append(o)
    return torch.stack(outs, dim=1), state


def gated_delta_step(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, state: Tensor | None, *, scale: float
) -> tuple[Tensor, Tensor]:
    """One token: q/k [B, H, K], v [B, H, V], g [B, H] or [B, H, K], beta [B, H], state [B, H, K, V] or None.

    Returns `(o [B, H, V] in the dtype of q, new_state [B, H, K, V] fp32)`.
    """
    b, H, K = q.shape
    acc = compute_dtype(q)
    S = q.new_zeros(b, H, K, v.shape[-1], dtype=acc) if state is None else state.to(acc)
    qf, kf, vf, betaf = q.to(acc), k.to(acc), v.to(acc), beta.to(acc)
    decay = torch.exp(g.to(acc))
    S = S * (decay[..., None] if g.ndim == 3 else decay[..., None, None])  # [B, H, K, V]
    kS = torch.einsum("bhk,bhkv->bhv", kf, S)  # what the state recalls for k_t
    S = S + kf[..., :, None] * (betaf[..., None] * (vf - kS))[..., None, :]
    o = scale * torch.einsum("bhk,bhkv->bhv", qf, S)
    return o.to(q.dtype), S
