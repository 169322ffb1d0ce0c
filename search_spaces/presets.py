"""Presets: the published hybrids (and their pure baselines) at full size.

`preset(name)` is the published architecture; `preset(name, params=2e6)` is the same layout scaled by
the one rule in `scaling.py` (pattern unchanged; only the width moves), which is how proxies are made.
Layer counts, widths, heads and state sizes follow each model's published configuration; `source`
names it (Granite-4.0-H-Small's attention indices and the 8B Mamba-2-Hybrid's vocabulary and MLP
activation follow its Megatron-LM scripts' defaults where no config states them). MLPs are SwiGLU except
where `activation` says `relu2` (squared ReLU) or `gelu`.
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
