"""Hugging Face transformers configs: the class that can express a pattern, and its `config.json`.

`hf_targets` lists the model types that can hold an architecture, best first: `mamba`, `mamba2`, `xlstm`
and `llama` for the pure stacks; `jamba` for Mamba-1 + attention placed periodically; `bamba` (RoPE) and
`granitemoehybrid` (NoPE, MoE) for (mixer, feed-forward) layers of Mamba-2 and attention; `nemotron_h`
for any string of Mamba-2 / attention / MLP / MoE sublayers; for (mixer, feed-forward) layers of the
linear hybrids, `qwen3_next` (Gated DeltaNet and gated attention), `kimi_linear` (KDA and MLA, which
holds our NoPE GQA), `olmo_hybrid` (Gated DeltaNet and attention, dense) and `lfm2` (gated short
convolutions and attention, dense). `build` writes the chosen class's config; transformers itself is
needed only to load it (the tests do).
"""

from __future__ import annotations

from typing import Any

from nas.export.unfit import Unfit
from search_spaces import ArchConfig
from search_spaces.config import ConfigError
from search_spaces.cost import param_counts
from search_spaces.pattern import FAMILIES, SYMBOLS

__all__ = ["HF_CLASSES", "build", "hf_targets", "readme"]

# model_type -> the class AutoModelForCausalLM builds; the order is the order of preference
HF_CLASSES: dict[str, str] = {
    "mamba": "MambaForCausalLM",
    "mamba2": "Mamba2ForCausalLM",
    "xlstm": "xLSTMForCausalLM",
    "llama": "LlamaForCausalLM",
    "jamba": "JambaForCausalLM",
    "bamba": "BambaForCausalLM",
    "granitemoehybrid": "GraniteMoeHybridForCausalLM",
    "nemotron_h": "NemotronHForCausalLM",
    "qwen3_next": "Qwen3NextForCausalLM",
    "kimi_linear": "KimiLinearForCausalLM",
    "olmo_hybrid": "OlmoHybridForCausalLM",
    "lfm2": "Lfm2ForCausalLM",
}
# layer families each class holds (used to say which classes came closest when none fits)
_HOLDS: dict[str, set[str]] = {
    "mamba": {"mamba1"},
    "mamba2": {"mamba2"},
    "xlstm": {"mlstm", "mlp"},
    "llama": {"attention", "mlp"},
    "jamba": {"mamba1", "attention", "mlp", "moe"},
    "bamba": {"mamba2", "attention", "mlp"},
    "granitemoehybrid": {"mamba2", "attention", "mlp", "moe"},
    "nemotron_h": {"mamba2", "attention", "mlp", "moe"},
    "qwen3_next": {"deltanet", "attention", "mlp", "moe"},
    "kimi_linear": {"deltanet", "attention", "mlp", "moe"},
    "olmo_hybrid": {"deltanet", "attention", "mlp"},
    "lfm2": {"shortconv", "attention", "mlp"},
}


# hybrid classes whose transformers cache reads the sequence length from an attention layer: a model of
# theirs with no attention layer fails in forward() and generate() with the cache on (transformers 5.x)
_CACHE_NEEDS_ATTENTION = frozenset(_HOLDS) - {"mamba", "mamba2", "xlstm", "llama"}


class _Cannot(Exception):
    """A class cannot express the architecture; the message completes "<class> cannot express it: ..."."""


def _name(family: str) -> str:
    return SYMBOLS[FAMILIES[family]][1]


def _only(cfg: ArchConfig, symbols: str, what: str) -> None:
    extra = [f for f in cfg.families if FAMILIES[f] not in symbols]
    if extra:
        raise _Cannot(f"it holds {what} only, not {' or '.join(map(_name, extra))}")


def _pairs(cfg: ArchConfig, mixers: str = "*MmXDCW", ffns: str = "-E") -> list[tuple[str, str]]:
    """The pattern as (mixer, feed-forward) layers, or _Cannot when it is not laid out that way."""
    p = cfg.pattern
    pairs = [(p[i], p[i + 1]) for i in range(0, len(p) - 1, 2)]
    if len(p) % 2 or not all(a in mixers and b in ffns for a, b in pairs):
        raise _Cannot("it needs a feed-forward sublayer (MLP or MoE) right after every mixer")
    return pairs


def _activation(opts: Any, family: str, allowed: tuple[str, ...], why: str) -> str:
    if opts is not None and opts.activation not in allowed:
        raise _Cannot(f"its {why}, and {family}.activation is {opts.activation}")
    return opts.activation if opts is not None else allowed[0]


