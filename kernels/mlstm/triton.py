"""xLSTM mLSTM in Triton: chunkwise forward and backward kernels (TFLA-style), and the autograd Function.

The chunked form of `reference.mlstm_chunked`. Per batch b, head h and chunk c of L tokens, with
b_l = Σ_{j≤l} logσ(f_j) from the chunk start and (C_c [K, V], n_c [K], m_c) the state entering the chunk:

    forward   states   m_{c+1} = max(b_L + m_c, max_s b_L - b_s + i_s),  w_s = exp(b_L - b_s + i_s - m_{c+1})
                       C_{c+1} = exp(b_L + m_c - m_{c+1}) C_c + (k ⊙ w)ᵀ v     walks the chunks in order
              output   D_ls = b_l - b_s + i_s (s ≤ l),  m_l = max(b_l + m_c, max_s D_ls)
                       h_l = [(q̂kᵀ ⊙ e^{D - m}) v + e^{b_l + m_c - m_l} q̂ C_c] / max(|den_l|, e^{-m_l})
    backward  prep     dden_l = -sign(den_l) (dh_l·h_l) / N_l where |den_l| is the larger term, else 0
              dstates  G_c = e^{b_L + m_c - m_{c+1}} G_{c+1} + (q̂ ⊙ α)ᵀ dh/N   walks the chunks in reverse
              dv       per chunk, per block of V
              dqk      per chunk, per block of K; with the per-token sums q·dq and k·dk for the gates
              gates    di = k·dk, d logσ(f) = reverse cumsum of (q·dq - k·dk), plus the chunk-end term

Why the backward needs no gradient through the stabilisers: h depends only on the true memory
exp(m)·(C, n), never on how it is split between m and (C, n), so every m_c and m_l can be held
constant. Only the returned final m and the given initial m are real inputs/outputs: the final m's
cotangent (less what it does through C_T and n_T) goes to the inputs on its arg-max path, and the
initial m's gradient is ⟨dC_0, C_0⟩ + ⟨dn_0, n_0⟩. Both are finished on the host.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels._triton import (
    AMPERE_MMA,
    DOT_BF16,
    ampere_mma,
    autotune,
    block,
    dot,
    dot_mode,
    eager,
    eager_autograd,
    keep_for_backward,
    on_device,
    state_dtype,
    tiles,
    warps,
)

Tensor = torch.Tensor
MAX_CHUNK = 128


@triton.jit
def _chunk_gates(i_ptr, f_ptr, b, h, c, T, H, L, BL: tl.constexpr):
    """(b [BL] cumulative logσ(f) from the chunk start, i [BL]); padded tokens neither forget nor write."""
    l = tl.arange(0, BL)
    t = c * L + l
    mask = (l < L) & (t < T)
    f = tl.load(f_ptr + (b * T + t) * H + h, mask=mask, other=0.0).to(tl.float32)
    log_f = tl.where(mask, tl.minimum(f, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(f))), 0.0)
    ig = tl.load(i_ptr + (b * T + t) * H + h, mask=mask, other=float("-inf")).to(tl.float32)
    return tl.cumsum(log_f, axis=0), ig


# the sequential walk tunes its split of the state; the per-chunk kernels their block of V.
# On Hopper, Triton 3.4–3.7.0 gets the bf16 products wrong at 4 and 8 warps of warpgroup MMA: the kernels compile
# to Ampere's MMA there (`ampere_mma`), or, with KERNELS_AMPERE_MMA=0, keep Hopper's and avoid those warp counts
# (`kernels._triton.autotune`), which holds them to 2 warps
AVOID = {} if AMPERE_MMA else {DOT_BF16: (4, 8)}
# (32, 32): at B4 H4 (K 128, V 256) the walks have 512 programs instead of 128-256, which an H200's 132 SMs need to
# hide each chunk's latency
STATE_TILES = tiles(("BK", "BV"), [(64, 64), (64, 32), (32, 64), (128, 64), (32, 32)], (4, 2), (8, 2))
V_TILES = tiles(("BV",), [(64,), (128,)], (4, 2), (8, 2))


@autotune(STATE_TILES, key=["K", "V", "BL", "WALKS"], interpret={"BK": 32, "BV": 32}, fit={"BK": "K", "BV": "V"},
          avoid=AVOID)
@triton.jit(do_not_specialize=["T", "L", "NC", "WALKS"])
def mlstm_fwd_kernel_states(
    k_ptr, v_ptr, i_ptr, f_ptr, C0_ptr, n0_ptr, m0_ptr,
    states_ptr, nstates_ptr, mstates_ptr, Cf_ptr, nf_ptr, mf_ptr,
    T, H, K, V, L, NC, WALKS,
    HAS_INIT: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr,
):
    """The state entering each chunk and the final one, walking the chunks in order. Grid (K/BK, V/BV, B·H).

    WALKS (B·H to a power of two, unused but in the tuning key): how many walks share the GPU decides the tiles,
    as few sequences and heads need small ones to fill it (`walks`).

    states [B, H, c+1, K, V] (index c: entering chunk c; the last: the final state), nstates and mstates
    likewise, fp32. Every program tracks m; the (0, 0) program stores it.
    """
    i_k, i_v, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, h = (bh // H).to(tl.int64), bh % H
    kk = i_k * BK + tl.arange(0, BK)
    vv = i_v * BV + tl.arange(0, BV)
    l = tl.arange(0, BL)
    mask_kv = (kk < K)[:, None] & (vv < V)[None, :]
    if HAS_INIT:
        C = tl.load(C0_ptr + ((b * H + h) * K + kk[:, None]) * V + vv[None, :], mask=mask_kv, other=0.0)
        n = tl.load(n0_ptr + (b * H + h) * K + kk, mask=kk < K, other=0.0)
        m = tl.load(m0_ptr + b * H + h)
    else:
        C = tl.zeros([BK, BV], dtype=tl.float32)
        n = tl.zeros([BK], dtype=tl.float32)
        m = tl.sum(tl.zeros([BK], dtype=tl.float32), axis=0)
    for c in range(NC + 1):
        off_s = (((b * H + h) * (NC + 1) + c) * K + kk[:, None]) * V + vv[None, :]
        tl.store(states_ptr + off_s, C.to(states_ptr.dtype.element_ty), mask=mask_kv)
        if i_v == 0:
            tl.store(nstates_ptr + ((b * H + h) * (NC + 1) + c) * K + kk, n, mask=kk < K)
            if i_k == 0:
                tl.store(mstates_ptr + (b * H + h) * (NC + 1) + c, m)
        if c < NC:
            bc, ig = _chunk_gates(i_ptr, f_ptr, b, h, c, T, H, L, BL)
            b_last = tl.min(bc, axis=0)  # logσ ≤ 0: b falls, and padded tokens keep it
            m_new = tl.maximum(b_last + m, tl.max(b_last - bc + ig, axis=0))
            w = tl.exp(b_last - bc + ig - m_new)  # [BL]
            t = c * L + l
            mask_t = (l < L) & (t < T)
            kt = tl.load(k_ptr + ((b * T + t[:, None]) * H + h) * K + kk[None, :],
                         mask=mask_t[:, None] & (kk < K)[None, :], other=0.0).to(tl.float32)  # [BL, BK]
            vt = tl.load(v_ptr + ((b * T + t[:, None]) * H + h) * V + vv[None, :],
                         mask=mask_t[:, None] & (vv < V)[None, :], other=0.0)  # [BL, BV]
            decay = tl.exp(b_last + m - m_new)
            kw = kt * w[:, None]
            C = decay * C + dot(tl.trans(kw), vt, MODE)
            n = decay * n + tl.sum(kw, axis=0)
            m = m_new
    tl.store(Cf_ptr + ((b * H + h) * K + kk[:, None]) * V + vv[None, :], C, mask=mask_kv)
    if i_v == 0:
        tl.store(nf_ptr + (b * H + h) * K + kk, n, mask=kk < K)
        if i_k == 0:
            tl.store(mf_ptr + b * H + h, m)


@autotune(V_TILES, key=["K", "V", "BL"], interpret={"BV": 32}, fit={"BV": "V"}, avoid=AVOID)
@triton.jit(do_not_specialize=["T", "L", "NC"])
def mlstm_fwd_kernel_output(
    q_ptr, k_ptr, v_ptr, i_ptr, f_ptr, states_ptr, nstates_ptr, mstates_ptr, h_ptr, mtok_ptr, den_ptr,
    scale, T, H, K, V, L, NC,
    BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr,
):
    """h of one chunk, and (V block 0) each token's m_l and denominator. Grid (V/BV, chunks, B·H)."""
    i_v, c, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, h = (bh // H).to(tl.int64), bh % H
    vv = i_v * BV + tl.arange(0, BV)
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    bc, ig = _chunk_gates(i_ptr, f_ptr, b, h, c, T, H, L, BL)
    m_c = tl.load(mstates_ptr + (b * H + h) * (NC + 1) + c)

    qk = tl.zeros([BL, BL], dtype=tl.float32)
    num_in = tl.zeros([BL, BV], dtype=tl.float32)  # q C_c
    den_in = tl.zeros([BL], dtype=tl.float32)  # q·n_c
    for k0 in range(0, K, BK):
        kk = k0 + tl.arange(0, BK)
        mask_tk = mask_t[:, None] & (kk < K)[None, :]
        qt = tl.load(q_ptr + ((b * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
        kt = tl.load(k_ptr + ((b * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
        Cc = tl.load(states_ptr + (((b * H + h) * (NC + 1) + c) * K + kk[:, None]) * V + vv[None, :],
                     mask=(kk < K)[:, None] & (vv < V)[None, :], other=0.0)  # [BK, BV]
        nc_ = tl.load(nstates_ptr + ((b * H + h) * (NC + 1) + c) * K + kk, mask=kk < K, other=0.0)
        qk += dot(qt, tl.trans(kt), MODE)
        num_in += dot(qt, Cc, MODE)
        den_in += tl.sum(qt.to(tl.float32) * nc_[None, :], axis=1)
    causal = l[:, None] >= l[None, :]
    log_d = tl.where(causal, bc[:, None] - bc[None, :] + ig[None, :], float("-inf"))  # [BL, BL]
    log_in = bc + m_c
    m_l = tl.maximum(log_in, tl.max(log_d, axis=1))  # [BL]
    p = qk * scale * tl.exp(log_d - m_l[:, None])
    alpha = tl.exp(log_in - m_l) * scale
    vt = tl.load(v_ptr + ((b * T + t[:, None]) * H + h) * V + vv[None, :],
                 mask=mask_t[:, None] & (vv < V)[None, :], other=0.0)
    num = dot(p, vt, MODE) + alpha[:, None] * num_in
    den = tl.sum(p, axis=1) + alpha * den_in
    out = num / tl.maximum(tl.abs(den), tl.exp(-m_l))[:, None]
    tl.store(h_ptr + ((b * T + t[:, None]) * H + h) * V + vv[None, :], out.to(h_ptr.dtype.element_ty),
             mask=mask_t[:, None] & (vv < V)[None, :])
    if i_v == 0:
        tl.store(mtok_ptr + (b * H + h) * NC * L + t, m_l, mask=l < L)
        tl.store(den_ptr + (b * H + h) * NC * L + t, den, mask=l < L)


@triton.jit(do_not_specialize=["T", "L", "NC"])
def mlstm_bwd_kernel_prep(
    h_ptr, dh_ptr, mtok_ptr, den_ptr, rn_ptr, dden_ptr, T, H, V, L, NC, BL: tl.constexpr, BV: tl.constexpr
):
    """Per token: 1/N_l and dden_l = -sign(den_l)(dh_l·h_l)/N_l (0 where exp(-m_l) is the larger).

    Grid (chunks, B·H)."""
    c, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), bh % H
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    dot_hh = tl.zeros([BL], dtype=tl.float32)
    for v0 in range(0, V, BV):
        vv = v0 + tl.arange(0, BV)
        off = ((b * T + t[:, None]) * H + h) * V + vv[None, :]
        mask = mask_t[:, None] & (vv < V)[None, :]
        ht = tl.load(h_ptr + off, mask=mask, other=0.0).to(tl.float32)
        dht = tl.load(dh_ptr + off, mask=mask, other=0.0).to(tl.float32)
        dot_hh += tl.sum(ht * dht, axis=1)
    m_l = tl.load(mtok_ptr + (b * H + h) * NC * L + t, mask=mask_t, other=0.0)
    den = tl.load(den_ptr + (b * H + h) * NC * L + t, mask=mask_t, other=1.0)
    lower = tl.exp(-m_l)
    rn = tl.where(mask_t, 1.0 / tl.maximum(tl.abs(den), lower), 0.0)
    sign = tl.where(den >= 0, 1.0, -1.0)
    dden = tl.where(mask_t & (tl.abs(den) > lower), -sign * dot_hh * rn, 0.0)
    tl.store(rn_ptr + (b * H + h) * NC * L + t, rn, mask=l < L)
    tl.store(dden_ptr + (b * H + h) * NC * L + t, dden, mask=l < L)


@autotune(STATE_TILES, key=["K", "V", "BL", "WALKS"], interpret={"BK": 32, "BV": 32}, fit={"BK": "K", "BV": "V"},
          avoid=AVOID)
@triton.jit(do_not_specialize=["T", "L", "NC", "WALKS"])
def mlstm_bwd_kernel_dstates(
    q_ptr, dh_ptr, i_ptr, f_ptr, mtok_ptr, rn_ptr, dden_ptr, mstates_ptr,
    dCf_ptr, dnf_ptr, dstates_ptr, dnstates_ptr, dC0_ptr, dn0_ptr,
    scale, T, H, K, V, L, NC, WALKS,
    HAS_DFINAL: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr,
):
    """G_{c+1}, the gradient of the state at the end of chunk c, walking the chunks in reverse.

    dstates[:, :, c] = G_{c+1} (dnstates likewise); G_0 is the initial state's gradient. Grid (K/BK, V/BV, B·H);
    WALKS as in `mlstm_fwd_kernel_states`.
    """
    i_k, i_v, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, h = (bh // H).to(tl.int64), bh % H
    kk = i_k * BK + tl.arange(0, BK)
    vv = i_v * BV + tl.arange(0, BV)
    l = tl.arange(0, BL)
    mask_kv = (kk < K)[:, None] & (vv < V)[None, :]
    if HAS_DFINAL:
        dC = tl.load(dCf_ptr + ((b * H + h) * K + kk[:, None]) * V + vv[None, :], mask=mask_kv, other=0.0)
        dn = tl.load(dnf_ptr + (b * H + h) * K + kk, mask=kk < K, other=0.0)
    else:
        dC = tl.zeros([BK, BV], dtype=tl.float32)
        dn = tl.zeros([BK], dtype=tl.float32)
    for i in range(NC):
        c = NC - 1 - i
        off_s = (((b * H + h) * NC + c) * K + kk[:, None]) * V + vv[None, :]
        tl.store(dstates_ptr + off_s, dC.to(dstates_ptr.dtype.element_ty), mask=mask_kv)
        if i_v == 0:
            tl.store(dnstates_ptr + ((b * H + h) * NC + c) * K + kk, dn, mask=kk < K)
        bc, _ = _chunk_gates(i_ptr, f_ptr, b, h, c, T, H, L, BL)
        b_last = tl.min(bc, axis=0)
        m_c = tl.load(mstates_ptr + (b * H + h) * (NC + 1) + c)
        m_next = tl.load(mstates_ptr + (b * H + h) * (NC + 1) + c + 1)
        t = c * L + l
        mask_t = (l < L) & (t < T)
        m_l = tl.load(mtok_ptr + (b * H + h) * NC * L + t, mask=mask_t, other=0.0)
        rn = tl.load(rn_ptr + (b * H + h) * NC * L + t, mask=mask_t, other=0.0)
        dden = tl.load(dden_ptr + (b * H + h) * NC * L + t, mask=mask_t, other=0.0)
        alpha = tl.where(mask_t, tl.exp(bc + m_c - m_l), 0.0) * scale  # [BL]
        qt = tl.load(q_ptr + ((b * T + t[:, None]) * H + h) * K + kk[None, :],
                     mask=mask_t[:, None] & (kk < K)[None, :], other=0.0).to(tl.float32)
        dht = tl.load(dh_ptr + ((b * T + t[:, None]) * H + h) * V + vv[None, :],
                      mask=mask_t[:, None] & (vv < V)[None, :], other=0.0).to(tl.float32)
        beta = tl.exp(b_last + m_c - m_next)
        qa = qt * alpha[:, None]
        dC = beta * dC + dot(tl.trans(qa), dht * rn[:, None], MODE)
        dn = beta * dn + tl.sum(qa * dden[:, None], axis=0)
    tl.store(dC0_ptr + ((b * H + h) * K + kk[:, None]) * V + vv[None, :], dC, mask=mask_kv)
    if i_v == 0:
        tl.store(dn0_ptr + (b * H + h) * K + kk, dn, mask=kk < K)


@triton.jit
def _chunk_decays(i_ptr, f_ptr, mtok_ptr, mstates_ptr, b, h, c, T, H, L, NC, BL: tl.constexpr,
                  TRANSPOSED: tl.constexpr):
    """(p_log [BL, BL] = D_ls - m_l on the causal part, else -inf; α_l; w_s; mask of real tokens).

    TRANSPOSED: p_log indexed [s, l] instead."""
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    bc, ig = _chunk_gates(i_ptr, f_ptr, b, h, c, T, H, L, BL)
    b_last = tl.min(bc, axis=0)
    m_c = tl.load(mstates_ptr + (b * H + h) * (NC + 1) + c)
    m_next = tl.load(mstates_ptr + (b * H + h) * (NC + 1) + c + 1)
    m_l = tl.load(mtok_ptr + (b * H + h) * NC * L + t, mask=mask_t, other=0.0)
    if TRANSPOSED:
        causal = (l[None, :] >= l[:, None]) & mask_t[None, :]
        p_log = tl.where(causal, bc[None, :] - bc[:, None] + ig[:, None] - m_l[None, :], float("-inf"))
    else:
        causal = (l[:, None] >= l[None, :]) & mask_t[:, None]
        p_log = tl.where(causal, bc[:, None] - bc[None, :] + ig[None, :] - m_l[:, None], float("-inf"))
    alpha = tl.where(mask_t, tl.exp(bc + m_c - m_l), 0.0)
    w = tl.exp(b_last - bc + ig - m_next)
    return p_log, alpha, w, mask_t


@autotune(V_TILES, key=["K", "V", "BL"], interpret={"BV": 32}, fit={"BV": "V"}, avoid=AVOID)
@triton.jit(do_not_specialize=["T", "L", "NC"])
def mlstm_bwd_kernel_dv(
    q_ptr, k_ptr, dh_ptr, i_ptr, f_ptr, mtok_ptr, rn_ptr, mstates_ptr, dstates_ptr, dv_ptr,
    scale, T, H, K, V, L, NC,
    BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr,
):
    """dv = (q̂kᵀ ⊙ e^{D - m})ᵀ dh/N + w ⊙ k G_{c+1}, the first term from k q̂ᵀ [s, l] directly (no dot
    reads a transposed accumulator: `kernels/_triton.py`). Grid (V/BV, chunks, B·H)."""
    i_v, c, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, h = (bh // H).to(tl.int64), bh % H
    vv = i_v * BV + tl.arange(0, BV)
    l = tl.arange(0, BL)
    t = c * L + l
    p_log_t, _, w, mask_t = _chunk_decays(i_ptr, f_ptr, mtok_ptr, mstates_ptr, b, h, c, T, H, L, NC, BL, True)
    kq = tl.zeros([BL, BL], dtype=tl.float32)  # [s, l]
    kg = tl.zeros([BL, BV], dtype=tl.float32)
    for k0 in range(0, K, BK):
        kk = k0 + tl.arange(0, BK)
        mask_tk = mask_t[:, None] & (kk < K)[None, :]
        qt = tl.load(q_ptr + ((b * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
        kt = tl.load(k_ptr + ((b * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
        G = tl.load(dstates_ptr + (((b * H + h) * NC + c) * K + kk[:, None]) * V + vv[None, :],
                    mask=(kk < K)[:, None] & (vv < V)[None, :], other=0.0)
        kq += dot(kt, tl.trans(qt), MODE)
        kg += dot(kt, G, MODE)
    rn = tl.load(rn_ptr + (b * H + h) * NC * L + t, mask=mask_t, other=0.0)
    mask_tv = mask_t[:, None] & (vv < V)[None, :]
    off_tv = ((b * T + t[:, None]) * H + h) * V + vv[None, :]
    dnum = tl.load(dh_ptr + off_tv, mask=mask_tv, other=0.0).to(tl.float32) * rn[:, None]
    ps_t = kq * scale * tl.exp(p_log_t)  # [s, l]
    dv = dot(ps_t, dnum, MODE) + w[:, None] * kg
    tl.store(dv_ptr + off_tv, dv.to(dv_ptr.dtype.element_ty), mask=mask_tv)


@autotune(warps((4, 2), (4, 3), (8, 2)), key=["K", "V", "BL"], avoid=AVOID)
@triton.jit(do_not_specialize=["T", "L", "NC"])
def mlstm_bwd_kernel_dqk(
    q_ptr, k_ptr, v_ptr, dh_ptr, i_ptr, f_ptr, mtok_ptr, rn_ptr, dden_ptr,
    states_ptr, nstates_ptr, mstates_ptr, dstates_ptr, dnstates_ptr,
    dq_ptr, dk_ptr, qdq_ptr, kdk_ptr, dlast_ptr,
    scale, T, H, K, V, L, NC,
    BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr,
):
    """dq and dk of one chunk and block of K, with this block's share of the gate gradients.

    With Pd = e^{D - m} ⊙ (dh/N vᵀ + dden): dq̂ = Pd k + α (dh/N C_cᵀ + dden n_cᵀ),
    dk = Pdᵀ q̂ + w (v G_{c+1}ᵀ + Gn_{c+1}); per token q·dq and k·dk, and the chunk-end term
    ⟨G_{c+1}, C_{c+1}⟩ + ⟨Gn_{c+1}, n_{c+1}⟩ from C_{c+1} = β C_c + (k ⊙ w)ᵀ v. Grid (K/BK, chunks, B·H).
    dk is formed transposed ([K, L], q̂ᵀ Pd) and stored so: no dot reads the transpose of Pd, a dot
    accumulator (`kernels/_triton.py`).
    """
    i_k, c, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, h = (bh // H).to(tl.int64), bh % H
    kk = i_k * BK + tl.arange(0, BK)
    l = tl.arange(0, BL)
    t = c * L + l
    p_log, alpha, w, mask_t = _chunk_decays(i_ptr, f_ptr, mtok_ptr, mstates_ptr, b, h, c, T, H, L, NC, BL, False)
    rn = tl.load(rn_ptr + (b * H + h) * NC * L + t, mask=mask_t, other=0.0)
    dden = tl.load(dden_ptr + (b * H + h) * NC * L + t, mask=mask_t, other=0.0)

    dpv = tl.zeros([BL, BL], dtype=tl.float32)  # dh/N · v_s
    dq_in = tl.zeros([BL, BK], dtype=tl.float32)  # dh/N C_cᵀ
    dk_st_t = tl.zeros([BK, BL], dtype=tl.float32)  # G_{c+1} vᵀ
    gc = tl.zeros([BK], dtype=tl.float32)  # Σ_v G_{c+1} ⊙ C_c, per k
    for v0 in range(0, V, BV):
        vv = v0 + tl.arange(0, BV)
        mask_tv = mask_t[:, None] & (vv < V)[None, :]
        off_tv = ((b * T + t[:, None]) * H + h) * V + vv[None, :]
        dnum = tl.load(dh_ptr + off_tv, mask=mask_tv, other=0.0).to(tl.float32) * rn[:, None]
        vt = tl.load(v_ptr + off_tv, mask=mask_tv, other=0.0)
        mask_kv = (kk < K)[:, None] & (vv < V)[None, :]
        Cc = tl.load(states_ptr + (((b * H + h) * (NC + 1) + c) * K + kk[:, None]) * V + vv[None, :],
                     mask=mask_kv, other=0.0).to(tl.float32)  # [BK, BV]
        G = tl.load(dstates_ptr + (((b * H + h) * NC + c) * K + kk[:, None]) * V + vv[None, :],
                    mask=mask_kv, other=0.0).to(tl.float32)
        dpv += dot(dnum, tl.trans(vt), MODE)
        dq_in += dot(dnum, tl.trans(Cc), MODE)
        dk_st_t += dot(G, tl.trans(vt), MODE)
        gc += tl.sum(G * Cc, axis=1)
    nc_ = tl.load(nstates_ptr + ((b * H + h) * (NC + 1) + c) * K + kk, mask=kk < K, other=0.0)
    gn = tl.load(dnstates_ptr + ((b * H + h) * NC + c) * K + kk, mask=kk < K, other=0.0)
    mask_tk = mask_t[:, None] & (kk < K)[None, :]
    off_tk = ((b * T + t[:, None]) * H + h) * K + kk[None, :]
    qt = tl.load(q_ptr + off_tk, mask=mask_tk, other=0.0).to(tl.float32) * scale
    kt = tl.load(k_ptr + off_tk, mask=mask_tk, other=0.0).to(tl.float32)
    kt_t = tl.trans(kt)  # [BK, BL]

    pd = tl.exp(p_log) * (dpv + dden[:, None])  # [BL, BL]
    dq = dot(pd, kt, MODE) + alpha[:, None] * (dq_in + dden[:, None] * nc_[None, :])
    dk_state_t = dk_st_t + gn[:, None]  # [BK, BL]
    dk_t = dot(tl.trans(qt), pd, MODE) + w[None, :] * dk_state_t
    tl.store(dq_ptr + off_tk, (dq * scale).to(dq_ptr.dtype.element_ty), mask=mask_tk)
    off_kt = ((b * T + t[None, :]) * H + h) * K + kk[:, None]
    tl.store(dk_ptr + off_kt, dk_t.to(dk_ptr.dtype.element_ty), mask=(kk < K)[:, None] & mask_t[None, :])

    bc, _ = _chunk_gates(i_ptr, f_ptr, b, h, c, T, H, L, BL)
    b_last = tl.min(bc, axis=0)
    m_c = tl.load(mstates_ptr + (b * H + h) * (NC + 1) + c)
    m_next = tl.load(mstates_ptr + (b * H + h) * (NC + 1) + c + 1)
    beta = tl.exp(b_last + m_c - m_next)
    writes = tl.sum(tl.sum(kt_t * w[None, :] * dk_state_t, axis=1), axis=0)  # Σ_s w_s k_s·(G v_s + Gn)
    last = beta * (tl.sum(gc, axis=0) + tl.sum(gn * nc_, axis=0)) + writes
    part = (i_k * tl.num_programs(2) + bh) * NC * L + t
    tl.store(qdq_ptr + part, tl.sum(dq * qt, axis=1), mask=l < L)
    tl.store(kdk_ptr + part, tl.sum(dk_t * kt_t, axis=0), mask=l < L)
    tl.store(dlast_ptr + (i_k * tl.num_programs(2) + bh) * NC + c, last)


@triton.jit(do_not_specialize=["T", "L", "NC", "BH_TOTAL"])
def mlstm_bwd_kernel_gates(
    f_ptr, qdq_ptr, kdk_ptr, dlast_ptr, route_ptr, dm_ptr, di_ptr, df_ptr,
    T, H, L, NC, NK, BH_TOTAL,
    HAS_ROUTE: tl.constexpr, BL: tl.constexpr,
):
    """di = k·dk and df = σ(-f) · reverse-cumsum(q·dq - k·dk), with the chunk-end term on the last token.

    The final m's cotangent goes along its arg-max path: to i at position `route` and to every logσ(f)
    after it (route = -1: the initial m won, every token). Grid (chunks, B·H).
    """
    c, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), bh % H
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    qdq = tl.zeros([BL], dtype=tl.float32)
    kdk = tl.zeros([BL], dtype=tl.float32)
    dlast = tl.sum(tl.zeros([BL], dtype=tl.float32), axis=0)
    for i_k in range(NK):
        part = (i_k * BH_TOTAL + bh) * NC * L + t
        qdq += tl.load(qdq_ptr + part, mask=l < L, other=0.0)
        kdk += tl.load(kdk_ptr + part, mask=l < L, other=0.0)
        dlast += tl.load(dlast_ptr + (i_k * BH_TOTAL + bh) * NC + c)
    n_real = tl.minimum(L, T - c * L)
    db = qdq - kdk + tl.where(l == n_real - 1, dlast, 0.0)
    dlogf = tl.cumsum(db, axis=0, reverse=True)
    di = kdk
    if HAS_ROUTE:
        route = tl.load(route_ptr + bh)
        dm = tl.load(dm_ptr + bh)
        dlogf += tl.where(t > route, dm, 0.0)
        di += tl.where(t == route, dm, 0.0)
    f = tl.load(f_ptr + (b * T + t) * H + h, mask=mask_t, other=0.0).to(tl.float32)
    df = dlogf * tl.sigmoid(-f)
    tl.store(di_ptr + (b * T + t) * H + h, di.to(di_ptr.dtype.element_ty), mask=mask_t)
    tl.store(df_ptr + (b * T + t) * H + h, df.to(df_ptr.dtype.element_ty), mask=mask_t)


def _tiles(K: int, V: int, L: int) -> dict[str, int]:
    return {"BL": block(L), "BK": min(64, block(K)), "BV": min(64, block(V))}


def walks(n: int) -> int:
    """The tuning key's count of sequential walks (sequences × heads), to a power of two: the state kernels' best
    tiles at B16 H4 and at B4 H4 differ (at 16 walks of 128 chunks each, 64 × 64 tiles leave most of an H200's SMs
    idle), and one tuning must not serve both."""
    return triton.next_power_of_2(n)


def dqk_block_k(K: int) -> int:
    """The block of K that each program of `mlstm_bwd_kernel_dqk` owns: 64 (at most K), or `KERNELS_MLSTM_DQK_BK`
    (read at each call, for measurements). A host choice, not a tuned one: the per-block partial sums that the
    gates kernel adds up are as many as the blocks.

    The kernel holds three fp32 accumulators, two of them [L, BK]. Held to 2 warps (as it was on Hopper under
    Triton 3.4-3.7.0 before `ampere_mma`), ptxas compiles the BK = 64 form at 32 registers and 20 KB spilled a
    thread, the BK = 32 form at 255 and 868 bytes (`benchmarks/compile_sm90.py --op mlstm --registers`, Triton
    3.9, sm_90a); at the 4 and 8 warps it now runs at, blocks of 64 keys are the faster on an H200
    (docs/benchmarks/kernels_h200.md)."""
    bk = int(os.environ.get("KERNELS_MLSTM_DQK_BK", 64))
    if bk < 16 or bk & (bk - 1):
        raise ValueError(f"KERNELS_MLSTM_DQK_BK={bk}: use a power of two of at least 16 (32 or 64)")
    return min(bk, block(K))


def mlstm_fwd(q, k, v, i, f, C0, n0, m0, chunk_size):
    """Returns `(h, (C, n, m) final fp32, saved)`; `saved` holds what the backward reads."""
    b, T, H, K = q.shape
    V = v.shape[-1]
    L = chunk_size
    nc = triton.cdiv(T, L)
    blocks, mode = _tiles(K, V, L), dot_mode(q.dtype)
    dims = (T, H, K, V, L, nc)
    dev, fp32 = q.device, torch.float32

    states = torch.empty(b, H, nc + 1, K, V, device=dev, dtype=state_dtype(q.dtype))
    nstates = torch.empty(b, H, nc + 1, K, device=dev, dtype=fp32)
    mstates = torch.empty(b, H, nc + 1, device=dev, dtype=fp32)
    Cf = torch.empty(b, H, K, V, device=dev, dtype=fp32)
    nf = torch.empty(b, H, K, device=dev, dtype=fp32)
    mf = torch.empty(b, H, device=dev, dtype=fp32)
    grid = lambda meta: (triton.cdiv(K, meta["BK"]), triton.cdiv(V, meta["BV"]), b * H)  # noqa: E731
    mlstm_fwd_kernel_states[grid](
        k, v, i, f, C0, n0, m0, states, nstates, mstates, Cf, nf, mf, *dims, walks(b * H),
        HAS_INIT=C0 is not None, MODE=mode, BL=blocks["BL"],
    )

    h = torch.empty(b, T, H, V, device=dev, dtype=q.dtype)
    mtok = torch.empty(b, H, nc * L, device=dev, dtype=fp32)
    den = torch.empty(b, H, nc * L, device=dev, dtype=fp32)
    grid = lambda meta: (triton.cdiv(V, meta["BV"]), nc, b * H)  # noqa: E731
    mlstm_fwd_kernel_output[grid](
        q, k, v, i, f, states, nstates, mstates, h, mtok, den, K**-0.5, *dims, MODE=mode,
        BL=blocks["BL"], BK=blocks["BK"],
    )
    return h, (Cf, nf, mf), (states, nstates, mstates, mtok, den)


def mlstm_bwd(dh, dCf, dnf, dmf, q, k, v, i, f, h, final, saved, m0, chunk_size, has_init):
    """Returns `(dq, dk, dv, di, df, dC0, dn0, dm0)` (the last three None without an initial state)."""
    states, nstates, mstates, mtok, den = saved
    b, T, H, K = q.shape
    V = v.shape[-1]
    L = chunk_size
    nc = triton.cdiv(T, L)
    blocks, mode = _tiles(K, V, L), dot_mode(q.dtype)
    dims = (T, H, K, V, L, nc)
    dev, fp32 = q.device, torch.float32
    scale = K**-0.5
    has_dfinal = dCf is not None or dnf is not None
    if has_dfinal:
        dCf = torch.zeros_like(final[0]) if dCf is None else dCf.float().contiguous()
        dnf = torch.zeros_like(final[1]) if dnf is None else dnf.float().contiguous()

    rn = torch.empty(b, H, nc * L, device=dev, dtype=fp32)
    dden = torch.empty(b, H, nc * L, device=dev, dtype=fp32)
    mlstm_bwd_kernel_prep[(nc, b * H)](
        h, dh, mtok, den, rn, dden, T, H, V, L, nc, BL=blocks["BL"], BV=blocks["BV"]
    )

    dstates = torch.empty(b, H, nc, K, V, device=dev, dtype=states.dtype)
    dnstates = torch.empty(b, H, nc, K, device=dev, dtype=fp32)
    dC0 = torch.empty(b, H, K, V, device=dev, dtype=fp32)
    dn0 = torch.empty(b, H, K, device=dev, dtype=fp32)
    grid = lambda meta: (triton.cdiv(K, meta["BK"]), triton.cdiv(V, meta["BV"]), b * H)  # noqa: E731
    mlstm_bwd_kernel_dstates[grid](
        q, dh, i, f, mtok, rn, dden, mstates, dCf, dnf, dstates, dnstates, dC0, dn0,
        scale, *dims, walks(b * H), HAS_DFINAL=has_dfinal, MODE=mode, BL=blocks["BL"],
    )

    dv = torch.empty_like(v)
    grid = lambda meta: (triton.cdiv(V, meta["BV"]), nc, b * H)  # noqa: E731
    mlstm_bwd_kernel_dv[grid](
        q, k, dh, i, f, mtok, rn, mstates, dstates, dv, scale, *dims,
        MODE=mode, BL=blocks["BL"], BK=blocks["BK"],
    )

    dq, dk = torch.empty_like(q), torch.empty_like(k)
    bk = dqk_block_k(K)
    n_kq = triton.cdiv(K, bk)
    qdq = torch.empty(n_kq, b * H, nc * L, device=dev, dtype=fp32)
    kdk = torch.empty(n_kq, b * H, nc * L, device=dev, dtype=fp32)
    dlast = torch.empty(n_kq, b * H, nc, device=dev, dtype=fp32)
    mlstm_bwd_kernel_dqk[(n_kq, nc, b * H)](
        q, k, v, dh, i, f, mtok, rn, dden, states, nstates, mstates, dstates, dnstates,
        dq, dk, qdq, kdk, dlast, scale, *dims, MODE=mode, **{**blocks, "BK": bk},
    )

    # the final m's cotangent, less what it does through C_T and n_T, along the arg-max path of m_T
    route = dm = None
    if has_dfinal or dmf is not None:
        Cf, nf, _ = final
        dm = torch.zeros(b, H, device=dev, dtype=fp32) if dmf is None else dmf.float().clone()
        if has_dfinal:
            dm -= (dCf * Cf).sum((-2, -1)) + (dnf * nf).sum(-1)
        route = _argmax_path(i, f, m0)
    di, df = torch.empty_like(i), torch.empty_like(f)
    mlstm_bwd_kernel_gates[(nc, b * H)](
        f, qdq, kdk, dlast, route, dm, di, df, T, H, L, nc, n_kq, b * H, HAS_ROUTE=route is not None,
        BL=blocks["BL"],
    )
    if not has_init:
        return dq, dk, dv, di, df, None, None, None
    # ⟨G_0, C_0⟩ + ⟨Gn_0, n_0⟩, with C_0 as the kernels read it (states[:, :, 0], in the states' dtype)
    dm0 = (dC0 * states[:, :, 0].float()).sum((-2, -1)) + (dn0 * nstates[:, :, 0]).sum(-1)
    if route is not None:
        dm0 = dm0 + torch.where(route.view(b, H) < 0, dm, 0.0)
    return dq, dk, dv, di, df, dC0, dn0, dm0


def _argmax_path(i: Tensor, f: Tensor, m0: Tensor | None) -> Tensor:
    """[B·H] int32: the token s whose write sets m_T = max(m0 + F_T, max_s i_s + F_T - F_s), or -1 for m0.

    F is the cumulative logσ(f), in fp64 so that the comparison is as exact as the recurrence's.
    """
    b, _, H = i.shape
    F_cum = F.logsigmoid(f.double()).cumsum(1)  # [B, T, H]
    best, pos = (i.double() - F_cum).max(1)  # [B, H]
    m0 = torch.zeros_like(best) if m0 is None else m0.double()
    route = torch.where(m0 >= best, -1, pos)
    return route.to(torch.int32).reshape(b * H).contiguous()


# The forward and the backward as PyTorch operators with their autograd and their shapes registered, so
# that torch.compile traces a layer around them whole (fullgraph=True) instead of breaking its graph there;
# an eager call runs the same functions without the dispatcher (`eager_autograd`).
# The forward returns what the backward reads after h and the final (C, n, m); an operator returns no
# None, so the initial state's gradients without one are empty tensors between the two.
def _fwd(
    q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, C0: Tensor | None, n0: Tensor | None, m0: Tensor | None,
    chunk_size: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    with on_device(q), ampere_mma(dot_mode(q.dtype)):
        h, final, saved = mlstm_fwd(q, k, v, i, f, C0, n0, m0, chunk_size)
    return (h, *final, *saved)


mlstm_fwd_op = torch.library.custom_op("hybrid_nas::mlstm_fwd", _fwd, mutates_args=())

@mlstm_fwd_op.register_fake
def _(q, k, v, i, f, C0, n0, m0, chunk_size):
    b, T, H, K = q.shape
    V, nc, fp32 = v.shape[-1], -(-T // chunk_size), torch.float32
    return (
        q.new_empty(b, T, H, V), q.new_empty(b, H, K, V, dtype=fp32), q.new_empty(b, H, K, dtype=fp32),
        q.new_empty(b, H, dtype=fp32), q.new_empty(b, H, nc + 1, K, V, dtype=state_dtype(q.dtype)),
        q.new_empty(b, H, nc + 1, K, dtype=fp32), q.new_empty(b, H, nc + 1, dtype=fp32),
        q.new_empty(b, H, nc * chunk_size, dtype=fp32), q.new_empty(b, H, nc * chunk_size, dtype=fp32),
    )


def _bwd(
    dh: Tensor, dCf: Tensor | None, dnf: Tensor | None, dmf: Tensor | None, q: Tensor, k: Tensor, v: Tensor,
    i: Tensor, f: Tensor, h: Tensor, Cf: Tensor, nf: Tensor, mf: Tensor, states: Tensor, nstates: Tensor,
    mstates: Tensor, mtok: Tensor, den: Tensor, m0: Tensor | None, chunk_size: int, has_init: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    with on_device(q), ampere_mma(dot_mode(q.dtype)):
        grads = mlstm_bwd(dh, dCf, dnf, dmf, q, k, v, i, f, h, (Cf, nf, mf), (states, nstates, mstates, mtok, den),
                          m0, chunk_size, has_init)
    return tuple(q.new_empty(0) if g is None else g for g in grads)


mlstm_bwd_op = torch.library.custom_op("hybrid_nas::mlstm_bwd", _bwd, mutates_args=())

@mlstm_bwd_op.register_fake
def _(dh, dCf, dnf, dmf, q, k, v, i, f, h, Cf, nf, mf, states, nstates, mstates, mtok, den, m0, chunk_size, has_init):
    grads = (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(i), torch.empty_like(f))
    if not has_init:
        return (*grads, q.new_empty(0), q.new_empty(0), q.new_empty(0))
    return (*grads, torch.empty_like(Cf), torch.empty_like(nf), torch.empty_like(mf))


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, i, f, C0, _n0, m0, chunk_size = inputs
    keep_for_backward(ctx, (q, k, v, i, f, *output, m0), output[4:])
    ctx.chunk_size, ctx.has_init = chunk_size, C0 is not None


def _backward(ctx, dh, dCf, dnf, dmf, *_saved_grads):
    q, k, v, i, f, h, Cf, nf, mf, *saved, m0 = ctx.saved_tensors
    dh = torch.zeros_like(h) if dh is None else dh.contiguous()
    bwd = _bwd if eager(ctx) else mlstm_bwd_op
    dq, dk, dv, di, df, dC0, dn0, dm0 = bwd(dh, dCf, dnf, dmf, q, k, v, i, f, h, Cf, nf, mf, *saved, m0,
                                            ctx.chunk_size, ctx.has_init)
    if not ctx.has_init:
        dC0 = dn0 = dm0 = None
    return dq, dk, dv, di, df, dC0, dn0, dm0, None


mlstm_fwd_op.register_autograd(_backward, setup_context=_setup_context)
_mlstm = eager_autograd(mlstm_fwd_op, _fwd, _setup_context, _backward)


def mlstm_triton(q, k, v, i, f, *, initial_state=None, chunk_size: int = 64):
    """The Triton mLSTM; arguments and results as `reference.mlstm_chunked` (inputs already checked).

    The result does not depend on the chunk size, so a chunk is at most MAX_CHUNK tokens (the tiles
    of a longer one do not fit in registers) and at most T (a short sequence is one small chunk).
    """
    chunk_size = min(chunk_size, MAX_CHUNK, q.shape[1])
    q, k, v, i, f = (t.contiguous() for t in (q, k, v, i, f))
    C0 = n0 = m0 = None
    if initial_state is not None:  # the gradients cast back to the state's dtype
        C0, n0, m0 = (t.float().contiguous() for t in initial_state)
    h, C, n, m, *_ = _mlstm(q, k, v, i, f, C0, n0, m0, chunk_size)
    return h, (C, n, m)
