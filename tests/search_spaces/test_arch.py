import json
import random

import pytest
import yaml
from archgen import random_arch
from pydantic import ValidationError

from search_spaces import ArchConfig, ConfigError, parse_pattern
from search_spaces.pattern import PatternError, abbreviate

NVIDIA_8B = "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-"


def test_megatron_patterns_are_valid_unchanged():
    cfg = ArchConfig(pattern=NVIDIA_8B, d_model=64)
    assert cfg.pattern == NVIDIA_8B
    assert (cfg.count("mamba2"), cfg.count("attention"), cfg.count("mlp")) == (24, 4, 28)
    # '|' separates Megatron pipeline stages; the model does not see it
    assert parse_pattern("M-M*-|M-M-") == "M-M*-M-M-"


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("M-Q-", ["'Q'", "position 2"]),
        ("M- *", ["whitespace", "position 2"]),
        ("M*/MM", ["'/'", "multi-token"]),
        ("", ["empty"]),
        ("|", ["empty"]),
    ],
)
def test_bad_pattern_says_what_and_where(pattern, words):
    with pytest.raises(PatternError) as e:
        parse_pattern(pattern)
    for w in words:
        assert w in str(e.value)
    with pytest.raises(ConfigError) as e2:
        ArchConfig.from_dict({"pattern": pattern, "d_model": 64})
    assert str(e.value) in str(e2.value)


