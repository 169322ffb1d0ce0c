"""The one rule that resizes an architecture while keeping its layout.

`scale(cfg, params)` returns a config of about `params` total parameters that keeps:
- the layer pattern symbol for symbol: depth, the attention : SSM ratio, where attention sits, where
  the MoE layers sit;
- every width ratio: MLP and expert ratios (the dense MLP's within ±25% from d_model 256 on, see below),
  Mamba expand factors, mLSTM q/k/v factors, Gated DeltaNet's q/k and v widths against d_model and its
  value heads per q/k head;
- the number of experts, top-k and the shared expert; RoPE or NoPE; conv widths; the GQA ratio
  (as far as whole heads allow).

- every state size (Mamba-1 and Mamba-2 `d_state`) and attention window: they set how much a layer can
  remember, which is what a hybrid search is about, not a width. (A proxy trained on sequences shorter
  than a window sees no difference between that local attention and a global one.)

Only `d_model` is chosen: the candidate width whose model lands closest to `params` (in log scale),
candidates being multiples of 16 up to 128, of 32 up to 256 and of 64 beyond (GPU-sized proxies get the
widths tensor cores and per-head widths of 32, 64 and 128 divide). From 256 on the steps between widths
are coarse (25M-parameter families land 3–15% apart), so the dense MLP's hidden width then absorbs the
rest: a multiple of 64 within ±25% of what its ratio gives, the one that lands closest to `params` (the
MLP ratio is the one width ratio this moves). A width that is an odd multiple of 64 gives way to its
neighbour that is a multiple of 128 where that one, its MLP absorbing, lands within 2% of `params`: a
GEMM's output tiles are 128 wide, and on an H200 the weight gradients of d448's projections ran at
379–423 TFLOP/s against 627–666 at d512 (docs/benchmarks/logs/layer-kernels-ncu-call-12-2026-12-04.md).
At 25M parameters the Mamba-2 hybrids take d384 this way, their MLP 5× wide instead of 3.1×.
`scale(cfg, params, width=d)` keeps d_model at d and lets the MLP alone absorb.
Widths follow from it. When shrinking by s = d_model′ / d_model, each per-head width (attention head
dim, Mamba-2 head dim, mLSTM and Gated DeltaNet head dims) shrinks by s too, to the nearest power of two
in log scale (a 64-wide head stays 64 down to s ≈ 0.71, rather than halving for a proxy 12% narrower than its
source) but never below 32 (or the largest power of two that divides a narrower width), and Mamba-2 groups
shrink by s but never below one; head counts are what the widths then hold (attention and Gated DeltaNet: their heads'
total width keeps its ratio to d_model). Growing keeps every per-head width as published and adds heads.
"""

from __future__ import annotations

import math

from search_spaces.arch import ArchConfig
from search_spaces.cost import param_counts

__all__ = ["resize", "scale"]

MIN_HEAD = 32  # per-head widths never shrink below this
WIDE = 256  # from this d_model on, widths step by 64 and the MLP absorbs what the step misses
MLP_SLACK = 0.25  # how far (relative) the MLP's hidden width may move to absorb it
TILE = 128  # from WIDE on, a width that is a multiple of this is preferred ...
TILE_SLACK = 0.02  # ... where it lands this close (relative) to the target


def _pow2_nearest(x: float) -> int:
    return 1 << max(0, round(math.log2(max(1.0, x))))


def _per_head(width: int, head: int, s: float) -> int:
    """The per-head width at scale s: head·s (at least MIN_HEAD, at most head) to the nearest power of two (in
    log scale: a 64-wide head stays 64 down to s = 0.71), the largest power of two dividing `width` below it."""
    target = head if s >= 1 else min(head, max(MIN_HEAD, head * s))
    h = min(head, _pow2_nearest(target)) if target != head else head
    while h > 1 and width % h:
        h //= 2
    return max(1, h)


def _divisor_at_most(n: int, at_most: float) -> int:
    return max(d for d in range(1, n + 1) if n % d == 0 and d <= max(1, at_most))


