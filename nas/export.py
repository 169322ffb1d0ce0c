"""Export an architecture as a training config that a real framework accepts.

    export(cfg, "hf", "out/jamba")               # config.json (+ README.md) for a transformers class
    export(cfg, "megatron", "out/m", scale_to=2e9)  # Megatron-LM hybrid-model arguments
    export(cfg, "yaml", "out/y", training={"tokens": 2e10})  # arch.yaml + training.yaml, read back exactly

- `hf`: the transformers class that can express the pattern, chosen by `hf_targets` (best first):
  `mamba`, `mamba2`, `xlstm` and `llama` for the pure stacks; `jamba` for Mamba-1 + attention placed
  periodically; `bamba` (RoPE) and `granitemoehybrid` (NoPE, MoE) for (mixer, feed-forward) layers of
  Mamba-2 and attention; `nemotron_h` for any string of Mamba-2 / attention / MLP / MoE sublayers.
- `megatron`: the argument list of Megatron-LM's hybrid models (`M*-E` patterns).
- `yaml`: the ArchConfig, scaled to `--scale-to` by the presets' scaling rule, plus training
  hyper-parameters; `load_exported_yaml` reads both back.

The exporter needs only json and yaml; transformers is what the tests load the configs with. Files are
written to a temporary directory first and moved into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from search_spaces.arch import ArchConfig

__all__ = [
    "FORMATS",
    "HF_CLASSES",
    "TrainingSettings",  # noqa: F822 - defined on first use (module __getattr__)
    "arch_of_trial",
    "default_training",
    "export",
    "export_command",
    "export_study",
    "hf_config",
    "hf_targets",
    "load_exported_yaml",
    "megatron_args",
    "render",
]

Format = Literal["hf", "megatron", "yaml"]
FORMATS: tuple[str, ...] = ("hf", "megatron", "yaml")

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
}
MEGATRON_SYMBOLS = "M*-E"
PATTERN_FLAG = "--hybrid-override-pattern"  # newer Megatron-LM releases call it --hybrid-layer-pattern
NEW_PATTERN_FLAG = "--hybrid-layer-pattern"


def _error(message: str) -> Exception:
    """The project's ConfigError (imported late: `nas --help` does not load pydantic)."""
    from search_spaces.arch import ConfigError

    return ConfigError(message)


class _Cannot(Exception):
    """A class cannot express the architecture; the message completes "<class> cannot express it: ..."."""


# ----- Hugging Face ----------------------------------------------------------------------------------
def _name(family: str) -> str:
    from search_spaces.pattern import FAMILIES, SYMBOLS

    return SYMBOLS[FAMILIES[family]][1]


def _only(cfg: ArchConfig, symbols: str, what: str) -> None:
    from search_spaces.pattern import FAMILIES

    extra = [f for f in cfg.families if FAMILIES[f] not in symbols]
    if extra:
        raise _Cannot(f"it holds {what} only, not {' or '.join(map(_name, extra))}")


def _pairs(cfg: ArchConfig, mixers: str = "*MmX", ffns: str = "-E") -> list[tuple[str, str]]:
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


def _attention(cfg: ArchConfig, *, rope: bool | None, partial: bool = False) -> dict[str, Any]:
    """heads / kv heads / head dim, with the position embedding the class supports checked."""
    a = cfg.attention
    if a is None:
        return {}
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


_BUILDERS = {
    "mamba": _hf_mamba,
    "mamba2": _hf_mamba2,
    "xlstm": _hf_xlstm,
    "llama": _hf_llama,
    "jamba": _hf_jamba,
    "bamba": _hf_bamba,
    "granitemoehybrid": _hf_granite,
    "nemotron_h": _hf_nemotron_h,
}