@pytest.mark.parametrize(
    ("cfg", "words"),
    [
        ({"pattern": "*-", "d_model": 100, "attention": {"heads": 3}}, ["heads=3", "d_model=100", "1, 2, 4, 5"]),
        ({"pattern": "*-", "d_model": 64, "attention": {"heads": 8, "kv_heads": 3}}, ["kv_heads=3", "1, 2, 4, 8"]),
        ({"pattern": "-E", "d_model": 64, "moe": {"experts": 2, "top_k": 3}}, ["top_k=3", "experts=2"]),
        ({"pattern": "M", "d_model": 40, "mamba2": {"head_dim": 64}}, ["head_dim=64", "inner width", "80"]),
        ({"pattern": "M", "d_model": 64, "mamba2": {"head_dim": 16, "n_groups": 3}}, ["n_groups=3", "8 Mamba-2 heads"]),
        ({"pattern": "M-", "d_model": 64, "moe": {"experts": 4}}, ["moe options", "no 'E'"]),
        ({"pattern": "M-", "d_model": 64, "attention": {"heads": 4}}, ["attention options", "no '*'"]),
        (
            {"pattern": "*", "d_model": 64, "attention": {"head": 4}},
            ["unknown key 'attention.head'", "heads, kv_heads"],
        ),
        ({"pattern": "*", "d_model": 64, "dmodel": 3}, ["unknown key 'dmodel'", "d_model"]),
        ({"pattern": "*", "d_model": 64, "attention": {"pos": "alibi"}}, ["attention.pos", "'rope' or 'nope'"]),
        ({"pattern": "X", "d_model": 64, "mlstm": {"heads": 3}}, ["mlstm", "heads=3"]),
        ({"pattern": "*", "d_model": 0}, ["d_model"]),
        ({"pattern": "D", "d_model": 64, "deltanet": {"heads": 3}}, ["deltanet.heads=3", "d_model=64"]),
        ({"pattern": "D", "d_model": 64, "deltanet": {"heads": 2, "v_heads": 3}}, ["v_heads=3", "2, 4, 6"]),
        ({"pattern": "D", "d_model": 2048, "deltanet": {"heads": 4}}, ["head_dim is 512", "over 256"]),
        ({"pattern": "D", "d_model": 64, "deltanet": {"gate": "key"}}, ["deltanet.gate", "'head' or 'channel'"]),
        ({"pattern": "W", "d_model": 64, "local_attention": {"window": 0}}, ["local_attention.window"]),
        ({"pattern": "W", "d_model": 64, "local_attention": {"heads": 3}}, ["local_attention.heads=3"]),
        ({"pattern": "*", "d_model": 64, "attention": {"window": -4}}, ["attention.window"]),
        ({"pattern": "*-", "d_model": 64, "shortconv": {}}, ["shortconv options", "no 'C'"]),
        ({"d_model": 64}, ["'pattern' is required"]),
    ],
)
def test_invalid_config_one_clear_sentence(cfg, words):
    with pytest.raises(ConfigError) as e:
        ArchConfig.from_dict(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_the_new_mixers_and_attention_switches():
    cfg = ArchConfig(pattern="DCW*-", d_model=64)
    assert cfg.layers == ["deltanet", "shortconv", "local_attention", "attention", "mlp"]
    assert cfg.local_attention.window == 1024 and cfg.attention.window is None  # W is local; * global unless set
    assert cfg.deltanet.dims(64) == (4, 16, 4, 16) and cfg.deltanet.gate == "head"
    # switches that came later are written only when on, so older configs serialise as they did
    assert "output_gate" not in cfg.to_dict()["attention"] and "qk_norm" not in cfg.to_dict()["attention"]
    gated = cfg.replace(attention={"output_gate": True, "qk_norm": True})
    assert gated.to_dict()["attention"]["output_gate"] is True
    assert ArchConfig.from_yaml(gated.to_yaml()) == gated
    with pytest.raises(PatternError, match="'D' Gated DeltaNet, 'C' gated short convolution, 'W' sliding-window"):
        parse_pattern("DQ")


def test_families_get_defaults_and_are_frozen():
    cfg = ArchConfig(pattern="M*-", d_model=64)
    assert cfg.mamba2 is not None and cfg.attention is not None and cfg.mlp is not None
    assert cfg.mamba1 is None and cfg.moe is None
    with pytest.raises(ValidationError, match="frozen"):
        cfg.d_model = 128  # type: ignore[misc]


@pytest.mark.parametrize("seed", range(40))
def test_exact_round_trip_yaml_and_json(seed):
    cfg = random_arch(random.Random(seed))
    assert ArchConfig.from_yaml(cfg.to_yaml()) == cfg
    assert ArchConfig.from_json(cfg.to_json()) == cfg
    assert ArchConfig.from_yaml(cfg.to_yaml()).to_yaml() == cfg.to_yaml()


def test_round_trip_of_patterns_yaml_would_misread(tmp_path):
    # a leading '*' is a YAML alias and '-' a list item unless quoted
    for pattern in ("*", "-*", "*-*-", "E-"):
        cfg = ArchConfig(pattern=pattern, d_model=32)
        path = tmp_path / "a.yaml"
        path.write_text(cfg.to_yaml())
        assert ArchConfig.load(path) == cfg
        assert yaml.safe_load(cfg.to_yaml())["pattern"] == pattern
        path = tmp_path / "a.json"
        path.write_text(cfg.to_json())
        assert ArchConfig.load(path) == cfg
        assert json.loads(cfg.to_json())["pattern"] == pattern


def test_malformed_files_are_one_sentence(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pattern: [M\nd_model: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        ArchConfig.load(bad)
    with pytest.raises(ConfigError, match="mapping"):
        ArchConfig.from_yaml("- M\n- '*'\n")
    with pytest.raises(ConfigError, match="cannot read"):
        ArchConfig.load(tmp_path / "missing.yaml")


def test_replace_merges_options_and_follows_the_pattern():
    cfg = ArchConfig(pattern="M*-", d_model=64, attention={"heads": 4, "pos": "rope"})
    nope = cfg.replace(attention={"pos": "nope"})
    assert nope.attention.pos == "nope" and nope.attention.heads == 4
    swapped = cfg.replace(pattern="m*E")
    assert swapped.mamba2 is None and swapped.mlp is None
    assert swapped.mamba1 is not None and swapped.moe is not None
    assert swapped.attention == cfg.attention


def test_abbreviate():
    assert abbreviate("M-M*-") == "M-M*-"
    assert abbreviate("m-mEm-mE*-mEm-mE" * 4) == "(m-mEm-mE*-mEm-mE)×4"
    assert abbreviate("M" * 64) == "M×64"
    short = abbreviate(NVIDIA_8B, 24)
    assert len(short) <= 24 and short.endswith("(56)")
