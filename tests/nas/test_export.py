"""`nas export` against its real consumers: transformers builds every exported config on the CPU, and the
Megatron-LM arguments follow Megatron-LM's documented hybrid-pattern rules."""

import json
import os
import subprocess
import sys
import warnings

import pytest
import yaml

from nas.export import export, hf_config, hf_targets, load_exported_yaml, megatron_args, render
from search_spaces import ArchConfig, ConfigError
from search_spaces.presets import PRESETS, preset
from search_spaces.scaling import resize, scale

os.environ["HF_HUB_OFFLINE"] = "1"  # from_config never downloads; make sure nothing else does

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def nas(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nas.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)


# ----- reading a built transformers model back as our pattern --------------------------------------
# the module classes that make up each sublayer kind, per class family
KIND = {
    "LlamaAttention": "*", "JambaAttention": "*", "BambaAttention": "*", "GraniteMoeHybridAttention": "*",
    "NemotronHAttention": "*",
    "MambaMixer": "m", "JambaMambaMixer": "m",
    "Mamba2Mixer": "M", "BambaMixer": "M", "GraniteMoeHybridMambaLayer": "M", "NemotronHMamba2Mixer": "M",
    "xLSTMLayer": "X",
    "LlamaMLP": "-", "JambaMLP": "-", "BambaMLP": "-", "GraniteMoeHybridMLP": "-", "NemotronHMLP": "-",
    "xLSTMFeedForward": "-",
    "JambaSparseMoeBlock": "E", "GraniteMoeHybridMoE": "E", "NemotronHMoE": "E",
    "Qwen3NextAttention": "*", "Qwen3NextGatedDeltaNet": "D", "Qwen3NextMLP": "-", "Qwen3NextSparseMoeBlock": "E",
    "KimiLinearAttention": "*", "KimiLinearDeltaAttention": "D", "KimiLinearMLP": "-", "KimiLinearMoE": "E",
    "OlmoHybridAttention": "*", "OlmoHybridGatedDeltaNet": "D", "OlmoHybridMLP": "-",
    "Lfm2Attention": "*", "Lfm2ShortConv": "C", "Lfm2MLP": "-",
}
MIXERS = "*MmXDCW"


def sublayers(model) -> list[tuple[str, object]]:
    """(our symbol, module) for every sublayer of a built model, in order."""
    base = getattr(model, "model", None) or model.backbone
    out = []
    for layer in getattr(base, "layers", None) or base.blocks:
        found = [(KIND[type(m).__name__], m) for m in layer.children() if type(m).__name__ in KIND]
        mixers = [f for f in found if f[0] in MIXERS]
        ffns = [f for f in found if f[0] in "-E"]
        if any(k == "E" for k, _ in ffns):  # Granite's shared MLP runs beside its experts: one MoE sublayer
            ffns = [f for f in ffns if f[0] == "E"]
        assert len(mixers) <= 1 and len(ffns) <= 1, [type(m).__name__ for _, m in found]
        out += mixers + ffns
    return out


def rotary_dims(model) -> int:
    """How many dims of each head RoPE rotates (0: no position embedding)."""
    base = getattr(model, "model", None) or model.backbone
    rotary = getattr(base, "rotary_emb", None)
    return 0 if rotary is None else 2 * rotary.inv_freq.numel()