def _try(cfg: ArchConfig, target: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return _BUILDERS[target](cfg), None
    except _Cannot as e:
        return None, str(e)


def hf_targets(cfg: ArchConfig) -> list[str]:
    """The Hugging Face model types that can express `cfg`, best first."""
    return [t for t in HF_CLASSES if _try(cfg, t)[0] is not None]


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _other_formats(cfg: ArchConfig, fmt: str) -> str:
    """'--format megatron or --format yaml': the formats other than `fmt` that can hold `cfg`."""
    from search_spaces.arch import ConfigError

    ok = []
    if fmt != "hf" and hf_targets(cfg):
        ok.append("--format hf")
    if fmt != "megatron":
        try:
            megatron_args(cfg)
            ok.append("--format megatron")
        except ConfigError:
            pass
    ok.append("--format yaml")
    return _or(ok)


def _no_class(cfg: ArchConfig) -> str:
    fams = set(cfg.families)
    if "mlstm" in fams and fams - {"mlstm", "mlp"}:
        what = "mLSTM mixed with " + " and ".join(_name(f) for f in cfg.families if f not in ("mlstm", "mlp"))
    elif {"mamba1", "mamba2"} <= fams:
        what = "Mamba-1 mixed with Mamba-2"
    else:
        near = [t for t, holds in _HOLDS.items() if fams <= holds] or list(_HOLDS)
        reasons: dict[str, list[str]] = {}
        for t in near:
            reasons.setdefault(_try(cfg, t)[1], []).append(t)
        why = "; ".join(f"{' and '.join(ts)}: {r}" for r, ts in reasons.items())
        what = f"this architecture ({why})"
    return f"no Hugging Face class can express {what}; export it with {_other_formats(cfg, 'hf')}"


def hf_config(cfg: ArchConfig, target: str | None = None) -> dict[str, Any]:
    """A transformers `config.json` (as a dict) for `cfg`: the best class of `hf_targets`, or `target`."""
    if target is None:
        targets = hf_targets(cfg)
        if not targets:
            raise _error(_no_class(cfg))
        target = targets[0]
    if target not in _BUILDERS:
        raise _error(f"unknown Hugging Face target {target!r}; choose one of {', '.join(HF_CLASSES)}")
    config, reason = _try(cfg, target)
    if config is None:
        others = hf_targets(cfg)
        instead = f"use --target {_or(others)}" if others else f"export it with {_other_formats(cfg, 'hf')}"
        raise _error(f"the Hugging Face class {target} cannot express this architecture: {reason}; {instead}")
    return config


# ----- Megatron-LM ---------------------------------------------------------------------------------------
def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def megatron_args(cfg: ArchConfig, pattern_flag: str = PATTERN_FLAG) -> list[str]:
    """Megatron-LM's arguments for the hybrid model `cfg` (pretrain_mamba.py / the hybrid model builder).

    Model shape only: add data, parallelism, sequence length and optimiser arguments. Valued flags come
    as "--flag", "value" pairs, except a pattern that starts with '-' ("--flag=-M-M"), which argparse
    would otherwise read as a flag.
    """
    for sym, fam in (("m", "Mamba-1"), ("X", "mLSTM")):
        if sym in cfg.pattern:
            raise _error(
                f"Megatron-LM's hybrid models have no {fam} layer (their symbols are "
                f"{' '.join(MEGATRON_SYMBOLS)}); "
                f"export it with {_other_formats(cfg, 'megatron')}"
            )
    d = cfg.d_model
    p = cfg.pattern
    pattern = [f"{pattern_flag}={p}"] if p.startswith("-") else [pattern_flag, p]
    args = ["--num-layers", str(cfg.n_sublayers), *pattern, "--hidden-size", str(d)]

    ffns = [(f, o) for f, o in (("mlp", cfg.mlp), ("moe", cfg.moe)) if o is not None]
    acts = {o.activation for _, o in ffns}
    if len(acts) > 1:
        raise _error(
            "Megatron-LM uses one activation for MLP and MoE layers, and mlp.activation is "
            f"{cfg.mlp.activation} while moe.activation is {cfg.moe.activation}; make them equal or export "
            f"it with {_other_formats(cfg, 'megatron')}"
        )
    if cfg.mlp is not None:
        args += ["--ffn-hidden-size", str(cfg.mlp.d_ff(d))]
    if acts:
        # GeLU is Megatron-LM's default activation: it has no flag
        args += {"swiglu": ["--swiglu"], "relu2": ["--squared-relu"], "gelu": []}[acts.pop()]

    if (a := cfg.attention) is not None:
        heads, kv, hd = a.dims(d)
        args += ["--num-attention-heads", str(heads)]
        if kv != heads:
            args += ["--group-query-attention", "--num-query-groups", str(kv)]
        args += ["--kv-channels", str(hd)]
        if a.pos == "rope":
            if not float(a.rope_theta).is_integer():
                raise _error(
                    "Megatron-LM takes a whole-number RoPE base, and attention.rope_theta is "
                    f"{a.rope_theta:g}; export it with {_other_formats(cfg, 'megatron')}"
                )
            args += ["--position-embedding-type", "rope", "--rotary-base", _num(a.rope_theta),
                     "--rotary-percent", _num(a.rope_fraction)]
        else:
            args += ["--position-embedding-type", "none"]
    else:
        # Megatron-LM requires a head count even with no attention layer; one head divides any width
        args += ["--num-attention-heads", "1", "--position-embedding-type", "none"]

    if (m := cfg.mamba2) is not None:
        if m.d_conv != 4:
            raise _error(
                f"Megatron-LM's Mamba-2 layer has a convolution of width 4, and mamba2.d_conv is {m.d_conv}; "
                f"export it with {_other_formats(cfg, 'megatron')}"
            )
        args += ["--mamba-state-dim", str(m.d_state), "--mamba-head-dim", str(m.head_dim),
                 "--mamba-num-groups", str(m.n_groups)]
        if m.expand != 2:
            # the inner width is 2·hidden unless the head count says otherwise (newer releases)
            args += ["--mamba-num-heads", str(m.n_heads(d))]
        # chunk_size is the SSD kernel's block length, not an argument: the model computes the same function

    if (e := cfg.moe) is not None:
        # Megatron-LM's default routing (top-k of the logits, softmax over those k) equals ours
        args += ["--num-experts", str(e.experts), "--moe-router-topk", str(e.top_k),
                 "--moe-ffn-hidden-size", str(e.d_ff(d))]
        if e.shared_expert:
            args += ["--moe-shared-expert-intermediate-size", str(e.d_ff_shared(d))]
        args += ["--moe-router-load-balancing-type", "aux_loss",
                 "--moe-aux-loss-coeff", _num(e.aux_loss_weight)]

    args += ["--normalization", "RMSNorm", "--norm-epsilon", _num(cfg.norm_eps), "--disable-bias-linear",
             "--attention-dropout", "0.0", "--hidden-dropout", "0.0"]
    if not cfg.tie_embeddings:
        args.append("--untie-embeddings-and-output-weights")
    # used by --tokenizer-type NullTokenizer; with a real tokenizer its vocabulary decides
    args += ["--vocab-size", str(cfg.vocab_size)]
    return args


def _megatron_sh(cfg: ArchConfig, args: list[str]) -> str:
    lines = [
        "# Megatron-LM model arguments written by `nas export` (hybrid-nas).",
        f"# pattern: {cfg.pattern}",
        "# Use:   source megatron_args.sh",
        '#        torchrun ... pretrain_mamba.py "${MEGATRON_ARGS[@]}" <data, parallelism, optimiser args>',
        f"# Releases that call the pattern {NEW_PATTERN_FLAG}:",
        f"#        MEGATRON_PATTERN_FLAG={NEW_PATTERN_FLAG} source megatron_args.sh",
        "# megatron_args.txt holds the same list, one argument a line: mapfile -t ARGS < megatron_args.txt",
        "MEGATRON_ARGS=(",
    ]
    flag = f'"${{MEGATRON_PATTERN_FLAG:-{PATTERN_FLAG}}}"'
    i = 0
    while i < len(args):
        a = args[i]
        if a == PATTERN_FLAG:
            lines.append(f"  {flag} {shlex.quote(args[i + 1])}")
            i += 2
            continue
        if a.startswith(PATTERN_FLAG + "="):
            lines.append(f"  {flag}{shlex.quote(a[len(PATTERN_FLAG):])}")
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            lines.append(f"  {a} {shlex.quote(args[i + 1])}")
            i += 1
        else:
            lines.append(f"  {a}")
        i += 1
    lines.append(")")
    return "\n".join(lines) + "\n"


# ----- native YAML ---------------------------------------------------------------------------------------
_MODELS: dict[str, type] = {}


def _models() -> dict[str, type]:
    """TrainingOptim and TrainingSettings, defined on first use: importing this module skips pydantic."""
    if _MODELS:
        return _MODELS
    from pydantic import BaseModel, ConfigDict, Field

    class _Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)

    class TrainingOptim(_Strict):
        """AdamW, linear warmup, cosine decay to min_lr_ratio·lr, global-norm clipping (as proxies train)."""

        lr: float = Field(3e-4, gt=0)
        min_lr_ratio: float = Field(0.1, ge=0, le=1)
        warmup_fraction: float = Field(0.01, ge=0, lt=1)
        weight_decay: float = Field(0.1, ge=0)
        betas: tuple[float, float] = (0.9, 0.95)
        grad_clip: float = Field(1.0, gt=0)

    class TrainingSettings(_Strict):
        """The full-size run's hyper-parameters, written beside the architecture."""

        seq_len: int = Field(4096, gt=0)
        batch_size: int = Field(512, gt=0, description="sequences per optimiser step")
        tokens: int = Field(gt=0, description="training budget")
        precision: Literal["bf16", "fp32"] = "bf16"
        seed: int = 0
        optim: TrainingOptim = TrainingOptim()

    for model in (TrainingOptim, TrainingSettings):
        model.__module__, model.__qualname__ = __name__, model.__name__
    _MODELS.update(TrainingOptim=TrainingOptim, TrainingSettings=TrainingSettings)
    return _MODELS


