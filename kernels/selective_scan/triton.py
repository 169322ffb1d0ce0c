"""Mamba-1 selective scan in Triton: a fused forward and backward kernel, and the autograd Function.

As in mamba_ssm's CUDA kernel, each program owns a block of BD channels of one sequence and keeps their
[N, BD] state in registers while it walks time: per block of BT tokens it forms the decays
a = exp(Δ A) and inputs Δ u B as [BT, N, BD] tiles, scans them with `tl.associative_scan`, reads
y = C·h out, and carries the last state on. Nothing of size [B, T, Dc, N] is ever written: the
forward stores only the state entering each block of BT tokens (fp32), and the backward walks the
blocks in reverse, recomputes each block's states from there, and scans the state gradient backwards:

    g_t = C_t dy_t + a_{t+1} g_{t+1},   d(ΔA)_t = g_t ⊙ (h_t - Δ_t u_t B_t)  (= g_t ⊙ a_t h_{t-1})

dB and dC sum over the channels of a group: each program adds its block's sum into them with atomics, as
mamba_ssm's backward does (so their last bits vary from run to run); dA and dD are written per sequence and
summed on the host. A block of channels never spans two groups (BD divides Dc / G).

The tiles put the channels last, [BT, N, BD], so that a warp lays a block's channels across its lanes and
each thread holds all BT tokens of its share of the state: the scans over time run within a thread, and
the sums over the state's N (y, and the gradients of Δ and u) cross a few lanes only. The decays are
2^(Δ A log2 e): one multiply and one `ex2` each (`tl.exp` adds range checks). The backward's reverse scan is a
forward scan of its tiles flipped in time (`_scan`). Compiled for sm_90 by Triton 3.6 at 8 × 8 on one warp, these
changes took the forward from 1,016 instructions (128 of them shuffles) to 688 (16), and the backward from 2,720
(868) to 1,680 (248); almost all of them are the loop's over blocks (`benchmarks/compile_sm90.py --op
selective_scan --sass --tiles 0 --warps 1 --bf16-only`, with Triton 3.6 installed).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._triton import (
    autotune,
    block,
    eager,
    eager_autograd,
    interpreting,
    keep_for_backward,
    on_device,
    silu_parts,
    warps,
)

Tensor = torch.Tensor

# tokens per scanned block, and the spacing of the states the forward saves. Each thread holds a block's tokens of
# its share of the state. Measured when the tiles were [BT, BD, N]: at 16 tokens × 32 channels the backward spilled
# at 4 warps and filled 255 registers a thread at 8, at 8 × 32 it fit 4 warps without spilling
# (`benchmarks/compile_sm90.py --op selective_scan --registers`). On an H200 at B16 T2048 Dc2048 N16 in bf16,
# forward+backward took 10.0 ms at 8 × 32 against 13.6 at 16 × 32, the forward 1.66 against 1.46
# (docs/benchmarks/logs/scan-block8-call-5-2026-12-04.log). The cost: twice the saved states (fp32 [B, T/8, Dc, N]).
BLOCK_T = 8
# channels per program. 8, with one warp: a warp then holds all of a block's channels, and the backward's sums over
# them for dB and dC stay in the warp. On an H200 at the shape above, forward+backward took 7.58 ms at 8 channels
# (1 warp each way) against 9.99 at 32 (4 warps) and 9.39 at 16 (2 warps in the backward), in one run
# (docs/benchmarks/logs/scan-narrow-blocks-call-6-2026-12-04.log), when the tiles were [BT, BD, N] and the backward
# wrote each block's share of dB and dC ([B, T, Dc/8, N] fp32) for the host to sum.
BLOCK_D = 8
# `tl.associative_scan` on the GPU; its closed form under the interpreter (see `_scan`). A test sets it
# to True to run the scan itself under the interpreter on a tiny shape.
FORCE_ASSOCIATIVE_SCAN = False
LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = 2^(x log2 e): the kernels scale A by it once


def use_associative_scan() -> bool:
    return FORCE_ASSOCIATIVE_SCAN or not interpreting()


# Warps per program, tuned. One or two only where they hold at most 64 tokens × channels each (1 warp at 8 × 8, 2 at
# 8 × 8 and 8 × 16): there the backward fits them without spilling, and a warp holds all of a block's channels, so
# the sums over them for dB and dC stay in registers and shuffles instead of crossing warps through shared memory.
# At 8 × 16 on one warp, or 8 × 32 on two, it spills (`benchmarks/compile_sm90.py --op selective_scan --registers`).
# Wider blocks (`BLOCK_D`, which `benchmarks/kernels.py --scan-blocks` sets) tune 4 and 8.
SCAN_WARPS = warps((1, 2), (2, 2), (4, 2), (8, 2))


def warps_fit(config: triton.Config, meta: dict) -> bool:
    """`autotune`'s `fits`: 1 and 2 warps only at blocks of at most 64 tokens × channels a warp."""
    return config.num_warps >= 4 or meta["BT"] * meta["BD"] <= 64 * config.num_warps


