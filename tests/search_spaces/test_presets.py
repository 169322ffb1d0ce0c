import math

import pytest

from search_spaces import ArchConfig, ConfigError
from search_spaces.cost import cache_bytes, param_counts
from search_spaces.presets import PRESETS, preset
from search_spaces.scaling import scale


def _attention_layers(cfg: ArchConfig) -> list[int]:
    """Indices of the layers (mixer + feed-forward pairs) whose mixer is attention."""
    mixers = [s for s in cfg.pattern if s in "*MmX"]
    return [i for i, s in enumerate(mixers) if s == "*"]


@pytest.mark.parametrize(
    ("name", "total"),
    [
        ("transformer++", 6_738_415_616),  # Llama-2-7B
        ("bamba", 9_780_235_392),  # Bamba-9B, as its model card counts
        ("nemotron-h-8b", 8_100_852_736),
    ],
)
def test_published_parameter_counts(name, total):
    assert param_counts(preset(name)).total == total


def test_published_sizes_roughly():
    def billions(name):
        pc = param_counts(preset(name))
        return round(pc.total / 1e9, 1), round(pc.active / 1e9, 1)

    assert billions("mamba") == (2.8, 2.8)
    assert billions("mamba2") == (2.7, 2.7)
    assert billions("jamba") == (51.6, 12.1)
    assert billions("granite-4.0-h") == (32.2, 8.8)
    assert billions("mamba2-hybrid-8b") == (8.7, 8.7)
    assert billions("xlstm") == (6.9, 6.9)


def test_published_layouts():
    jamba = preset("jamba")
    assert _attention_layers(jamba) == [4, 12, 20, 28]
    ffn = [s for s in jamba.pattern if s in "-E"]
    assert [i for i, s in enumerate(ffn) if s == "E"] == list(range(1, 32, 2))
    assert jamba.attention.pos == "nope" and (jamba.moe.experts, jamba.moe.top_k) == (16, 2)
    assert _attention_layers(preset("bamba")) == [9, 18, 27]
    granite = preset("granite-4.0-h")
    assert granite.count("mamba2") / granite.count("attention") == 9
    assert granite.attention.pos == "nope" and granite.moe.shared_expert
    nemotron = preset("nemotron-h-8b").pattern
    assert [i for i, s in enumerate(nemotron) if s == "*"] == [7, 18, 29, 40] and len(nemotron) == 52
    assert preset("mamba2-hybrid-8b").pattern == "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-"
    assert set(preset("xlstm").pattern) == {"X", "-"}


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown preset 'jamba2'.*transformer\+\+, mamba"):
        preset("jamba2")


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("target", [1e6, 2e7])
def test_scaling_keeps_the_layout(name, target):
    full = preset(name)
    small = preset(name, target, vocab_size=256)
    assert small.pattern == full.pattern
    assert small.vocab_size == 256
    n = param_counts(small).total
    # the closest width on the grid; tiny widths are coarse
    assert abs(math.log(n / target)) < math.log(2.2 if target < 2e6 else 1.25), n
    for family in ("attention", "mamba2", "mamba1", "mlstm", "mlp", "moe"):
        assert (getattr(small, family) is None) == (getattr(full, family) is None)
    if full.attention:
        assert small.attention.pos == full.attention.pos
        h, kv, _ = small.attention.dims(small.d_model)
        fh, fkv, _ = full.attention.dims(full.d_model)
        # the GQA ratio, as far as whole heads allow
        assert h % kv == 0 and (kv == 1 or 0.5 <= (h // kv) / (fh // fkv) <= 2)
    if full.moe:
        assert (small.moe.experts, small.moe.top_k, small.moe.shared_expert) == (
            full.moe.experts,
            full.moe.top_k,
            full.moe.shared_expert,
        )
        assert small.moe.ratio == full.moe.ratio
    if full.mlp:
        assert small.mlp == full.mlp
    if full.mamba2:
        assert small.mamba2.d_state == full.mamba2.d_state and small.mamba2.expand == full.mamba2.expand


def test_scaling_up_keeps_head_widths():
    cfg = ArchConfig(pattern="M*-", d_model=256, attention={"heads": 4}, mamba2={"head_dim": 64})
    big = scale(cfg, 50e6)
    assert big.d_model > 256
    assert big.attention.dims(big.d_model)[2] == 64 and big.mamba2.head_dim == 64


def test_memory_of_a_hybrid_is_a_fraction_of_a_transformers_at_long_context():
    tfm, jamba, mamba2 = preset("transformer++"), preset("jamba"), preset("mamba2")
    t128k = 128 * 1024
    # Llama-2-7B's KV cache: 32 layers × 2 × 4096 × 2 bytes per token
    assert cache_bytes(tfm, t128k).kv == 32 * 2 * 4096 * 2 * t128k
    assert cache_bytes(tfm, t128k).state == 0
    assert cache_bytes(jamba, t128k).total < cache_bytes(tfm, t128k).total / 25
    # a pure SSM's memory does not grow with context
    assert cache_bytes(mamba2, 4096) == cache_bytes(mamba2, 1024 * 1024)
    assert cache_bytes(mamba2, 4096).kv == 0
