import optuna
import pytest

from search_spaces import ConfigError
from search_spaces.space import layout, load_space, space_names, ssm_of


def attn_positions(pattern: str) -> list[int]:
    mixers = [s for s in pattern if s in "*MmX"]
    return [i for i, s in enumerate(mixers) if s == "*"]


@pytest.mark.parametrize(
    ("ratio", "layers", "n"),
    [("0", 8, 0), ("1:7", 8, 1), ("1:3", 8, 2), ("1:1", 8, 4), ("all", 8, 8), ("1:15", 16, 1), ("1:9", 20, 2),
     ("1:15", 8, 1), ("1:5", 12, 2)],
)
def test_attention_ratio(ratio, layers, n):
    assert len(attn_positions(layout(layers, ratio, "even", "mamba2"))) == n


def test_placement_and_families():
    assert layout(8, "1:7", "even", "mamba2") == "M-M-M-M-*-M-M-M-"
    assert attn_positions(layout(8, "1:3", "even", "mamba1")) == [2, 6]
    assert attn_positions(layout(8, "1:3", "late", "mamba2")) == [6, 7]
    assert attn_positions(layout(8, "1:3", "middle", "mlstm")) == [3, 4]
    assert attn_positions(layout(8, "1:3", "early", "mlstm")) == [0, 1]
    assert set(layout(4, "0", "even", "mlstm")) == {"X", "-"}


def test_moe_placement():
    assert layout(4, "0", "even", "mamba2", moe="every") == "MEMEMEME"
    assert layout(8, "1:7", "even", "mamba1", moe="every_k", moe_every=2) == "m-mEm-mE*-mEm-mE"  # Jamba's layout
    assert layout(8, "1:3", "even", "mamba2", moe="after_attention") == "M-M-*EM-M-M-*EM-"
    assert layout(4, "0", "even", "mamba2", ffn="none") == "MMMM"


def test_the_linear_families():
    """`ssm` lays out Gated DeltaNet, KDA (D with a decay per key channel) or a gated short convolution."""
    assert layout(4, "1:3", "even", "deltanet") == "D-D-*-D-"
    assert layout(4, "0", "even", "shortconv") == "C-C-C-C-"
    ratio = load_space("hybrid-ratio")
    for ssm, symbol, gate in (("deltanet", "D", "head"), ("kda", "D", "channel"), ("shortconv", "C", None)):
        cfg = ratio.build({"ssm": ssm, "attn_ratio": "1:3"})
        assert set(cfg.pattern) == {symbol, "*", "-"}
        assert (cfg.deltanet.gate if cfg.deltanet else None) == gate
        assert ssm_of(cfg) == ssm


def test_linear_families_compares_them_at_one_ratio():
    space = load_space("linear-families")
    assert space.grid()["ssm"] == ["mamba2", "mamba1", "mlstm", "deltanet", "kda", "shortconv"]
    patterns = {ssm: space.build({**space.suggest(optuna.create_study().ask()), "ssm": ssm}).pattern
                for ssm in space.grid()["ssm"]}
    assert {p.replace(p[0], "S") for p in patterns.values()} == {"S-S-*-S-S-S-*-S-"}


def test_bundled_spaces_load_and_sample():
    assert {"hybrid-ratio", "moe-placement", "positional", "full", "linear-families"} <= set(space_names())
    for name in space_names():
        space = load_space(name)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(20):
            cfg = space.build(space.suggest(study.ask()))
            assert cfg.pattern
    ratio = load_space("hybrid-ratio")
    assert ratio.dimensions["attn_ratio"] == ["0", "1:15", "1:9", "1:7", "1:5", "1:3", "1:1", "all"]
    assert set(ratio.grid()) == {"layers", "attn_ratio", "placement", "ssm"}