def check_widths(cfg: ArchConfig, symbol: str, m) -> None:
    d = cfg.d_model
    if symbol == "*" and hasattr(m, "kv_b_proj"):  # Kimi's MLA: per-head keys and values from a latent
        heads, kv, hd = cfg.attention.dims(d)
        assert (m.num_heads, m.qk_nope_head_dim, m.v_head_dim, m.kv_lora_rank) == (heads, hd, hd, 2 * kv * hd)
    elif symbol == "*":
        heads, kv, hd = cfg.attention.dims(d)
        gated = 2 if cfg.attention.output_gate else 1  # Qwen3-Next's q_proj also gives the gate
        assert (m.q_proj.out_features, m.k_proj.out_features) == (gated * heads * hd, kv * hd)
    elif symbol == "D":
        heads, k, v_heads, v = cfg.deltanet.dims(d)
        conv = m.conv1d if hasattr(m, "conv1d") else m.q_conv1d
        if hasattr(m, "in_proj_qkvz"):  # Qwen3-Next: q, k, v and the output gate in one projection
            assert (m.num_k_heads, m.head_k_dim, m.num_v_heads, m.head_v_dim) == (heads, k, v_heads, v)
        else:
            assert (m.q_proj.out_features, m.v_proj.out_features) == (heads * k, v_heads * v)
        assert conv.kernel_size[0] == cfg.deltanet.d_conv
        channel = hasattr(m, "forget_gate")  # KDA: a decay per key channel
        assert channel == (cfg.deltanet.gate == "channel")
    elif symbol == "C":
        assert m.in_proj.out_features == 3 * d and m.conv.kernel_size[0] == cfg.shortconv.d_conv
    elif symbol == "M":
        o = cfg.mamba2
        assert (m.num_heads, m.head_dim, m.ssm_state_size, m.n_groups, m.conv_kernel_size) == (
            o.n_heads(d), o.head_dim, o.d_state, o.n_groups, o.d_conv)
    elif symbol == "m":
        o = cfg.mamba1
        assert (m.ssm_state_size, m.intermediate_size, m.time_step_rank, m.conv_kernel_size) == (
            o.d_state, o.d_inner(d), o.rank(d), o.d_conv)
    elif symbol == "X":
        assert (m.q.out_features, m.v.out_features) == (cfg.mlstm.qk_dim(d), cfg.mlstm.v_dim(d))
    elif symbol == "-":
        down = [c for c in m.children() if type(c).__name__ == "Linear" and c.out_features == d][-1]
        assert down.in_features == cfg.mlp.d_ff(d)
    elif symbol == "E":
        experts = {p.shape[0] for p in m.parameters() if p.dim() == 3}
        assert experts == {cfg.moe.experts}


@pytest.fixture(scope="module")
def transformers():
    tf = pytest.importorskip("transformers")
    warnings.filterwarnings("ignore", message=".*falling back.*")
    return tf


def build(tf, path):
    import torch

    torch.manual_seed(0)
    config = tf.AutoConfig.from_pretrained(path)
    # eager experts: the grouped-mm kernel wants 16-byte-aligned widths, which tiny experts are not
    return tf.AutoModelForCausalLM.from_config(config, experts_implementation="eager")


def assert_builds_as(tf, cfg: ArchConfig, path, target: str):
    """Load the export with AutoConfig, build it, run a forward pass, and read the pattern back; the model."""
    import torch

    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == target
    model = build(tf, path)
    assert type(model).__name__ == config["architectures"][0]
    with torch.no_grad():
        ids = torch.randint(0, cfg.vocab_size, (2, 7))
        logits = model(ids, use_cache=False).logits
        cached = model(ids).logits  # the default: the model's own cache, as generate() uses it
    assert logits.shape == (2, 7, cfg.vocab_size) and torch.isfinite(logits).all()
    torch.testing.assert_close(cached, logits)
    found = sublayers(model)
    assert "".join(s for s, _ in found) == cfg.pattern
    for symbol, module in found:
        check_widths(cfg, symbol, module)
    if cfg.attention is not None:
        a = cfg.attention
        rotary = 2 * max(1, round(a.rope_fraction * a.dims(cfg.d_model)[2] / 2)) if a.pos == "rope" else 0
        assert rotary_dims(model) == rotary
    assert model.config.tie_word_embeddings == cfg.tie_embeddings
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == cfg.tie_embeddings
    return model


# ----- Hugging Face ----------------------------------------------------------------------------------
CHOSEN = {
    "transformer++": "llama",
    "mamba": "mamba",
    "mamba2": "mamba2",
    "xlstm": "xlstm",
    "jamba": "jamba",
    "bamba": "bamba",
    "granite-4.0-h": "granitemoehybrid",
    "mamba2-hybrid-8b": "nemotron_h",
    "nemotron-h-8b": "nemotron_h",
    "qwen3-next": "qwen3_next",
    "kimi-linear": "kimi_linear",
    "lfm2": "lfm2",
}
# presets no exported class can hold, and why
REFUSED = {"gemma3": "sliding-window attention"}


def tiny(name: str) -> ArchConfig:
    if name == "xlstm":  # transformers' xLSTM rounds q/k widths up to 64: d_model 128 is the least that fits
        return resize(preset(name), 128, vocab_size=256)
    return preset(name, 2e6, vocab_size=256)


def test_every_preset_gets_its_class():
    assert set(CHOSEN) | set(REFUSED) == set(PRESETS)
    for name, target in CHOSEN.items():
        assert hf_targets(preset(name))[0] == target, name
        assert hf_targets(tiny(name))[0] == target, name
    for name, why in REFUSED.items():
        assert hf_targets(preset(name)) == []
        with pytest.raises(ConfigError, match=f"no Hugging Face class can express {why}"):
            hf_config(preset(name))


@pytest.mark.parametrize("name", list(CHOSEN))
def test_preset_exports_build_in_transformers(transformers, tmp_path, name):
    cfg = tiny(name)
    export(cfg, "hf", tmp_path / name)
    assert_builds_as(transformers, cfg, tmp_path / name, CHOSEN[name])