def _attention(cfg: ArchConfig, *, rope: bool | None, partial: bool = False, gate: bool | None = False,
               qk_norm: bool | None = False) -> dict[str, Any]:
    """heads / kv heads / head dim, with the position embedding, the output gate and the q/k norm the class
    supports checked (True: it always has one, False: never, None: either)."""
    a = cfg.attention
    if a is None:
        return {}
    if a.window is not None:
        raise _Cannot(f"its attention is global, and attention.window is {a.window}")
    for name, has, what in (("output_gate", gate, "an output gate"), ("qk_norm", qk_norm, "a q/k norm")):
        if has is False and getattr(a, name):
            raise _Cannot(f"its attention has no {what}, and attention.{name} is true")
        if has is True and not getattr(a, name):
            raise _Cannot(f"its attention always has {what}, and attention.{name} is false")
    if rope is False and a.pos == "rope":
        raise _Cannot("it has no RoPE (its attention is NoPE), and attention.pos is rope")
    if rope is True and a.pos == "nope":
        raise _Cannot("its attention always applies RoPE, and attention.pos is nope")
    if a.pos == "rope" and not partial and a.rope_fraction != 1:
        raise _Cannot(f"its RoPE rotates whole heads, and attention.rope_fraction is {a.rope_fraction:g}")
    heads, kv, hd = a.dims(cfg.d_model)
    out: dict[str, Any] = {"num_attention_heads": heads, "num_key_value_heads": kv}
    if hd != cfg.d_model // heads:
        out["head_dim"] = hd
    return out


def _rope(cfg: ArchConfig, partial_key: bool = False) -> dict[str, Any]:
    a = cfg.attention
    params: dict[str, Any] = {"rope_type": "default", "rope_theta": a.rope_theta}
    if partial_key or a.rope_fraction != 1:
        params["partial_rotary_factor"] = a.rope_fraction
    return {"rope_parameters": params}


def _mamba2_norm(cfg: ArchConfig) -> None:
    if (m := cfg.mamba2) is not None and m.norm != "group":
        raise _Cannot(f"its Mamba-2 layers normalise y·silu(z) over each group of channels, and mamba2.norm is "
                      f"{m.norm}")


def _mamba2_fields(cfg: ArchConfig, prefix: str = "mamba_") -> dict[str, Any]:
    m, d = cfg.mamba2, cfg.d_model
    if m is None:  # a config without Mamba-2 layers still has to validate: one head of the full width
        return {f"{prefix}n_heads": 1, f"{prefix}d_head": 2 * d, f"{prefix}expand": 2}
    return {
        f"{prefix}n_heads": m.n_heads(d),
        f"{prefix}d_head": m.head_dim,
        f"{prefix}n_groups": m.n_groups,
        f"{prefix}d_state": m.d_state,
        f"{prefix}d_conv": m.d_conv,
        f"{prefix}expand": m.expand,
        f"{prefix}chunk_size": m.chunk_size,
        f"{prefix}conv_bias": True,
        f"{prefix}proj_bias": False,
    }


def _common(cfg: ArchConfig, model_type: str, eps_key: str = "rms_norm_eps") -> dict[str, Any]:
    return {
        "model_type": model_type,
        "architectures": [HF_CLASSES[model_type]],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "tie_word_embeddings": cfg.tie_embeddings,
        eps_key: cfg.norm_eps,
    }


def _periodic(flags: list[bool]) -> tuple[int, int] | None:
    """The shortest (period, offset) with flags[i] == (i % period == offset) for every i; None if none."""
    n, hits = len(flags), [i for i, f in enumerate(flags) if f]
    if not hits:
        return n + 1, n  # no layer matches i % (n+1) == n
    o = hits[0]
    for p in range(o + 1, n + 2):
        if all(f == (i % p == o) for i, f in enumerate(flags)):
            return p, o
    return None


def _hf_mamba(cfg: ArchConfig) -> dict[str, Any]:
    _only(cfg, "m", "Mamba-1 layers")
    m, d = cfg.mamba1, cfg.d_model
    return {
        **_common(cfg, "mamba", "layer_norm_epsilon"),
        "num_hidden_layers": cfg.n_sublayers,
        "state_size": m.d_state,
        "expand": m.expand,
        "conv_kernel": m.d_conv,
        "time_step_rank": m.rank(d),
        "hidden_act": "silu",
        "use_bias": False,
        "use_conv_bias": True,
    }


