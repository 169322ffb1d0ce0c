import math

import pytest

from search_spaces import ArchConfig, ConfigError
from search_spaces.cost import cache_bytes, param_counts
from search_spaces.pattern import MIXER_SYMBOLS
from search_spaces.presets import PRESETS, preset
from search_spaces.scaling import MLP_SLACK, WIDE, resize, scale


def _attention_layers(cfg: ArchConfig, symbol: str = "*") -> list[int]:
    """Indices of the layers (mixer + feed-forward pairs) whose mixer is `symbol` (global attention)."""
    mixers = [s for s in cfg.pattern if s in MIXER_SYMBOLS]
    return [i for i, s in enumerate(mixers) if s == symbol]


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
    assert billions("qwen3-next") == (79.7, 3.9)  # 80B, 3B active without the embeddings (0.6B)
    assert billions("kimi-linear") == (49.1, 3.4)  # 48B, 3B active: GQA for MLA adds a little
    assert billions("lfm2") == (1.2, 1.2)  # 1.17B
    assert billions("gemma3") == (1.0, 1.0)


def test_published_layouts_of_the_linear_hybrids():
    qwen = preset("qwen3-next")
    assert _attention_layers(qwen) == list(range(3, 48, 4)) and set(qwen.pattern) == {"D", "*", "E"}
    assert qwen.attention.output_gate and qwen.attention.rope_fraction == 0.25
    assert qwen.deltanet.dims(2048) == (16, 128, 32, 128) and qwen.deltanet.gate == "head"
    kimi = preset("kimi-linear")
    assert [i + 1 for i in _attention_layers(kimi)] == [4, 8, 12, 16, 20, 24, 27]  # its 1-based indices
    assert kimi.pattern.count("-") == 1 and kimi.pattern.index("-") == 1  # the first feed-forward is dense
    assert kimi.deltanet.gate == "channel" and kimi.attention.pos == "nope"
    assert _attention_layers(preset("lfm2")) == [2, 5, 8, 10, 12, 14]
    assert preset("lfm2").count("shortconv") == 10
    gemma = preset("gemma3")
    assert _attention_layers(gemma) == [5, 11, 17, 23] and gemma.count("local_attention") == 22
    assert gemma.local_attention.window == 512 and gemma.attention.window is None


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
    # the closest width on the grid; tiny widths are coarse, and the narrowest (16) is as small as it gets:
    # 48 layers of 512 experts (Qwen3-Next) hold about 5M parameters there
    if param_counts(resize(full, 16, 256)).total < target:
        assert abs(math.log(n / target)) < math.log(2.2 if target < 2e6 else 1.25), n
    else:
        assert small.d_model == 16
    for family in ("attention", "mamba2", "mamba1", "mlstm", "deltanet", "shortconv", "local_attention", "mlp",
                   "moe"):
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
    if full.mlp and small.d_model < WIDE:
        assert small.mlp == full.mlp
    elif full.mlp:  # from WIDE on the dense MLP absorbs the coarse steps of d_model, within ±MLP_SLACK
        assert small.mlp.activation == full.mlp.activation and small.mlp.d_ff(small.d_model) % 64 == 0
        assert abs(small.mlp.ratio / full.mlp.ratio - 1) <= MLP_SLACK + 64 / small.d_model / full.mlp.ratio
    if full.mamba2:
        assert small.mamba2.d_state == full.mamba2.d_state and small.mamba2.expand == full.mamba2.expand
    if full.deltanet:
        h, _, hv, _ = small.deltanet.dims(small.d_model)
        fh, _, fhv, _ = full.deltanet.dims(full.d_model)
        assert hv // h == fhv // fh and small.deltanet.gate == full.deltanet.gate
    if full.local_attention:  # a window is kept, as a state size is
        assert small.local_attention.window == full.local_attention.window


@pytest.mark.parametrize("pattern", ["*-" * 8, "M-" * 8, "X-" * 8, "M-M-M-M-*-M-M-M-", "D-D-D-*-D-D-D-*-", "m-" * 8])
@pytest.mark.parametrize("target", [1e7, 2.5e7, 1.25e8])
def test_gpu_sized_widths_are_multiples_of_64_and_land_near_the_target(pattern, target):
    """The proxy-evidence families at the GPU profiles' sizes: d_model and the MLP's width multiples of 64,
    per-head widths of 32, 64 or 128, and every family within 3% of the target (so families compare at
    matched size, which widths stepping by 64 alone would not give: 3-15% apart at 25M)."""
    cfg = scale(ArchConfig.compose(pattern, 512, attention={"heads": 8}, mamba2={"head_dim": 64},
                                   mlstm={"heads": 4}, deltanet={"heads": 4}), target, vocab_size=256)
    assert cfg.d_model % 64 == 0 and cfg.mlp.d_ff(cfg.d_model) % 64 == 0
    assert abs(param_counts(cfg).total / target - 1) < 0.03
    if cfg.attention:
        assert cfg.attention.dims(cfg.d_model)[2] in (32, 64, 128)
    if cfg.mamba2:
        assert cfg.mamba2.head_dim in (32, 64, 128)


def test_a_multiple_of_128_is_preferred_where_it_lands_within_two_percent():
    """At 25M the 1:7 hybrid's closest width, d448 (7 x 64), gives way to d384 (3 x 128), its MLP absorbing the
    rest; attention keeps d448, for d384 would land 10% short of the target even with its MLP 25% wider."""
    def at(pattern: str, **kw) -> ArchConfig:
        return scale(ArchConfig.compose(pattern, 512, attention={"heads": 8}, mamba2={"head_dim": 64}), 2.5e7,
                     vocab_size=256, **kw)

    hybrid, attention = at("M-M-M-M-*-M-M-M-"), at("*-" * 8)
    assert hybrid.d_model == 384 and abs(param_counts(hybrid).total / 2.5e7 - 1) < 0.02
    assert hybrid.mlp.ratio > 4.0  # the MLP took what the narrower width gave up
    assert attention.d_model == 448
    assert abs(param_counts(at("*-" * 8, width=384)).total / 2.5e7 - 1) > 0.05


def test_a_pinned_width_keeps_d_model_and_moves_only_the_mlp():
    cfg = ArchConfig.compose("M-M-M-M-*-M-M-M-", 512, attention={"heads": 8}, mamba2={"head_dim": 64})
    pinned = scale(cfg, 2.5e7, vocab_size=256, width=448)
    assert pinned.d_model == 448 and pinned.pattern == cfg.pattern
    assert abs(param_counts(pinned).total / 2.5e7 - 1) < 0.03
    assert pinned.mlp.ratio != cfg.mlp.ratio


@pytest.mark.parametrize(("d_model", "head"), [(448, 64), (384, 64), (352, 32), (256, 32)])
def test_shrinking_rounds_head_widths_to_the_nearest_power_of_two(d_model, head):
    """64-wide heads scaled by s = d / 512 become 64·s rounded in log scale: 64 down to s ≈ 0.71 (a proxy 12%
    narrower than its source does not halve its heads), 32 below; attention and Mamba-2 alike."""
    cfg = ArchConfig.compose("M-*-", 512, attention={"heads": 8}, mamba2={"head_dim": 64})
    small = resize(cfg, d_model)
    assert small.attention.dims(d_model)[2] == head and small.mamba2.head_dim == head


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