D = {"d_model": 64, "vocab_size": 256}
M2 = {"d_state": 16, "head_dim": 16, "chunk_size": 16}
NOPE = {"heads": 4, "kv_heads": 2, "pos": "nope"}
HAND_MADE = {
    "llama-gqa-head-dim": ("llama", dict(
        pattern="*-*-", tie_embeddings=False,
        attention={"heads": 4, "kv_heads": 2, "head_dim": 32, "rope_theta": 5e5})),
    "mamba-dt-rank-conv3": ("mamba", dict(pattern="mmm", mamba1={"d_state": 8, "dt_rank": 6, "d_conv": 3})),
    "mamba2-groups": ("mamba2", dict(pattern="MMM", mamba2={**M2, "n_groups": 2})),
    "xlstm": ("xlstm", dict(pattern="X-X-", d_model=128, mlstm={"heads": 2}, mlp={"ratio": 2.5},
                            tie_embeddings=False)),
    "jamba-periodic-moe": ("jamba", dict(pattern="m-*Em-*E", attention=NOPE, mamba1={"d_state": 8},
                                         mlp={"ratio": 2}, moe={"experts": 4, "top_k": 2, "ratio": 2})),
    "jamba-no-attention": ("jamba", dict(pattern="m-m-", mamba1={"d_state": 8})),
    "bamba-partial-rope": ("bamba", dict(pattern="M-*-M-", mamba2=M2, mlp={"ratio": 3},
                                         attention={"heads": 4, "kv_heads": 2, "rope_fraction": 0.5})),
    "granite-dense-rope": ("granitemoehybrid", dict(pattern="M-*-", attention={"heads": 4}, mamba2=M2)),
    "granite-attention-only": ("granitemoehybrid", dict(pattern="*-*-", attention=NOPE)),
    "granite-moe-shared": ("granitemoehybrid", dict(
        pattern="ME*E", attention=NOPE, mamba2=M2,
        moe={"experts": 4, "top_k": 2, "ratio": 1, "shared_expert": True, "shared_ratio": 2})),
    "granite-moe-unshared": ("granitemoehybrid", dict(
        pattern="ME*EME", attention=NOPE, mamba2=M2, moe={"experts": 4, "top_k": 1, "ratio": 1})),
    "nemotron-h-moe": ("nemotron_h", dict(
        pattern="M-*EM--", attention=NOPE, mamba2=M2, tie_embeddings=False,
        mlp={"ratio": 2, "activation": "relu2"},
        moe={"experts": 4, "top_k": 2, "ratio": 1, "activation": "relu2", "shared_expert": True})),
    "nemotron-h-gelu": ("nemotron_h", dict(
        pattern="M*-M-E", attention={"heads": 2, "pos": "nope"}, tie_embeddings=False,
        mamba2={**M2, "n_groups": 2}, mlp={"activation": "gelu"},
        moe={"experts": 3, "top_k": 1, "activation": "gelu", "shared_expert": True})),
    "qwen3-next-gva-dense-and-moe": ("qwen3_next", dict(
        pattern="D-*ED-*E", tie_embeddings=False,
        attention={"heads": 4, "kv_heads": 2, "head_dim": 16, "rope_fraction": 0.25, "output_gate": True,
                   "qk_norm": True},
        deltanet={"heads": 2, "v_heads": 4, "head_dim": 16, "v_head_dim": 24, "d_conv": 3},
        moe={"experts": 4, "top_k": 2, "ratio": 0.5, "shared_expert": True})),
    "qwen3-next-linear-only": ("qwen3_next", dict(pattern="D-D-", deltanet={"heads": 2})),
    "kimi-linear-mla": ("kimi_linear", dict(
        pattern="D-*ED-*E", tie_embeddings=False, attention={"heads": 4, "kv_heads": 2, "pos": "nope"},
        deltanet={"heads": 4, "gate": "channel", "d_conv": 2},
        moe={"experts": 4, "top_k": 2, "ratio": 0.5, "shared_expert": True})),
    "olmo-hybrid-rope": ("olmo_hybrid", dict(
        pattern="D-*-D-", attention={"heads": 4, "kv_heads": 2, "qk_norm": True}, deltanet={"heads": 2, "v_heads": 4})),
    "olmo-hybrid-nope": ("olmo_hybrid", dict(
        pattern="D-D-*-", attention={"heads": 4, "pos": "nope", "qk_norm": True}, deltanet={"heads": 4})),
    "lfm2": ("lfm2", dict(pattern="C-*-C-", attention={"heads": 4, "kv_heads": 2, "qk_norm": True},
                          shortconv={"d_conv": 4}, mlp={"ratio": 3})),
    "lfm2-conv-only": ("lfm2", dict(pattern="C-C-", tie_embeddings=False)),
}


