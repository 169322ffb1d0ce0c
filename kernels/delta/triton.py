"""The gated delta rule in Triton: chunked forward and backward kernels (WY / UT-transform form), and the
autograd Function.

The chunked form of `reference.gated_delta_chunked`, after flash-linear-attention's `chunk_gated_delta_rule`.
Per batch b, head h and chunk c of L tokens, with b_t = Σ_{j≤t} g_j the log decay from the chunk start
(a [K] row per token; a scalar gate fills it with one value), b_L the chunk's total and S_c [K, V] the
state entering the chunk, and the gated products

    G(x, y)_ts = Σ_i x_ti y_si exp(b_ti − b_si)      on s < t (G⁻) or s ≤ t (G⁺):

    forward   wy       A = diag(β) G⁻(k, k),  T = (I + A)⁻¹,  W = T diag(β) (k ⊙ e^b),  U' = T diag(β) v
              states   U_c = U' − W S_c,   S_{c+1} = e^{b_L} ⊙ S_c + (k ⊙ e^{b_L − b})ᵀ U_c   walks the chunks in order
              output   o = scale ((q ⊙ e^b) S_c + G⁺(q, k) U_c)
    backward  dv_local dU = scale G⁺(q, k)ᵀ do
              dstates  dU += (k ⊙ e^{b_L − b}) dS_{c+1},
                       dS_c = e^{b_L} ⊙ dS_{c+1} + scale (q ⊙ e^b)ᵀ do − Wᵀ dU       walks the chunks in reverse
              dwy      dv = β ⊙ Tᵀ dU, and through T: dA = −(Tᵀ dU U'ᵀ + Tᵀ dW Wᵀ) with dW = −dU S_cᵀ;
                       the [L, L] cotangents of G⁺(q, k) and G⁻(k, k), dβ
              dqkg     per block of K: dq, dk, and db = x ⊙ dx − y ⊙ dy for each gated product G(x, y)
                       (plus the decays' own terms), whose reverse cumulative sum is dg

A scalar gate's pairwise decay exp(b_t − b_s) multiplies the [L, L] product of tiles. A channel-wise
gate's cannot leave the sum over i, and exp(b_t) exp(−b_s) overflows fp32 once a chunk decays by more
than e^{−88}, so its gated products are formed pair by pair ([L, L, BK] tiles whose exponents are all
≤ 0): exact for any decay, on the CUDA cores, in chunks of at most 16 tokens (`CHANNEL`).

No dot reads the transpose of another dot's result (`kernels/_triton.py`): where a kernel needs both
orientations of an [L, L] product it forms each from loaded tiles.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from kernels._triton import (
    DOT_BF16,
    DOT_FP32,
    autotune,
    block,
    dot,
    dot_mode,
    eager,
    eager_autograd,
    keep_for_backward,
    on_device,
    state_dtype,
    tf32_mode,
    tiles,
    warps,
)
from kernels.delta.reference import MAX_CHANNEL_CHUNK

Tensor = torch.Tensor
MAX_CHUNK = 64


@triton.jit
def _gates(g_ptr, bb, h, c, T, H, K, L, kk, BL: tl.constexpr, CHANNEL: tl.constexpr):
    """(b [BL, BK] the log decay from the chunk start, b_L [BK] the chunk's, b_row [BL] a scalar gate's b).

    Padded tokens do not decay, so the last row of b is the chunk's total."""
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    if CHANNEL:
        g = tl.load(g_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :],
                    mask=mask_t[:, None] & (kk < K)[None, :], other=0.0).to(tl.float32)
        b = tl.cumsum(g, axis=0)
        b_row = tl.zeros([BL], dtype=tl.float32)
    else:
        gs = tl.load(g_ptr + (bb * T + t) * H + h, mask=mask_t, other=0.0).to(tl.float32)
        b_row = tl.cumsum(gs, axis=0)
        b = b_row[:, None] + (kk * 0).to(tl.float32)[None, :]
    b_last = tl.sum(tl.where(l[:, None] == BL - 1, b, 0.0), axis=0)
    return b, b_last, b_row


@triton.jit
def _gated(x, y, bx, by, bx_row, by_row, mask, MODE: tl.constexpr, CHANNEL: tl.constexpr):
    """[BL, BL]: Σ_i x_ti y_si exp(bx_ti − by_si) where `mask`, else 0 (one block of K's share)."""
    if CHANNEL:
        d = tl.where(mask[:, :, None], bx[:, None, :] - by[None, :, :], float("-inf"))  # [BL, BL, BK]
        out = tl.sum(x.to(tl.float32)[:, None, :] * y.to(tl.float32)[None, :, :] * tl.exp(d), axis=2)
    else:
        decay = tl.exp(tl.where(mask, bx_row[:, None] - by_row[None, :], float("-inf")))  # [BL, BL]
        out = dot(x, tl.trans(y), MODE) * decay
    return out


@triton.jit
def _gated_dot(M, y, bx, by, bx_row, by_row, mask, MODE: tl.constexpr, CHANNEL: tl.constexpr):
    """[BL, BK]: Σ_s M_ts y_s exp(bx_t − by_s) over s where `mask` (M [BL, BL], y [BL, BK])."""
    if CHANNEL:
        d = tl.where(mask[:, :, None], bx[:, None, :] - by[None, :, :], float("-inf"))  # [BL, BL, BK]
        out = tl.sum(M[:, :, None] * y.to(tl.float32)[None, :, :] * tl.exp(d), axis=1)
    else:
        decay = tl.exp(tl.where(mask, bx_row[:, None] - by_row[None, :], float("-inf")))
        out = dot(M * decay, y, MODE)
    return out


@triton.jit
def _unit_lower_inverse(A, BL: tl.constexpr):
    """(I + A)⁻¹ of a strictly lower triangular A [BL, BL], row by row: T_t = e_t − Σ_{s<t} A_ts T_s."""
    rows = tl.arange(0, BL)
    Tm = (rows[:, None] == rows[None, :]).to(tl.float32)
    for t in range(1, BL):
        a = tl.sum(tl.where(rows[:, None] == t, A, 0.0), axis=0)  # [BL] row t of A
        Tm = tl.where(rows[:, None] == t, Tm - tl.sum(a[:, None] * Tm, axis=0)[None, :], Tm)
    return Tm


@triton.jit
def _block(i, j, BL: tl.constexpr):
    """Offsets of the 16×16 block (i, j) of a [BL, BL] row-major tile."""
    r = tl.arange(0, 16)
    return (i * 16 + r[:, None]) * BL + j * 16 + r[None, :]