def _hf_mamba2(cfg: ArchConfig) -> dict[str, Any]:
    _only(cfg, "M", "Mamba-2 layers")
    m, d = cfg.mamba2, cfg.d_model
    return {
        **_common(cfg, "mamba2", "layer_norm_epsilon"),
        "num_hidden_layers": cfg.n_sublayers,
        "num_heads": m.n_heads(d),
        "head_dim": m.head_dim,
        "state_size": m.d_state,
        "n_groups": m.n_groups,
        "expand": m.expand,
        "conv_kernel": m.d_conv,
        "chunk_size": m.chunk_size,
        "hidden_act": "silu",
        "use_bias": False,
        "use_conv_bias": True,
    }


def _xlstm_ffn(d: int, d_ff: int) -> tuple[float, int]:
    """(ffn_proj_factor, ffn_round_up_to_multiple_of) for which xLSTMConfig's rounding gives d_ff."""

    def hf(factor: float, m: int) -> int:  # transformers' round_up_to_next_multiple_of
        return int(((d * factor + m - 1) // m) * m)

    for m in (64, 32, 16, 8, 4, 2):
        if d_ff % m == 0 and hf(d_ff / d, m) == d_ff:
            return d_ff / d, m
    return (d_ff + 0.25) / d, 1


def _hf_xlstm(cfg: ArchConfig) -> dict[str, Any]:
    _only(cfg, "X-", "mLSTM blocks and their MLPs")
    pairs = _pairs(cfg, "X", "-")
    _activation(cfg.mlp, "mlp", ("swiglu",), "feed-forward is SwiGLU")
    x, d = cfg.mlstm, cfg.d_model
    qk, v = x.qk_dim(d), x.v_dim(d)
    if qk % 64 or v % 64:
        raise _Cannot(
            f"it rounds the mLSTM q/k and v widths up to multiples of 64, and they are {qk} and {v} "
            f"at d_model={d}"
        )
    if cfg.tie_embeddings:
        raise _Cannot("its output head is never tied to the embedding, and tie_embeddings is true")
    factor, multiple = _xlstm_ffn(d, cfg.mlp.d_ff(d))
    return {
        **_common(cfg, "xlstm", "norm_eps"),
        "num_hidden_layers": len(pairs),
        "num_blocks": len(pairs),
        "num_heads": x.heads,
        "qk_dim_factor": x.qk_dim_factor,
        "v_dim_factor": x.v_dim_factor,
        "ffn_proj_factor": factor,
        "ffn_round_up_to_multiple_of": multiple,
        "use_bias": False,
        "add_out_norm": True,
        # gate_soft_cap (15) and output_logit_soft_cap (30) keep xLSTM-7B's values: the class cannot turn
        # them off, and our mLSTM has neither
    }


def _hf_llama(cfg: ArchConfig) -> dict[str, Any]:
    _only(cfg, "*-", "attention and MLP layers")
    pairs = _pairs(cfg, "*", "-")
    _activation(cfg.mlp, "mlp", ("swiglu",), "MLP is SwiGLU")
    attn = _attention(cfg, rope=True)
    return {
        **_common(cfg, "llama"),
        "num_hidden_layers": len(pairs),
        **attn,
        "head_dim": cfg.attention.dims(cfg.d_model)[2],
        "intermediate_size": cfg.mlp.d_ff(cfg.d_model),
        "hidden_act": "silu",
        **_rope(cfg),
        "attention_bias": False,
        "mlp_bias": False,
    }


def _hf_jamba(cfg: ArchConfig) -> dict[str, Any]:
    _only(cfg, "m*-E", "Mamba-1, attention, MLP and MoE layers")
    if "m" not in cfg.pattern:
        raise _Cannot("its mixers are Mamba-1 and attention, and the pattern has no Mamba-1 layer")
    pairs = _pairs(cfg, "m*", "-E")
    d = cfg.d_model
    _activation(cfg.mlp, "mlp", ("swiglu",), "MLP is SwiGLU")
    _activation(cfg.moe, "moe", ("swiglu",), "experts are SwiGLU")
    attn = _attention(cfg, rope=False)
    period = _periodic([a == "*" for a, _ in pairs])
    if period is None:
        raise _Cannot("it places attention every k-th layer from an offset, and this pattern does not")
    moe_period = _periodic([f == "E" for _, f in pairs])
    if moe_period is None:
        raise _Cannot("it places MoE every k-th layer from an offset, and this pattern does not")
    out: dict[str, Any] = {
        **_common(cfg, "jamba"),
        "num_hidden_layers": len(pairs),
        **attn,
        "attn_layer_period": period[0],
        "attn_layer_offset": period[1],
        "hidden_act": "silu",
        "mamba_d_state": cfg.mamba1.d_state,
        "mamba_d_conv": cfg.mamba1.d_conv,
        "mamba_expand": cfg.mamba1.expand,
        "mamba_dt_rank": cfg.mamba1.rank(d),
        "mamba_conv_bias": True,
        "mamba_proj_bias": False,
    }
    if (e := cfg.moe) is not None:
        if e.shared_expert:
            raise _Cannot("its MoE has no shared expert, and moe.shared_expert is true")
        if e.experts < 2:
            raise _Cannot("it builds a dense MLP for a one-expert MoE")
        if cfg.mlp is not None and cfg.mlp.d_ff(d) != e.d_ff(d):
            raise _Cannot(
                f"its MLPs and experts share one width, and they are {cfg.mlp.d_ff(d)} and {e.d_ff(d)} here"
            )
        # Jamba's router keeps the top-k softmax weights as they are; ours renormalises them to sum to 1
        out.update(num_experts=e.experts, num_experts_per_tok=e.top_k, router_aux_loss_coef=e.aux_loss_weight,
                   expert_layer_period=moe_period[0], expert_layer_offset=moe_period[1],
                   intermediate_size=e.d_ff(d))
    else:
        out.update(num_experts=1, num_experts_per_tok=1, expert_layer_period=1, expert_layer_offset=0,
                   intermediate_size=cfg.mlp.d_ff(d))
    return out


def _hf_bamba(cfg: ArchConfig) -> dict[str, Any]:
    _only(cfg, "M*-", "Mamba-2, attention and MLP layers")
    if "M" not in cfg.pattern:
        raise _Cannot("its mixers are Mamba-2 and attention, and the pattern has no Mamba-2 layer")
    pairs = _pairs(cfg, "M*", "-")
    _activation(cfg.mlp, "mlp", ("swiglu",), "MLP is SwiGLU")
    out = {
        **_common(cfg, "bamba"),
        "num_hidden_layers": len(pairs),
        "attn_layer_indices": [i for i, (a, _) in enumerate(pairs) if a == "*"],
        "intermediate_size": cfg.mlp.d_ff(cfg.d_model),
        "hidden_act": "silu",
        **_mamba2_fields(cfg),
        "attention_bias": False,
        "mlp_bias": False,
    }
    if cfg.attention is not None:
        # Bamba's config hard-codes partial_rotary_factor 0.5 unless rope_parameters names it: always name it
        out.update(_attention(cfg, rope=True, partial=True), **_rope(cfg, partial_key=True))
    return out


def _hf_granite(cfg: ArchConfig) -> dict[str, Any]:
    _only(cfg, "M*-E", "Mamba-2, attention, MLP and MoE layers")
    pairs = _pairs(cfg, "M*", "-E")
    if len({f for _, f in pairs}) > 1:
        raise _Cannot("it has the same feed-forward in every layer, and this pattern mixes dense MLP and MoE")
    d = cfg.d_model
    _activation(cfg.mlp, "mlp", ("swiglu",), "MLP is SwiGLU")
    _activation(cfg.moe, "moe", ("swiglu",), "experts are SwiGLU")
    attn = _attention(cfg, rope=None)
    out: dict[str, Any] = {
        **_common(cfg, "granitemoehybrid"),
        "num_hidden_layers": len(pairs),
        # the published checkpoints' spelling; transformers 5 reads them as linear/full_attention
        "layer_types": ["attention" if a == "*" else "mamba" for a, _ in pairs],
        "hidden_act": "silu",
        **_mamba2_fields(cfg),
        # Granite scales embeddings, residuals, logits and attention scores; ours does none of that, and
        # attention_multiplier is the score scale itself (not a factor on 1/sqrt(head_dim))
        "embedding_multiplier": 1.0,
        "residual_multiplier": 1.0,
        "logits_scaling": 1.0,
        "attention_bias": False,
    }
    if cfg.attention is not None:
        out.update(attn, attention_multiplier=cfg.attention.dims(d)[2] ** -0.5)
        out["position_embedding_type"] = "rope" if cfg.attention.pos == "rope" else None
        if cfg.attention.pos == "rope":
            out.update(_rope(cfg))
    if (e := cfg.moe) is not None:
        # every layer runs its "shared MLP" beside the experts: a shared expert of width 0 is none at all
        out.update(num_local_experts=e.experts, num_experts_per_tok=e.top_k, intermediate_size=e.d_ff(d),
                   shared_intermediate_size=e.d_ff_shared(d), router_aux_loss_coef=e.aux_loss_weight)
    else:
        # with no experts the shared MLP is the layer's dense MLP
        d_ff = cfg.mlp.d_ff(d)
        out.update(num_local_experts=0, intermediate_size=d_ff, shared_intermediate_size=d_ff)
    return out


def _hf_nemotron_h(cfg: ArchConfig) -> dict[str, Any]:
    _only(cfg, "M*-E", "Mamba-2, attention, MLP and MoE layers")
    d = cfg.d_model
    why = "MLPs and experts are not gated (relu2 or gelu)"
    acts = {_activation(o, f, ("relu2", "gelu"), why) for o, f in ((cfg.mlp, "mlp"), (cfg.moe, "moe")) if o}
    if len(acts) > 1:
        raise _Cannot("its MLPs and experts share one activation, and mlp and moe name different ones")
    out: dict[str, Any] = {
        **_common(cfg, "nemotron_h", "layer_norm_epsilon"),
        "hybrid_override_pattern": cfg.pattern,
        "num_hidden_layers": cfg.n_sublayers,
        **_attention(cfg, rope=False),
        "mlp_hidden_act": acts.pop() if acts else "relu2",
        "attention_bias": False,
        "mlp_bias": False,
        "use_bias": False,
        "residual_in_fp32": False,
    }
    if (a := cfg.attention) is not None:
        out["head_dim"] = a.dims(d)[2]
    if cfg.mlp is not None:
        out["intermediate_size"] = cfg.mlp.d_ff(d)
    if (m := cfg.mamba2) is not None:
        out.update(ssm_state_size=m.d_state, mamba_num_heads=m.n_heads(d), mamba_head_dim=m.head_dim,
                   n_groups=m.n_groups, conv_kernel=m.d_conv, expand=m.expand, chunk_size=m.chunk_size,
                   mamba_hidden_act="silu", use_conv_bias=True, mamba_proj_bias=False)
    if (e := cfg.moe) is not None:
        if not e.shared_expert:
            raise _Cannot("its MoE always has a shared expert, and moe.shared_expert is false")
        # Nemotron-H routes by sigmoid scores (plus a correction bias that starts at 0), ours by softmax;
        # both renormalise the top-k weights
        out.update(n_routed_experts=e.experts, num_experts_per_tok=e.top_k, moe_intermediate_size=e.d_ff(d),
                   n_shared_experts=1, moe_shared_expert_intermediate_size=e.d_ff_shared(d), n_group=1,
                   topk_group=1, norm_topk_prob=True, routed_scaling_factor=1.0)
    if cfg.tie_embeddings:
        raise _Cannot("its output head is never tied to the embedding, and tie_embeddings is true")
    return out


def _deltanet(cfg: ArchConfig, gate: str) -> dict[str, Any]:
    """The linear-attention fields shared by Qwen3-Next and OLMo-Hybrid (a decay per head)."""
    n = cfg.deltanet
    if n is None:  # a config without Gated DeltaNet layers still has to validate
        return {}
    if n.gate != gate:
        raise _Cannot(f"its linear attention decays per {gate}, and deltanet.gate is {n.gate}")
    heads, k, v_heads, v = n.dims(cfg.d_model)
    return {"linear_num_key_heads": heads, "linear_num_value_heads": v_heads, "linear_key_head_dim": k,
            "linear_value_head_dim": v, "linear_conv_kernel_dim": n.d_conv}


# the class's defaults are its tokenizer's ids, which a smaller vocabulary may not hold (the padding row would
# fall outside the embedding): the exported config names none, as the other classes' defaults do
_NO_SPECIAL_TOKENS = {"pad_token_id": None, "bos_token_id": None, "eos_token_id": None}


def _types(pairs: list[tuple[str, str]], linear: str, linear_name: str = "linear_attention") -> list[str]:
    return [linear_name if a == linear else "full_attention" for a, _ in pairs]


def _delta_pairs(cfg: ArchConfig, mixer: str) -> list[tuple[str, str]]:
    """The (mixer, FFN) layers of a delta-rule hybrid (Qwen3-Next, Kimi Linear), checked: `mixer` (Gated
    DeltaNet or KDA), attention, SwiGLU MLP and MoE layers only."""
    _only(cfg, "D*-E", f"{mixer}, attention, MLP and MoE layers")
    pairs = _pairs(cfg, "D*", "-E")
    _activation(cfg.mlp, "mlp", ("swiglu",), "MLPs are SwiGLU")
    _activation(cfg.moe, "moe", ("swiglu",), "experts are SwiGLU")
    return pairs


def _hf_qwen3_next(cfg: ArchConfig) -> dict[str, Any]:
    pairs = _delta_pairs(cfg, "Gated DeltaNet")
    d = cfg.d_model
    out: dict[str, Any] = {
        **_common(cfg, "qwen3_next"),
        "num_hidden_layers": len(pairs),
        "layer_types": _types(pairs, "D"),
        "hidden_act": "silu",
        **_deltanet(cfg, "head"),
        "attention_bias": False,
        "mlp_only_layers": [i for i, (_, f) in enumerate(pairs) if f == "-"],
        "decoder_sparse_step": 1,
    }
    if (a := cfg.attention) is not None:
        out.update(_attention(cfg, rope=True, partial=True, gate=True, qk_norm=True), head_dim=a.dims(d)[2],
                   partial_rotary_factor=a.rope_fraction, **_rope(cfg, partial_key=True))
    if cfg.mlp is not None:
        out["intermediate_size"] = cfg.mlp.d_ff(d)
    if (e := cfg.moe) is not None:
        if not e.shared_expert:
            raise _Cannot("its MoE always has a shared expert, and moe.shared_expert is false")
        out.update(num_experts=e.experts, num_experts_per_tok=e.top_k, moe_intermediate_size=e.d_ff(d),
                   shared_expert_intermediate_size=e.d_ff_shared(d), norm_topk_prob=True,
                   router_aux_loss_coef=e.aux_loss_weight)
    return out


def _hf_kimi_linear(cfg: ArchConfig) -> dict[str, Any]:
    pairs = _delta_pairs(cfg, "KDA")
    d = cfg.d_model
    out: dict[str, Any] = {
        **_common(cfg, "kimi_linear"),
        "num_hidden_layers": len(pairs),
        "layer_types": _types(pairs, "D"),
        "mlp_layer_types": ["sparse" if f == "E" else "dense" for _, f in pairs],
        "hidden_act": "silu",
        "attention_bias": False,
        "q_lora_rank": None,
        **_NO_SPECIAL_TOKENS,
    }
    if (n := cfg.deltanet) is not None:
        if n.gate != "channel":
            raise _Cannot("its KDA layers decay per key channel, and deltanet.gate is head")
        heads, k, v_heads, v = n.dims(d)
        if (heads, k) != (v_heads, v):
            raise _Cannot(f"its KDA heads are as many and as wide for values as for keys, and deltanet has {heads} "
                          f"of {k} for q/k and {v_heads} of {v} for values")
        out.update(linear_attn_config={"num_heads": heads, "head_dim": k, "short_conv_kernel_size": n.d_conv},
                   linear_num_heads=heads, linear_head_dim=k, linear_conv_kernel_dim=n.d_conv)
    if (a := cfg.attention) is not None:
        # MLA whose latent holds each KV group's key and value (kv_lora_rank = 2·kv_heads·head_dim) computes our
        # grouped-query attention as a special case, less the RMSNorm on the latent
        _attention(cfg, rope=False)
        heads, kv, hd = a.dims(d)
        out.update(num_attention_heads=heads, num_key_value_heads=heads, kv_lora_rank=2 * kv * hd,
                   qk_nope_head_dim=hd, qk_rope_head_dim=0, v_head_dim=hd, mla_use_nope=True)
    if cfg.mlp is not None:
        out["intermediate_size"] = cfg.mlp.d_ff(d)
    if (e := cfg.moe) is not None:
        if e.shared_expert and e.d_ff_shared(d) != e.d_ff(d):
            raise _Cannot(f"its shared expert is as wide as the others, and they are {e.d_ff_shared(d)} and "
                          f"{e.d_ff(d)} here")
        # Kimi routes by sigmoid scores with a learnt bias; the scaling factor is left at 1 (ours has none)
        out.update(num_experts=e.experts, num_experts_per_token=e.top_k, moe_intermediate_size=e.d_ff(d),
                   num_shared_experts=1 if e.shared_expert else 0, moe_renormalize=True,
                   routed_scaling_factor=1.0, num_expert_group=1, topk_group=1)
    return out


def _hf_olmo_hybrid(cfg: ArchConfig) -> dict[str, Any]:
    _only(cfg, "D*-", "Gated DeltaNet, attention and MLP layers")
    pairs = _pairs(cfg, "D*", "-")
    if "D" not in cfg.pattern or "*" not in cfg.pattern:
        raise _Cannot("it needs at least one Gated DeltaNet and one attention layer")
    d = cfg.d_model
    _activation(cfg.mlp, "mlp", ("swiglu",), "MLPs are SwiGLU")
    a = cfg.attention
    out: dict[str, Any] = {
        **_common(cfg, "olmo_hybrid"),
        "num_hidden_layers": len(pairs),
        "layer_types": _types(pairs, "D"),
        "hidden_act": "silu",
        **_attention(cfg, rope=None, qk_norm=True),
        "head_dim": a.dims(d)[2],
        **_deltanet(cfg, "head"),
        "linear_allow_neg_eigval": False,  # β in (0, 1), as ours
        **_NO_SPECIAL_TOKENS,
        "intermediate_size": cfg.mlp.d_ff(d),
        "attention_bias": False,
        # NoPE when rope_parameters name no base, as in the released checkpoints (None would mean the default)
        "rope_parameters": _rope(cfg)["rope_parameters"] if a.pos == "rope" else {"rope_type": "default",
                                                                                   "rope_theta": None},
    }
    return out


def _hf_lfm2(cfg: ArchConfig) -> dict[str, Any]:
    _only(cfg, "C*-", "gated short convolution, attention and MLP layers")
    pairs = _pairs(cfg, "C*", "-")
    d = cfg.d_model
    _activation(cfg.mlp, "mlp", ("swiglu",), "MLPs are SwiGLU")
    out: dict[str, Any] = {
        **_common(cfg, "lfm2", "norm_eps"),
        "num_hidden_layers": len(pairs),
        "layer_types": _types(pairs, "C", "conv"),
        "full_attn_idxs": [i for i, (a, _) in enumerate(pairs) if a == "*"],
        "intermediate_size": cfg.mlp.d_ff(d),
        "block_auto_adjust_ff_dim": False,  # the width as given, not LFM2's 2/3 rounded to 256
        "conv_bias": False,
        "conv_L_cache": cfg.shortconv.d_conv if cfg.shortconv else 3,
    }
    if (a := cfg.attention) is not None:
        attn = _attention(cfg, rope=True, qk_norm=True)
        if a.dims(d)[2] != d // a.heads or d % a.heads:
            raise _Cannot(f"its attention heads are d_model / heads wide, and attention.head_dim is {a.head_dim}")
        out.update(attn, **_rope(cfg))
    else:  # no attention layer: the heads only have to divide the width
        out.update(num_attention_heads=1, num_key_value_heads=1)
    return out


_BUILDERS = {
    "mamba": _hf_mamba,
    "mamba2": _hf_mamba2,
    "xlstm": _hf_xlstm,
    "llama": _hf_llama,
    "jamba": _hf_jamba,
    "bamba": _hf_bamba,
    "granitemoehybrid": _hf_granite,
    "nemotron_h": _hf_nemotron_h,
    "qwen3_next": _hf_qwen3_next,
    "kimi_linear": _hf_kimi_linear,
    "olmo_hybrid": _hf_olmo_hybrid,
    "lfm2": _hf_lfm2,
}


def _try(cfg: ArchConfig, target: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        if "mamba2" in _HOLDS[target]:  # every class that holds Mamba-2 layers has the reference's norm
            _mamba2_norm(cfg)
        return _BUILDERS[target](cfg), None
    except _Cannot as e:
        return None, str(e)


def hf_targets(cfg: ArchConfig) -> list[str]:
    """The Hugging Face model types that can express `cfg`, best first."""
    return [t for t in HF_CLASSES if _try(cfg, t)[0] is not None]


_RECURRENT = ("mamba1", "mamba2", "mlstm", "deltanet", "shortconv")


def _no_class(cfg: ArchConfig) -> str:
    fams = set(cfg.families)
    if "mlstm" in fams and fams - {"mlstm", "mlp"}:
        what = "mLSTM mixed with " + " and ".join(_name(f) for f in cfg.families if f not in ("mlstm", "mlp"))
    elif {"mamba1", "mamba2"} <= fams:
        what = "Mamba-1 mixed with Mamba-2"
    elif "local_attention" in fams:
        what = "sliding-window attention ('W'; the classes exported here attend globally)"
    elif len(recurrent := [f for f in cfg.families if f in _RECURRENT]) > 1:
        what = " mixed with ".join(_name(f) for f in recurrent)
    else:
        near = [t for t, holds in _HOLDS.items() if fams <= holds] or list(_HOLDS)
        reasons: dict[str, list[str]] = {}
        for t in near:
            reasons.setdefault(_try(cfg, t)[1], []).append(t)
        why = "; ".join(f"{' and '.join(ts)}: {r}" for r, ts in reasons.items())
        what = f"this architecture ({why})"
    return f"no Hugging Face class can express {what}"


def build(cfg: ArchConfig, target: str | None = None) -> dict[str, Any]:
    """A transformers `config.json` (as a dict) for `cfg`: the best class of `hf_targets`, or `target`.

    Raises Unfit when no class (or not `target`, and no other) can express it; ConfigError naming the
    classes that can when `target` cannot.
    """
    if target is None:
        targets = hf_targets(cfg)
        if not targets:
            raise Unfit(_no_class(cfg))
        target = targets[0]
    if target not in _BUILDERS:
        raise ConfigError(f"unknown Hugging Face target {target!r}; choose one of {', '.join(HF_CLASSES)}")
    config, reason = _try(cfg, target)
    if config is None:
        why = f"the Hugging Face class {target} cannot express this architecture: {reason}"
        others = hf_targets(cfg)
        if not others:
            raise Unfit(why)
        raise ConfigError(f"{why}; use --target {or_list(others)}")
    if target in _CACHE_NEEDS_ATTENTION and "attention" not in cfg.families:
        config["use_cache"] = False  # what the class's cache needs: readme() says so
    return config


def or_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


_HF_NOTES: dict[str, list[tuple[str, str]]] = {
    # (family that must be present, or "" for always; the note)
    "mamba": [("", "the class keeps the residual stream in fp32 (`residual_in_fp32`); ours keeps the "
                   "model's dtype")],
    "mamba2": [],
    "xlstm": [("", "the class soft-caps gate pre-activations at 15 and logits at 30 (xLSTM-7B's recipe); "
                   "ours caps neither, and the class cannot switch the caps off"),
              ("", "the class normalises each mLSTM head's output with LayerNorm, ours with RMSNorm")],
    "llama": [],
    "jamba": [("mamba1", "Jamba's Mamba-1 layers RMS-normalise Δ, B and C before the scan; ours do not"),
              ("moe", "Jamba keeps the top-k router weights as they are; ours renormalises them to 1")],
    "bamba": [("attention", "Bamba's attention layers take `head_dim` from the config only in recent "
                            "transformers releases; older ones use hidden_size / heads")],
    "granitemoehybrid": [("", "embedding, residual and logit multipliers are set to 1 and "
                              "`attention_multiplier` to 1/sqrt(head_dim), which is what our model does"),
                         ("moe", "each layer's shared MLP is the shared expert (width 0 if there is none)")],
    "nemotron_h": [("moe", "Nemotron-H routes by sigmoid scores, ours by softmax (both renormalise the "
                           "top k)")],
    "qwen3_next": [("moe", "Qwen3-Next's shared expert sits behind a sigmoid gate (one weight row a layer); "
                           "ours has none"),
                   ("deltanet", "its Gated DeltaNet projects q, k, v and the output gate in one matrix, and the "
                                "decay and write gates in another: the same weights, laid out differently")],
    "kimi_linear": [("attention", "its attention is MLA: the exported latent (2·kv_heads·head_dim wide) holds our "
                                  "grouped-query keys and values as a special case, but the class normalises the "
                                  "latent and has more weights than ours"),
                    ("moe", "Kimi routes by sigmoid scores with a learnt bias, ours by softmax (both "
                            "renormalise the top k)")],
    "olmo_hybrid": [("attention", "its attention layers normalise after the attention and the MLP (post-norm), "
                                  "ours before; its q/k norm spans all heads at once, ours each head")],
    "lfm2": [],
}


def readme(cfg: ArchConfig, config: dict[str, Any]) -> str:
    """README.md beside the config: the class, how to load it, and how it differs from our model."""
    t = config["model_type"]
    cls = HF_CLASSES[t]
    notes = [n for fam, n in _HF_NOTES[t] if not fam or fam in cfg.families]
    if config.get("use_cache") is False:
        notes.append(f"`use_cache` is false: the cache of `{cls}` takes the sequence length from an attention "
                     "layer and this model has none, so `generate()` runs each step over the whole sequence")
    lines = [
        f"# `{cls}` config exported by hybrid-nas",
        "",
        f"- pattern: `{cfg.pattern}` ({cfg.n_sublayers} sublayers, d_model {cfg.d_model}, "
        f"{param_counts(cfg).total:,} parameters by our cost model)",
        f"- class: `transformers.{cls}` (model_type `{t}`); other classes that can hold it: "
        + (", ".join(f"`{x}`" for x in hf_targets(cfg) if x != t) or "none"),
        "",
        "```python",
        "from transformers import AutoConfig, AutoModelForCausalLM",
        'config = AutoConfig.from_pretrained("path/to/this/directory")',
        "model = AutoModelForCausalLM.from_config(config)  # randomly initialised, ready to train",
        "```",
    ]
    if notes:
        lines += ["", "Differences from the hybrid-nas model:", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"