NO_ATTENTION = {  # hybrid classes whose transformers cache needs an attention layer, given a model without one
    "nemotron_h": dict(pattern="M-M-", mamba2=M2, tie_embeddings=False, mlp={"activation": "relu2"}),
    "granitemoehybrid": dict(pattern="M-M-", mamba2=M2),
    "bamba": dict(pattern="M-M-", mamba2=M2),
    "jamba": dict(pattern="m-m-", mamba1={"d_state": 8}),
    "qwen3_next": dict(pattern="D-D-", deltanet={"heads": 2}),
    "lfm2": dict(pattern="C-C-"),
}


@pytest.mark.parametrize("target", list(NO_ATTENTION))
def test_an_export_without_attention_turns_the_cache_off_and_generates(transformers, tmp_path, target):
    import torch

    cfg = ArchConfig.from_dict({**D, **NO_ATTENTION[target]})
    export(cfg, "hf", tmp_path, target=target)
    assert json.loads((tmp_path / "config.json").read_text())["use_cache"] is False
    assert "`use_cache` is false" in (tmp_path / "README.md").read_text()
    model = assert_builds_as(transformers, cfg, tmp_path, target)
    ids = torch.randint(0, cfg.vocab_size, (2, 5))
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                         pad_token_id=0)
    assert out.shape == (2, 8) and torch.equal(out[:, :5], ids)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # Granite's width-0 shared MLP
@pytest.mark.parametrize("case", list(HAND_MADE))
def test_hand_made_exports_build_in_transformers(transformers, tmp_path, case):
    target, spec = HAND_MADE[case]
    cfg = ArchConfig.from_dict({**D, **spec})
    assert target in hf_targets(cfg)
    export(cfg, "hf", tmp_path, target=target)
    assert_builds_as(transformers, cfg, tmp_path, target)


def test_published_presets_reproduce_their_published_layouts(transformers, tmp_path):
    def exported(name):
        export(preset(name), "hf", tmp_path / name)
        raw = json.loads((tmp_path / name / "config.json").read_text())
        return raw, transformers.AutoConfig.from_pretrained(tmp_path / name)

    raw, jamba = exported("jamba")  # ai21labs/Jamba-v0.1
    assert (raw["attn_layer_period"], raw["attn_layer_offset"]) == (8, 4)
    assert (raw["expert_layer_period"], raw["expert_layer_offset"]) == (2, 1)
    assert (jamba.num_hidden_layers, jamba.hidden_size, jamba.intermediate_size, jamba.num_experts,
            jamba.num_experts_per_tok, jamba.mamba_dt_rank, jamba.vocab_size) == (
        32, 4096, 14336, 16, 2, 256, 65536)
    assert [i for i, t in enumerate(jamba.layers_block_type) if t == "attention"] == [4, 12, 20, 28]

    raw, bamba = exported("bamba")  # ibm-ai-platform/Bamba-9B
    assert raw["attn_layer_indices"] == [9, 18, 27]
    assert (bamba.mamba_n_heads, bamba.mamba_d_head, bamba.mamba_d_state, bamba.intermediate_size,
            bamba.vocab_size) == (128, 64, 128, 14336, 128256)
    assert bamba.rope_parameters["partial_rotary_factor"] == 0.5

    raw, granite = exported("granite-4.0-h")
    assert [i for i, t in enumerate(raw["layer_types"]) if t == "attention"] == [5, 15, 25, 35]
    assert (granite.num_local_experts, granite.num_experts_per_tok, granite.intermediate_size,
            granite.shared_intermediate_size, granite.position_embedding_type) == (72, 10, 768, 1536, None)

    for name in ("nemotron-h-8b", "mamba2-hybrid-8b"):
        raw, nemotron = exported(name)
        assert raw["hybrid_override_pattern"] == nemotron.hybrid_override_pattern == preset(name).pattern
    assert (nemotron.intermediate_size, nemotron.mlp_hidden_act) == (16384, "gelu")
    _, nemotron = exported("nemotron-h-8b")  # nvidia/Nemotron-H-8B-Base-8K
    assert (nemotron.intermediate_size, nemotron.mlp_hidden_act, nemotron.mamba_num_heads, nemotron.n_groups,
            nemotron.head_dim, nemotron.vocab_size) == (21504, "relu2", 128, 8, 128, 131072)

    _, mamba2 = exported("mamba2")  # state-spaces/mamba2-2.7b
    assert (mamba2.num_heads, mamba2.head_dim, mamba2.state_size, mamba2.num_hidden_layers) == (
        80, 64, 128, 64)
    _, xlstm = exported("xlstm")  # NX-AI/xLSTM-7b: the FFN rounds to 10944
    assert (xlstm.num_blocks, xlstm.num_heads, xlstm.qk_dim, xlstm.v_dim) == (32, 8, 2048, 4096)
    from transformers.models.xlstm.modeling_xlstm import round_up_to_next_multiple_of

    ffn = round_up_to_next_multiple_of(4096 * xlstm.ffn_proj_factor, xlstm.ffn_round_up_to_multiple_of)
    assert ffn == 10944