def test_dotted_and_shorthand_dimensions():
    space = load_space({"name": "s", "base": {"d_model": 64, "mamba2": {"head_dim": 32}},
                        "dimensions": {"ssm": "mamba2", "attn_ratio": "1:1", "layers": 2, "d_state": 16,
                                       "attention.heads": 4, "pos": "nope", "mlp.ratio": 2.0}})
    cfg = space.build(space.suggest(optuna.create_study().ask()))
    assert cfg.mamba2.d_state == 16 and cfg.attention.heads == 4 and cfg.attention.pos == "nope"
    assert cfg.mlp.ratio == 2.0


@pytest.mark.parametrize(
    ("space", "words"),
    [
        ({"name": "s", "dimensions": {"ratio": ["1:7"]}}, ["unknown dimension 'ratio'"]),
        ({"name": "s", "dimensions": {"ssm": ["mamba3"]}}, ["'mamba3'", "mamba1, mamba2, mlstm"]),
        ({"name": "s", "dimensions": {"placement": []}}, ["empty"]),
        ({"name": "s", "dimensions": {"layers": {"low": 2, "hi": 4}}}, ["dimension 'layers'", "unknown key 'hi'"]),
        ({"name": "s", "base": {"attention": {"heads": 3}}, "dimensions": {"attn_ratio": "all"}}, ["heads=3"]),
        ({"name": "s", "dimensions": {"attn_ratio": ["1-7"]}}, ["'1-7'"]),
    ],
)
def test_bad_spaces_fail_at_load_with_one_sentence(space, words):
    with pytest.raises(ConfigError) as e:
        load_space(space)
    for w in words:
        assert w in str(e.value)
    with pytest.raises(ConfigError, match="unknown search space 'ratio'; choose one of full"):
        load_space("ratio")


def test_a_dimension_applies_only_where_it_shaped_the_architecture():
    from search_spaces.space import applies

    attention_only = {"attn_ratio": "all", "ssm": "mlstm", "placement": "late", "pos": "rope", "d_state": 64}
    assert not applies("ssm", attention_only, "*-*-")
    assert not applies("placement", attention_only, "*-*-")
    assert applies("pos", attention_only, "*-*-") and applies("attn_ratio", attention_only, "*-*-")
    assert not applies("d_state", attention_only, "*-*-")
    pure = {"attn_ratio": "0", "ssm": "mamba2", "placement": "even", "pos": "nope", "d_state": 64}
    assert applies("ssm", pure, "M-M-") and applies("d_state", pure, "M-M-")
    assert not applies("placement", pure, "M-M-") and not applies("pos", pure, "M-M-")
    assert not applies("d_state", {"ssm": "mlstm"}, "X-*-") and applies("placement", {}, "X-*-")
    assert applies("moe_every", {"moe": "every_k"}, "M-ME") and not applies("moe_every", {"moe": "none"}, "M-M-")
    assert not applies("ffn", {"moe": "every"}, "MEME") and applies("ffn", {"moe": "none"}, "M-M-")
    assert applies("mamba2.d_state", {}, "M-*-") and not applies("mamba2.d_state", {}, "X-*-")
    assert not applies("moe.experts", {}, "M-*-") and applies("moe.experts", {}, "MEM-")
    assert applies("ssm", attention_only, None)  # no pattern recorded: nothing to say


def test_mamba2_norm_is_a_dimension_that_applies_where_there_are_mamba2_layers():
    space = load_space({"name": "norms", "base": {"d_model": 64, "mamba2": {"head_dim": 16}},
                        "dimensions": {"attn_ratio": ["1:3"], "ssm": ["mamba2", "mlstm"],
                                       "mamba2.norm": ["group", "head", "none"]}})
    for norm in ("group", "head", "none"):
        assert space.build({"attn_ratio": "1:3", "ssm": "mamba2", "mamba2.norm": norm}).mamba2.norm == norm
    assert space.build({"attn_ratio": "1:3", "ssm": "mlstm", "mamba2.norm": "none"}).mamba2 is None