def __getattr__(name: str) -> Any:
    if name in ("TrainingOptim", "TrainingSettings"):
        return _models()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _validate_training(data: dict[str, Any], what: str) -> dict[str, Any]:
    from pydantic import ValidationError

    from search_spaces.arch import explain_validation_error

    settings = _models()["TrainingSettings"]
    try:
        return settings.model_validate(data).model_dump(mode="json")
    except ValidationError as err:
        raise _error(explain_validation_error(err, settings, what)) from None


def default_training(cfg: ArchConfig) -> dict[str, Any]:
    """Defaults for a full-size run: 20 tokens per parameter (Chinchilla), 2M-token batches, AdamW 3e-4."""
    from search_spaces.cost import param_counts

    n = 20 * param_counts(cfg).total
    tokens = int(float(f"{n:.2g}"))  # two significant figures
    return _models()["TrainingSettings"](tokens=tokens).model_dump(mode="json")


def _training(cfg: ArchConfig, overrides: dict[str, Any] | None) -> dict[str, Any]:
    data = default_training(cfg)
    for key, value in (overrides or {}).items():
        if key == "optim" and isinstance(value, dict):
            data["optim"] = {**data["optim"], **value}
        else:
            data[key] = value
    if isinstance(data.get("tokens"), float) and data["tokens"].is_integer():
        data["tokens"] = int(data["tokens"])  # 2e10 from YAML or Python is a whole number of tokens
    return _validate_training(data, "training")