def resize(cfg: ArchConfig, d_model: int, vocab_size: int | None = None) -> ArchConfig:
    """`cfg` at width `d_model` by the rule above."""
    s = d_model / cfg.d_model
    shrink = min(1.0, s)
    changes: dict = {"d_model": d_model, "vocab_size": vocab_size or cfg.vocab_size}
    for name in ("attention", "local_attention"):
        if (a := getattr(cfg, name)) is None:
            continue
        heads, kv, hd = a.dims(cfg.d_model)
        hd2 = _per_head(d_model, hd, s)
        heads2 = max(1, round(heads * hd * s / hd2))  # the heads' total width keeps its ratio to d_model
        changes[name] = {
            "heads": heads2,
            "kv_heads": _divisor_at_most(heads2, round(heads2 * kv / heads)),
            "head_dim": None if heads2 * hd2 == d_model else hd2,
        }
    if (n := cfg.deltanet) is not None:
        heads, k, v_heads, v = n.dims(cfg.d_model)
        k2, v2 = _per_head(d_model, k, s), _per_head(d_model, v, s)
        heads2 = max(1, round(heads * k * s / k2))
        changes["deltanet"] = {"heads": heads2, "head_dim": k2, "v_heads": heads2 * (v_heads // heads),
                               "v_head_dim": v2}
    if (m2 := cfg.mamba2) is not None:
        inner = m2.expand * d_model
        p = _per_head(inner, m2.head_dim, s)
        changes["mamba2"] = {
            "head_dim": p,
            "n_groups": _divisor_at_most(inner // p, round(m2.n_groups * shrink)),
        }
    if (m1 := cfg.mamba1) is not None:
        changes["mamba1"] = {"dt_rank": None if m1.dt_rank is None else max(1, round(m1.dt_rank * s))}
    if (x := cfg.mlstm) is not None:
        qk, v = round(x.qk_dim_factor * d_model), round(x.v_dim_factor * d_model)
        hk = _per_head(qk, x.qk_dim(cfg.d_model) // x.heads, s)
        heads = max(1, qk // hk)
        while heads > 1 and (qk % heads or v % heads):
            heads -= 1
        changes["mlstm"] = {"heads": heads}
    return cfg.replace(**changes)


def _widths():
    d = 0
    while True:
        d += 16 if d < 128 else 32 if d < WIDE else 64
        yield d


def scale(cfg: ArchConfig, params: float, vocab_size: int | None = None, *, width: int | None = None) -> ArchConfig:
    """`cfg` resized to about `params` total parameters (see the module docstring for the rule); `width` pins
    d_model, and the dense MLP alone moves toward `params`."""
    if params <= 0:
        raise ValueError(f"the target size must be a positive number of parameters, got {params:g}")
    if width is not None:
        return _absorb(resize(cfg, width, vocab_size), params)
    best, best_err = None, math.inf
    for d in _widths():
        try:
            candidate = resize(cfg, d, vocab_size)
        except ValueError:
            continue  # a width the family constraints cannot hold (e.g. a fractional mLSTM head)
        n = param_counts(candidate).total
        err = abs(math.log(n / params))
        if err < best_err:
            best, best_err = candidate, err
        elif n > params:
            break  # params grow with d_model: past the target and getting worse
        if d > 1_000_000:
            break
    if best is None:
        raise ValueError(f"no width of this layout reaches about {params:g} parameters")
    best = _absorb(best, params)
    if best.d_model < WIDE or best.d_model % TILE == 0:
        return best
    tiled = []  # (how far from params, width, config) of the neighbouring multiples of TILE that land close
    for d in (best.d_model - 64, best.d_model + 64):
        if d < WIDE:
            continue
        try:
            candidate = _absorb(resize(cfg, d, vocab_size), params)
        except ValueError:
            continue
        if (err := abs(param_counts(candidate).total / params - 1)) <= TILE_SLACK:
            tiled.append((err, d, candidate))
    return min(tiled, key=lambda t: t[:2])[2] if tiled else best


def _absorb(cfg: ArchConfig, params: float) -> ArchConfig:
    """`cfg` with its dense MLP's hidden width (a multiple of 64, within ±MLP_SLACK of its ratio's) landing
    closest to `params`; unchanged below WIDE or without a dense MLP layer."""
    d = cfg.d_model
    if d < WIDE or cfg.mlp is None or "mlp" not in cfg.layers:
        return cfg
    base = cfg.mlp.d_ff(d)
    best, best_err = cfg, abs(math.log(param_counts(cfg).total / params))
    for k in range(math.ceil(base * (1 - MLP_SLACK) / 64), math.floor(base * (1 + MLP_SLACK) / 64) + 1):
        candidate = cfg.replace(mlp={"ratio": 64 * k / d})
        err = abs(math.log(param_counts(candidate).total / params))
        if err < best_err:
            best, best_err = candidate, err
    return best
