"""xLSTM mLSTM (matrix memory, exponential gating) in plain PyTorch: the ground truth for the Triton kernels.

Shapes (B batch, T time, H heads, K query/key dim, V value dim):

    q, k   [B, T, H, K]      v [B, T, H, V]      i, f [B, T, H] gate pre-activations
    state  (C [B, H, K, V], n [B, H, K], m [B, H]), fp32 (fp64 for fp64 inputs); the empty state is all zeros

The stabilised recurrence of the xLSTM paper, with log forget gate logσ(f) and input gate exp(i):

    m_t = max(logσ(f_t) + m_{t-1}, i_t)
    C_t = exp(logσ(f_t) + m_{t-1} - m_t) C_{t-1} + exp(i_t - m_t) k_t v_tᵀ
    n_t = exp(logσ(f_t) + m_{t-1} - m_t) n_{t-1} + exp(i_t - m_t) k_t
    h_t = q̂_tᵀ C_t / max(|q̂_tᵀ n_t|, exp(-m_t)),    q̂_t = q_t / √K

The true state is exp(m_t)·(C_t, n_t); m only keeps the exponentials finite, so it cancels except
inside the max of the denominator, where each form below computes it identically.

`mlstm_chunked` is the training path: inside a chunk, with b_t = Σ_{s≤t} logσ(f_s) from the chunk start,
token j reaches token t with log weight D_tj = b_t - b_j + i_j and the entering state with b_t + m_prev;
m_t is the row max of both. Only the chunk-end states run recurrently. `mlstm_recurrent` walks one
token at a time and is what the tests trust; `mlstm_step` is one token, for decoding.
All compute in fp32 (fp64 for fp64 inputs, the tests' ground truth) and return h in the dtype of q.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels._precision import compute_dtype

Tensor = torch.Tensor
State = tuple[Tensor, Tensor, Tensor]


def mlstm_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    i: Tensor,
    f: Tensor,
    *,
    initial_state: State | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, State]:
    """Chunked mLSTM. Returns `(h [B, T, H, V], (C, n, m))`, the state fp32."""
    b, T, H, K = q.shape
    V = v.shape[-1]
    acc = compute_dtype(q)
    L = min(chunk_size, T)  # a short sequence is one chunk, not one padded to the chunk size
    pad = -T % L
    c = (T + pad) // L

    def chunked(t: Tensor, value: float = 0.0) -> Tensor:  # [B, T, H, ...] -> [B, H, c, L, ...]
        t = F.pad(t.to(acc), (0, 0) * (t.ndim - 2) + (0, pad), value=value)
        return t.reshape(b, c, L, H, *t.shape[3:]).movedim(3, 1)

    qc = chunked(q) * K**-0.5  # [B, H, c, L, K]
    kc, vc = chunked(k), chunked(v)  # [B, H, c, L, K], [B, H, c, L, V]
    # padded tokens neither forget (logσ(f) = 0) nor write (i = -inf), so the final state is untouched
    log_f = chunked(F.logsigmoid(f.to(acc)))  # [B, H, c, L]
    ic = chunked(i, value=float("-inf"))  # [B, H, c, L]
    b_cum = log_f.cumsum(-1)  # [B, H, c, L]
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    log_D = (b_cum[..., :, None] - b_cum[..., None, :] + ic[..., None, :]).masked_fill(~causal, float("-inf"))
    # log_D [B, H, c, L, L]: log weight of token j's write in the memory read at token t

    # 1. each chunk's own end state, started from zero and stabilised by its own max
    log_w_end = log_D[..., -1, :]  # [B, H, c, L]
    m_own = log_w_end.max(-1).values  # [B, H, c]
    kw = kc * torch.exp(log_w_end - m_own[..., None])[..., None]  # [B, H, c, L, K]
    C_own, n_own = kw.transpose(-1, -2) @ vc, kw.sum(-2)  # [B, H, c, K, V], [B, H, c, K]

    # 2. across chunks, recurrently: the state entering each chunk
    C_s, n_s, m_s = empty_state(b, H, K, V, q.device) if initial_state is None else initial_state
    C_s, n_s, m_s = C_s.to(acc), n_s.to(acc), m_s.to(acc)
    entering = []
    for j in range(c):
        entering.append((C_s, n_s, m_s))
        log_decay = b_cum[:, :, j, -1] + m_s  # [B, H]
        m_new = torch.maximum(log_decay, m_own[:, :, j])
        old, new = torch.exp(log_decay - m_new), torch.exp(m_own[:, :, j] - m_new)  # [B, H]
        C_s = old[..., None, None] * C_s + new[..., None, None] * C_own[:, :, j]
        n_s = old[..., None] * n_s + new[..., None] * n_own[:, :, j]
        m_s = m_new
    C_in, n_in, m_in = (torch.stack(s, dim=2) for s in zip(*entering))  # [B, H, c, K, V], [.., K], [B, H, c]

    # 3. outputs: this chunk's writes plus the entering state, under one row max m_t
    log_in = b_cum + m_in[..., None]  # [B, H, c, L] log weight of the entering state at token t
    m = torch.maximum(log_in, log_D.max(-1).values)  # [B, H, c, L]
    S = (qc @ kc.transpose(-1, -2)) * torch.exp(log_D - m[..., None])  # [B, H, c, L, L]
    g = torch.exp(log_in - m)  # [B, H, c, L]
    num = S @ vc + g[..., None] * (qc @ C_in)  # [B, H, c, L, V]
    den = S.sum(-1) + g * (qc @ n_in[..., None]).squeeze(-1)  # [B, H, c, L]
    h = num / torch.maximum(den.abs(), torch.exp(-m))[..., None]  # [B, H, c, L, V]

    h = h.movedim(1, 3).reshape(b, c * L, H, V)[:, :T]  # [B, T, H, V]
    return h.to(q.dtype), (C_s, n_s, m_s)


def mlstm_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    i: Tensor,
    f: Tensor,
    *,
    initial_state: State | None = None,
) -> tuple[Tensor, State]:
    """One token at a time; same arguments and results as `mlstm_chunked`."""
    state = initial_state
    hs = []
    for t in range(q.shape[1]):
        h, state = mlstm_step(q[:, t], k[:, t], v[:, t], i[:, t], f[:, t], state)
        hs.append(h)
    return torch.stack(hs, dim=1), state


def mlstm_step(
    q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, state: State | None
) -> tuple[Tensor, State]:
    """One token: q/k [B, H, K], v [B, H, V], i/f [B, H], state (C, n, m) or None (the empty state).

    Returns `(h [B, H, V] in the dtype of q, (C [B, H, K, V], n [B, H, K], m [B, H]) fp32)`.
    """
    b, H, K = q.shape
    acc = compute_dtype(q)
    C, n, m = empty_state(b, H, K, v.shape[-1], q.device) if state is None else state
    C, n, m = C.to(acc), n.to(acc), m.to(acc)
    qf, kf, vf = q.to(acc) * K**-0.5, k.to(acc), v.to(acc)
    log_f, i = F.logsigmoid(f.to(acc)), i.to(acc)
    m_new = torch.maximum(log_f + m, i)  # [B, H]
    f_gate, i_gate = torch.exp(log_f + m - m_new), torch.exp(i - m_new)  # [B, H]
    C = f_gate[..., None, None] * C + i_gate[..., None, None] * kf[..., :, None] * vf[..., None, :]
    n = f_gate[..., None] * n + i_gate[..., None] * kf  # [B, H, K]
    num = torch.einsum("bhk,bhkv->bhv", qf, C)  # [B, H, V]
    den = (qf * n).sum(-1)  # [B, H]
    h = num / torch.maximum(den.abs(), torch.exp(-m_new))[..., None]
    return h.to(q.dtype), (C, n, m_new)


def empty_state(b: int, H: int, K: int, V: int, device: torch.device | None = None) -> State:
    """The state before the first token: C [B, H, K, V], n [B, H, K] and m [B, H], all zeros, fp32."""
    fp32 = {"dtype": torch.float32, "device": device}
    return torch.zeros(b, H, K, V, **fp32), torch.zeros(b, H, K, **fp32), torch.zeros(b, H, **fp32)