def load_exported_yaml(path: str | Path) -> tuple[ArchConfig, dict[str, Any]]:
    """(architecture, training hyper-parameters) of a `--format yaml` export: its directory or arch.yaml."""
    import yaml

    from search_spaces.arch import ArchConfig

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    arch = ArchConfig.load(folder / "arch.yaml" if path.is_dir() else path)
    tpath = folder / "training.yaml"
    try:
        data = yaml.safe_load(tpath.read_text())
    except OSError as err:
        raise _error(f"cannot read the training settings {tpath}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise _error(f"the training settings {tpath} are not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise _error(f"the training settings {tpath} must be a mapping of keys (seq_len, tokens, ...)")
    return arch, _validate_training(data, f"training settings {tpath.name}")


# ----- rendering and writing -----------------------------------------------------------------------------
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
}


def _hf_readme(cfg: ArchConfig, config: dict[str, Any]) -> str:
    from search_spaces.cost import param_counts

    t = config["model_type"]
    cls = HF_CLASSES[t]
    notes = [n for fam, n in _HF_NOTES[t] if not fam or fam in cfg.families]
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


def _sized(cfg: ArchConfig, scale_to: float | None, vocab_size: int | None) -> ArchConfig:
    if scale_to is None:
        return cfg if vocab_size is None else cfg.replace(vocab_size=vocab_size)
    from search_spaces.scaling import scale

    try:
        return scale(cfg, scale_to, vocab_size=vocab_size)
    except ValueError as err:
        raise _error(str(err)) from None