@triton.jit
def _linear_combine(a1, b1, a2, b2):
    """(a1, b1) then (a2, b2) for h ← a h + b."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _scan(log2_a, b, BT: tl.constexpr, REVERSE: tl.constexpr, USE_SCAN: tl.constexpr):
    """h_t = a_t h_{t-1} + b_t along axis 0 of [BT, BN, BD] from h = 0 (REVERSE: h_t = a_t h_{t+1} + b_t), with
    a = 2^log2_a.

    Returns (Π a over the scanned prefix, h). USE_SCAN: `tl.associative_scan`, the GPU path. Otherwise
    the same sums in closed form, Σ_s 2^(Σ log2 a between s and t) b_s over a [BT, BT, BN, BD] tile:
    the interpreter runs a custom-combine scan one scalar at a time, far too slowly for the tests.
    """
    if USE_SCAN:
        if REVERSE:  # a forward scan of the tiles flipped in time: Triton 3.6 lowers `reverse=True` through
            # shuffles (460 a block in the backward at 8 × 8), where a flip within a thread renames registers
            a_cum, h = tl.associative_scan((tl.exp2(tl.flip(log2_a, 0)), tl.flip(b, 0)), 0, _linear_combine)
            a_cum, h = tl.flip(a_cum, 0), tl.flip(h, 0)
        else:
            a_cum, h = tl.associative_scan((tl.exp2(log2_a), b), 0, _linear_combine)
    else:
        if REVERSE:
            cum = tl.cumsum(log2_a, axis=0, reverse=True)  # Σ_{j≥t} log2 a_j
            s_on_t = tl.arange(0, BT)[None, :] >= tl.arange(0, BT)[:, None]
        else:
            cum = tl.cumsum(log2_a, axis=0)  # Σ_{j≤t} log2 a_j
            s_on_t = tl.arange(0, BT)[None, :] <= tl.arange(0, BT)[:, None]
        w = tl.exp2(tl.where(s_on_t[:, :, None, None], cum[:, None] - cum[None, :], float("-inf")))
        h = tl.sum(w * b[None, :, :, :], axis=1)
        a_cum = tl.exp2(cum)
    return a_cum, h


@autotune(SCAN_WARPS, key=["N", "BD", "BT"], fits=warps_fit)
@triton.jit(do_not_specialize=["T", "NT"])
def selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, init_ptr, y_ptr, saved_ptr, final_ptr,
    T, Dc, G, N, NT,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_INIT: tl.constexpr, SAVE: tl.constexpr,
    BT: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr, USE_SCAN: tl.constexpr,
):
    """y and the final state of BD channels of one sequence, and (SAVE) the state entering each block
    for the backward. Grid (Dc/BD, B)."""
    i_d, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    d = i_d * BD + tl.arange(0, BD)
    n = tl.arange(0, BN)
    rows = tl.arange(0, BT)
    grp = (i_d * BD) // (Dc // G)
    mask_nd = (n < N)[:, None] & (d < Dc)[None, :]
    off_nd = d[None, :] * N + n[:, None]  # [BN, BD] of a [Dc, N] state
    A2 = tl.load(A_ptr + off_nd, mask=mask_nd, other=0.0).to(tl.float32) * LOG2E  # exp(Δ A) = 2^(Δ A log2 e)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=d < Dc, other=0.0).to(tl.float32)
    if HAS_INIT:
        h = tl.load(init_ptr + b * Dc * N + off_nd, mask=mask_nd, other=0.0)
    else:
        h = tl.zeros([BN, BD], dtype=tl.float32)
    for blk in range(NT):
        if SAVE:
            tl.store(saved_ptr + (b * NT + blk) * Dc * N + off_nd, h, mask=mask_nd)
        t = blk * BT + rows
        mask_td = (t < T)[:, None] & (d < Dc)[None, :]
        mask_tn = (t < T)[:, None] & (n < N)[None, :]
        off_td = (b * T + t[:, None]) * Dc + d[None, :]
        u = tl.load(u_ptr + off_td, mask=mask_td, other=0.0).to(tl.float32)  # [BT, BD]
        delta = tl.load(delta_ptr + off_td, mask=mask_td, other=0.0).to(tl.float32)
        off_tn = ((b * T + t[:, None]) * G + grp) * N + n[None, :]
        Bt = tl.load(B_ptr + off_tn, mask=mask_tn, other=0.0).to(tl.float32)  # [BT, BN]
        Ct = tl.load(C_ptr + off_tn, mask=mask_tn, other=0.0).to(tl.float32)
        bx = (delta * u)[:, None, :] * Bt[:, :, None]  # [BT, BN, BD]
        a_cum, b_cum = _scan(delta[:, None, :] * A2[None, :, :], bx, BT, False, USE_SCAN)
        hs = a_cum * h[None, :, :] + b_cum  # the state after each token
        y = tl.sum(hs * Ct[:, :, None], axis=1)  # [BT, BD]
        if HAS_D:
            y += Dv[None, :] * u
        if HAS_Z:
            z = tl.load(z_ptr + off_td, mask=mask_td, other=0.0).to(tl.float32)
            y = y * silu_parts(z)[0]
        tl.store(y_ptr + off_td, y.to(y_ptr.dtype.element_ty), mask=mask_td)
        h = tl.sum(tl.where(rows[:, None, None] == BT - 1, hs, 0.0), axis=0)  # padded tokens keep h
    tl.store(final_ptr + b * Dc * N + off_nd, h, mask=mask_nd)


@autotune(SCAN_WARPS, key=["N", "BD", "BT"], fits=warps_fit, reset_to_zero=["dB_ptr", "dC_ptr"])
@triton.jit(do_not_specialize=["T", "NT"])
def selective_scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dy_ptr, saved_ptr, dfinal_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dinit_ptr,
    T, Dc, G, N, NT,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DFINAL: tl.constexpr,
    BT: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr, USE_SCAN: tl.constexpr,
):
    """All gradients of BD channels of one sequence, walking the blocks in reverse. Grid (Dc/BD, B).

    dB/dC [B, T, G, N] fp32 (zeroed) take this program's share by atomic adds; dA [B, Dc, N] and dD [B, Dc]
    are per sequence.
    """
    i_d, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    d = i_d * BD + tl.arange(0, BD)
    n = tl.arange(0, BN)
    rows = tl.arange(0, BT)
    grp = (i_d * BD) // (Dc // G)
    mask_nd = (n < N)[:, None] & (d < Dc)[None, :]
    off_nd = d[None, :] * N + n[:, None]
    A = tl.load(A_ptr + off_nd, mask=mask_nd, other=0.0).to(tl.float32)
    A2 = A * LOG2E
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=d < Dc, other=0.0).to(tl.float32)
    if HAS_DFINAL:
        g_next = tl.load(dfinal_ptr + b * Dc * N + off_nd, mask=mask_nd, other=0.0)
    else:
        g_next = tl.zeros([BN, BD], dtype=tl.float32)  # dL/dh at the block's last token, from later ones
    dA = tl.zeros([BN, BD], dtype=tl.float32)
    dD = tl.zeros([BD], dtype=tl.float32)
    for i in range(NT):
        blk = NT - 1 - i
        h0 = tl.load(saved_ptr + (b * NT + blk) * Dc * N + off_nd, mask=mask_nd, other=0.0)
        t = blk * BT + rows
        mask_td = (t < T)[:, None] & (d < Dc)[None, :]
        mask_tn = (t < T)[:, None] & (n < N)[None, :]
        off_td = (b * T + t[:, None]) * Dc + d[None, :]
        u = tl.load(u_ptr + off_td, mask=mask_td, other=0.0).to(tl.float32)
        delta = tl.load(delta_ptr + off_td, mask=mask_td, other=0.0).to(tl.float32)
        # Δ of the next token: a_{t+1} carries g_{t+1} back to h_t (1 past the end of the sequence)
        mask_next = (t + 1 < T)[:, None] & (d < Dc)[None, :]
        delta_next = tl.load(delta_ptr + off_td + Dc, mask=mask_next, other=0.0).to(tl.float32)
        off_tn = ((b * T + t[:, None]) * G + grp) * N + n[None, :]
        Bt = tl.load(B_ptr + off_tn, mask=mask_tn, other=0.0).to(tl.float32)
        Ct = tl.load(C_ptr + off_tn, mask=mask_tn, other=0.0).to(tl.float32)
        dout = tl.load(dy_ptr + off_td, mask=mask_td, other=0.0).to(tl.float32)

        du_in = delta * u
        bx = du_in[:, None, :] * Bt[:, :, None]  # [BT, BN, BD]
        log2_a = delta[:, None, :] * A2[None, :, :]
        a_cum, b_cum = _scan(log2_a, bx, BT, False, USE_SCAN)
        hs = a_cum * h0[None, :, :] + b_cum
        if HAS_Z:
            z = tl.load(z_ptr + off_td, mask=mask_td, other=0.0).to(tl.float32)
            silu_z, dsilu_z = silu_parts(z)
            y = tl.sum(hs * Ct[:, :, None], axis=1)
            if HAS_D:
                y += Dv[None, :] * u
            tl.store(dz_ptr + off_td, (dout * y * dsilu_z).to(dz_ptr.dtype.element_ty), mask=mask_td)
            dy = dout * silu_z
        else:
            dy = dout

        is_last = rows[:, None, None] == BT - 1
        gy = dy[:, None, :] * Ct[:, :, None] + tl.where(is_last, g_next[None, :, :], 0.0)
        _, gh = _scan(delta_next[:, None, :] * A2[None, :, :], gy, BT, True, USE_SCAN)  # dL/dh_t
        ga = gh * (hs - bx)  # dL/d(Δ_t A)
        dA += tl.sum(ga * delta[:, None, :], axis=0)
        gb = tl.sum(gh * Bt[:, :, None], axis=1)  # [BT, BD] dL/d(Δ u)
        ddelta = tl.sum(ga * A[None, :, :], axis=1) + gb * u
        du = gb * delta
        if HAS_D:
            du += Dv[None, :] * dy
            dD += tl.sum(dy * u, axis=0)
        tl.store(du_ptr + off_td, du.to(du_ptr.dtype.element_ty), mask=mask_td)
        tl.store(ddelta_ptr + off_td, ddelta.to(ddelta_ptr.dtype.element_ty), mask=mask_td)
        tl.atomic_add(dB_ptr + off_tn, tl.sum(gh * du_in[:, None, :], axis=2), mask=mask_tn, sem="relaxed")
        tl.atomic_add(dC_ptr + off_tn, tl.sum(hs * dy[:, None, :], axis=2), mask=mask_tn, sem="relaxed")
        # a_t g_t at the block's first token: dL/dh at the last token of the block before
        g_next = tl.sum(tl.where(rows[:, None, None] == 0, tl.exp2(log2_a) * gh, 0.0), axis=0)
    tl.store(dinit_ptr + b * Dc * N + off_nd, g_next, mask=mask_nd)
    tl.store(dA_ptr + b * Dc * N + off_nd, dA, mask=mask_nd)
    if HAS_D:
        tl.store(dD_ptr + b * Dc + d, dD, mask=d < Dc)


def _channel_block(Dc: int, G: int) -> int:
    """The largest power of two ≤ BLOCK_D that divides the channels of one group."""
    per_group, bd = Dc // G, BLOCK_D
    while per_group % bd:
        bd //= 2
    return bd


def selective_scan_fwd(u, delta, A, B, C, D, z, initial_state, save: bool = True):
    """B/C [B, T, G, N]. Returns `(y [B, T, Dc], final_state [B, Dc, N] fp32, saved states or None)`.

    The saved states [B, T/BT, Dc, N] fp32 (BT: `BLOCK_T`) are what the backward starts each block from."""
    b, T, Dc = u.shape
    G, N = B.shape[2:]
    BT = BLOCK_T
    BD, NT = _channel_block(Dc, G), triton.cdiv(T, BT)
    y = torch.empty_like(u)
    saved = torch.empty(b, NT, Dc, N, device=u.device, dtype=torch.float32) if save else None
    final = torch.empty(b, Dc, N, device=u.device, dtype=torch.float32)
    selective_scan_fwd_kernel[(triton.cdiv(Dc, BD), b)](
        u, delta, A, B, C, D, z, initial_state, y, saved, final, T, Dc, G, N, NT,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_INIT=initial_state is not None, SAVE=save,
        BT=BT, BD=BD, BN=block(N, 1), USE_SCAN=use_associative_scan(),
    )
    return y, final, saved


def selective_scan_bwd(dy, dfinal, u, delta, A, B, C, D, z, saved):
    """Returns `(du, ddelta, dA, dB, dC, dD or None, dz or None, d initial_state)`; dB/dC [B, T, G, N]."""
    b, T, Dc = u.shape
    G, N = B.shape[2:]
    BT, BD, NT = BLOCK_T, _channel_block(Dc, G), saved.shape[1]
    nd = triton.cdiv(Dc, BD)
    dev, fp32 = u.device, torch.float32
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dB_sum = torch.zeros(b, T, G, N, device=dev, dtype=fp32)
    dC_sum = torch.zeros(b, T, G, N, device=dev, dtype=fp32)
    dA_part = torch.empty(b, Dc, N, device=dev, dtype=fp32)
    dD_part = torch.empty(b, Dc, device=dev, dtype=fp32) if D is not None else None
    dinit = torch.empty(b, Dc, N, device=dev, dtype=fp32)
    selective_scan_bwd_kernel[(nd, b)](
        u, delta, A, B, C, D, z, dy, saved, dfinal, du, ddelta, dz, dB_sum, dC_sum, dA_part, dD_part, dinit,
        T, Dc, G, N, NT,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_DFINAL=dfinal is not None,
        BT=BT, BD=BD, BN=block(N, 1), USE_SCAN=use_associative_scan(),
    )
    dB, dC = dB_sum.to(B.dtype), dC_sum.to(C.dtype)
    dA = dA_part.sum(0).to(A.dtype)
    dD = dD_part.sum(0).to(D.dtype) if D is not None else None
    return du, ddelta, dA, dB, dC, dD, dz, dinit


# The forward and the backward as PyTorch operators with their autograd and their shapes registered, so
# that torch.compile traces a layer around them whole (fullgraph=True) instead of breaking its graph there;
# an eager call runs the same functions without the dispatcher (`eager_autograd`).
# An operator returns no None: the saved states of a forward that needs no backward, and the gradients of an
# absent D or z, are empty tensors between the two.
def _fwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
    initial_state: Tensor | None, save: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    with on_device(u):
        y, final, saved = selective_scan_fwd(u, delta, A, B, C, D, z, initial_state, save=save)
    return y, final, u.new_empty(0, dtype=torch.float32) if saved is None else saved


selective_scan_fwd_op = torch.library.custom_op("hybrid_nas::selective_scan_fwd", _fwd, mutates_args=())

@selective_scan_fwd_op.register_fake
def _(u, delta, A, B, C, D, z, initial_state, save):
    b, T, Dc = u.shape
    N, fp32 = B.shape[3], torch.float32
    saved = u.new_empty(b, -(-T // BLOCK_T), Dc, N, dtype=fp32) if save else u.new_empty(0, dtype=fp32)
    return torch.empty_like(u), u.new_empty(b, Dc, N, dtype=fp32), saved


def _bwd(
    dy: Tensor, dfinal: Tensor | None, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
    z: Tensor | None, saved: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    with on_device(u):
        du, ddelta, dA, dB, dC, dD, dz, dinit = selective_scan_bwd(dy, dfinal, u, delta, A, B, C, D, z, saved)
    return du, ddelta, dA, dB, dC, u.new_empty(0) if dD is None else dD, u.new_empty(0) if dz is None else dz, dinit


selective_scan_bwd_op = torch.library.custom_op("hybrid_nas::selective_scan_bwd", _bwd, mutates_args=())

@selective_scan_bwd_op.register_fake
def _(dy, dfinal, u, delta, A, B, C, D, z, saved):
    b, _, Dc = u.shape
    return (torch.empty_like(u), torch.empty_like(delta), torch.empty_like(A), torch.empty_like(B), torch.empty_like(C),
            u.new_empty(0) if D is None else torch.empty_like(D), u.new_empty(0) if z is None else torch.empty_like(z),
            u.new_empty(b, Dc, B.shape[3], dtype=torch.float32))


def _setup_context(ctx, inputs, output) -> None:
    u, delta, A, B, C, D, z, initial_state, _save = inputs
    keep_for_backward(ctx, (u, delta, A, B, C, D, z, output[2]), output[2:])
    ctx.has = (D is not None, z is not None, initial_state is not None)


def _backward(ctx, dy, dfinal, _saved_grad):
    u, delta, A, B, C, D, z, saved = ctx.saved_tensors
    dy = torch.zeros_like(u) if dy is None else dy.contiguous()
    dfinal = dfinal.float().contiguous() if dfinal is not None else None
    bwd = _bwd if eager(ctx) else selective_scan_bwd_op
    du, ddelta, dA, dB, dC, dD, dz, dinit = bwd(dy, dfinal, u, delta, A, B, C, D, z, saved)
    has_D, has_z, has_init = ctx.has
    return du, ddelta, dA, dB, dC, dD if has_D else None, dz if has_z else None, dinit if has_init else None, None


selective_scan_fwd_op.register_autograd(_backward, setup_context=_setup_context)
_selective_scan = eager_autograd(selective_scan_fwd_op, _fwd, _setup_context, _backward)


def selective_scan_triton(u, delta, A, B, C, *, D=None, z=None, initial_state=None):
    """The Triton selective scan; arguments and results as `reference.selective_scan_blocked`."""
    u, delta, A = u.contiguous(), delta.contiguous(), A.contiguous()
    B, C = (t.contiguous() if t.ndim == 4 else t.unsqueeze(2).contiguous() for t in (B, C))  # [B, T, G, N]
    D = D.contiguous() if D is not None else None
    z = z.contiguous() if z is not None else None
    init = initial_state.float().contiguous() if initial_state is not None else None  # its gradient casts back
    inputs = (u, delta, A, B, C, D, z, init)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    y, final, _ = _selective_scan(*inputs, save)
    return y, final
