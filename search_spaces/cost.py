"""Analytic cost model: parameters, FLOPs per token and inference memory, from an `ArchConfig` alone.

Parameter counts equal `sum(p.numel())` of the model `workers.models` builds (tested over random configs).
FLOPs count a multiply-add as 2. Linear layers cost 2 FLOPs per active weight and token; attention
costs 4·heads·head_dim per token and key it attends to; a recurrent mixer costs 4 FLOPs per state
element per token (decay-and-update, then read-out), plus its causal convolution.

Inference memory per sequence at context T:
- KV cache: 2 (K and V) · kv_heads · head_dim · T per attention layer, in bf16;
- recurrent state: the SSM / mLSTM state in fp32 (as the kernels keep it) and the convolution's last
  `d_conv − 1` inputs in bf16 — the same size at every T.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from search_spaces.arch import ArchConfig, MLPOptions, MoEOptions

__all__ = [
    "CacheBytes",
    "ParamCounts",
    "cache_bytes",
    "decode_flops_per_token",
    "param_counts",
    "train_flops_per_token",
]

KV_BYTES = 2  # bf16 K/V cache and convolution state
STATE_BYTES = 4  # fp32 recurrent state


@dataclass(frozen=True)
class ParamCounts:
    total: int
    active: int  # per token: the top-k routed experts, not all of them
    embedding: int  # input embedding (+ the output head when untied)
    per_family: dict[str, int] = field(default_factory=dict)  # sublayer params by family, norms included


@dataclass(frozen=True)
class CacheBytes:
    kv: int
    state: int

    @property
    def total(self) -> int:
        return self.kv + self.state


def _ffn_params(d: int, d_ff: int, activation: str) -> int:
    return (3 if activation == "swiglu" else 2) * d * d_ff


def _mlp(d: int, o: MLPOptions) -> int:
    return _ffn_params(d, o.d_ff(d), o.activation)


def _moe(d: int, o: MoEOptions, *, active: bool) -> int:
    routed = o.top_k if active else o.experts
    shared = _ffn_params(d, o.d_ff_shared(d), o.activation) if o.shared_expert else 0
    return d * o.experts + routed * _ffn_params(d, o.d_ff(d), o.activation) + shared


def _sublayer_params(cfg: ArchConfig, family: str, *, active: bool = False) -> int:
    """Weights of one sublayer of `family`, its pre-norm included."""
    d = cfg.d_model
    if family == "attention":
        h, kv, hd = cfg.attention.dims(d)
        n = 2 * d * h * hd + 2 * d * kv * hd
    elif family == "mamba2":
        o = cfg.mamba2
        di, nh, gn = o.d_inner(d), o.n_heads(d), o.n_groups * o.d_state
        conv_dim = di + 2 * gn
        # in_proj -> (z, x, B, C, dt); depthwise conv with bias; dt_bias, A_log, D; gated norm; out_proj
        n = d * (2 * di + 2 * gn + nh) + conv_dim * (o.d_conv + 1) + 3 * nh + di + di * d
    elif family == "mamba1":
        o = cfg.mamba1
        di, r, ns = o.d_inner(d), o.rank(d), o.d_state
        # in_proj -> (x, z); conv; x_proj -> (dt, B, C); dt_proj with bias; A_log; D; out_proj
        n = d * 2 * di + di * (o.d_conv + 1) + di * (r + 2 * ns) + r * di + di + di * ns + di + di * d
    elif family == "mlstm":
        o = cfg.mlstm
        qk, v, h = o.qk_dim(d), o.v_dim(d), o.heads
        # q, k, v, output gate; input and forget gates with bias; multi-head norm; out_proj
        n = 2 * d * qk + 2 * d * v + 2 * (d * h + h) + v + v * d
    elif family == "mlp":
        n = _mlp(d, cfg.mlp)
    elif family == "moe":
        n = _moe(d, cfg.moe, active=active)
    else:  # pragma: no cover - the pattern parser admits no other family
        raise KeyError(family)
    return n + d  # pre-norm weight


def param_counts(cfg: ArchConfig) -> ParamCounts:
    """Total and active parameters, exactly as `workers.models.build_model(cfg)` allocates them."""
    d, v = cfg.d_model, cfg.vocab_size
    embedding = v * d * (1 if cfg.tie_embeddings else 2)
    per_family: Counter[str] = Counter()
    active = 0
    for family, n in Counter(cfg.layers).items():
        per_family[family] = n * _sublayer_params(cfg, family)
        active += n * _sublayer_params(cfg, family, active=True)
    body = sum(per_family.values())
    return ParamCounts(
        total=embedding + body + d,  # + final norm
        active=embedding + active + d,
        embedding=embedding,
        per_family=dict(per_family),
    )


def _state_elements(cfg: ArchConfig, family: str) -> int:
    d = cfg.d_model
    if family == "mamba2":
        o = cfg.mamba2
        return o.n_heads(d) * o.head_dim * o.d_state
    if family == "mamba1":
        o = cfg.mamba1
        return o.d_inner(d) * o.d_state
    if family == "mlstm":
        o = cfg.mlstm
        k, v = o.qk_dim(d) // o.heads, o.v_dim(d) // o.heads
        return o.heads * (k * v + k + 1)
    return 0


def _conv_channels(cfg: ArchConfig, family: str) -> int:
    d = cfg.d_model
    if family == "mamba2":
        o = cfg.mamba2
        return o.d_inner(d) + 2 * o.n_groups * o.d_state
    if family == "mamba1":
        return cfg.mamba1.d_inner(d)
    return 0


def _conv_width(cfg: ArchConfig, family: str) -> int:
    return {"mamba2": cfg.mamba2, "mamba1": cfg.mamba1}[family].d_conv if family in ("mamba2", "mamba1") else 0


def _matmul_flops(cfg: ArchConfig) -> int:
    """2 FLOPs per active linear weight and token, the output head included (tied or not)."""
    d = cfg.d_model
    weights = cfg.vocab_size * d
    for family, n in Counter(cfg.layers).items():
        w = _sublayer_params(cfg, family, active=True) - d  # minus the norm
        if family == "mamba2":
            o = cfg.mamba2
            conv_dim, nh = _conv_channels(cfg, family), o.n_heads(d)
            w -= conv_dim * (o.d_conv + 1) + 3 * nh + o.d_inner(d)
        elif family == "mamba1":
            o = cfg.mamba1
            di = o.d_inner(d)
            w -= di * (o.d_conv + 1) + di + di * o.d_state + di
        elif family == "mlstm":
            o = cfg.mlstm
            w -= 2 * o.heads + o.v_dim(d)
        weights += n * w
    return 2 * weights


def _mixing_flops(cfg: ArchConfig, keys: float) -> float:
    """Per-token FLOPs of token mixing when each attention query sees `keys` keys."""
    flops = 0.0
    for family, n in Counter(cfg.layers).items():
        if family == "attention":
            h, _, hd = cfg.attention.dims(cfg.d_model)
            flops += n * 4 * h * hd * keys
        else:
            conv = 2 * _conv_channels(cfg, family) * _conv_width(cfg, family)
            flops += n * (4 * _state_elements(cfg, family) + conv)
    return flops


def train_flops_per_token(cfg: ArchConfig, seq_len: int) -> float:
    """Forward + backward FLOPs per token when training on sequences of `seq_len` (3× the forward)."""
    return 3 * (_matmul_flops(cfg) + _mixing_flops(cfg, keys=(seq_len + 1) / 2))


def decode_flops_per_token(cfg: ArchConfig, context: int) -> float:
    """FLOPs to generate one token with `context` tokens already in the cache."""
    return _matmul_flops(cfg) + _mixing_flops(cfg, keys=context + 1)


def cache_bytes(cfg: ArchConfig, context: int) -> CacheBytes:
    """Inference memory of one sequence at `context` tokens: KV cache and recurrent state."""
    kv = state = 0
    for family, n in Counter(cfg.layers).items():
        if family == "attention":
            _, kvh, hd = cfg.attention.dims(cfg.d_model)
            kv += n * 2 * kvh * hd * context * KV_BYTES
        elif family in ("mamba2", "mamba1", "mlstm"):
            conv = (_conv_width(cfg, family) - 1) * _conv_channels(cfg, family) if family != "mlstm" else 0
            state += n * (_state_elements(cfg, family) * STATE_BYTES + conv * KV_BYTES)
    return CacheBytes(kv=kv, state=state)