def _render(
    cfg: ArchConfig,
    fmt: str,
    *,
    scale_to: float | None = None,
    training: dict[str, Any] | None = None,
    target: str | None = None,
    vocab_size: int | None = None,
) -> tuple[dict[str, str], str]:
    """(file name -> text, a line saying what to do with them)."""
    import yaml

    if fmt not in FORMATS:
        raise _error(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if target is not None and fmt != "hf":
        raise _error(f"a target class applies to --format hf only, not --format {fmt}")
    if training is not None and fmt != "yaml":
        raise _error(f"training hyper-parameters apply to --format yaml only, not --format {fmt}")
    cfg = _sized(cfg, scale_to, vocab_size)
    size = f" scaled to {scale_to:g} parameters" if scale_to is not None else ""
    if fmt == "hf":
        config = hf_config(cfg, target)
        cls = HF_CLASSES[config["model_type"]]
        files = {"config.json": json.dumps(config, indent=2) + "\n", "README.md": _hf_readme(cfg, config)}
        return files, f'load it with transformers: AutoConfig.from_pretrained("DIR") gives the config that ' \
            f"AutoModelForCausalLM.from_config builds into {cls}"
    if fmt == "megatron":
        args = megatron_args(cfg)
        files = {"megatron_args.txt": "\n".join(args) + "\n", "megatron_args.sh": _megatron_sh(cfg, args)}
        return files, 'pass it to Megatron-LM: source DIR/megatron_args.sh, then "${MEGATRON_ARGS[@]}"'
    train = _training(cfg, training)
    files = {
        "arch.yaml": f"# hybrid-nas architecture{size}, written by `nas export`\n{cfg.to_yaml()}",
        "training.yaml": "# hyper-parameters of the full-size run, written by `nas export`\n"
        + yaml.safe_dump(train, sort_keys=False, default_flow_style=None),
    }
    return files, 'read it back with load_exported_yaml("DIR"); DIR/arch.yaml works with `nas cost --arch`'


def render(cfg: ArchConfig, fmt: Format, **kwargs: Any) -> dict[str, str]:
    """The files `export` would write (name -> text), written nowhere."""
    return _render(cfg, fmt, **kwargs)[0]


def _write(out_dir: Path, files: dict[str, str]) -> list[Path]:
    """Write `files` under out_dir through a temporary sibling directory: all of them or none."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise _error(f"the output path {out_dir} is a file; name a directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
        if not out_dir.exists():
            os.replace(tmp, out_dir)
            tmp = None
        else:
            for rel in files:
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / rel, out_dir / rel)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return [out_dir / rel for rel in files]


def export(
    cfg: ArchConfig,
    fmt: Format,
    out_dir: str | Path,
    *,
    scale_to: float | None = None,
    training: dict[str, Any] | None = None,
    target: str | None = None,
    vocab_size: int | None = None,
) -> list[Path]:
    """Write `cfg` as `fmt` into out_dir and return the files written.

    scale_to: resize to about this many parameters by the presets' scaling rule (vocabulary kept unless
    vocab_size is given). training: hyper-parameters over `default_training` (yaml only). target: force a
    Hugging Face model type (hf only). Raises ConfigError, with one sentence, when the format cannot hold
    the architecture; nothing is written then.
    """
    files, _ = _render(cfg, fmt, scale_to=scale_to, training=training, target=target, vocab_size=vocab_size)
    return _write(Path(out_dir), files)


# ----- studies -------------------------------------------------------------------------------------------
_NO_STUDIES = "studies are not available in this installation; export with --preset or --arch"


def arch_of_trial(study: str, trial: int | None, storage: str | None = None) -> list[tuple[int, ArchConfig]]:
    """[(trial number, architecture)] of one trial, or of the study's Pareto front when trial is None."""
    from nas.cli import UsageError

    try:
        from nas import study as studies
    except ModuleNotFoundError as err:
        if err.name == "nas.study":
            raise UsageError(_NO_STUDIES) from None
        raise UsageError(
            f"studies need the package {err.name}, which is not installed; pip install 'hybrid-nas[service]'"
        ) from None
    if not hasattr(studies, "trial_archs"):
        raise UsageError(_NO_STUDIES)
    found = studies.trial_archs(study, storage=storage, pareto=trial is None, trial=trial)
    if not found:
        what = f"no trial {trial}" if trial is not None else "no finished trial on its Pareto front"
        raise UsageError(f"study {study!r} has {what}")
    return found


def export_study(
    study: str,
    fmt: Format,
    out_dir: str | Path,
    *,
    trial: int | None = None,
    storage: str | None = None,
    **kwargs: Any,
) -> list[Path]:
    """Export one trial's architecture into out_dir, or every Pareto-front trial into out_dir/trial-N."""
    found = arch_of_trial(study, trial, storage)
    files: dict[str, str] = {}
    for number, cfg in found:
        rendered, _ = _render(cfg, fmt, **kwargs)
        prefix = "" if trial is not None else f"trial-{number}/"
        files.update({prefix + name: text for name, text in rendered.items()})
    return _write(Path(out_dir), files)


