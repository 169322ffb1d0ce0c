"""Analytic cost model: parameters, FLOPs per token and inference memory, from an `ArchConfig` alone.

Parameter counts equal `sum(p.numel())` of the model `workers.models` builds (tested over random configs).
FLOPs count a multiply-add as 2. Linear layers cost 2 FLOPs per active weight and token; attention
costs 4·heads·head_dim per token and key it attends to (at most its window's); a recurrent mixer costs 4
FLOPs per state element per token (decay-and-update, then read-out), the delta rule 6 (it also reads the
state at k_t before writing), plus its causal convolution (a gated short convolution is only that).

Inference memory per sequence at context T:
- KV cache: 2 (K and V) · kv_heads · head_dim · T per attention layer, in bf16; a layer with a sliding
  window keeps min(T, window) tokens;
- recurrent state: the SSM / mLSTM / delta-rule state in fp32 (as the kernels keep it) and the
  convolution's last `d_conv − 1` inputs in bf16 — the same size at every T.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from search_spaces.arch import ArchConfig, AttentionOptions, DeltaNetOptions, MLPOptions, MoEOptions

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


def _attention(d: int, o: AttentionOptions) -> int:
    h, kv, hd = o.dims(d)
    # q, k, v, out; the output gate's projection; q and k norms
    return 2 * d * h * hd + 2 * d * kv * hd + (d * h * hd if o.output_gate else 0) + (2 * hd if o.qk_norm else 0)


def _deltanet(d: int, o: DeltaNetOptions) -> int:
    _, K, HV, V = o.dims(d)
    qk, v = o.widths(d)
    # q, k, v; their conv (no bias); β; A_log; per-head norm; out
    n = d * (2 * qk + v) + (2 * qk + v) * o.d_conv + d * HV + HV + V + v * d
    if o.gate == "channel":  # low-rank decay (d → K → HV·K) with dt_bias per channel; low-rank output gate
        return n + d * K + K * HV * K + HV * K + d * V + V * v
    return n + d * HV + HV + d * v  # decay projection and dt_bias per head; output gate


def _sublayer_params(cfg: ArchConfig, family: str, *, active: bool = False) -> int:
    """Weights of one sublayer of `family`, its pre-norm included."""
    d = cfg.d_model
    if family in ("attention", "local_attention"):
        n = _attention(d, getattr(cfg, family))
    elif family == "deltanet":
        n = _deltanet(d, cfg.deltanet)
    elif family == "shortconv":
        n = 3 * d * d + d * cfg.shortconv.d_conv + d * d  # in_proj -> (b, c, h); conv (no bias); out_proj
    elif family == "mamba2":
        o = cfg.mamba2
        di, nh, gn = o.d_inner(d), o.n_heads(d), o.n_groups * o.d_state
        conv_dim = di + 2 * gn
        # in_proj -> (z, x, B, C, dt); depthwise conv with bias; dt_bias, A_log, D; gated norm; out_proj
        n = d * (2 * di + 2 * gn + nh) + conv_dim * (o.d_conv + 1) + 3 * nh + di * (o.norm != "none") + di * d
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
    if family == "deltanet":
        _, k, hv, v = cfg.deltanet.dims(d)
        return hv * k * v
    return 0


def _conv_channels(cfg: ArchConfig, family: str) -> int:
    d = cfg.d_model
    if family == "mamba2":
        o = cfg.mamba2
        return o.d_inner(d) + 2 * o.n_groups * o.d_state
    if family == "mamba1":
        return cfg.mamba1.d_inner(d)
    if family == "deltanet":
        qk, v = cfg.deltanet.widths(d)
        return 2 * qk + v
    if family == "shortconv":
        return d
    return 0


_CONV_FAMILIES = ("mamba2", "mamba1", "deltanet", "shortconv")
_STATE_FAMILIES = (*_CONV_FAMILIES, "mlstm")


def _conv_width(cfg: ArchConfig, family: str) -> int:
    return getattr(cfg, family).d_conv if family in _CONV_FAMILIES else 0


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
        elif family == "deltanet":
            o = cfg.deltanet
            _, k, hv, v = o.dims(d)
            w -= _conv_channels(cfg, family) * o.d_conv + hv + v + (hv * k if o.gate == "channel" else hv)
        elif family == "shortconv":
            w -= d * cfg.shortconv.d_conv
        elif family in ("attention", "local_attention") and getattr(cfg, family).qk_norm:
            w -= 2 * getattr(cfg, family).dims(d)[2]
        weights += n * w
    return 2 * weights


_ATTENTION = ("attention", "local_attention")
_STATE_FLOPS = {"deltanet": 6}  # per state element and token; 4 for the other recurrent mixers


def _mixing_flops(cfg: ArchConfig, keys: Callable[[int | None], float]) -> float:
    """Per-token FLOPs of token mixing when an attention query with window w (None: global) sees keys(w) keys."""
    flops = 0.0
    for family, n in Counter(cfg.layers).items():
        if family in _ATTENTION:
            o = getattr(cfg, family)
            h, _, hd = o.dims(cfg.d_model)
            flops += n * 4 * h * hd * keys(o.window)
        else:
            conv = 2 * _conv_channels(cfg, family) * _conv_width(cfg, family)
            flops += n * (_STATE_FLOPS.get(family, 4) * _state_elements(cfg, family) + conv)
    return flops


def _mean_keys(seq_len: int, window: int | None) -> float:
    """Keys a query sees on average over a training sequence: Σ_t min(t, window) / seq_len."""
    if window is None or window >= seq_len:
        return (seq_len + 1) / 2
    return (window * (window + 1) / 2 + (seq_len - window) * window) / seq_len


def train_flops_per_token(cfg: ArchConfig, seq_len: int) -> float:
    """Forward + backward FLOPs per token when training on sequences of `seq_len` (3× the forward)."""
    return 3 * (_matmul_flops(cfg) + _mixing_flops(cfg, keys=lambda w: _mean_keys(seq_len, w)))


def decode_flops_per_token(cfg: ArchConfig, context: int) -> float:
    """FLOPs to generate one token with `context` tokens already in the cache."""
    return _matmul_flops(cfg) + _mixing_flops(cfg, keys=lambda w: context + 1 if w is None else min(context + 1, w))


def cache_bytes(cfg: ArchConfig, context: int) -> CacheBytes:
    """Inference memory of one sequence at `context` tokens: KV cache and recurrent state."""
    kv = state = 0
    for family, n in Counter(cfg.layers).items():
        if family in _ATTENTION:
            o = getattr(cfg, family)
            _, kvh, hd = o.dims(cfg.d_model)
            kept = context if o.window is None else min(context, o.window)  # a window's cache stops growing
            kv += n * 2 * kvh * hd * kept * KV_BYTES
        elif family in _STATE_FAMILIES:
            conv = (_conv_width(cfg, family) - 1) * _conv_channels(cfg, family)
            state += n * (_state_elements(cfg, family) * STATE_BYTES + conv * KV_BYTES)
    return CacheBytes(kv=kv, state=state)