def test_linear_hybrid_presets_export_their_published_configs(transformers, tmp_path):
    def exported(name):
        export(preset(name), "hf", tmp_path / name)
        return transformers.AutoConfig.from_pretrained(tmp_path / name)

    qwen = exported("qwen3-next")  # Qwen/Qwen3-Next-80B-A3B-Instruct
    assert [i for i, t in enumerate(qwen.layer_types) if t == "full_attention"] == list(range(3, 48, 4))
    assert (qwen.linear_num_key_heads, qwen.linear_num_value_heads, qwen.linear_key_head_dim,
            qwen.linear_value_head_dim, qwen.linear_conv_kernel_dim) == (16, 32, 128, 128, 4)
    assert (qwen.num_attention_heads, qwen.num_key_value_heads, qwen.head_dim) == (16, 2, 256)
    assert qwen.rope_parameters["partial_rotary_factor"] == 0.25
    assert (qwen.num_experts, qwen.num_experts_per_tok, qwen.moe_intermediate_size,
            qwen.shared_expert_intermediate_size, qwen.mlp_only_layers) == (512, 10, 512, 512, [])

    kimi = exported("kimi-linear")  # moonshotai/Kimi-Linear-48B-A3B-Instruct
    assert [i + 1 for i, t in enumerate(kimi.layer_types) if t == "full_attention"] == [4, 8, 12, 16, 20, 24, 27]
    assert kimi.mlp_layer_types == ["dense"] + ["sparse"] * 26
    assert (kimi.linear_num_heads, kimi.linear_head_dim, kimi.linear_conv_kernel_dim) == (32, 128, 4)
    assert (kimi.num_attention_heads, kimi.kv_lora_rank, kimi.v_head_dim) == (32, 512, 128)  # its MLA's latent
    assert (kimi.num_local_experts, kimi.num_experts_per_tok, kimi.moe_intermediate_size) == (256, 8, 1024)

    lfm2 = exported("lfm2")  # LiquidAI/LFM2-1.2B
    assert [i for i, t in enumerate(lfm2.layer_types) if t == "full_attention"] == [2, 5, 8, 10, 12, 14]
    assert (lfm2.intermediate_size, lfm2.conv_L_cache, lfm2.num_key_value_heads) == (8192, 3, 8)


def test_hf_readme_names_the_class_and_how_to_load_it():
    files = render(preset("jamba"), "hf")
    assert set(files) == {"config.json", "README.md"}
    assert "JambaForCausalLM" in files["README.md"] and "AutoConfig.from_pretrained" in files["README.md"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (dict(pattern="X-*-", d_model=128),
         ["no Hugging Face class can express mLSTM mixed with attention", "--format yaml"]),
        (dict(pattern="m-M-", d_model=64), ["Mamba-1 mixed with Mamba-2", "--format yaml"]),
        (dict(pattern="M*M*", d_model=64, attention={"pos": "rope"}),
         ["feed-forward", "RoPE", "--format megatron or --format yaml"]),
        (dict(pattern="*-*-", d_model=64, mlp={"activation": "gelu"}), ["SwiGLU", "mlp.activation is gelu"]),
        (dict(pattern="W-*-", d_model=64), ["no Hugging Face class can express sliding-window attention"]),
        (dict(pattern="D-C-", d_model=64), ["Gated DeltaNet mixed with gated short convolution"]),
        (dict(pattern="D-*-", d_model=64, deltanet={"gate": "channel"}, attention={"pos": "rope"}),
         ["kimi_linear", "NoPE", "qwen3_next", "deltanet.gate is channel", "olmo_hybrid"]),
        (dict(pattern="D-*-", d_model=64, attention={"window": 16}), ["attention.window is 16"]),
        (dict(pattern="C-*-", d_model=64), ["lfm2", "always has a q/k norm", "attention.qk_norm is false"]),
        (dict(pattern="D-*E", d_model=64, attention={"output_gate": True, "qk_norm": True},
              moe={"experts": 4}), ["qwen3_next", "always has a shared expert"]),
    ],
)
def test_what_no_class_can_express_is_one_sentence(spec, words):
    with pytest.raises(ConfigError) as e:
        hf_config(ArchConfig.from_dict(spec))
    msg = str(e.value)
    assert msg.count(". ") == 0 and "\n" not in msg
    for w in words:
        assert w in msg