# ----- the `nas export` command --------------------------------------------------------------------------
def export_command(
    preset: Annotated[str | None, typer.Option("--preset", help="a preset name (see `nas presets`)")] = None,
    arch: Annotated[Path | None, typer.Option("--arch", help="an ArchConfig YAML or JSON file")] = None,
    study: Annotated[str | None, typer.Option("--study", help="a study, with --trial N or --pareto")] = None,
    trial: Annotated[int | None, typer.Option("--trial", help="with --study: this trial")] = None,
    pareto: Annotated[bool, typer.Option("--pareto", help="with --study: its whole Pareto front")] = False,
    storage: Annotated[str | None, typer.Option("--storage", help="with --study: Optuna storage URL")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="hf, megatron or yaml")] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="with --format hf: force a model type (jamba, bamba, ...)")
    ] = None,
    scale_to: Annotated[
        str | None, typer.Option("--scale-to", help="resize to this many parameters (2e6, 1.5B), layout kept")
    ] = None,
    vocab_size: Annotated[int | None, typer.Option("--vocab-size", help="replace the vocabulary")] = None,
    training: Annotated[
        Path | None, typer.Option("--training", help="with --format yaml: YAML of training settings")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="the directory to write (made if needed)")] = None,
) -> None:
    """Export an architecture as a training config: a transformers config.json, Megatron-LM arguments or YAML.

    --format hf picks the transformers class that can express the layout (--target forces one); the
    directory then loads with AutoConfig.from_pretrained. Nothing is written when the format cannot hold it.
    """
    import yaml

    from nas import _format as fmt_numbers
    from nas.cli import UsageError, fail, resolve_arch
    from nas.cli import out as console
    from search_spaces.arch import ConfigError

    try:
        if fmt is None:
            raise UsageError(f"name the format with --format ({', '.join(FORMATS)})")
        if fmt not in FORMATS:
            raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
        given = [n for n, v in (("--preset", preset), ("--arch", arch), ("--study", study)) if v is not None]
        if len(given) != 1:
            raise UsageError(
                "name exactly one architecture: --arch FILE, --preset NAME, --study S --trial N or "
                "--study S --pareto"
                + (f" (got {' and '.join(given)})" if given else "")
            )
        if study is None and (trial is not None or pareto):
            raise UsageError("--trial and --pareto choose trials of a study; add --study NAME")
        if study is not None and (trial is None) == (not pareto):
            raise UsageError("with --study, name one trial with --trial N or the whole front with --pareto")
        if out is None:
            raise UsageError("name the directory to write with --out DIR")
        try:
            size = fmt_numbers.parse_count(scale_to) if scale_to is not None else None
        except ValueError as e:
            raise UsageError(f"--scale-to: {e}") from None
        settings = None
        if training is not None:
            try:
                settings = yaml.safe_load(training.read_text()) or {}
            except OSError as e:
                raise UsageError(f"cannot read the training settings {training}: {e.strerror}") from None
            except yaml.YAMLError as e:
                raise UsageError(f"the training settings {training} are not valid YAML: {e}") from None
            if not isinstance(settings, dict):
                raise UsageError(f"the training settings {training} must be a mapping (seq_len, tokens, ...)")
        kwargs = {"scale_to": size, "training": settings, "target": target, "vocab_size": vocab_size}

        if study is None:
            archs = [(None, resolve_arch(preset=preset, arch=arch))]
        else:
            archs = arch_of_trial(study, trial, storage)
        files: dict[str, str] = {}
        hows: list[str] = []
        for number, cfg in archs:
            rendered, how = _render(cfg, fmt, **kwargs)
            where = out if trial is not None or number is None else out / f"trial-{number}"
            files.update({str((where / n).relative_to(out)): text for n, text in rendered.items()})
            hows.append(how.replace("DIR", str(where)))
        written = _write(out, files)
    except (ConfigError, UsageError) as e:
        fail(str(e))
        return
    names = sorted(str(p.relative_to(out)) for p in written)
    console.print(f"wrote {out}: {', '.join(names)}", markup=False, soft_wrap=True)
    for how in hows:
        console.print(how, markup=False, soft_wrap=True)
