"""Presets: the published hybrids (and their pure baselines) at full size.

`preset(name)` is the published architecture; `preset(name, params=2e6)` is the same layout scaled by
the one rule in `scaling.py` (pattern unchanged; only the width moves), which is how proxies are made.
Layer counts, widths, heads and state sizes follow each model's published configuration; `source`
names it (Granite-4.0-H-Small's attention indices and the 8B Mamba-2-Hybrid's vocabulary and MLP
activation follow its Megatron-LM scripts' defaults where no config states them). MLPs are SwiGLU except
where `activation` says `relu2` (squared ReLU) or `gelu`. Where our layers cannot hold a published one
exactly, the title says so and `source` names the difference (Kimi Linear's MLA is GQA here, Gemma 3's
GeGLU a SwiGLU).
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.arch import ArchConfig
from search_spaces.config import ConfigError
from search_spaces.scaling import scale

__all__ = ["PRESETS", "Preset", "preset", "preset_names"]


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    source: str
    arch: ArchConfig


def _layers(n: int, mixer: str, ffn: str = "") -> str:
    return (mixer + ffn) * n


def _periodic(n: int, attn_every: int, attn_offset: int, mixer: str, ffn: str = "-",
              moe_every: int = 0, moe_offset: int = 0) -> str:
    """Jamba-style layers: attention where i % attn_every == attn_offset, MoE where i % moe_every == moe_offset."""
    out = []
    for i in range(n):
        out.append("*" if i % attn_every == attn_offset else mixer)
        if ffn:
            out.append("E" if moe_every and i % moe_every == moe_offset else ffn)
    return "".join(out)


def _at(n: int, attention: set[int], mixer: str, ffn: str = "-") -> str:
    """Layers with attention at the given indices (0-based), each layer a mixer and a feed-forward."""
    return "".join(("*" if i in attention else mixer) + ffn for i in range(n))


_PRESETS = [
    Preset(
        "transformer++",
        "Transformer++ (Llama-2-7B shape): RoPE, SwiGLU, RMSNorm",
        "meta-llama/Llama-2-7b-hf config.json",
        ArchConfig(
            pattern=_layers(32, "*", "-"), d_model=4096, vocab_size=32000, tie_embeddings=False,
            attention={"heads": 32, "kv_heads": 32, "pos": "rope", "rope_theta": 10000.0},
            mlp={"ratio": 11008 / 4096},
        ),
    ),
    Preset(
        "mamba",
        "Mamba-2.8B: 64 Mamba-1 layers",
        "state-spaces/mamba-2.8b config.json",
        ArchConfig(
            pattern=_layers(64, "m"), d_model=2560, vocab_size=50280, tie_embeddings=True,
            mamba1={"d_state": 16, "expand": 2, "d_conv": 4},
        ),
    ),
    Preset(
        "mamba2",
        "Mamba-2-2.7B: 64 Mamba-2 layers",
        "state-spaces/mamba2-2.7b config.json",
        ArchConfig(
            pattern=_layers(64, "M"), d_model=2560, vocab_size=50288, tie_embeddings=True,
            mamba2={"d_state": 128, "head_dim": 64, "expand": 2, "n_groups": 1, "d_conv": 4, "chunk_size": 256},
        ),
    ),
    Preset(
        "xlstm",
        "xLSTM[1:0] at 7B (xLSTM-7B): 32 mLSTM blocks, each with a SwiGLU feed-forward",
        "NX-AI/xLSTM-7b config.json",
        ArchConfig(
            pattern=_layers(32, "X", "-"), d_model=4096, vocab_size=50304, tie_embeddings=False, norm_eps=1e-6,
            mlstm={"heads": 8, "qk_dim_factor": 0.5, "v_dim_factor": 1.0},
            mlp={"ratio": 10944 / 4096},
        ),
    ),
    Preset(
        "jamba",
        "Jamba v0.1 (52B total, 12B active): Mamba-1 : attention 7:1, MoE every other layer, NoPE",
        "ai21labs/Jamba-v0.1 config.json",
        ArchConfig(
            pattern=_periodic(32, 8, 4, "m", "-", moe_every=2, moe_offset=1),
            d_model=4096, vocab_size=65536, tie_embeddings=False, norm_eps=1e-6,
            attention={"heads": 32, "kv_heads": 8, "pos": "nope"},
            mamba1={"d_state": 16, "expand": 2, "d_conv": 4, "dt_rank": 256},
            mlp={"ratio": 14336 / 4096},
            moe={"experts": 16, "top_k": 2, "ratio": 14336 / 4096, "aux_loss_weight": 0.001},
        ),
    ),
    Preset(
        "bamba",
        "Bamba-9B: 32 Mamba-2 layers with attention at layers 9, 18 and 27",
        "ibm-ai-platform/Bamba-9B config.json",
        ArchConfig(
            pattern=_at(32, {9, 18, 27}, "M"), d_model=4096, vocab_size=128256, tie_embeddings=False,
            attention={"heads": 32, "kv_heads": 8, "pos": "rope", "rope_theta": 10000.0, "rope_fraction": 0.5},
            mamba2={"d_state": 128, "head_dim": 64, "expand": 2, "n_groups": 1, "d_conv": 4, "chunk_size": 256},
            mlp={"ratio": 14336 / 4096},
        ),
    ),
    Preset(
        "granite-4.0-h",
        "Granite-4.0-H-Small style (32B total, 9B active): Mamba-2 : attention 9:1, NoPE, MoE + shared expert",
        "ibm-granite/granite-4.0-h-small config.json",
        ArchConfig(
            pattern=_at(40, {5, 15, 25, 35}, "M", "E"), d_model=4096, vocab_size=100352, tie_embeddings=True,
            attention={"heads": 32, "kv_heads": 8, "pos": "nope"},
            mamba2={"d_state": 128, "head_dim": 64, "expand": 2, "n_groups": 1, "d_conv": 4, "chunk_size": 256},
            moe={"experts": 72, "top_k": 10, "ratio": 768 / 4096, "shared_expert": True,
                 "shared_ratio": 1536 / 4096},
        ),
    ),
    Preset(
        "mamba2-hybrid-8b",
        "NVIDIA 8B Mamba-2-Hybrid: 24 Mamba-2, 4 attention, 28 MLP sublayers, NoPE",
        "Waleffe et al. 2024, An Empirical Study of Mamba-based Language Models",
        ArchConfig(
            pattern="M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-",
            d_model=4096, vocab_size=256000, tie_embeddings=False,
            attention={"heads": 32, "kv_heads": 8, "pos": "nope"},
            mamba2={"d_state": 128, "head_dim": 64, "expand": 2, "n_groups": 8, "d_conv": 4, "chunk_size": 128},
            mlp={"ratio": 16384 / 4096, "activation": "gelu"},
        ),
    ),
    Preset(
        "nemotron-h-8b",
        "Nemotron-H-8B: 24 Mamba-2, 4 attention, 24 MLP sublayers",
        "nvidia/Nemotron-H-8B-Base-8K config.json",
        ArchConfig(
            pattern="M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-",
            d_model=4096, vocab_size=131072, tie_embeddings=False,
            attention={"heads": 32, "kv_heads": 8, "pos": "nope"},
            mamba2={"d_state": 128, "head_dim": 64, "expand": 2, "n_groups": 8, "d_conv": 4, "chunk_size": 128},
            mlp={"ratio": 21504 / 4096, "activation": "relu2"},
        ),
    ),
]

_PRESETS += [
    Preset(
        "qwen3-next",
        "Qwen3-Next-80B-A3B: Gated DeltaNet : gated attention 3:1, MoE (512 experts, top 10, shared expert)",
        "Qwen/Qwen3-Next-80B-A3B-Instruct config.json (transformers Qwen3NextConfig); its shared expert's "
        "sigmoid gate (one weight row per layer) is not modelled",
        ArchConfig(
            pattern=_periodic(48, 4, 3, "D", "E", moe_every=1), d_model=2048, vocab_size=151936,
            tie_embeddings=False, norm_eps=1e-6,
            attention={"heads": 16, "kv_heads": 2, "head_dim": 256, "pos": "rope", "rope_theta": 10_000_000.0,
                       "rope_fraction": 0.25, "output_gate": True, "qk_norm": True},
            deltanet={"heads": 16, "head_dim": 128, "v_heads": 32, "v_head_dim": 128, "gate": "head", "d_conv": 4},
            moe={"experts": 512, "top_k": 10, "ratio": 512 / 2048, "shared_expert": True,
                 "shared_ratio": 512 / 2048, "aux_loss_weight": 0.001},
        ),
    ),
    Preset(
        "kimi-linear",
        "Kimi-Linear-48B-A3B: KDA : attention 3:1 (MLA as GQA with 2 KV heads, NoPE), MoE (256 experts, top 8)",
        "moonshotai/Kimi-Linear-48B-A3B-Instruct config.json (transformers KimiLinearConfig): attention at "
        "layers 4, 8, …, 24 and 27 (1-based), the first feed-forward dense. Its MLA (32 heads, latent 512 + "
        "RoPE key 64 cached per token, q/k heads 192 wide, values 128) is GQA here: 32 heads of 128, 2 KV "
        "heads (512 cached values per token against MLA's 576), about 30% fewer attention weights; its "
        "aux-loss-free sigmoid router is our softmax router",
        ArchConfig(
            pattern=_at(27, {3, 7, 11, 15, 19, 23, 26}, "D", "E").replace("E", "-", 1), d_model=2304,
            vocab_size=163840, tie_embeddings=False, norm_eps=1e-5,
            attention={"heads": 32, "kv_heads": 2, "head_dim": 128, "pos": "nope"},
            deltanet={"heads": 32, "head_dim": 128, "gate": "channel", "d_conv": 4},
            mlp={"ratio": 9216 / 2304},
            moe={"experts": 256, "top_k": 8, "ratio": 1024 / 2304, "shared_expert": True,
                 "shared_ratio": 1024 / 2304, "aux_loss_weight": 0.001},
        ),
    ),
    Preset(
        "lfm2",
        "LFM2-1.2B: 10 gated short convolutions and 6 GQA layers (q/k norm), each with a SwiGLU",
        "LiquidAI/LFM2-1.2B config.json (transformers Lfm2Config): attention at layers 2, 5, 8, 10, 12, 14 "
        "(0-based); block_ff_dim 12288 auto-adjusted to 8192",
        ArchConfig(
            pattern=_at(16, {2, 5, 8, 10, 12, 14}, "C"), d_model=2048, vocab_size=65536, tie_embeddings=True,
            norm_eps=1e-5,
            attention={"heads": 32, "kv_heads": 8, "pos": "rope", "rope_theta": 1_000_000.0, "qk_norm": True},
            shortconv={"d_conv": 3},
            mlp={"ratio": 8192 / 2048},
        ),
    ),
    Preset(
        "gemma3",
        "Gemma 3 1B: five sliding-window (512) attention layers to one global, q/k norm",
        "google/gemma-3-1b-pt config.json (transformers Gemma3TextConfig): sliding_window 512, every sixth "
        "layer global, RoPE base 10,000 local and 1,000,000 global. Its GeGLU is a SwiGLU here (as many "
        "weights); its post-attention and post-MLP norms and √d embedding scale are not modelled",
        ArchConfig(
            pattern=_periodic(26, 6, 5, "W", "-"), d_model=1152, vocab_size=262144, tie_embeddings=True,
            norm_eps=1e-6,
            attention={"heads": 4, "kv_heads": 1, "head_dim": 256, "pos": "rope", "rope_theta": 1_000_000.0,
                       "qk_norm": True},
            local_attention={"heads": 4, "kv_heads": 1, "head_dim": 256, "pos": "rope", "rope_theta": 10_000.0,
                             "qk_norm": True, "window": 512},
            mlp={"ratio": 6912 / 1152},
        ),
    ),
]

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset(name: str, params: float | None = None, vocab_size: int | None = None) -> ArchConfig:
    """The named preset at full size, or scaled to about `params` parameters by the scaling rule."""
    try:
        arch = PRESETS[name].arch
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    if params is None:
        return arch if vocab_size is None else arch.replace(vocab_size=vocab_size)
    return scale(arch, params, vocab_size=vocab_size)