@pytest.mark.parametrize("norm", ["head", "none"])
def test_a_mamba2_norm_other_than_the_reference_groups_is_refused_by_every_format_that_would_drop_it(norm):
    for spec in (dict(pattern="M-M-", d_model=64), dict(pattern="M-*-", d_model=64, attention={"pos": "nope"})):
        cfg = ArchConfig.from_dict({**spec, "mamba2": {"head_dim": 16, "norm": norm}})
        with pytest.raises(ConfigError, match=f"mamba2.norm is {norm}"):
            hf_config(cfg)
        with pytest.raises(ConfigError, match=f"Megatron-LM's Mamba-2 layer normalises .*mamba2.norm is {norm}"):
            megatron_args(cfg)
        hf_config(ArchConfig.from_dict({**spec, "mamba2": {"head_dim": 16}}))  # the reference's: exported


def test_a_forced_target_that_cannot_express_it_says_which_can():
    with pytest.raises(ConfigError, match=r"bamba cannot express this architecture: .*Mamba-1.*jamba"):
        hf_config(preset("jamba"), "bamba")
    with pytest.raises(ConfigError, match=r"nemotron_h cannot express .*mlp\.activation is swiglu.*bamba"):
        hf_config(preset("bamba"), "nemotron_h")


# ----- Megatron-LM -----------------------------------------------------------------------------------
SWITCHES = {"--swiglu", "--squared-relu", "--group-query-attention", "--disable-bias-linear",
            "--untie-embeddings-and-output-weights"}


def parse_megatron(args: list[str]) -> dict[str, str | None]:
    """Megatron-LM's argv as {flag: value}; every valued flag takes exactly one value."""
    parsed, i = {}, 0
    while i < len(args):
        flag = args[i]
        assert flag.startswith("--") and flag not in parsed, flag
        if "=" in flag:
            flag, value = flag.split("=", 1)
        elif flag in SWITCHES:
            value = None
        else:
            value = args[i + 1]
            assert not value.startswith("--"), (flag, value)
            i += 1
        parsed[flag] = value
        i += 1
    return parsed


MEGATRON_PRESETS = [n for n in PRESETS if not set(preset(n).pattern) & set("mXDCW")]


@pytest.mark.parametrize("name", MEGATRON_PRESETS)
def test_megatron_args_follow_the_hybrid_pattern_rules(name):
    cfg = preset(name)
    a = parse_megatron(megatron_args(cfg))
    pattern = a["--hybrid-override-pattern"]
    assert pattern == cfg.pattern and set(pattern) <= set("M*-E")
    assert len(pattern) == int(a["--num-layers"])  # Megatron-LM: the override pattern is num-layers long
    assert int(a["--hidden-size"]) == cfg.d_model
    moe = ("--num-experts" in a, "--moe-router-topk" in a, "--moe-ffn-hidden-size" in a)
    assert moe == ("E" in pattern,) * 3
    assert ("--mamba-state-dim" in a) == ("M" in pattern)
    if "*" in pattern:
        heads, kv, hd = cfg.attention.dims(cfg.d_model)
        assert (int(a["--num-attention-heads"]), int(a["--kv-channels"])) == (heads, hd)
        assert int(a.get("--num-query-groups", heads)) == kv
        assert a["--position-embedding-type"] == ("none" if cfg.attention.pos == "nope" else "rope")
        assert ("--rotary-base" in a) == (cfg.attention.pos == "rope")
    else:
        assert a["--position-embedding-type"] == "none"
    assert ("--untie-embeddings-and-output-weights" in a) == (not cfg.tie_embeddings)


def test_megatron_args_of_the_8b_hybrid_match_nvidias_script():
    a = parse_megatron(megatron_args(preset("mamba2-hybrid-8b")))
    assert a["--hybrid-override-pattern"] == "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-"
    script = {  # examples/mamba/train.sh of NVIDIA's Megatron-LM for the 8B hybrid
        "--num-layers": "56", "--hidden-size": "4096", "--ffn-hidden-size": "16384",
        "--num-attention-heads": "32", "--num-query-groups": "8", "--kv-channels": "128",
        "--mamba-state-dim": "128", "--mamba-head-dim": "64", "--mamba-num-groups": "8",
        "--position-embedding-type": "none"}
    assert {k: a[k] for k in script} == script
    assert "--swiglu" not in a and "--squared-relu" not in a  # GeLU: Megatron-LM's default