@triton.jit
def _unit_lower_inverse_blocks(A, a_buf, t_buf, BL: tl.constexpr, INV_MODE: tl.constexpr):
    """(I + A)⁻¹ of a strictly lower triangular A [BL, BL] (BL 16, 32 or 64) by blocks of 16 rows, as
    flash-linear-attention's solve_tril: the diagonal blocks' inverses D_i by forward substitution, all
    blocks at once (14 steps of vector operations on [BL/16, 16, 16], each reading its row of A from
    memory), then the blocks below them, a row of blocks at a time, T_ij = −D_i Σ_{j≤m<i} A_im T_mj (T_jj =
    D_j): 16×16 products in `INV_MODE` whose operands are read from memory. A goes through `a_buf` and T
    through `t_buf` ([BL, BL] fp32 slots); t_buf ends holding the inverse. A write that other threads of the
    program read is followed by a barrier: one per row of blocks."""
    NB: tl.constexpr = BL // 16
    rows = tl.arange(0, BL)
    full = rows[:, None] * BL + rows[None, :]
    tl.store(a_buf + full, A)
    tl.debug_barrier()
    blk = tl.arange(0, NB)[:, None, None]
    r = tl.arange(0, 16)[None, :, None]
    col = tl.arange(0, 16)[None, None, :]
    diag = (blk * 16 + r) * BL + blk * 16 + col  # [NB, 16, 16]: the diagonal blocks
    eye = (r == col).to(tl.float32) + tl.zeros([NB, 16, 16], dtype=tl.float32)
    D = eye - tl.load(a_buf + diag)  # rows 0 and 1 are final: e_0, and e_1 − A_10 e_0
    for t in range(2, 16):
        a = tl.load(a_buf + (blk * 16 + t) * BL + blk * 16 + r)  # [NB, 16, 1]: row t of each block, down axis 1
        D = tl.where(r == t, eye - tl.sum(a * D, axis=1)[:, None, :], D)
    tl.store(t_buf + diag, D)
    tl.store(t_buf + full, tl.zeros([BL, BL], dtype=tl.float32), mask=rows[:, None] // 16 < rows[None, :] // 16)
    tl.debug_barrier()
    for i in tl.static_range(1, NB):
        D_i = tl.load(t_buf + _block(i, i, BL))
        for j in tl.static_range(0, i):  # row i reads rows above it only
            acc = tl.zeros([16, 16], dtype=tl.float32)
            for m in tl.static_range(j, i):
                acc += dot(tl.load(a_buf + _block(i, m, BL)), tl.load(t_buf + _block(m, j, BL)), INV_MODE)
            tl.store(t_buf + _block(i, j, BL), -dot(D_i, acc, INV_MODE))
        tl.debug_barrier()
    return tl.load(t_buf + full)


@triton.jit
def _rows16(x, i, BL: tl.constexpr):
    """Elements 16·i to 16·i + 15 of a [BL] vector."""
    l = tl.arange(0, BL)
    r = tl.arange(0, 16)
    return tl.sum(tl.where(l[None, :] == i * 16 + r[:, None], x[None, :], 0.0), axis=1)


@triton.jit
def _load16(x_ptr, bb, h, c, i, T, H, D, L, dd):
    """Rows 16·i to 16·i + 15 of chunk c of a [B, T, H, D] tensor, columns dd (zero past the chunk's end)."""
    r = tl.arange(0, 16)
    t = c * L + i * 16 + r
    mask = (i * 16 + r < L) & (t < T)
    return tl.load(x_ptr + ((bb * T + t[:, None]) * H + h) * D + dd[None, :], mask=mask[:, None] & (dd < D)[None, :],
                   other=0.0)


@triton.jit
def _beta16(beta_ptr, bb, h, c, i, T, H, L):
    r = tl.arange(0, 16)
    t = c * L + i * 16 + r
    return tl.load(beta_ptr + (bb * T + t) * H + h, mask=(i * 16 + r < L) & (t < T), other=0.0).to(tl.float32)


@triton.jit
def _decayed(A, bi, bj, beta, DIAGONAL: tl.constexpr):
    """A block of diag(β) G⁻(k, k) from its undecayed product A = k_i k_jᵀ (a scalar gate; bi, bj the [16]
    log decays of its rows and columns, β its rows')."""
    r = tl.arange(0, 16)
    if DIAGONAL:
        decay = tl.exp(tl.where(r[:, None] > r[None, :], bi[:, None] - bj[None, :], float("-inf")))
    else:
        decay = tl.exp(bi[:, None] - bj[None, :])
    return A * decay * beta[:, None]


@triton.jit
def _substitute(D, A, t):
    """One step of forward substitution on a [16, 16] block: row t of D becomes e_t − Σ_{s<t} A_ts D_s."""
    r = tl.arange(0, 16)
    a = tl.sum(tl.where(r[:, None] == t, A, 0.0), axis=0)  # row t of A
    e_t = (r == t).to(tl.float32)
    return tl.where(r[:, None] == t, (e_t - tl.sum(a[:, None] * D, axis=0))[None, :], D)


@triton.jit
def _unit_lower_inverse_tiles(k_ptr, g_ptr, beta_ptr, tm_ptr, bb, h, c, T, H, K, L,
                              CHANNEL: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, MODE: tl.constexpr,
                              INV_MODE: tl.constexpr):
    """T = (I + A)⁻¹ of one chunk, A = diag(β) G⁻(k, k), formed in registers in blocks of 16 rows (BL 16, 32
    or 64), as flash-linear-attention's fused kkt and solve: the lower blocks A_ij = k_i k_jᵀ (decayed after
    the sum over K for a scalar gate), the diagonal blocks' inverses D_i by forward substitution (all of
    them in one loop of 14 steps), then T_ij = −D_i Σ_{j≤m<i} A_im T_mj by diagonals, as 16×16 products in
    `INV_MODE`, too small for Hopper's warpgroup MMA (the code that miscompiles, `kernels/_triton.py`). T
    goes to `tm_ptr` (the chunk's [BL, BL] slot, in its dtype) and is read back whole. A channel-wise gate's
    chunks are 16 tokens (BL 16): one block, its pairwise decays formed per block of K as `_gated` does."""
    NB: tl.constexpr = BL // 16
    r = tl.arange(0, 16)
    strict = r[:, None] > r[None, :]
    A00 = tl.zeros([16, 16], dtype=tl.float32)
    if NB > 1:
        A10 = tl.zeros([16, 16], dtype=tl.float32)
        A11 = tl.zeros([16, 16], dtype=tl.float32)
    if NB > 2:
        A20 = tl.zeros([16, 16], dtype=tl.float32)
        A21 = tl.zeros([16, 16], dtype=tl.float32)
        A22 = tl.zeros([16, 16], dtype=tl.float32)
        A30 = tl.zeros([16, 16], dtype=tl.float32)
        A31 = tl.zeros([16, 16], dtype=tl.float32)
        A32 = tl.zeros([16, 16], dtype=tl.float32)
        A33 = tl.zeros([16, 16], dtype=tl.float32)
    for k0 in range(0, K, BK):
        kk = k0 + tl.arange(0, BK)
        k0t = _load16(k_ptr, bb, h, c, 0, T, H, K, L, kk)
        if CHANNEL:  # BL == 16
            b, _, b_row = _gates(g_ptr, bb, h, c, T, H, K, L, kk, BL, CHANNEL)
            A00 += _gated(k0t, k0t, b, b, b_row, b_row, strict, MODE, CHANNEL)
        else:
            A00 += dot(k0t, tl.trans(k0t), MODE)
            if NB > 1:
                k1t = _load16(k_ptr, bb, h, c, 1, T, H, K, L, kk)
                A10 += dot(k1t, tl.trans(k0t), MODE)
                A11 += dot(k1t, tl.trans(k1t), MODE)
            if NB > 2:
                k2t = _load16(k_ptr, bb, h, c, 2, T, H, K, L, kk)
                k3t = _load16(k_ptr, bb, h, c, 3, T, H, K, L, kk)
                A20 += dot(k2t, tl.trans(k0t), MODE)
                A21 += dot(k2t, tl.trans(k1t), MODE)
                A22 += dot(k2t, tl.trans(k2t), MODE)
                A30 += dot(k3t, tl.trans(k0t), MODE)
                A31 += dot(k3t, tl.trans(k1t), MODE)
                A32 += dot(k3t, tl.trans(k2t), MODE)
                A33 += dot(k3t, tl.trans(k3t), MODE)
    beta0 = _beta16(beta_ptr, bb, h, c, 0, T, H, L)
    if CHANNEL:
        A00 = A00 * beta0[:, None]
    else:
        _, _, b_row = _gates(g_ptr, bb, h, c, T, H, K, L, r, BL, CHANNEL)
        b0 = _rows16(b_row, 0, BL)
        A00 = _decayed(A00, b0, b0, beta0, True)
        if NB > 1:
            beta1 = _beta16(beta_ptr, bb, h, c, 1, T, H, L)
            b1 = _rows16(b_row, 1, BL)
            A10 = _decayed(A10, b1, b0, beta1, False)
            A11 = _decayed(A11, b1, b1, beta1, True)
        if NB > 2:
            beta2 = _beta16(beta_ptr, bb, h, c, 2, T, H, L)
            beta3 = _beta16(beta_ptr, bb, h, c, 3, T, H, L)
            b2, b3 = _rows16(b_row, 2, BL), _rows16(b_row, 3, BL)
            A20 = _decayed(A20, b2, b0, beta2, False)
            A21 = _decayed(A21, b2, b1, beta2, False)
            A22 = _decayed(A22, b2, b2, beta2, True)
            A30 = _decayed(A30, b3, b0, beta3, False)
            A31 = _decayed(A31, b3, b1, beta3, False)
            A32 = _decayed(A32, b3, b2, beta3, False)
            A33 = _decayed(A33, b3, b3, beta3, True)

    eye = (r[:, None] == r[None, :]).to(tl.float32)
    D0 = eye - A00  # rows 0 and 1 are final: e_0, and e_1 − A_10 e_0
    if NB > 1:
        D1 = eye - A11
    if NB > 2:
        D2 = eye - A22
        D3 = eye - A33
    for t in range(2, 16):
        D0 = _substitute(D0, A00, t)
        if NB > 1:
            D1 = _substitute(D1, A11, t)
        if NB > 2:
            D2 = _substitute(D2, A22, t)
            D3 = _substitute(D3, A33, t)

    rows = tl.arange(0, BL)
    full = rows[:, None] * BL + rows[None, :]
    out = tm_ptr.dtype.element_ty
    tl.store(tm_ptr + full, tl.zeros([BL, BL], dtype=out), mask=rows[:, None] // 16 < rows[None, :] // 16)
    tl.store(tm_ptr + _block(0, 0, BL), D0.to(out))
    if NB > 1:
        T10 = -dot(D1, dot(A10, D0, INV_MODE), INV_MODE)
        tl.store(tm_ptr + _block(1, 0, BL), T10.to(out))
        tl.store(tm_ptr + _block(1, 1, BL), D1.to(out))
    if NB > 2:
        T21 = -dot(D2, dot(A21, D1, INV_MODE), INV_MODE)
        T32 = -dot(D3, dot(A32, D2, INV_MODE), INV_MODE)
        T20 = -dot(D2, dot(A20, D0, INV_MODE) + dot(A21, T10, INV_MODE), INV_MODE)
        T31 = -dot(D3, dot(A31, D1, INV_MODE) + dot(A32, T21, INV_MODE), INV_MODE)
        T30 = -dot(D3, dot(A30, D0, INV_MODE) + dot(A31, T10, INV_MODE) + dot(A32, T20, INV_MODE), INV_MODE)
        tl.store(tm_ptr + _block(2, 0, BL), T20.to(out))
        tl.store(tm_ptr + _block(2, 1, BL), T21.to(out))
        tl.store(tm_ptr + _block(2, 2, BL), D2.to(out))
        tl.store(tm_ptr + _block(3, 0, BL), T30.to(out))
        tl.store(tm_ptr + _block(3, 1, BL), T31.to(out))
        tl.store(tm_ptr + _block(3, 2, BL), T32.to(out))
        tl.store(tm_ptr + _block(3, 3, BL), D3.to(out))
    tl.debug_barrier()
    return tl.load(tm_ptr + full)

# Warp counts Triton 3.4–3.7.0 miscompiles on Hopper, by dot mode (`kernels._triton.autotune`). The dwy
# kernel once formed products whose right operand was another product; on an H200 with Triton 3.6 it read
# out-of-range shared memory in fp32 at 8 warps and hit an illegal access in bf16 at K = 32 at 4 or 8, so it
# was held to 2 warps (and spilled: 17.9 ms forward+backward). Every right operand is now a loaded tile:
# compute-sanitizer finds no error at 4 warps, fp32 or bf16, but still an invalid shared-memory read in its
# fp32 products at 8 (K = 12; docs/benchmarks/delta_h200.md). It runs at 4 warps; the others tune freely.
AVOID_DWY = {DOT_FP32: (8,), DOT_BF16: (8,)}
CHUNK_WARPS = warps((4, 2), (8, 2))
# the wy kernel's inverse is vector steps on 16×16 blocks: fewer warps sum their columns with fewer barriers
# (the forward at B8 T2048 H16 K128 V128 on the H200: 0.73 ms with 4 and 8 warps to choose from, 0.54 with
# 1 and 2 too; docs/benchmarks/delta_h200.md). W and U' alone are two products a block, as
# flash-linear-attention's recompute of w and u, tuned over the warps and pipeline stages it tunes over.
WY_WARPS = warps((1, 2), (2, 2)) + CHUNK_WARPS
WU_WARPS = warps((2, 2), (2, 3), (4, 3), (8, 3)) + CHUNK_WARPS
V_TILES = tiles(("BV",), [(32,), (64,)], (4, 2), (8, 2))
# the state kernels hold a whole [K, BV] state and [L, K] tiles: at K = 256 in fp32 (tf32x3) every config
# above asks for more shared memory than a Hopper SM has; these fit (`state_fits` keeps the others from compiling)
STATE_TILES = (V_TILES + tiles(("BV",), [(32,), (64,)], (2, 2), (2, 3), (4, 3), (4, 4))
               + tiles(("BV",), [(16,), (32,)], (4, 1))
               # with few sequences (B2 H16: 32 walks of 128 chunks for 132 SMs at T8192) V in 16s
               + tiles(("BV",), [(16,)], (2, 2), (2, 3), (4, 2), (4, 3)))


def state_fits(forward: bool) -> Callable[[triton.Config, dict], bool]:
    """Whether a state kernel's config fits a Hopper SM's 232,448 bytes of shared memory, which only K = 256
    (BKF 256) can exceed: its [K, BV] state and [L, K] tiles, once per pipeline stage. Compiled for sm_90a at
    chunks of 64 (`benchmarks/compile_sm90.py --registers --tiles 0 --bkf 256 --stages 1,2,3`;
    docs/benchmarks/logs/delta-registers-k256-stages-2026-12-02.md): fp32 products (tf32x3) fit at one stage,
    and the forward also at two with BV ≤ 32; bf16 ones at two, the forward at three with BV ≤ 32, and at
    2 warps both at three at every BV."""
    def fits(cfg: triton.Config, meta: dict) -> bool:
        if meta.get("BKF", 0) <= 128:
            return True
        stages = cfg.num_stages
        if meta.get("MODE") != DOT_FP32:  # bf16 tiles take half the bytes, and at 2 warps less again
            stages -= 2 if cfg.num_warps <= 2 else 1
        return stages <= 1 or (forward and stages == 2 and cfg.kwargs["BV"] <= 32)
    return fits


# the output kernel's tiles: wider ones, and more pipeline stages, as flash-linear-attention's chunk_fwd_o
OUTPUT_TILES = (V_TILES + tiles(("BV",), [(32,), (64,)], (2, 3), (4, 3))
                + tiles(("BV",), [(128,)], (4, 2), (8, 2), (8, 3)))


@triton.jit
def _chunk_inverse(k_ptr, g_ptr, beta_ptr, Tm_ptr, A_ptr, bh, c, T, H, K, L, NC,
                   CHANNEL: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, MODE: tl.constexpr,
                   INVERSE: tl.constexpr, INV_MODE: tl.constexpr):
    """T = (I + diag(β) G⁻(k, k))⁻¹ of chunk c, stored in its [BL, BL] slot of Tm (in Tm's dtype) and returned:
    by 16×16 tiles in registers (INVERSE 2), by blocks of 16 rows through memory (1; A and T in fp32 in A_ptr,
    a scratch of two [BL, BL] slots a chunk) or row by row (0). The products that form T from A are in
    `INV_MODE`."""
    bb, h = (bh // H).to(tl.int64), bh % H
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    chunk = (bh * NC + c).to(tl.int64) * BL * BL  # this chunk's [BL, BL] slot
    tm_ptr = Tm_ptr + chunk
    if INVERSE == 2:
        Tm = _unit_lower_inverse_tiles(k_ptr, g_ptr, beta_ptr, tm_ptr, bb, h, c, T, H, K, L, CHANNEL, BL, BK, MODE,
                                       INV_MODE)
    else:
        beta = tl.load(beta_ptr + (bb * T + t) * H + h, mask=mask_t, other=0.0).to(tl.float32)
        strict = l[:, None] > l[None, :]
        A = tl.zeros([BL, BL], dtype=tl.float32)
        for k0 in range(0, K, BK):
            kk = k0 + tl.arange(0, BK)
            kt = tl.load(k_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :],
                         mask=mask_t[:, None] & (kk < K)[None, :], other=0.0)
            b, _, b_row = _gates(g_ptr, bb, h, c, T, H, K, L, kk, BL, CHANNEL)
            A += _gated(kt, kt, b, b, b_row, b_row, strict, MODE, CHANNEL)
        if INVERSE == 1:
            a_buf = A_ptr + 2 * chunk
            Tm = _unit_lower_inverse_blocks(A * beta[:, None], a_buf, a_buf + BL * BL, BL, INV_MODE)
        else:
            Tm = _unit_lower_inverse(A * beta[:, None], BL)
        tl.store(tm_ptr + l[:, None] * BL + l[None, :], Tm.to(tm_ptr.dtype.element_ty))
    return Tm


@triton.jit
def _chunk_wu(Tm, k_ptr, v_ptr, g_ptr, beta_ptr, w_ptr, u0_ptr, gc_ptr, bh, c, T, H, K, V, L, NC,
              CHANNEL: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr):
    """W = T diag(β)(k ⊙ e^b) and U' = T diag(β) v of chunk c, stored in w and u0's dtype; a scalar gate's b
    (its sum from the chunk's start) in gc [B·H, NC·L] fp32, for the states kernel."""
    bb, h = (bh // H).to(tl.int64), bh % H
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    beta = tl.load(beta_ptr + (bb * T + t) * H + h, mask=mask_t, other=0.0).to(tl.float32)
    rows = (bh * NC * L + c * L + l).to(tl.int64)  # this chunk's rows of w and u0
    if not CHANNEL:
        _, _, b_row = _gates(g_ptr, bb, h, c, T, H, K, L, l, BL, CHANNEL)
        tl.store(gc_ptr + rows, b_row, mask=l < L)
        row_scale = tl.exp(b_row) * beta  # a scalar gate's e^b, and β, once for every block of K
    for k0 in range(0, K, BK):
        kk = k0 + tl.arange(0, BK)
        kt = tl.load(k_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :],
                     mask=mask_t[:, None] & (kk < K)[None, :], other=0.0).to(tl.float32)
        if CHANNEL:
            b, _, _ = _gates(g_ptr, bb, h, c, T, H, K, L, kk, BL, CHANNEL)
            w = dot(Tm, kt * tl.exp(b) * beta[:, None], MODE)
        else:
            w = dot(Tm, kt * row_scale[:, None], MODE)
        tl.store(w_ptr + rows[:, None] * K + kk[None, :], w.to(w_ptr.dtype.element_ty),
                 mask=(l < L)[:, None] & (kk < K)[None, :])
    for v0 in range(0, V, BV):
        vv = v0 + tl.arange(0, BV)
        vt = tl.load(v_ptr + ((bb * T + t[:, None]) * H + h) * V + vv[None, :],
                     mask=mask_t[:, None] & (vv < V)[None, :], other=0.0).to(tl.float32)
        u0 = dot(Tm, vt * beta[:, None], MODE)
        tl.store(u0_ptr + rows[:, None] * V + vv[None, :], u0.to(u0_ptr.dtype.element_ty),
                 mask=(l < L)[:, None] & (vv < V)[None, :])


@autotune(WY_WARPS, key=["K", "V", "BL", "CHANNEL"])
@triton.jit(do_not_specialize=["T", "L", "NC"])
def delta_fwd_kernel_wy(
    k_ptr, v_ptr, g_ptr, beta_ptr, Tm_ptr, A_ptr, w_ptr, u0_ptr, gc_ptr,
    T, H, K, V, L, NC,
    CHANNEL: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr,
    INVERSE: tl.constexpr, INV_MODE: tl.constexpr,
):
    """T = (I + diag(β) G⁻(k, k))⁻¹ of one chunk, W = T diag(β)(k ⊙ e^b) and U' = T diag(β) v, in one program
    (`_chunk_inverse`, then `_chunk_wu`). Tm [B·H, NC, BL, BL], w [B·H, NC·L, K] and u0 [B·H, NC·L, V] in the
    states' dtype. Grid (chunks, B·H)."""
    c, bh = tl.program_id(0), tl.program_id(1)
    Tm = _chunk_inverse(k_ptr, g_ptr, beta_ptr, Tm_ptr, A_ptr, bh, c, T, H, K, L, NC, CHANNEL, BL, BK, MODE, INVERSE,
                        INV_MODE)
    _chunk_wu(Tm, k_ptr, v_ptr, g_ptr, beta_ptr, w_ptr, u0_ptr, gc_ptr, bh, c, T, H, K, V, L, NC, CHANNEL, BL, BK, BV,
              MODE)


@autotune(WY_WARPS, key=["K", "BL", "CHANNEL"])
@triton.jit(do_not_specialize=["T", "L", "NC"])
def delta_fwd_kernel_inverse(
    k_ptr, g_ptr, beta_ptr, Tm_ptr, A_ptr,
    T, H, K, L, NC,
    CHANNEL: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, MODE: tl.constexpr, INVERSE: tl.constexpr,
    INV_MODE: tl.constexpr,
):
    """The wy kernel's first half alone (`KERNELS_DELTA_WY=split`): T of one chunk. Grid (chunks, B·H)."""
    c, bh = tl.program_id(0), tl.program_id(1)
    _chunk_inverse(k_ptr, g_ptr, beta_ptr, Tm_ptr, A_ptr, bh, c, T, H, K, L, NC, CHANNEL, BL, BK, MODE, INVERSE,
                   INV_MODE)


@autotune(WU_WARPS, key=["K", "V", "BL", "CHANNEL"])
@triton.jit(do_not_specialize=["T", "L", "NC"])
def delta_fwd_kernel_wu(
    k_ptr, v_ptr, g_ptr, beta_ptr, Tm_ptr, w_ptr, u0_ptr, gc_ptr,
    T, H, K, V, L, NC,
    CHANNEL: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr,
):
    """The wy kernel's second half alone (`KERNELS_DELTA_WY=split`): W and U' of one chunk from its T, read
    from Tm. Grid (chunks, B·H)."""
    c, bh = tl.program_id(0), tl.program_id(1)
    l = tl.arange(0, BL)
    Tm = tl.load(Tm_ptr + (bh * NC + c).to(tl.int64) * BL * BL + l[:, None] * BL + l[None, :])
    _chunk_wu(Tm, k_ptr, v_ptr, g_ptr, beta_ptr, w_ptr, u0_ptr, gc_ptr, bh, c, T, H, K, V, L, NC, CHANNEL, BL, BK, BV,
              MODE)


@autotune(STATE_TILES, key=["K", "V", "BL", "CHANNEL", "BH"], interpret={"BV": 32}, fit={"BV": "V"},
          fits=state_fits(forward=True))
@triton.jit(do_not_specialize=["T", "L", "NC", "BH"])
def delta_fwd_kernel_states(
    k_ptr, g_ptr, gc_ptr, w_ptr, u0_ptr, S0_ptr, u_ptr, states_ptr, Sf_ptr,
    T, H, K, V, L, NC, BH,
    HAS_INIT: tl.constexpr, CHANNEL: tl.constexpr, BL: tl.constexpr, BKF: tl.constexpr, BV: tl.constexpr,
    MODE: tl.constexpr, EVEN: tl.constexpr,
):
    """U_c = U' − W S_c and the state entering each chunk, walking the chunks in order.

    states [B·H, NC, K, V] (index c: entering chunk c), u [B·H, NC·L, V] in their dtype, Sf the final state
    (fp32). A scalar gate's b comes from gc (the wy kernel's), so the walk has no scan or reduction across the
    chunk. EVEN: the chunk fills its tile (L = BL), so no row of it needs a mask. BH (B·H to a power of two) is
    read only by the autotuner: with few sequences a narrower tile of V gives the walk more programs.
    Grid (V/BV, B·H)."""
    i_v, bh = tl.program_id(0), tl.program_id(1)
    bb, h = (bh // H).to(tl.int64), bh % H
    kk = tl.arange(0, BKF)
    vv = i_v * BV + tl.arange(0, BV)
    l = tl.arange(0, BL)
    mask_kv = (kk < K)[:, None] & (vv < V)[None, :]
    in_chunk = tl.full([BL], 1, tl.int1) if EVEN else l < L  # the chunk's rows: EVEN, all BL of them
    if HAS_INIT:
        S = tl.load(S0_ptr + ((bh * K + kk[:, None]) * V + vv[None, :]).to(tl.int64), mask=mask_kv, other=0.0)
    else:
        S = tl.zeros([BKF, BV], dtype=tl.float32)
    for c in range(NC):
        off_s = ((bh * NC + c).to(tl.int64) * K + kk[:, None]) * V + vv[None, :]
        tl.store(states_ptr + off_s, S.to(states_ptr.dtype.element_ty), mask=mask_kv)
        t = c * L + l
        mask_t = in_chunk & (t < T)
        rows = (bh * NC * L + c * L + l).to(tl.int64)
        mask_lv = in_chunk[:, None] & (vv < V)[None, :]
        w = tl.load(w_ptr + rows[:, None] * K + kk[None, :], mask=in_chunk[:, None] & (kk < K)[None, :], other=0.0)
        u = tl.load(u0_ptr + rows[:, None] * V + vv[None, :], mask=mask_lv, other=0.0).to(tl.float32) - dot(w, S, MODE)
        tl.store(u_ptr + rows[:, None] * V + vv[None, :], u.to(u_ptr.dtype.element_ty), mask=mask_lv)
        if CHANNEL:
            kt = tl.load(k_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :],
                         mask=mask_t[:, None] & (kk < K)[None, :], other=0.0)
            b, b_last, _ = _gates(g_ptr, bb, h, c, T, H, K, L, kk, BL, CHANNEL)
            k_out = kt.to(tl.float32) * tl.exp(b_last[None, :] - b)  # [BL, BKF]
            S = S * tl.exp(b_last)[:, None] + dot(tl.trans(k_out), u, MODE)
        else:  # a scalar decay scales U's rows instead of k's: [BL, BV] products, not [BL, BKF]
            b_row = tl.load(gc_ptr + rows, mask=in_chunk, other=0.0)
            b_end = tl.load(gc_ptr + bh * NC * L + c * L + L - 1)  # padded tokens do not decay
            # kᵀ loaded as it is multiplied ([BKF, BL]), not transposed after the load: 148 registers instead
            # of 184 at BV 32 and 4 warps (compile_sm90.py --registers)
            kT = tl.load(k_ptr + ((bb * T + t[None, :]) * H + h) * K + kk[:, None],
                         mask=mask_t[None, :] & (kk < K)[:, None], other=0.0)
            S = S * tl.exp(b_end) + dot(kT, u * tl.exp(b_end - b_row)[:, None], MODE)
    tl.store(Sf_ptr + ((bh * K + kk[:, None]) * V + vv[None, :]).to(tl.int64), S, mask=mask_kv)


@autotune(OUTPUT_TILES, key=["K", "V", "BL", "CHANNEL"], interpret={"BV": 32}, fit={"BV": "V"})
@triton.jit(do_not_specialize=["T", "L", "NC"])
def delta_fwd_kernel_output(
    q_ptr, k_ptr, g_ptr, u_ptr, states_ptr, o_ptr,
    scale, T, H, K, V, L, NC,
    CHANNEL: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr,
):
    """o = scale ((q ⊙ e^b) S_c + G⁺(q, k) U_c) of one chunk. Grid (V/BV, chunks, B·H)."""
    i_v, c, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bb, h = (bh // H).to(tl.int64), bh % H
    vv = i_v * BV + tl.arange(0, BV)
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    causal = l[:, None] >= l[None, :]

    P = tl.zeros([BL, BL], dtype=tl.float32)
    qS = tl.zeros([BL, BV], dtype=tl.float32)
    for k0 in range(0, K, BK):
        kk = k0 + tl.arange(0, BK)
        mask_tk = mask_t[:, None] & (kk < K)[None, :]
        qt = tl.load(q_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
        kt = tl.load(k_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
        S = tl.load(states_ptr + ((bh * NC + c).to(tl.int64) * K + kk[:, None]) * V + vv[None, :],
                    mask=(kk < K)[:, None] & (vv < V)[None, :], other=0.0)  # [BK, BV]
        if CHANNEL:
            b, _, b_row = _gates(g_ptr, bb, h, c, T, H, K, L, kk, BL, CHANNEL)
            P += _gated(qt, kt, b, b, b_row, b_row, causal, MODE, CHANNEL)
            qS += dot(qt.to(tl.float32) * tl.exp(b), S, MODE)
        else:  # a scalar gate's decays leave the sums over K: applied once, below
            P += dot(qt, tl.trans(kt), MODE)
            qS += dot(qt, S, MODE)
    if not CHANNEL:
        _, _, b_row = _gates(g_ptr, bb, h, c, T, H, K, L, l, BL, CHANNEL)
        P = P * tl.exp(tl.where(causal, b_row[:, None] - b_row[None, :], float("-inf")))
        qS = qS * tl.exp(b_row)[:, None]
    rows = (bh * NC * L + c * L + l).to(tl.int64)
    u = tl.load(u_ptr + rows[:, None] * V + vv[None, :], mask=(l < L)[:, None] & (vv < V)[None, :], other=0.0)
    o = scale * (qS + dot(P, u, MODE))
    tl.store(o_ptr + ((bb * T + t[:, None]) * H + h) * V + vv[None, :], o.to(o_ptr.dtype.element_ty),
             mask=mask_t[:, None] & (vv < V)[None, :])


@autotune(V_TILES, key=["K", "V", "BL", "CHANNEL"], interpret={"BV": 32}, fit={"BV": "V"})
@triton.jit(do_not_specialize=["T", "L", "NC"])
def delta_bwd_kernel_dv_local(
    q_ptr, k_ptr, g_ptr, do_ptr, du_ptr,
    scale, T, H, K, V, L, NC,
    CHANNEL: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr,
):
    """dU = scale G⁺(q, k)ᵀ do of one chunk, the [s, t] product formed directly. Grid (V/BV, chunks, B·H)."""
    i_v, c, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bb, h = (bh // H).to(tl.int64), bh % H
    vv = i_v * BV + tl.arange(0, BV)
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    causal_t = l[None, :] >= l[:, None]  # [s, t]: t ≥ s

    Pt = tl.zeros([BL, BL], dtype=tl.float32)
    for k0 in range(0, K, BK):
        kk = k0 + tl.arange(0, BK)
        mask_tk = mask_t[:, None] & (kk < K)[None, :]
        qt = tl.load(q_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
        kt = tl.load(k_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
        b, _, b_row = _gates(g_ptr, bb, h, c, T, H, K, L, kk, BL, CHANNEL)
        Pt += _gated(kt, qt, -b, -b, -b_row, -b_row, causal_t, MODE, CHANNEL)  # e^{b_t − b_s}
    do = tl.load(do_ptr + ((bb * T + t[:, None]) * H + h) * V + vv[None, :],
                 mask=mask_t[:, None] & (vv < V)[None, :], other=0.0)
    du = scale * dot(Pt, do, MODE)
    rows = (bh * NC * L + c * L + l).to(tl.int64)
    tl.store(du_ptr + rows[:, None] * V + vv[None, :], du, mask=(l < L)[:, None] & (vv < V)[None, :])


@autotune(STATE_TILES, key=["K", "V", "BL", "CHANNEL"], interpret={"BV": 32}, fit={"BV": "V"},
          fits=state_fits(forward=False))
@triton.jit(do_not_specialize=["T", "L", "NC"])
def delta_bwd_kernel_dstates(
    q_ptr, k_ptr, g_ptr, do_ptr, w_ptr, dSf_ptr, du_local_ptr, du_ptr, dstates_ptr, dS0_ptr,
    scale, T, H, K, V, L, NC,
    HAS_DFINAL: tl.constexpr, CHANNEL: tl.constexpr, BL: tl.constexpr, BKF: tl.constexpr, BV: tl.constexpr,
    MODE: tl.constexpr,
):
    """dS_{c+1}, the gradient of the state leaving chunk c, walking the chunks in reverse; du = du_local
    plus the state's share. dstates[:, c] = dS_{c+1}; dS0 the initial state's gradient. Grid (V/BV, B·H).

    du is a buffer of its own, not du_local updated in place: autotuning runs the kernel many times."""
    i_v, bh = tl.program_id(0), tl.program_id(1)
    bb, h = (bh // H).to(tl.int64), bh % H
    kk = tl.arange(0, BKF)
    vv = i_v * BV + tl.arange(0, BV)
    l = tl.arange(0, BL)
    mask_kv = (kk < K)[:, None] & (vv < V)[None, :]
    if HAS_DFINAL:
        dS = tl.load(dSf_ptr + ((bh * K + kk[:, None]) * V + vv[None, :]).to(tl.int64), mask=mask_kv, other=0.0)
    else:
        dS = tl.zeros([BKF, BV], dtype=tl.float32)
    for i in range(NC):
        c = NC - 1 - i
        off_s = ((bh * NC + c).to(tl.int64) * K + kk[:, None]) * V + vv[None, :]
        tl.store(dstates_ptr + off_s, dS.to(dstates_ptr.dtype.element_ty), mask=mask_kv)
        t = c * L + l
        mask_t = (l < L) & (t < T)
        mask_tk = mask_t[:, None] & (kk < K)[None, :]
        rows = (bh * NC * L + c * L + l).to(tl.int64)
        mask_lv = (l < L)[:, None] & (vv < V)[None, :]
        qt = tl.load(q_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
        kt = tl.load(k_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
        b, b_last, _ = _gates(g_ptr, bb, h, c, T, H, K, L, kk, BL, CHANNEL)
        k_out = kt.to(tl.float32) * tl.exp(b_last[None, :] - b)
        du = tl.load(du_local_ptr + rows[:, None] * V + vv[None, :], mask=mask_lv, other=0.0) + dot(k_out, dS, MODE)
        tl.store(du_ptr + rows[:, None] * V + vv[None, :], du, mask=mask_lv)
        do = tl.load(do_ptr + ((bb * T + t[:, None]) * H + h) * V + vv[None, :],
                     mask=mask_t[:, None] & (vv < V)[None, :], other=0.0)
        w = tl.load(w_ptr + rows[:, None] * K + kk[None, :], mask=(l < L)[:, None] & (kk < K)[None, :], other=0.0)
        q_in = qt.to(tl.float32) * tl.exp(b)
        dS = dS * tl.exp(b_last)[:, None] + scale * dot(tl.trans(q_in), do, MODE) - dot(tl.trans(w), du, MODE)
    tl.store(dS0_ptr + ((bh * K + kk[:, None]) * V + vv[None, :]).to(tl.int64), dS, mask=mask_kv)


@autotune(CHUNK_WARPS, key=["K", "V", "BL", "CHANNEL"], avoid=AVOID_DWY)
@triton.jit(do_not_specialize=["T", "L", "NC"])
def delta_bwd_kernel_dwy(
    k_ptr, v_ptr, g_ptr, beta_ptr, do_ptr, Tm_ptr, w_ptr, u0_ptr, u_ptr, du_ptr, states_ptr,
    dv_ptr, dbeta_ptr, dkw_ptr, dP_ptr, dM_ptr,
    scale, T, H, K, V, L, NC,
    CHANNEL: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr,
):
    """Through the WY form of one chunk: dv, dβ, dk̃ = β ⊙ Tᵀ dW (kept for the next kernel), and the
    [BL, BL] cotangents of G⁺(q, k) and G⁻(k, k) ([t, s]; the next kernel reads them both ways).

    With DU = Tᵀ dU and DW = Tᵀ dW = −Σ_v DU_v S_vᵀ: dv = β ⊙ DU, dA = −(DU U'ᵀ + DW Wᵀ) on s < t,
    dG⁻ = diag(β) dA, dβ = v·DU + (k ⊙ e^b)·DW + Σ_s dA_ts G⁻_ts; dG⁺ = scale do Uᵀ on s ≤ t.
    Every product's right operand is a tile loaded from memory (Tᵀ, U'ᵀ, Uᵀ, S_cᵀ and Wᵀ are loaded
    transposed), the form Triton compiles right on Hopper at 4 warps (`AVOID_DWY`). Grid (chunks, B·H).
    """
    c, bh = tl.program_id(0), tl.program_id(1)
    bb, h = (bh // H).to(tl.int64), bh % H
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    rows = (bh * NC * L + c * L + l).to(tl.int64)
    beta = tl.load(beta_ptr + (bb * T + t) * H + h, mask=mask_t, other=0.0).to(tl.float32)
    off_ll = (bh * NC + c).to(tl.int64) * BL * BL + l[:, None] * BL + l[None, :]
    TmT = tl.load(Tm_ptr + (bh * NC + c).to(tl.int64) * BL * BL + l[None, :] * BL + l[:, None])  # Tᵀ

    dA = tl.zeros([BL, BL], dtype=tl.float32)
    dP = tl.zeros([BL, BL], dtype=tl.float32)
    dbeta = tl.zeros([BL], dtype=tl.float32)
    for v0 in range(0, V, BV):
        vv = v0 + tl.arange(0, BV)
        mask_lv = (l < L)[:, None] & (vv < V)[None, :]
        mask_vl = (vv < V)[:, None] & (l < L)[None, :]
        off_tv = ((bb * T + t[:, None]) * H + h) * V + vv[None, :]
        du = tl.load(du_ptr + rows[:, None] * V + vv[None, :], mask=mask_lv, other=0.0)
        uT = tl.load(u_ptr + rows[None, :] * V + vv[:, None], mask=mask_vl, other=0.0)  # [BV, BL]
        u0T = tl.load(u0_ptr + rows[None, :] * V + vv[:, None], mask=mask_vl, other=0.0)
        do = tl.load(do_ptr + off_tv, mask=mask_t[:, None] & (vv < V)[None, :], other=0.0)
        vt = tl.load(v_ptr + off_tv, mask=mask_t[:, None] & (vv < V)[None, :], other=0.0).to(tl.float32)
        DU = dot(TmT, du, MODE)  # [BL, BV]
        tl.store(dv_ptr + off_tv, (beta[:, None] * DU).to(dv_ptr.dtype.element_ty),
                 mask=mask_t[:, None] & (vv < V)[None, :])
        dbeta += tl.sum(vt * DU, axis=1)
        dA += dot(DU, u0T, MODE)
        dP += dot(do, uT, MODE)
    tl.store(dP_ptr + off_ll, tl.where(l[:, None] >= l[None, :], scale * dP, 0.0))

    strict = l[:, None] > l[None, :]
    G = tl.zeros([BL, BL], dtype=tl.float32)  # G⁻(k, k)
    for k0 in range(0, K, BK):
        kk = k0 + tl.arange(0, BK)
        mask_lk = (l < L)[:, None] & (kk < K)[None, :]
        DW = tl.zeros([BL, BK], dtype=tl.float32)
        for v0 in range(0, V, BV):
            vv = v0 + tl.arange(0, BV)
            du = tl.load(du_ptr + rows[:, None] * V + vv[None, :], mask=(l < L)[:, None] & (vv < V)[None, :],
                         other=0.0)
            ST = tl.load(states_ptr + ((bh * NC + c).to(tl.int64) * K + kk[None, :]) * V + vv[:, None],
                         mask=(vv < V)[:, None] & (kk < K)[None, :], other=0.0)  # [BV, BK]
            DW -= dot(dot(TmT, du, MODE), ST, MODE)
        wT = tl.load(w_ptr + rows[None, :] * K + kk[:, None], mask=(kk < K)[:, None] & (l < L)[None, :], other=0.0)
        dA += dot(DW, wT, MODE)
        kt = tl.load(k_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :],
                     mask=mask_t[:, None] & (kk < K)[None, :], other=0.0)
        b, _, b_row = _gates(g_ptr, bb, h, c, T, H, K, L, kk, BL, CHANNEL)
        dbeta += tl.sum(kt.to(tl.float32) * tl.exp(b) * DW, axis=1)
        tl.store(dkw_ptr + rows[:, None] * K + kk[None, :], beta[:, None] * DW, mask=mask_lk)
        G += _gated(kt, kt, b, b, b_row, b_row, strict, MODE, CHANNEL)
    dA = tl.where(strict, -dA, 0.0)
    dbeta += tl.sum(dA * G, axis=1)
    tl.store(dbeta_ptr + (bb * T + t) * H + h, dbeta.to(dbeta_ptr.dtype.element_ty), mask=mask_t)
    tl.store(dM_ptr + off_ll, beta[:, None] * dA)


@autotune(CHUNK_WARPS, key=["K", "V", "BL", "CHANNEL"])
@triton.jit(do_not_specialize=["T", "L", "NC"])
def delta_bwd_kernel_dqkg(
    q_ptr, k_ptr, g_ptr, do_ptr, u_ptr, states_ptr, dstates_ptr, dkw_ptr, dP_ptr, dM_ptr,
    dq_ptr, dk_ptr, dg_ptr,
    scale, T, H, K, V, L, NC,
    CHANNEL: tl.constexpr, BL: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, MODE: tl.constexpr,
):
    """dq, dk and the gate gradient of one chunk and block of K. Grid (K/BK, chunks, B·H).

    dq = dq̃ ⊙ e^b + [dG⁺ through its x side];  dk = dk̃ ⊙ e^b + dk̂ ⊙ e^{b_L − b} + [dG⁺'s y side, dG⁻'s
    both sides], with dq̃ = scale do S_cᵀ and dk̂ = U dS_{c+1}ᵀ; db = x ⊙ dx − y ⊙ dy for each gated product,
    + q̃ ⊙ dq̃ + k̃ ⊙ dk̃ − k̂ ⊙ dk̂, and at the chunk's last token the total's share
    Σ_t k̂ ⊙ dk̂ + e^{b_L} ⊙ Σ_v S_c ⊙ dS_{c+1}. dg is its reverse cumulative sum: per channel for a
    channel-wise gate, else this block's share of the sum over K ([K/BK, B·H, NC·L]).
    """
    i_k, c, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    bb, h = (bh // H).to(tl.int64), bh % H
    kk = i_k * BK + tl.arange(0, BK)
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    rows = (bh * NC * L + c * L + l).to(tl.int64)
    mask_tk = mask_t[:, None] & (kk < K)[None, :]

    dq_in = tl.zeros([BL, BK], dtype=tl.float32)  # do S_cᵀ
    dk_out = tl.zeros([BL, BK], dtype=tl.float32)  # U dS_{c+1}ᵀ
    SdS = tl.zeros([BK], dtype=tl.float32)  # Σ_v S_c ⊙ dS_{c+1}
    for v0 in range(0, V, BV):
        vv = v0 + tl.arange(0, BV)
        mask_kv = (kk < K)[:, None] & (vv < V)[None, :]
        off_s = ((bh * NC + c).to(tl.int64) * K + kk[:, None]) * V + vv[None, :]
        S = tl.load(states_ptr + off_s, mask=mask_kv, other=0.0)
        dS = tl.load(dstates_ptr + off_s, mask=mask_kv, other=0.0)
        do = tl.load(do_ptr + ((bb * T + t[:, None]) * H + h) * V + vv[None, :],
                     mask=mask_t[:, None] & (vv < V)[None, :], other=0.0)
        u = tl.load(u_ptr + rows[:, None] * V + vv[None, :], mask=(l < L)[:, None] & (vv < V)[None, :], other=0.0)
        dq_in += dot(do, tl.trans(S), MODE)
        dk_out += dot(u, tl.trans(dS), MODE)
        SdS += tl.sum(S.to(tl.float32) * dS.to(tl.float32), axis=1)
    dq_in *= scale

    qt = tl.load(q_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
    kt = tl.load(k_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :], mask=mask_tk, other=0.0)
    qf, kf = qt.to(tl.float32), kt.to(tl.float32)
    b, b_last, b_row = _gates(g_ptr, bb, h, c, T, H, K, L, kk, BL, CHANNEL)
    dk_in = tl.load(dkw_ptr + rows[:, None] * K + kk[None, :], mask=(l < L)[:, None] & (kk < K)[None, :], other=0.0)
    base = (bh * NC + c).to(tl.int64) * BL * BL
    off_ll, off_ll_t = base + l[:, None] * BL + l[None, :], base + l[None, :] * BL + l[:, None]
    dP, dP_t = tl.load(dP_ptr + off_ll), tl.load(dP_ptr + off_ll_t)
    dM, dM_t = tl.load(dM_ptr + off_ll), tl.load(dM_ptr + off_ll_t)
    causal = l[:, None] >= l[None, :]
    causal_t = l[None, :] >= l[:, None]
    strict = l[:, None] > l[None, :]
    strict_t = l[None, :] > l[:, None]
    dq_P = _gated_dot(dP, kt, b, b, b_row, b_row, causal, MODE, CHANNEL)  # Σ_s dP_ts k_s e^{b_t − b_s}
    dk_P = _gated_dot(dP_t, qt, -b, -b, -b_row, -b_row, causal_t, MODE, CHANNEL)  # Σ_t dP_ts q_t e^{..}
    dk_Mx = _gated_dot(dM, kt, b, b, b_row, b_row, strict, MODE, CHANNEL)
    dk_My = _gated_dot(dM_t, kt, -b, -b, -b_row, -b_row, strict_t, MODE, CHANNEL)

    e_in = tl.exp(b)
    e_out = tl.exp(b_last[None, :] - b)
    dq = dq_in * e_in + dq_P
    dk = dk_in * e_in + dk_out * e_out + dk_P + dk_Mx + dk_My
    tl.store(dq_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :], dq.to(dq_ptr.dtype.element_ty), mask=mask_tk)
    tl.store(dk_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :], dk.to(dk_ptr.dtype.element_ty), mask=mask_tk)

    k_out_dk = kf * e_out * dk_out
    db = (qf * e_in * dq_in + kf * e_in * dk_in - k_out_dk
          + qf * dq_P - kf * dk_P + kf * dk_Mx - kf * dk_My)  # [BL, BK]
    db_last = tl.sum(k_out_dk, axis=0) + tl.exp(b_last) * SdS  # [BK]
    db += tl.where(l[:, None] == BL - 1, db_last[None, :], 0.0)
    if CHANNEL:
        dg = tl.cumsum(db, axis=0, reverse=True)
        tl.store(dg_ptr + ((bb * T + t[:, None]) * H + h) * K + kk[None, :], dg.to(dg_ptr.dtype.element_ty),
                 mask=mask_tk)
    else:
        dg = tl.cumsum(tl.sum(db, axis=1), axis=0, reverse=True)
        tl.store(dg_ptr + (i_k * tl.num_programs(2) + bh).to(tl.int64) * NC * L + c * L + l, dg, mask=l < L)


INVERSES = {"rows": 0, "blocks": 1, "tiles": 2}
WY_FORMS = ("fused", "split")


def inverse_method() -> int:
    """How the wy kernel inverts each chunk's I + A, from `KERNELS_DELTA_INVERSE` (read at each call):
    `tiles` (the default: A and T formed in 16×16 blocks in registers, as flash-linear-attention's fused kkt
    and solve), `blocks` (14 steps of vector operations on the diagonal blocks of 16 rows, then 16×16
    products through memory) or `rows` (row by row: up to 63 steps of vector operations on [BL, BL]). The
    same result to the rounding of T's products; docs/benchmarks/delta_h200.md has their times: in a kernel
    of its own, `tiles` took 0.077 ms at B8 T2048 H16 K128 on the H200 and `blocks` 0.110. (Forming the
    blocks with [BL, BL] products in registers was slower still there and miscompiled: 64-row products,
    Hopper's warpgroup MMA, whose right operand is another product.)"""
    name = os.environ.get("KERNELS_DELTA_INVERSE", "tiles")
    if name not in INVERSES:
        raise ValueError(f"KERNELS_DELTA_INVERSE={name!r} is not an inverse method; use one of {', '.join(INVERSES)}")
    return INVERSES[name]


def wy_form() -> str:
    """`KERNELS_DELTA_WY` (read at each call): `split` (the default: T in a kernel of its own, tuned alone,
    then W and U' in another that reads T back, as flash-linear-attention splits its solve and its recompute
    of w and u) or `fused` (one program per chunk forms T, then W and U', at one warp count for both). The
    same numbers either way; split was the faster on the H200 with either inverse (tiles: 0.450 against 0.484 ms
    a forward, measured in one run before the last changes of docs/benchmarks/delta_h200.md section 7)."""
    name = os.environ.get("KERNELS_DELTA_WY", "split")
    if name not in WY_FORMS:
        raise ValueError(f"KERNELS_DELTA_WY={name!r} is not a form of the wy kernel; use one of {', '.join(WY_FORMS)}")
    return name


def _tiles(K: int, V: int, L: int, channel: bool) -> dict[str, int]:
    # a channel-wise gate's pairwise products are [BL, BL, BK] tiles: K in blocks of 16
    return {"BL": block(L), "BK": 16 if channel else min(64, block(K)), "BV": min(64, block(V))}


def delta_fwd(q, k, v, g, beta, S0, scale, chunk_size):
    """Returns `(o, final_state fp32, saved)`; `saved` holds what the backward reads."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    L = chunk_size
    nc = triton.cdiv(T, L)
    channel = g.ndim == 4
    blocks, mode = _tiles(K, V, L, channel), dot_mode(q.dtype)
    BL = blocks["BL"]
    dims = (T, H, K, V, L, nc)
    dev, fp32 = q.device, torch.float32

    kept = state_dtype(q.dtype)  # w, U' and U, as the states: bf16 for bf16 inputs (every reader multiplies
    # them in bf16; U = U' − W S_c is formed in fp32 and rounded once)
    # T too: its every reader multiplies it in the inputs' mode, so its products are tf32 for bf16 inputs
    Tm = torch.empty(B * H, nc, BL, BL, device=dev, dtype=kept)
    inverse, inv_mode = inverse_method(), tf32_mode(mode)
    A = torch.empty(B * H, nc, 2, BL, BL, device=dev, dtype=fp32) if inverse == INVERSES["blocks"] else Tm  # scratch
    w = torch.empty(B * H, nc * L, K, device=dev, dtype=kept)
    u0 = torch.empty(B * H, nc * L, V, device=dev, dtype=kept)
    gc = g if channel else torch.empty(B * H, nc * L, device=dev, dtype=fp32)  # a scalar gate's b (channel: unused)
    if wy_form() == "split":
        delta_fwd_kernel_inverse[(nc, B * H)](k, g, beta, Tm, A, T, H, K, L, nc, CHANNEL=channel, MODE=mode,
                                              INVERSE=inverse, INV_MODE=inv_mode, BL=BL, BK=blocks["BK"])
        delta_fwd_kernel_wu[(nc, B * H)](k, v, g, beta, Tm, w, u0, gc, *dims, CHANNEL=channel, MODE=mode, **blocks)
    else:
        delta_fwd_kernel_wy[(nc, B * H)](k, v, g, beta, Tm, A, w, u0, gc, *dims, CHANNEL=channel, MODE=mode,
                                         INVERSE=inverse, INV_MODE=inv_mode, **blocks)

    u = torch.empty(B * H, nc * L, V, device=dev, dtype=kept)
    states = torch.empty(B * H, nc, K, V, device=dev, dtype=kept)
    Sf = torch.empty(B, H, K, V, device=dev, dtype=fp32)
    grid = lambda meta: (triton.cdiv(V, meta["BV"]), B * H)  # noqa: E731
    delta_fwd_kernel_states[grid](
        k, g, gc, w, u0, S0, u, states, Sf, *dims, triton.next_power_of_2(B * H),
        HAS_INIT=S0 is not None, CHANNEL=channel, MODE=mode, BL=BL, BKF=block(K), EVEN=L == BL,
    )

    o = torch.empty(B, T, H, V, device=dev, dtype=q.dtype)
    grid = lambda meta: (triton.cdiv(V, meta["BV"]), nc, B * H)  # noqa: E731
    delta_fwd_kernel_output[grid](
        q, k, g, u, states, o, scale, *dims, CHANNEL=channel, MODE=mode, BL=BL, BK=blocks["BK"],
    )
    return o, Sf, (Tm, w, u0, u, states)


def delta_bwd(do, dSf, q, k, v, g, beta, saved, scale, chunk_size):
    """Returns `(dq, dk, dv, dg, dbeta, d initial_state fp32)`."""
    Tm, w, u0, u, states = saved
    B, T, H, K = q.shape
    V = v.shape[-1]
    L = chunk_size
    nc = triton.cdiv(T, L)
    channel = g.ndim == 4
    blocks, mode = _tiles(K, V, L, channel), dot_mode(q.dtype)
    BL, BK = blocks["BL"], blocks["BK"]
    dims = (T, H, K, V, L, nc)
    dev, fp32 = q.device, torch.float32

    du_local = torch.empty(B * H, nc * L, V, device=dev, dtype=fp32)
    grid = lambda meta: (triton.cdiv(V, meta["BV"]), nc, B * H)  # noqa: E731
    delta_bwd_kernel_dv_local[grid](q, k, g, do, du_local, scale, *dims, CHANNEL=channel, MODE=mode, BL=BL, BK=BK)

    dstates = torch.empty_like(states)
    dS0 = torch.empty(B, H, K, V, device=dev, dtype=fp32)
    du = torch.empty_like(du_local)
    grid = lambda meta: (triton.cdiv(V, meta["BV"]), B * H)  # noqa: E731
    delta_bwd_kernel_dstates[grid](
        q, k, g, do, w, dSf, du_local, du, dstates, dS0, scale, *dims,
        HAS_DFINAL=dSf is not None, CHANNEL=channel, MODE=mode, BL=BL, BKF=block(K),
    )

    dv, dbeta = torch.empty_like(v), torch.empty_like(beta)
    dkw = torch.empty(B * H, nc * L, K, device=dev, dtype=fp32)
    dP = torch.empty(B * H, nc, BL, BL, device=dev, dtype=fp32)
    dM = torch.empty(B * H, nc, BL, BL, device=dev, dtype=fp32)
    delta_bwd_kernel_dwy[(nc, B * H)](
        k, v, g, beta, do, Tm, w, u0, u, du, states, dv, dbeta, dkw, dP, dM, scale, *dims,
        CHANNEL=channel, MODE=mode, **blocks,
    )

    dq, dk = torch.empty_like(q), torch.empty_like(k)
    n_k = triton.cdiv(K, BK)
    dg = torch.empty_like(g) if channel else torch.empty(n_k, B * H, nc * L, device=dev, dtype=fp32)
    delta_bwd_kernel_dqkg[(n_k, nc, B * H)](
        q, k, g, do, u, states, dstates, dkw, dP, dM, dq, dk, dg, scale, *dims,
        CHANNEL=channel, MODE=mode, **blocks,
    )
    if not channel:  # the blocks' shares of the sum over K, [B·H, NC·L] -> [B, T, H]
        dg = dg.sum(0).view(B, H, nc * L)[:, :, :T].transpose(1, 2).contiguous().to(g.dtype)
    return dq, dk, dv, dg, dbeta, dS0


# The forward and the backward as PyTorch operators with their autograd and their shapes registered, so
# that torch.compile traces a layer around them whole (fullgraph=True) instead of breaking its graph there;
# an eager call runs the same functions without the dispatcher (`eager_autograd`).
# The forward returns what the backward reads after o and the final state.
def _fwd(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, initial_state: Tensor | None, scale: float,
    chunk_size: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    with on_device(q):
        o, Sf, saved = delta_fwd(q, k, v, g, beta, initial_state, scale, chunk_size)
    return (o, Sf, *saved)


gated_delta_fwd_op = torch.library.custom_op("hybrid_nas::gated_delta_fwd", _fwd, mutates_args=())


@gated_delta_fwd_op.register_fake
def _(q, k, v, g, beta, initial_state, scale, chunk_size):
    B, T, H, K = q.shape
    V, L = v.shape[-1], chunk_size
    nc, BL = -(-T // L), block(L)
    fp32, kept = torch.float32, state_dtype(q.dtype)
    return (
        q.new_empty(B, T, H, V), q.new_empty(B, H, K, V, dtype=fp32), q.new_empty(B * H, nc, BL, BL, dtype=kept),
        q.new_empty(B * H, nc * L, K, dtype=kept), q.new_empty(B * H, nc * L, V, dtype=kept),
        q.new_empty(B * H, nc * L, V, dtype=kept), q.new_empty(B * H, nc, K, V, dtype=kept),
    )


def _bwd(
    do: Tensor, d_final_state: Tensor | None, q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor,
    Tm: Tensor, w: Tensor, u0: Tensor, u: Tensor, states: Tensor, scale: float, chunk_size: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    with on_device(q):
        return delta_bwd(do, d_final_state, q, k, v, g, beta, (Tm, w, u0, u, states), scale, chunk_size)


gated_delta_bwd_op = torch.library.custom_op("hybrid_nas::gated_delta_bwd", _bwd, mutates_args=())


@gated_delta_bwd_op.register_fake
def _(do, d_final_state, q, k, v, g, beta, Tm, w, u0, u, states, scale, chunk_size):
    B, _, H, K = q.shape
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(g),
            torch.empty_like(beta), q.new_empty(B, H, K, v.shape[-1], dtype=torch.float32))


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, g, beta, initial_state, scale, chunk_size = inputs
    keep_for_backward(ctx, (q, k, v, g, beta, *output[2:]), output[2:])
    ctx.scale, ctx.chunk_size, ctx.has_init = scale, chunk_size, initial_state is not None


def _backward(ctx, do, d_final_state, *_saved_grads):
    q, k, v, g, beta, *saved = ctx.saved_tensors
    do = torch.zeros(*q.shape[:3], v.shape[-1], device=q.device, dtype=q.dtype) if do is None else do.contiguous()
    d_final_state = d_final_state.float().contiguous() if d_final_state is not None else None
    bwd = _bwd if eager(ctx) else gated_delta_bwd_op
    dq, dk, dv, dg, dbeta, dS0 = bwd(do, d_final_state, q, k, v, g, beta, *saved, ctx.scale, ctx.chunk_size)
    return dq, dk, dv, dg, dbeta, dS0 if ctx.has_init else None, None, None


gated_delta_fwd_op.register_autograd(_backward, setup_context=_setup_context)
_gated_delta = eager_autograd(gated_delta_fwd_op, _fwd, _setup_context, _backward)


def gated_delta_triton(q, k, v, g, beta, *, scale: float, initial_state=None, chunk_size: int = 64):
    """The Triton gated delta rule; arguments and results as `reference.gated_delta_chunked` (inputs
    already checked).

    The result does not depend on the chunk size, so a chunk is at most MAX_CHUNK tokens (the tiles of
    a longer one do not fit in registers), MAX_CHANNEL_CHUNK for a channel-wise gate, and at most T.
    """
    cap = MAX_CHANNEL_CHUNK if g.ndim == 4 else MAX_CHUNK
    chunk_size = min(chunk_size, cap, q.shape[1])
    q, k, v, g, beta = (t.contiguous() for t in (q, k, v, g, beta))
    S0 = initial_state.float().contiguous() if initial_state is not None else None  # its gradient casts back
    o, final_state, *_ = _gated_delta(q, k, v, g, beta, S0, scale, chunk_size)
    return o, final_state
