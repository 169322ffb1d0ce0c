"""Causal depthwise conv1d (+ SiLU) in Triton: a forward kernel and two backward kernels, registered as operators.

Each program owns BT tokens × BC channels of one sequence and walks the W taps (W is small: 4 in every
proxy; the kernels take W ≤ 4). The forward reads x in place through its strides (the conv input is a slice of
a projection) and the W-1 inputs before the first token from `initial_state`; it writes act(pre) only, so nothing but y
goes to memory. The backward recomputes the pre-activations it needs rather than storing them:

    g_q = dy_q · act'(pre_q),   dx_t = Σ_s g_{t+s} · w[W-1-s],   dw[k] = Σ_t g_t · x_{t-(W-1)+k},   db = Σ_t g_t

in two kernels: the first forms g on its tokens (in fp32, stored in x's dtype only when there is an activation;
else g is dy)
and sums its parts of dw and db ([B·nT, W, C] fp32, one row per G_TOKENS tokens; the host adds the parts up),
the second gathers dx from the W values of g at and after each token.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._triton import (
    autotune,
    eager,
    eager_autograd,
    interpreting,
    keep_for_backward,
    on_device,
    silu_parts,
    tiles,
)

Tensor = torch.Tensor

# (num_warps, num_stages[, maxnreg]): a cap of 128 registers lets an SM hold four programs of 4 warps where the
# uncapped wide tiles take up to 255 and spill anyway (`benchmarks/compile_sm90.py --op conv1d --maxnreg 128`)
_LAUNCHES = ((4, 2), (8, 2), (4, 2, 128))
_CONFIGS = tiles(("BT", "BC"), [(64, 64), (128, 64), (64, 128), (32, 256)], *_LAUNCHES)
# The g kernel's programs each own G_TOKENS tokens (they lay out the dw and db parts) and walk them BT at a time.
G_TOKENS = 128
G_CONFIGS = tiles(("BT", "BC"), [(8, 128), (16, 64), (16, 128), (32, 64), (32, 128)], *_LAUNCHES)
MAX_W = 4  # the g kernel unrolls the taps


@triton.jit
def _tap(x, state, b, p, c, T, C, sxb, sxt, W: tl.constexpr, HAS_STATE: tl.constexpr):
    """x at times p ([BT]) for channels c ([BC]) as fp32; times before 0 from the initial state (else 0)."""
    cm = c < C
    v = tl.load(x + b * sxb + p[:, None] * sxt + c[None, :], mask=((p >= 0) & (p < T))[:, None] & cm[None, :],
                other=0.0).to(tl.float32)
    if HAS_STATE:
        v += tl.load(state + b * (W - 1) * C + (p + W - 1)[:, None] * C + c[None, :],
                     mask=(p < 0)[:, None] & cm[None, :], other=0.0).to(tl.float32)
    return v


@triton.jit
def _pre(x, w, bias, state, b, q, c, T, C, sxb, sxt, W: tl.constexpr, HAS_BIAS: tl.constexpr,
         HAS_STATE: tl.constexpr):
    """The pre-activation at times q ([BT]), channels c: bias + Σ_k w[c, k] · x_{q-(W-1)+k}, fp32."""
    cm = c < C
    acc = _tap(x, state, b, q - (W - 1), c, T, C, sxb, sxt, W, HAS_STATE) * tl.load(
        w + c * W, mask=cm, other=0.0).to(tl.float32)[None, :]
    for k in tl.static_range(1, W):
        wk = tl.load(w + c * W + k, mask=cm, other=0.0).to(tl.float32)
        acc += _tap(x, state, b, q - (W - 1) + k, c, T, C, sxb, sxt, W, HAS_STATE) * wk[None, :]
    if HAS_BIAS:
        acc += tl.load(bias + c, mask=cm, other=0.0).to(tl.float32)[None, :]
    return acc


@autotune(_CONFIGS, key=["C", "W"], interpret={"BT": 16, "BC": 16}, fit={"BC": "C"})
@triton.jit
def causal_conv1d_fwd_kernel(
    x, w, bias, state, y, T, C, sxb, sxt,
    W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_STATE: tl.constexpr, SILU: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr,
):
    pid_t, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)  # b·T·C passes 2³¹
    t = pid_t * BT + tl.arange(0, BT)
    c = pid_c * BC + tl.arange(0, BC)
    acc = _pre(x, w, bias, state, b, t, c, T, C, sxb, sxt, W, HAS_BIAS, HAS_STATE)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(y + b * T * C + t[:, None] * C + c[None, :], acc.to(y.dtype.element_ty),
             mask=(t < T)[:, None] & (c < C)[None, :])


@autotune(G_CONFIGS, key=["C", "W", "TT"], interpret={"BT": 8, "BC": 16}, fit={"BC": "C"})
@triton.jit
def causal_conv1d_bwd_kernel_g(
    x, w, bias, state, dy, g_out, dw_part, db_part, T, C, sxb, sxt,
    W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_STATE: tl.constexpr, SILU: tl.constexpr,
    TT: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
):
    """g = dy · act'(pre) on this program's TT tokens (stored when there is an activation), and this program's
    parts of dw and db. It walks its tokens BT at a time: each tap of x is loaded once a step and serves both
    the pre-activation and dw, and dw and db are summed elementwise, reduced over tokens once at the end, so
    that a thread holds a few [BT, BC] tiles rather than one tile per tap over all TT tokens. TT, not BT,
    lays out the parts, so BT and BC are tuned."""
    pid_t, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)  # b·T·C passes 2³¹
    row = b * tl.num_programs(0) + pid_t
    c = pid_c * BC + tl.arange(0, BC)
    cm = c < C
    dw0 = tl.zeros((BT, BC), dtype=tl.float32)
    dw1 = tl.zeros((BT, BC), dtype=tl.float32)
    dw2 = tl.zeros((BT, BC), dtype=tl.float32)
    dw3 = tl.zeros((BT, BC), dtype=tl.float32)
    db = tl.zeros((BT, BC), dtype=tl.float32)
    w0 = tl.load(w + c * W, mask=cm, other=0.0).to(tl.float32)[None, :]
    w1 = tl.load(w + c * W + 1, mask=cm & (W > 1), other=0.0).to(tl.float32)[None, :]
    w2 = tl.load(w + c * W + 2, mask=cm & (W > 2), other=0.0).to(tl.float32)[None, :]
    w3 = tl.load(w + c * W + 3, mask=cm & (W > 3), other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        bc = tl.load(bias + c, mask=cm, other=0.0).to(tl.float32)[None, :]
    for t0 in range(pid_t * TT, tl.minimum(pid_t * TT + TT, T), BT):
        t = t0 + tl.arange(0, BT)
        mask = (t < T)[:, None] & cm[None, :]
        g = tl.load(dy + b * T * C + t[:, None] * C + c[None, :], mask=mask, other=0.0).to(tl.float32)
        x0 = _tap(x, state, b, t - (W - 1), c, T, C, sxb, sxt, W, HAS_STATE)
        if W > 1:
            x1 = _tap(x, state, b, t - (W - 2), c, T, C, sxb, sxt, W, HAS_STATE)
        if W > 2:
            x2 = _tap(x, state, b, t - (W - 3), c, T, C, sxb, sxt, W, HAS_STATE)
        if W > 3:
            x3 = _tap(x, state, b, t - (W - 4), c, T, C, sxb, sxt, W, HAS_STATE)
        if SILU:
            pre = x0 * w0
            if W > 1:
                pre += x1 * w1
            if W > 2:
                pre += x2 * w2
            if W > 3:
                pre += x3 * w3
            if HAS_BIAS:
                pre += bc
            _, dact = silu_parts(pre)
            g = g * dact
            tl.store(g_out + b * T * C + t[:, None] * C + c[None, :], g.to(g_out.dtype.element_ty), mask=mask)
        db += g
        dw0 += g * x0
        if W > 1:
            dw1 += g * x1
        if W > 2:
            dw2 += g * x2
        if W > 3:
            dw3 += g * x3
    if HAS_BIAS:
        tl.store(db_part + row * C + c, tl.sum(db, axis=0), mask=cm)
    tl.store(dw_part + (row * W) * C + c, tl.sum(dw0, axis=0), mask=cm)
    if W > 1:
        tl.store(dw_part + (row * W + 1) * C + c, tl.sum(dw1, axis=0), mask=cm)
    if W > 2:
        tl.store(dw_part + (row * W + 2) * C + c, tl.sum(dw2, axis=0), mask=cm)
    if W > 3:
        tl.store(dw_part + (row * W + 3) * C + c, tl.sum(dw3, axis=0), mask=cm)


@autotune(_CONFIGS, key=["C", "W"], interpret={"BT": 16, "BC": 16}, fit={"BC": "C"})
@triton.jit
def causal_conv1d_bwd_kernel_dx(
    g, w, dx, T, C, W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
):
    """dx_t = Σ_s g_{t+s} · w[W-1-s]."""
    pid_t, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)  # b·T·C passes 2³¹
    t = pid_t * BT + tl.arange(0, BT)
    c = pid_c * BC + tl.arange(0, BC)
    cm = c < C
    acc = tl.zeros((BT, BC), dtype=tl.float32)
    for s in tl.static_range(W):
        q = t + s
        gq = tl.load(g + b * T * C + q[:, None] * C + c[None, :], mask=(q < T)[:, None] & cm[None, :],
                     other=0.0).to(tl.float32)
        acc += gq * tl.load(w + c * W + (W - 1 - s), mask=cm, other=0.0).to(tl.float32)[None, :]
    tl.store(dx + b * T * C + t[:, None] * C + c[None, :], acc.to(dx.dtype.element_ty),
             mask=(t < T)[:, None] & cm[None, :])


def _grid(T: int, C: int, b: int):
    return lambda meta: (triton.cdiv(T, meta["BT"]), triton.cdiv(C, meta["BC"]), b)


def _inputs(x: Tensor, weight: Tensor, initial_state: Tensor | None):
    x = x if x.stride(2) == 1 else x.contiguous()
    state = initial_state.to(x.dtype).contiguous() if initial_state is not None else None
    return x, weight.contiguous(), state


# The forward and the backward as PyTorch operators with their autograd and their shapes registered, so
# that torch.compile traces a layer around them whole; an eager call runs the same functions without the
# dispatcher (`eager_autograd`).
def _fwd(x: Tensor, weight: Tensor, bias: Tensor | None, initial_state: Tensor | None, silu: bool) -> Tensor:
    b, T, C = x.shape
    x, weight, state = _inputs(x, weight, initial_state)
    y = x.new_empty(b, T, C)
    with on_device(x):
        causal_conv1d_fwd_kernel[_grid(T, C, b)](
            x, weight, bias, state, y, T, C, x.stride(0), x.stride(1),
            W=weight.shape[1], HAS_BIAS=bias is not None, HAS_STATE=state is not None, SILU=silu,
        )
    return y


causal_conv1d_fwd_op = torch.library.custom_op("hybrid_nas::causal_conv1d_fwd", _fwd, mutates_args=())

@causal_conv1d_fwd_op.register_fake
def _(x, weight, bias, initial_state, silu):
    return x.new_empty(x.shape)


def _bwd(dy: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None, initial_state: Tensor | None,
         silu: bool) -> tuple[Tensor, Tensor, Tensor]:
    b, T, C = x.shape
    x, weight, state = _inputs(x, weight, initial_state)
    W = weight.shape[1]
    dy = dy.contiguous()
    dx = torch.empty(b, T, C, device=x.device, dtype=x.dtype)
    TT = 16 if interpreting() else G_TOKENS
    nt = triton.cdiv(T, TT)
    dw_part = torch.empty(b * nt, W, C, device=x.device, dtype=torch.float32)
    db_part = torch.empty(b * nt, C, device=x.device, dtype=torch.float32) if bias is not None else None
    options = dict(W=W, HAS_BIAS=bias is not None, HAS_STATE=state is not None, SILU=silu, TT=TT)
    with on_device(x):
        g = torch.empty(b, T, C, device=x.device, dtype=x.dtype) if silu else dy
        causal_conv1d_bwd_kernel_g[lambda meta: (nt, triton.cdiv(C, meta["BC"]), b)](
            x, weight, bias, state, dy, g, dw_part, db_part, T, C, x.stride(0), x.stride(1), **options)
        causal_conv1d_bwd_kernel_dx[_grid(T, C, b)](g, weight, dx, T, C, W=W)
    dw = dw_part.sum(0).t().contiguous().to(weight.dtype)
    db = db_part.sum(0).to(bias.dtype) if bias is not None else x.new_empty(0)
    return dx, dw, db


causal_conv1d_bwd_op = torch.library.custom_op("hybrid_nas::causal_conv1d_bwd", _bwd, mutates_args=())

@causal_conv1d_bwd_op.register_fake
def _(dy, x, weight, bias, initial_state, silu):
    return x.new_empty(x.shape), torch.empty_like(weight), x.new_empty(0) if bias is None else torch.empty_like(bias)


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, initial_state, silu = inputs
    keep_for_backward(ctx, (x, weight, bias, initial_state), ())
    ctx.silu = silu


def _backward(ctx, dy):
    x, weight, bias, initial_state = ctx.saved_tensors
    if dy is None:
        return None, None, None, None, None
    bwd = _bwd if eager(ctx) else causal_conv1d_bwd_op
    dx, dw, db = bwd(dy, x, weight, bias, initial_state, ctx.silu)
    return dx, dw, db if bias is not None else None, None, None


causal_conv1d_fwd_op.register_autograd(_backward, setup_context=_setup_context)
_causal_conv1d = eager_autograd(causal_conv1d_fwd_op, _fwd, _setup_context, _backward)


def causal_conv1d_triton(x: Tensor, weight: Tensor, bias: Tensor | None, initial_state: Tensor | None,
                         silu: bool) -> Tensor:
    """The Triton causal conv1d; arguments as `kernels.conv1d.causal_conv1d` (its initial state takes no gradient)."""
    return _causal_conv1d(x, weight, bias, initial_state, silu)