def test_megatron_moe_rope_and_a_pattern_starting_with_a_dash():
    cfg = ArchConfig.from_dict({**D, "pattern": "-M*E", "attention": {"heads": 4, "rope_fraction": 0.5},
                                "mamba2": {**M2, "expand": 3},
                                "moe": {"experts": 8, "top_k": 2, "shared_expert": True}})
    args = megatron_args(cfg)
    assert "--hybrid-override-pattern=-M*E" in args  # argparse would read a bare "-M*E" as a flag
    a = parse_megatron(args)
    assert (a["--rotary-base"], a["--rotary-percent"], a["--num-experts"], a["--moe-router-topk"]) == (
        "10000", "0.5", "8", "2")
    assert a["--moe-shared-expert-intermediate-size"] == str(cfg.moe.d_ff_shared(64))
    assert a["--mamba-num-heads"] == str(cfg.mamba2.n_heads(64))  # expand 3: the head count sets the width


def test_megatron_sh_and_txt_hold_the_same_list(tmp_path):
    export(preset("granite-4.0-h"), "megatron", tmp_path)
    txt = (tmp_path / "megatron_args.txt").read_text().splitlines()
    assert txt == megatron_args(preset("granite-4.0-h"))
    show = 'source megatron_args.sh && printf "%s\\n" "${MEGATRON_ARGS[@]}"'
    r = subprocess.run(["bash", "-c", show], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert r.stdout.splitlines() == txt
    newer = subprocess.run(["bash", "-c", "MEGATRON_PATTERN_FLAG=--hybrid-layer-pattern " + show],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.splitlines()
    assert newer == [("--hybrid-layer-pattern" if x == "--hybrid-override-pattern" else x) for x in txt]


@pytest.mark.parametrize(("name", "family", "formats"), [
    ("mamba", "Mamba-1", "hf or --format yaml"), ("jamba", "Mamba-1", "hf or --format yaml"),
    ("xlstm", "mLSTM", "hf or --format yaml"), ("qwen3-next", "Gated DeltaNet", "hf or --format yaml"),
    ("kimi-linear", "Gated DeltaNet", "hf or --format yaml"),
    ("lfm2", "gated short convolution", "hf or --format yaml"),
    ("gemma3", "sliding-window attention", "yaml"),
])
def test_megatron_refuses_mamba1_and_mlstm(name, family, formats):
    with pytest.raises(ConfigError, match=f"no {family} layer.*; export it with --format {formats}$"):
        megatron_args(preset(name))


# ----- every preset, every format --------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_exports_to_at_least_one_format(tmp_path, name):
    done = []
    for fmt in ("hf", "megatron", "yaml"):
        try:
            written = export(preset(name), fmt, tmp_path / fmt)
        except ConfigError as e:
            assert not (tmp_path / fmt).exists(), "a refused export wrote something"
            assert "\n" not in str(e)
            continue
        assert all(p.is_file() for p in written)
        done.append(fmt)
    assert ("hf" in done) == (name in CHOSEN) and "yaml" in done
    assert ("megatron" in done) == (name in MEGATRON_PRESETS)


# ----- native YAML -----------------------------------------------------------------------------------
def test_yaml_round_trip_is_exact(tmp_path):
    cfg = preset("jamba")
    training = {"tokens": 4e9, "optim": {"lr": 1e-3}}
    written = export(cfg, "yaml", tmp_path / "y", scale_to=2e7, training=training)
    assert sorted(p.name for p in written) == ["arch.yaml", "training.yaml"]
    arch, training = load_exported_yaml(tmp_path / "y")
    assert arch == scale(cfg, 2e7) and arch.vocab_size == cfg.vocab_size
    assert ArchConfig.load(tmp_path / "y" / "arch.yaml") == arch
    assert training["tokens"] == 4_000_000_000 and training["optim"]["lr"] == 1e-3
    assert training["optim"]["weight_decay"] == 0.1 and training["seq_len"] == 4096  # defaults kept
    assert load_exported_yaml(tmp_path / "y" / "arch.yaml") == (arch, training)
    r = nas("cost", "--arch", str(tmp_path / "y" / "arch.yaml"))
    assert r.returncode == 0, r.stderr


def test_yaml_training_defaults_and_a_misspelt_key():
    t = yaml.safe_load(render(preset("bamba"), "yaml")["training.yaml"])
    assert t["tokens"] > 1e11 and t["optim"]["betas"] == [0.9, 0.95]
    with pytest.raises(ConfigError, match="unknown key 'lrate'"):
        render(preset("bamba"), "yaml", training={"lrate": 1})


# ----- the command -----------------------------------------------------------------------------------
def test_cli_exports_a_preset_and_says_what_to_load(tmp_path):
    out = tmp_path / "jamba-hf"
    r = nas("export", "--preset", "jamba", "--format", "hf", "--scale-to", "2e6", "--vocab-size", "256",
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    for words in (str(out), "JambaForCausalLM", "AutoConfig.from_pretrained"):
        assert words in r.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 256
    assert config["hidden_size"] == preset("jamba", 2e6, vocab_size=256).d_model
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json"]


def test_cli_exports_an_arch_file_with_a_forced_target(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(preset("transformer++", 2e6, vocab_size=256).to_yaml())
    out = tmp_path / "o"
    r = nas("export", "--arch", str(path), "--format", "hf", "--target", "granitemoehybrid",
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "config.json").read_text())["model_type"] == "granitemoehybrid"
    r = nas("export", "--arch", str(path), "--format", "megatron", "--out", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    args = (tmp_path / "m" / "megatron_args.txt").read_text().splitlines()
    assert args == megatron_args(ArchConfig.load(path))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--arch", "{mlstm}", "--format", "hf"],
         ["no Hugging Face class can express mLSTM mixed with attention", "--format yaml"]),
        (["--preset", "jamba", "--format", "megatron"], ["no Mamba-1 layer", "--format hf or --format yaml"]),
        (["--preset", "jamba", "--format", "onnx"], ["unknown export format 'onnx'", "hf, megatron, yaml"]),
        (["--format", "hf"], ["name exactly one architecture"]),
        (["--preset", "jamba", "--arch", "{mlstm}", "--format", "hf"], ["got --preset and --arch"]),
        (["--preset", "jamba", "--format", "hf", "--target", "bamba"],
         ["bamba cannot express", "--target jamba"]),
        (["--preset", "jamba", "--format", "hf", "--target", "gpt2"], ["unknown Hugging Face target 'gpt2'"]),
        (["--preset", "jamba", "--format", "yaml", "--target", "jamba"], ["--format hf only"]),
        (["--preset", "jamba", "--format", "hf", "--scale-to", "lots"], ["'lots' is not a number"]),
        (["--preset", "jambo", "--format", "hf"], ["unknown preset 'jambo'"]),
        (["--preset", "jamba", "--trial", "3", "--format", "hf"], ["add --study"]),
        (["--preset", "jamba", "--format", "yaml", "--training", "{training}"], ["unknown key 'lrate'"]),
    ],
)
def test_bad_input_is_one_sentence_exit_2_and_writes_nothing(tmp_path, args, words):
    mlstm = tmp_path / "x.yaml"
    mlstm.write_text("pattern: X-*-\nd_model: 128\n")
    training = tmp_path / "t.yaml"
    training.write_text("lrate: 1\n")
    out = tmp_path / "never"
    r = nas("export", *(a.format(mlstm=mlstm, training=training) for a in args), "--out", str(out))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    msg = r.stderr.strip()
    assert msg.startswith("error:") and "Traceback" not in msg
    for w in words:
        assert w in msg
    assert not out.exists()


def test_a_refused_export_leaves_an_existing_directory_as_it_was(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    r = nas("export", "--preset", "mamba", "--format", "megatron", "--out", str(tmp_path))
    assert r.returncode == 2
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    assert nas("export", "--preset", "mamba", "--format", "hf").stderr.startswith("error: name the directory")


def test_the_exporter_loads_neither_torch_nor_transformers():
    code = ("import sys, nas.cli\nfrom nas.export import render\nfrom search_spaces.presets import preset\n"
            "render(preset('jamba'), 'hf'); render(preset('bamba'), 'megatron')\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert r.stdout.strip() == "[]", r.stderr


def test_a_preset_scaled_to_a_tiny_size_runs_forward_in_transformers(tmp_path):
    """Granite-4.0-H at 2M parameters has experts of 0.1875 · 16 = 3 units; transformers' grouped expert GEMM
    needs 16-byte rows, so feed-forward widths are rounded to multiples of 8 (16 from 12 up)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    r = nas("export", "--preset", "granite-4.0-h", "--format", "hf", "--scale-to", "2e6", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.intermediate_size % 8 == 0 and config.shared_intermediate_size % 8 == 0
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logits = model(torch.randint(0, 256, (1, 8))).logits
    assert logits.shape == (1, 8, config.vocab_size) and torch.isfinite(logits).all()
