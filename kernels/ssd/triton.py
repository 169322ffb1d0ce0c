"""Mamba-2 SSD in Triton: chunked forward and backward kernels, and the autograd Function.

The chunked form of `reference.ssd_chunked`, in the style of flash-linear-attention's `chunk_simple_gla`
(SSD is simple GLA with q = C, k = B, v = dt·x and the scalar gate dt·A). Per batch b, head h and chunk c
of L tokens, with g_l = Σ_{j≤l} dt_j A the log decay from the chunk start and S_c [N, P] the state
entering the chunk (the transpose of the public [P, N] state):

    forward   cumsum   g [B, H, T']                                   (T' = chunks × L)
              cb       C Bᵀ [L, L] of each chunk, once per group (its heads share B and C)
              states   S_{c+1} = exp(g_L) S_c + (B ⊙ exp(g_L - g) dt)ᵀ x      walks the chunks in order
              output   y = exp(g) ⊙ C S_c + (C Bᵀ ⊙ exp(g_l - g_s)[s≤l] ⊙ dt_s) x + D x,  y ← y·silu(z)
    backward  dstates  dS_c = exp(g_L) dS_{c+1} + (C ⊙ exp(g))ᵀ dy              walks the chunks in reverse
              dx       dx, ddt, dz, and the partial sums of dA and dD, per head, from the forward's cb
              dbc      dB, dC, per group: the heads of a group summed inside the program

The states walk fuses Mamba-2's chunk-state and state-passing stages: it keeps S in registers, so the
per-chunk states are written once (in the input dtype for bf16 inputs) instead of a round trip in fp32.
All accumulation is fp32 (tl.dot with bf16 operands for bf16 inputs). The last chunk may be partial and
`chunk_size` need not be a power of two: tiles are padded and masked (padded tokens have dt = 0).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels._triton import (
    DOT_FP32,
    autotune,
    block,
    dot,
    dot_mode,
    eager,
    eager_autograd,
    keep_for_backward,
    on_device,
    silu_parts,
    state_dtype,
    tiles,
    warps,
)

Tensor = torch.Tensor
# Chunks of 128 tokens compile to tiles that spill (ssd_bwd_kernel_dx: 255 registers and 2-10 KB spilled per
# thread, `benchmarks/compile_sm90.py --op ssd --registers`), and on an H200 forward+backward took 1.0x, 1.66x
# and 1.68x the time of chunks of 64 at kernels.py's three shapes (docs/benchmarks/kernels_h200.md). Mamba-2's
# published chunk_size (256, its default in search_spaces) therefore runs in chunks of 64.
MAX_CHUNK = 64


@triton.jit(do_not_specialize=["T", "L", "NC"])
def ssd_fwd_kernel_cumsum(dt_ptr, A_ptr, g_ptr, T, H, L, NC, BL: tl.constexpr, BH: tl.constexpr):
    """g[b, h, c·L + l] = Σ_{j≤l} dt_j A_h within chunk c. Grid (chunks, B)."""
    c, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    l = tl.arange(0, BL)
    h = tl.arange(0, BH)
    t = c * L + l
    mask = ((l < L) & (t < T))[:, None] & (h < H)[None, :]
    dt = tl.load(dt_ptr + (b * T + t[:, None]) * H + h[None, :], mask=mask, other=0.0).to(tl.float32)
    A = tl.load(A_ptr + h, mask=h < H, other=0.0).to(tl.float32)
    g = tl.cumsum(dt * A[None, :], axis=0)  # [BL, BH]
    tl.store(g_ptr + (b * H + h[None, :]) * NC * L + t[:, None], g, mask=(l < L)[:, None] & (h < H)[None, :])


@triton.jit(do_not_specialize=["T", "L", "NC"])
def ssd_fwd_kernel_cb(
    B_ptr, C_ptr, cb_ptr, sbt, T, G, N, L, NC, BL: tl.constexpr, BN: tl.constexpr, MODE: tl.constexpr,
):
    """cb[b, g, c] = C Bᵀ [L, L] of chunk c (fp32; padded tokens give zero rows and columns). Grid (chunks, B·G).

    Every head of a group reads the same product: the output and dx kernels load it instead of forming it
    once per head (16 or 32 times at the proxies' single group)."""
    c, bg = tl.program_id(0), tl.program_id(1)
    b, grp = (bg // G).to(tl.int64), bg % G
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    cb = tl.zeros([BL, BL], dtype=tl.float32)
    for n0 in range(0, N, BN):
        n = n0 + tl.arange(0, BN)
        mask_tn = mask_t[:, None] & (n < N)[None, :]
        Cm = tl.load(C_ptr + (b * T + t[:, None]) * sbt + grp * N + n[None, :], mask=mask_tn, other=0.0)
        Bm = tl.load(B_ptr + (b * T + t[:, None]) * sbt + grp * N + n[None, :], mask=mask_tn, other=0.0)
        cb += dot(Cm, tl.trans(Bm), MODE)
    mask_ll = (l < L)[:, None] & (l < L)[None, :]
    tl.store(cb_ptr + ((bg * NC + c) * L + l[:, None]) * L + l[None, :], cb, mask=mask_ll)


@triton.jit
def _chunk_cb(cb_ptr, b, grp, c, G, L, NC, BL: tl.constexpr, TRANSPOSED: tl.constexpr):
    """The chunk's C Bᵀ as stored by `ssd_fwd_kernel_cb`, [l, s] (TRANSPOSED: [s, l]); zero outside L × L."""
    l = tl.arange(0, BL)
    base = cb_ptr + ((b * G + grp) * NC + c) * L * L
    mask_ll = (l < L)[:, None] & (l < L)[None, :]
    if TRANSPOSED:
        return tl.load(base + l[None, :] * L + l[:, None], mask=mask_ll, other=0.0)
    return tl.load(base + l[:, None] * L + l[None, :], mask=mask_ll, other=0.0)


@triton.jit
def _decayed_cb(cb_ptr, b, grp, c, G, L, NC, g, BL: tl.constexpr, TRANSPOSED: tl.constexpr):
    """C_l·B_s exp(g_l - g_s) for s ≤ l, else 0: [l, s] (TRANSPOSED: [s, l])."""
    l = tl.arange(0, BL)
    if TRANSPOSED:
        causal = (l[None, :] >= l[:, None]) & (l < L)[None, :]
        return _chunk_cb(cb_ptr, b, grp, c, G, L, NC, BL, True) * tl.exp(
            tl.where(causal, g[None, :] - g[:, None], float("-inf")))
    causal = (l[:, None] >= l[None, :]) & (l < L)[:, None]
    return _chunk_cb(cb_ptr, b, grp, c, G, L, NC, BL, False) * tl.exp(
        tl.where(causal, g[:, None] - g[None, :], float("-inf")))


# the sequential walks tune their split of the state: more programs, or fewer redundant loads
# warp counts Triton 3.4–3.7.0 miscompiles on Hopper, by dot mode (`kernels._triton.autotune`)
AVOID = {DOT_FP32: (8,)}
STATE_TILES = tiles(("BN", "BP"), [(64, 64), (32, 64), (32, 32)], (4, 2), (4, 3))
STATE_TILES_INTERPRETED = {"BN": 32, "BP": 32}
# The backward's two chunk kernels hold 180-255 registers a thread uncapped, one or two programs an SM (12.5%
# occupancy: docs/benchmarks/kernels_h200.md). Capped at 168 (4 warps) or 128 (8 warps), an SM holds three or two,
# and each thread spills up to ~500 bytes (`benchmarks/compile_sm90.py --op ssd --registers --maxnreg 128,168`):
# the autotuner weighs one against the other (on an H200 it chose the dx kernel's cap of 168)
CAPPED = ((4, 2, 168), (8, 2, 128))


@autotune(STATE_TILES, key=["N", "P", "BL"], interpret=STATE_TILES_INTERPRETED, fit={"BN": "N", "BP": "P"}, avoid=AVOID)
@triton.jit(do_not_specialize=["T", "L", "NC"])
def ssd_fwd_kernel_states(
    x_ptr, dt_ptr, B_ptr, g_ptr, init_ptr, states_ptr, final_ptr,
    sxt, sbt, T, H, G, P, N, L, NC,
    HAS_INIT: tl.constexpr, BL: tl.constexpr, BN: tl.constexpr, BP: tl.constexpr, MODE: tl.constexpr,
):
    """The state entering each chunk, S [N, P], walking the chunks in order. Grid (N/BN, P/BP, B·H)."""
    i_n, i_p, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, h = (bh // H).to(tl.int64), bh % H
    grp = h // (H // G)
    n = i_n * BN + tl.arange(0, BN)
    p = i_p * BP + tl.arange(0, BP)
    l = tl.arange(0, BL)
    mask_np = (n < N)[:, None] & (p < P)[None, :]
    if HAS_INIT:  # the public state is [B, H, P, N]
        S = tl.load(init_ptr + ((b * H + h) * P + p[None, :]) * N + n[:, None], mask=mask_np, other=0.0)
    else:
        S = tl.zeros([BN, BP], dtype=tl.float32)
    for c in range(NC):
        off_s = (((b * NC + c) * H + h) * N + n[:, None]) * P + p[None, :]
        tl.store(states_ptr + off_s, S.to(states_ptr.dtype.element_ty), mask=mask_np)
        t = c * L + l
        mask_t = (l < L) & (t < T)
        g = tl.load(g_ptr + (b * H + h) * NC * L + c * L + l, mask=l < L, other=0.0)  # [BL]
        g_last = tl.load(g_ptr + (b * H + h) * NC * L + c * L + L - 1)
        dt = tl.load(dt_ptr + (b * T + t) * H + h, mask=mask_t, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + (b * T + t[:, None]) * sxt + h * P + p[None, :],
                    mask=mask_t[:, None] & (p < P)[None, :], other=0.0)  # [BL, BP]
        Bm = tl.load(B_ptr + (b * T + t[:, None]) * sbt + grp * N + n[None, :],
                     mask=mask_t[:, None] & (n < N)[None, :], other=0.0).to(tl.float32)  # [BL, BN]
        w = tl.exp(g_last - g) * dt  # [BL] weight of each token's write in the chunk-end state
        S = S * tl.exp(g_last) + dot(tl.trans(Bm * w[:, None]), x, MODE)
    tl.store(final_ptr + ((b * H + h) * P + p[None, :]) * N + n[:, None], S, mask=mask_np)


@autotune(warps((4, 2), (4, 3), (8, 2)), key=["N", "P", "BL"], avoid=AVOID)
@triton.jit(do_not_specialize=["T", "L", "NC"])
def ssd_fwd_kernel_output(
    x_ptr, dt_ptr, C_ptr, D_ptr, z_ptr, g_ptr, states_ptr, cb_ptr, y_ptr,
    sxt, sbt, T, H, G, P, N, L, NC,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    BL: tl.constexpr, BN: tl.constexpr, BP: tl.constexpr, MODE: tl.constexpr,
):
    """y of one chunk: the entering state read by C, plus the masked quadratic form of the group's C Bᵀ.

    Grid (P/BP, chunks, B·H)."""
    i_p, c, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, h = (bh // H).to(tl.int64), bh % H
    grp = h // (H // G)
    p = i_p * BP + tl.arange(0, BP)
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    mask_tp = mask_t[:, None] & (p < P)[None, :]
    g = tl.load(g_ptr + (b * H + h) * NC * L + c * L + l, mask=l < L, other=0.0)
    dt = tl.load(dt_ptr + (b * T + t) * H + h, mask=mask_t, other=0.0).to(tl.float32)

    y = tl.zeros([BL, BP], dtype=tl.float32)
    for n0 in range(0, N, BN):
        n = n0 + tl.arange(0, BN)
        mask_tn = mask_t[:, None] & (n < N)[None, :]
        Cm = tl.load(C_ptr + (b * T + t[:, None]) * sbt + grp * N + n[None, :], mask=mask_tn, other=0.0)
        S = tl.load(states_ptr + (((b * NC + c) * H + h) * N + n[:, None]) * P + p[None, :],
                    mask=(n < N)[:, None] & (p < P)[None, :], other=0.0)  # [BN, BP]
        y += dot(Cm, S, MODE)
    y = y * tl.exp(g)[:, None]
    cb = _chunk_cb(cb_ptr, b, grp, c, G, L, NC, BL, False)  # [BL, BL] C_l · B_s
    causal = (l[:, None] >= l[None, :]) & (l < L)[:, None]
    decay = tl.exp(tl.where(causal, g[:, None] - g[None, :], float("-inf")))  # [BL, BL]
    x = tl.load(x_ptr + (b * T + t[:, None]) * sxt + h * P + p[None, :], mask=mask_tp, other=0.0)
    y += dot(cb * decay * dt[None, :], x, MODE)
    if HAS_D:
        y += tl.load(D_ptr + h).to(tl.float32) * x.to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + ((b * T + t[:, None]) * H + h) * P + p[None, :], mask=mask_tp, other=0.0)
        y = y * silu_parts(z.to(tl.float32))[0]
    off_tp = ((b * T + t[:, None]) * H + h) * P + p[None, :]
    tl.store(y_ptr + off_tp, y.to(y_ptr.dtype.element_ty), mask=mask_tp)


@autotune(STATE_TILES, key=["N", "P", "BL"], interpret=STATE_TILES_INTERPRETED, fit={"BN": "N", "BP": "P"}, avoid=AVOID)
@triton.jit(do_not_specialize=["T", "L", "NC"])
def ssd_bwd_kernel_dstates(
    dy_ptr, z_ptr, C_ptr, g_ptr, dfinal_ptr, dstates_ptr, dinit_ptr,
    sxt, sbt, T, H, G, P, N, L, NC,
    HAS_Z: tl.constexpr, HAS_DFINAL: tl.constexpr,
    BL: tl.constexpr, BN: tl.constexpr, BP: tl.constexpr, MODE: tl.constexpr,
):
    """dS_c, the gradient of the state at the end of chunk c, walking the chunks in reverse.

    Writes dS_{c+1} to dstates[:, c] and the gradient of the initial state. Grid (N/BN, P/BP, B·H).
    """
    i_n, i_p, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, h = (bh // H).to(tl.int64), bh % H
    grp = h // (H // G)
    n = i_n * BN + tl.arange(0, BN)
    p = i_p * BP + tl.arange(0, BP)
    l = tl.arange(0, BL)
    mask_np = (n < N)[:, None] & (p < P)[None, :]
    if HAS_DFINAL:
        dS = tl.load(dfinal_ptr + ((b * H + h) * P + p[None, :]) * N + n[:, None], mask=mask_np, other=0.0)
    else:
        dS = tl.zeros([BN, BP], dtype=tl.float32)
    for i in range(NC):
        c = NC - 1 - i
        off_s = (((b * NC + c) * H + h) * N + n[:, None]) * P + p[None, :]
        tl.store(dstates_ptr + off_s, dS.to(dstates_ptr.dtype.element_ty), mask=mask_np)
        t = c * L + l
        mask_t = (l < L) & (t < T)
        mask_tp = mask_t[:, None] & (p < P)[None, :]
        g = tl.load(g_ptr + (b * H + h) * NC * L + c * L + l, mask=l < L, other=0.0)
        g_last = tl.load(g_ptr + (b * H + h) * NC * L + c * L + L - 1)
        Cm = tl.load(C_ptr + (b * T + t[:, None]) * sbt + grp * N + n[None, :],
                     mask=mask_t[:, None] & (n < N)[None, :], other=0.0).to(tl.float32)  # [BL, BN]
        dy = tl.load(dy_ptr + ((b * T + t[:, None]) * H + h) * P + p[None, :], mask=mask_tp, other=0.0)
        dy = dy.to(tl.float32)
        if HAS_Z:
            z = tl.load(z_ptr + ((b * T + t[:, None]) * H + h) * P + p[None, :], mask=mask_tp, other=0.0)
            dy = dy * silu_parts(z.to(tl.float32))[0]
        dS = dS * tl.exp(g_last) + dot(tl.trans(Cm * tl.exp(g)[:, None]), dy, MODE)
    tl.store(dinit_ptr + ((b * H + h) * P + p[None, :]) * N + n[:, None], dS, mask=mask_np)


@autotune(warps((4, 2), (8, 2), (8, 3), *CAPPED), key=["N", "P", "BL"], avoid=AVOID)
@triton.jit(do_not_specialize=["T", "L", "NC"])
def ssd_bwd_kernel_dx(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dy_ptr, g_ptr, states_ptr, dstates_ptr, cb_ptr,
    dx_ptr, ddt_ptr, dz_ptr, dA_ptr, dD_ptr,
    sxt, sbt, T, H, G, P, N, L, NC,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    BL: tl.constexpr, BN: tl.constexpr, BP: tl.constexpr, MODE: tl.constexpr,
):
    """dx, ddt and dz of one chunk and head, and its share of dA and dD. Grid (chunks, B·H).

    With v = dt·x, dv = (C Bᵀ ⊙ decay)ᵀ dy + exp(g_L - g) ⊙ B dS_{c+1}. The forward's C Bᵀ is loaded in
    both orientations, so no dot reads a transposed accumulator (see `kernels/_triton.py`) and every
    [L, P] tile keeps the layout it is loaded and stored in. The gradient of the log decays,
    dg_l = C_l·dC_l - B_l·dB_l (plus the chunk-end terms at l = L-1), is formed from the same products
    without dB and dC themselves, and becomes d(dt·A) by a reverse cumulative sum.
    """
    c, bh = tl.program_id(0), tl.program_id(1)
    b, h = (bh // H).to(tl.int64), bh % H
    grp = h // (H // G)
    # the chunk's scalar base addresses carry the 64-bit part, so that every tile's offsets stay 32-bit (a
    # tile of 64-bit offsets held across the kernel is 64 registers a thread at 4 warps)
    row = b * T + c * L  # the chunk's first token
    x_ptr += row * sxt + h * P
    B_ptr += row * sbt + grp * N
    C_ptr += row * sbt + grp * N
    dt_ptr += row * H + h
    ddt_ptr += row * H + h
    g_ptr += ((b * H + h) * NC + c) * L
    states_ptr += ((b * NC + c) * H + h) * N * P
    dstates_ptr += ((b * NC + c) * H + h) * N * P
    rows_tp = (row * H + h) * P  # of dy, dx, z and dz
    p = tl.arange(0, BP)
    l = tl.arange(0, BL)
    mask_t = (l < L) & (c * L + l < T)
    mask_tp = mask_t[:, None] & (p < P)[None, :]
    off_tp = l[:, None] * (H * P) + p[None, :]
    g = tl.load(g_ptr + l, mask=l < L, other=0.0)
    g_last = tl.load(g_ptr + L - 1)
    dt = tl.load(dt_ptr + l * H, mask=mask_t, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + l[:, None] * sxt + p[None, :], mask=mask_tp, other=0.0)  # its dtype till used
    dy = tl.load(dy_ptr + rows_tp + off_tp, mask=mask_tp, other=0.0).to(tl.float32)

    # The tiles are formed in the order that keeps the fewest [L, P] and [L, L] tiles live at once: the
    # entering state's read y_in, used and dropped; then B dS_{c+1}, dv's addend; then the quadratic form,
    # after dx is stored.
    y_in = tl.zeros([BL, BP], dtype=tl.float32)  # C S_c
    for n0 in range(0, N, BN):
        n = n0 + tl.arange(0, BN)
        Cm = tl.load(C_ptr + l[:, None] * sbt + n[None, :], mask=mask_t[:, None] & (n < N)[None, :], other=0.0)
        S = tl.load(states_ptr + n[:, None] * P + p[None, :], mask=(n < N)[:, None] & (p < P)[None, :], other=0.0)
        y_in += dot(Cm, S, MODE)
    y_in = y_in * tl.exp(g)[:, None]
    if HAS_D:
        D = tl.load(D_ptr + h).to(tl.float32)
    if HAS_Z:  # dz needs the forward's y before the gate: y_in, the quadratic form over v, and D x
        z = tl.load(z_ptr + rows_tp + off_tp, mask=mask_tp, other=0.0).to(tl.float32)
        silu_z, dsilu_z = silu_parts(z)
        y = y_in + dot(_decayed_cb(cb_ptr, b, grp, c, G, L, NC, g, BL, False), x.to(tl.float32) * dt[:, None], MODE)
        if HAS_D:
            y += D * x.to(tl.float32)
        tl.store(dz_ptr + rows_tp + off_tp, (dy * y * dsilu_z).to(dz_ptr.dtype.element_ty), mask=mask_tp)
        dy = dy * silu_z
    dg = tl.sum(dy * y_in, axis=1)  # the entering state's read

    b_ds = tl.zeros([BL, BP], dtype=tl.float32)  # B dS_{c+1}
    s_ds = tl.sum(tl.zeros([BN], dtype=tl.float32), axis=0)  # Σ S_c ⊙ dS_{c+1}
    for n0 in range(0, N, BN):
        n = n0 + tl.arange(0, BN)
        mask_np = (n < N)[:, None] & (p < P)[None, :]
        Bm = tl.load(B_ptr + l[:, None] * sbt + n[None, :], mask=mask_t[:, None] & (n < N)[None, :], other=0.0)
        dS = tl.load(dstates_ptr + n[:, None] * P + p[None, :], mask=mask_np, other=0.0)  # [BN, BP]
        b_ds += dot(Bm, dS, MODE)
        S = tl.load(states_ptr + n[:, None] * P + p[None, :], mask=mask_np, other=0.0)
        s_ds += tl.sum(tl.sum(S.to(tl.float32) * dS.to(tl.float32), axis=1), axis=0)
    b_ds = b_ds * tl.exp(g_last - g)[:, None]
    v = x.to(tl.float32) * dt[:, None]  # formed here, after the state's products
    z_end = tl.sum(v * b_ds, axis=1)  # [BL]: the chunk-end state's share of dg

    dv = dot(_decayed_cb(cb_ptr, b, grp, c, G, L, NC, g, BL, True), dy, MODE) + b_ds  # [BL, BP]
    ddt_v = tl.sum(dv * x.to(tl.float32), axis=1)
    dx = dv * dt[:, None]
    if HAS_D:
        dx += D * dy
        tl.store(dD_ptr + (b * NC + c) * H + h, tl.sum(tl.sum(dy * x.to(tl.float32), axis=1), axis=0))
    tl.store(dx_ptr + rows_tp + off_tp, dx.to(dx_ptr.dtype.element_ty), mask=mask_tp)

    # dg_l, the rest: the quadratic form (rows +, columns -), the chunk-end state. C Bᵀ is loaded again, as
    # [l, s], rather than its transpose kept live across dx's store
    W = _decayed_cb(cb_ptr, b, grp, c, G, L, NC, g, BL, False) * dot(dy, tl.trans(v), MODE)  # [l, s]
    dg += tl.sum(W, axis=1) - tl.sum(W, axis=0) - z_end
    dg += tl.where(l == L - 1, tl.sum(z_end, axis=0) + tl.exp(g_last) * s_ds, 0.0)
    da = tl.cumsum(dg, axis=0, reverse=True)  # d(dt_l A): g_l = Σ_{j≤l} dt_j A
    A = tl.load(A_ptr + h).to(tl.float32)
    tl.store(ddt_ptr + l * H, (da * A + ddt_v).to(ddt_ptr.dtype.element_ty), mask=mask_t)
    tl.store(dA_ptr + (b * NC + c) * H + h, tl.sum(da * dt, axis=0))


@autotune(tiles(("BN",), [(64,), (32,)], (4, 2), (8, 2), (8, 3), *CAPPED), key=["N", "P", "BL"],
          interpret={"BN": 32}, fit={"BN": "N"}, avoid=AVOID)
@triton.jit(do_not_specialize=["T", "L", "NC"])
def ssd_bwd_kernel_dbc(
    x_ptr, dt_ptr, B_ptr, C_ptr, z_ptr, dy_ptr, g_ptr, states_ptr, dstates_ptr, dB_ptr, dC_ptr,
    sxt, sbt, T, H, G, P, N, L, NC,
    HAS_Z: tl.constexpr, BL: tl.constexpr, BN: tl.constexpr, BP: tl.constexpr, MODE: tl.constexpr,
):
    """dB and dC of one chunk and group, summed over the group's heads. Grid (N/BN, chunks, B·G).

    Per head, M = (dy vᵀ ⊙ decay) [L, L]; dC = Σ_h exp(g) dy S_cᵀ + (Σ_h M) B and
    dB = Σ_h exp(g_L - g) v dS_{c+1}ᵀ + (Σ_h M)ᵀ C: B and C are shared by the group, so M is summed first.
    dB is formed transposed ([N, L]), Cᵀ (Σ_h M), so that no dot reads the transpose of M.
    """
    i_n, c, bg = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b, grp = (bg // G).to(tl.int64), bg % G
    HG = H // G
    n = i_n * BN + tl.arange(0, BN)
    p = tl.arange(0, BP)
    l = tl.arange(0, BL)
    t = c * L + l
    mask_t = (l < L) & (t < T)
    mask_tp = mask_t[:, None] & (p < P)[None, :]
    mask_tn = mask_t[:, None] & (n < N)[None, :]
    mask_np = (n < N)[:, None] & (p < P)[None, :]
    causal = (l[:, None] >= l[None, :]) & (l < L)[:, None]

    msum = tl.zeros([BL, BL], dtype=tl.float32)
    dC = tl.zeros([BL, BN], dtype=tl.float32)
    dB_t = tl.zeros([BN, BL], dtype=tl.float32)
    for hh in range(HG):
        h = grp * HG + hh
        off_tp = ((b * T + t[:, None]) * H + h) * P + p[None, :]
        g = tl.load(g_ptr + (b * H + h) * NC * L + c * L + l, mask=l < L, other=0.0)
        g_last = tl.load(g_ptr + (b * H + h) * NC * L + c * L + L - 1)
        dt = tl.load(dt_ptr + (b * T + t) * H + h, mask=mask_t, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + (b * T + t[:, None]) * sxt + h * P + p[None, :], mask=mask_tp, other=0.0)
        v = x.to(tl.float32) * dt[:, None]
        dy = tl.load(dy_ptr + off_tp, mask=mask_tp, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_ptr + off_tp, mask=mask_tp, other=0.0).to(tl.float32)
            dy = dy * silu_parts(z)[0]
        decay = tl.exp(tl.where(causal, g[:, None] - g[None, :], float("-inf")))
        msum += dot(dy, tl.trans(v), MODE) * decay
        off_s = (((b * NC + c) * H + h) * N + n[:, None]) * P + p[None, :]
        S = tl.load(states_ptr + off_s, mask=mask_np, other=0.0)  # [BN, BP]
        dS = tl.load(dstates_ptr + off_s, mask=mask_np, other=0.0)
        dC += dot(dy * tl.exp(g)[:, None], tl.trans(S), MODE)
        dB_t += dot(dS, tl.trans(v * tl.exp(g_last - g)[:, None]), MODE)
    off_tn = ((b * T + t[:, None]) * G + grp) * N + n[None, :]
    Cm = tl.load(C_ptr + (b * T + t[:, None]) * sbt + grp * N + n[None, :], mask=mask_tn, other=0.0)
    Bm = tl.load(B_ptr + (b * T + t[:, None]) * sbt + grp * N + n[None, :], mask=mask_tn, other=0.0)
    dC += dot(msum, Bm, MODE)
    dB_t += dot(tl.trans(Cm), msum, MODE)
    tl.store(dC_ptr + off_tn, dC.to(dC_ptr.dtype.element_ty), mask=mask_tn)
    off_nt = ((b * T + t[None, :]) * G + grp) * N + n[:, None]  # [BN, BL]
    tl.store(dB_ptr + off_nt, dB_t.to(dB_ptr.dtype.element_ty), mask=(n < N)[:, None] & mask_t[None, :])


def _tiles(N: int, P: int, L: int) -> dict[str, int]:
    return {"BL": block(L), "BN": min(64, block(N)), "BP": min(64, block(P))}


def _state_grid(N: int, P: int, programs: int):
    return lambda meta: (triton.cdiv(N, meta["BN"]), triton.cdiv(P, meta["BP"]), programs)


def ssd_fwd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    initial_state: Tensor | None,
    chunk_size: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns `(y [B, T, H, P], final_state [B, H, P, N] fp32, g [B, H, T'], states [B, c, H, N, P],
    cb [B, G, c, L, L] fp32)`."""
    b, T, H, P = x.shape
    G, N = B.shape[2:]
    L = chunk_size
    nc = triton.cdiv(T, L)
    blocks, mode = _tiles(N, P, L), dot_mode(x.dtype)
    dims = (x.stride(1), B.stride(1), T, H, G, P, N, L, nc)  # strides: rows of a wider tensor are read in place

    g = torch.empty(b, H, nc * L, device=x.device, dtype=torch.float32)
    ssd_fwd_kernel_cumsum[(nc, b)](dt, A, g, T, H, L, nc, BL=blocks["BL"], BH=block(H, 1))
    cb = torch.empty(b, G, nc, L, L, device=x.device, dtype=torch.float32)
    ssd_fwd_kernel_cb[(nc, b * G)](B, C, cb, B.stride(1), T, G, N, L, nc, BL=blocks["BL"], BN=blocks["BN"], MODE=mode)

    states = torch.empty(b, nc, H, N, P, device=x.device, dtype=state_dtype(x.dtype))
    final = torch.empty(b, H, P, N, device=x.device, dtype=torch.float32)
    ssd_fwd_kernel_states[_state_grid(N, P, b * H)](
        x, dt, B, g, initial_state, states, final, *dims,
        HAS_INIT=initial_state is not None, MODE=mode, BL=blocks["BL"],
    )

    y = x.new_empty(x.shape)
    grid = (triton.cdiv(P, blocks["BP"]), nc, b * H)
    ssd_fwd_kernel_output[grid](
        x, dt, C, D, z, g, states, cb, y, *dims,
        HAS_D=D is not None, HAS_Z=z is not None, MODE=mode, **blocks,
    )
    return y, final, g, states, cb


def ssd_bwd(
    dy: Tensor,
    dfinal: Tensor | None,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    g: Tensor,
    states: Tensor,
    cb: Tensor,
    chunk_size: int,
) -> tuple[Tensor, ...]:
    """Returns `(dx, ddt, dA, dB, dC, dD or None, dz or None, d initial_state)`."""
    b, T, H, P = x.shape
    G, N = B.shape[2:]
    L = chunk_size
    nc = triton.cdiv(T, L)
    blocks, mode = _tiles(N, P, L), dot_mode(x.dtype)
    dims = (x.stride(1), B.stride(1), T, H, G, P, N, L, nc)  # strides: rows of a wider tensor are read in place
    has_z = z is not None

    dstates = torch.empty_like(states)
    dinit = torch.empty(b, H, P, N, device=x.device, dtype=torch.float32)
    ssd_bwd_kernel_dstates[_state_grid(N, P, b * H)](
        dy, z, C, g, dfinal, dstates, dinit, *dims,
        HAS_Z=has_z, HAS_DFINAL=dfinal is not None, MODE=mode, BL=blocks["BL"],
    )

    dx, ddt = x.new_empty(x.shape), torch.empty_like(dt)
    dz = torch.empty_like(z) if has_z else None
    dA_part = torch.empty(b, nc, H, device=x.device, dtype=torch.float32)
    dD_part = torch.empty(b, nc, H, device=x.device, dtype=torch.float32) if D is not None else None
    ssd_bwd_kernel_dx[(nc, b * H)](
        x, dt, A, B, C, D, z, dy, g, states, dstates, cb, dx, ddt, dz, dA_part, dD_part, *dims,
        HAS_D=D is not None, HAS_Z=has_z, MODE=mode, BL=blocks["BL"], BN=blocks["BN"], BP=block(P),
    )

    dB, dC = B.new_empty(B.shape), C.new_empty(C.shape)
    ssd_bwd_kernel_dbc[lambda meta: (triton.cdiv(N, meta["BN"]), nc, b * G)](
        x, dt, B, C, z, dy, g, states, dstates, dB, dC, *dims,
        HAS_Z=has_z, MODE=mode, BL=blocks["BL"], BP=block(P),
    )
    dA = dA_part.sum((0, 1)).to(A.dtype)
    dD = dD_part.sum((0, 1)).to(D.dtype) if D is not None else None
    return dx, ddt, dA, dB, dC, dD, dz, dinit


# The forward and the backward as PyTorch operators with their autograd and their shapes registered, so
# that torch.compile traces a layer around them whole (fullgraph=True) instead of breaking its graph there;
# an eager call runs the same functions without the dispatcher (`eager_autograd`).
# An operator returns no None: a gradient of an absent D or z is an empty tensor of its own between the two.
def _fwd(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
    initial_state: Tensor | None, chunk_size: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    with on_device(x):
        return ssd_fwd(x, dt, A, B, C, D, z, initial_state, chunk_size)


ssd_fwd_op = torch.library.custom_op("hybrid_nas::ssd_fwd", _fwd, mutates_args=())

@ssd_fwd_op.register_fake
def _(x, dt, A, B, C, D, z, initial_state, chunk_size):
    b, T, H, P = x.shape
    G, N = B.shape[2:]
    nc, L = -(-T // chunk_size), chunk_size
    fp32 = torch.float32
    return (x.new_empty(x.shape), x.new_empty(b, H, P, N, dtype=fp32), x.new_empty(b, H, nc * L, dtype=fp32),
            x.new_empty(b, nc, H, N, P, dtype=state_dtype(x.dtype)), x.new_empty(b, G, nc, L, L, dtype=fp32))


def _bwd(
    dy: Tensor, dfinal: Tensor | None, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, g: Tensor, states: Tensor, cb: Tensor, chunk_size: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    with on_device(x):
        dx, ddt, dA, dB, dC, dD, dz, dinit = ssd_bwd(dy, dfinal, x, dt, A, B, C, D, z, g, states, cb, chunk_size)
    return dx, ddt, dA, dB, dC, x.new_empty(0) if dD is None else dD, x.new_empty(0) if dz is None else dz, dinit


ssd_bwd_op = torch.library.custom_op("hybrid_nas::ssd_bwd", _bwd, mutates_args=())

@ssd_bwd_op.register_fake
def _(dy, dfinal, x, dt, A, B, C, D, z, g, states, cb, chunk_size):
    b, _, H, P = x.shape
    return (x.new_empty(x.shape), torch.empty_like(dt), torch.empty_like(A), B.new_empty(B.shape), C.new_empty(C.shape),
            x.new_empty(0) if D is None else torch.empty_like(D), x.new_empty(0) if z is None else torch.empty_like(z),
            x.new_empty(b, H, P, B.shape[3], dtype=torch.float32))


def _setup_context(ctx, inputs, output) -> None:
    x, dt, A, B, C, D, z, initial_state, chunk_size = inputs
    keep_for_backward(ctx, (x, dt, A, B, C, D, z, *output[2:]), output[2:])
    ctx.chunk_size, ctx.has = chunk_size, (D is not None, z is not None, initial_state is not None)


def _backward(ctx, dy, dfinal, *_saved_grads):
    x, dt, A, B, C, D, z, g, states, cb = ctx.saved_tensors
    dy = torch.zeros_like(x) if dy is None else dy.contiguous()
    dfinal = dfinal.contiguous() if dfinal is not None else None
    bwd = _bwd if eager(ctx) else ssd_bwd_op
    dx, ddt, dA, dB, dC, dD, dz, dinit = bwd(dy, dfinal, x, dt, A, B, C, D, z, g, states, cb, ctx.chunk_size)
    has_D, has_z, has_init = ctx.has
    return dx, ddt, dA, dB, dC, dD if has_D else None, dz if has_z else None, dinit if has_init else None, None


ssd_fwd_op.register_autograd(_backward, setup_context=_setup_context)
_ssd = eager_autograd(ssd_fwd_op, _fwd, _setup_context, _backward)


def _packed_from(t: Tensor, dim: int) -> bool:
    """Whether t's dimensions from `dim` on are laid out as in a contiguous tensor (each row packed)."""
    return all(t.stride(i) == math.prod(t.shape[i + 1:]) for i in range(dim, t.dim()))


def _sequence_rows(t: Tensor) -> Tensor:
    """t [B, T, ...] read in place when each token's row is packed and the batch steps T rows (a slice of the
    channels of a [B, T, W] tensor, as Mamba-2 hands x, B and C over), else a contiguous copy. The kernels take
    the row's stride."""
    return t if _packed_from(t, 2) and t.stride(0) == t.shape[1] * t.stride(1) else t.contiguous()


def ssd_triton(
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
    """The Triton SSD; arguments and results as `reference.ssd_chunked` (inputs already checked).

    The result does not depend on the chunk size, so a chunk is at most MAX_CHUNK tokens (the tiles
    of a longer one spill registers) and at most T (a short sequence is one small chunk).
    """
    chunk_size = min(chunk_size, MAX_CHUNK, x.shape[1])
    x, B, C = (_sequence_rows(t) for t in (x, B, C))  # slices of the conv's output, read in place
    if B.stride() != C.stride():
        B, C = B.contiguous(), C.contiguous()
    dt, A = dt.contiguous(), A.contiguous()
    D = D.contiguous() if D is not None else None
    z = z.contiguous() if z is not None else None
    init = initial_state.float().contiguous() if initial_state is not None else None  # its gradient casts back
    y, final, *_ = _ssd(x, dt, A, B, C, D, z, init, chunk_size)
    return y, final


# ----- the decode step -------------------------------------------------------------------------------------
# One token per sequence, the state updated where it lies: each program owns BP rows of one head's
# [P, N] state, reads them once and writes them once, and sums y from the new rows as it goes. The step
# path's cost is the state's bytes (fp32, batch × H·P·N each way), so nothing but the state and y goes to
# memory; the reference's three passes (decay, outer product, contraction) and its copy back are one here.
@triton.jit
def ssd_step_kernel(
    x, dt, A, B, C, D, z, state, y,
    H, P, N, heads_per_group, sxb, sxh, sdtb, sbb, sbg, scb, scg, szb, szh,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr,
):
    i_p, i_bh = tl.program_id(0), tl.program_id(1)
    b, h = i_bh // H, i_bh % H
    g = h // heads_per_group
    p = i_p * BP + tl.arange(0, BP)
    n = tl.arange(0, BN)
    pm, nm = p < P, n < N
    m = pm[:, None] & nm[None, :]
    rows = i_bh.to(tl.int64) * P * N + p[:, None] * N + n[None, :]
    s = tl.load(state + rows, mask=m, other=0.0)
    step = tl.load(dt + b * sdtb + h).to(tl.float32)
    xv = tl.load(x + b * sxb + h * sxh + p, mask=pm, other=0.0).to(tl.float32)
    Bv = tl.load(B + b * sbb + g * sbg + n, mask=nm, other=0.0).to(tl.float32)
    Cv = tl.load(C + b * scb + g * scg + n, mask=nm, other=0.0).to(tl.float32)
    s = tl.exp(step * tl.load(A + h).to(tl.float32)) * s + (step * xv)[:, None] * Bv[None, :]
    tl.store(state + rows, s, mask=m)
    out = tl.sum(s * Cv[None, :], axis=1)
    if HAS_D:
        out += tl.load(D + h).to(tl.float32) * xv
    if HAS_Z:
        zv = tl.load(z + b * szb + h * szh + p, mask=pm, other=0.0).to(tl.float32)
        out *= zv * tl.sigmoid(zv)
    tl.store(y + i_bh * P + p, out.to(y.dtype.element_ty), mask=pm)


@torch.library.custom_op("hybrid_nas::ssd_step", mutates_args=("state",))
def ssd_step_op(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None, state: Tensor,
) -> Tensor:
    """y [B, H, P]; `state` [B, H, P, N] fp32 advanced by one token where it lies."""
    b, H, P = x.shape
    G, N = B.shape[1:]
    y = torch.empty(b, H, P, device=x.device, dtype=x.dtype)
    BN = triton.next_power_of_2(N)
    BP = min(triton.next_power_of_2(P), max(1, 4096 // BN))
    zs = (z.stride(0), z.stride(1)) if z is not None else (0, 0)
    with on_device(x):
        ssd_step_kernel[(triton.cdiv(P, BP), b * H)](
            x, dt, A, B, C, D, z, state, y, H, P, N, H // G, x.stride(0), x.stride(1), dt.stride(0),
            B.stride(0), B.stride(1), C.stride(0), C.stride(1), *zs,
            HAS_D=D is not None, HAS_Z=z is not None, BP=BP, BN=BN, num_warps=4,
        )
    return y


@ssd_step_op.register_fake
def _(x, dt, A, B, C, D, z, state):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _rows_in_place(t: Tensor) -> Tensor:
    """t with its last dimension of stride 1 and its middle one packed (read in place), else a contiguous copy."""
    return t if _packed_from(t, 1) else t.contiguous()


def ssd_step_triton(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor, *, D: Tensor | None = None,
    z: Tensor | None = None,
) -> Tensor:
    """`reference.ssd_step` as one Triton kernel: y, with `state` (fp32, contiguous) advanced where it lies
    (inputs already checked).

    x, B, C and z are read in place when only their batch stride is loose (slices of one projection)."""
    x, B, C = _rows_in_place(x), _rows_in_place(B), _rows_in_place(C)
    z = _rows_in_place(z) if z is not None else None
    dt = dt if dt.stride(-1) == 1 else dt.contiguous()
    return ssd_step_op(x, dt, A.contiguous(), B, C, D.contiguous() if D is not None else None, z, state)
