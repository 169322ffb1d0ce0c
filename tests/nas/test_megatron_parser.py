"""The Megatron export against Megatron-LM itself.

Two layers, both against release core_v0.16.1:
- megatron-core (PyPI, in `.[test]`): the layer spec that `--spec` names exists and is a ModuleSpec, and
  Megatron's hybrid layer allocation accepts each exported pattern at its `--num-layers`.
- Megatron-LM's training argument parser (`megatron/training/arguments.py`, which no PyPI package holds:
  megatron-core ships `megatron/core` only): the arrays `megatron_args.sh` defines, sourced by bash as
  `train.sh` does, are parsed by `add_megatron_arguments`, pass `validate_args` with the defaults
  `pretrain_mamba.py` gives it, and build a TransformerConfig, as `pretrain_mamba.py` does before it builds
  the model. It needs a Megatron-LM checkout at that tag in MEGATRON_LM and is skipped, saying so, without
  one (CI has registry access only).
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from nas.export import export
from search_spaces.presets import PRESETS, preset
from search_spaces.scaling import scale

MEGATRON_RELEASE = "core_v0.16.1"
# the presets Megatron-LM's hybrid models can build: Mamba-2, attention, MLP and MoE sublayers only
HYBRID = [n for n in PRESETS if set(preset(n).pattern) <= set("M*-E")]
CASES = [(n, None) for n in HYBRID] + [(n, 2e6) for n in HYBRID]
IDS = [f"{n}{'-2M' if s else ''}" for n, s in CASES]
REPO = Path(__file__).parents[2]


def exported(tmp_path, name, size) -> list[str]:
    """Every argument train.sh passes to pretrain_mamba.py besides the user's, read back through bash."""
    export(preset(name), "megatron", tmp_path, scale_to=size, vocab_size=256 if size else None)
    show = ('source megatron_args.sh && printf "%s\\n" "${MEGATRON_BUILD[@]}" "${MEGATRON_ARGS[@]}" '
            '"${MEGATRON_TRAINING[@]}"')
    r = subprocess.run(["bash", "-c", show], cwd=tmp_path, capture_output=True, text=True, check=True)
    return r.stdout.splitlines()


def value(args: list[str], flag: str) -> str:
    for i, a in enumerate(args):
        if a == flag:
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    raise KeyError(flag)


# ----- megatron-core ---------------------------------------------------------------------------------
def test_the_spec_names_megatron_cores_mamba_stack_spec(tmp_path):
    pytest.importorskip("megatron.core", reason="megatron-core is in .[test]: pip install -e '.[test]'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.package_info import __version__
        from megatron.core.transformer.spec_utils import ModuleSpec, import_module

    assert f"core_v{__version__}" == MEGATRON_RELEASE
    args = exported(tmp_path, "nemotron-h-8b", None)
    i = args.index("--spec")
    spec = import_module((args[i + 1], args[i + 2]))
    assert isinstance(spec, ModuleSpec) and "--is-hybrid-model" in args


@pytest.mark.parametrize(("name", "size"), CASES, ids=IDS)
def test_megatrons_hybrid_allocation_accepts_the_pattern(tmp_path, name, size):
    pytest.importorskip("megatron.core", reason="megatron-core is in .[test]: pip install -e '.[test]'")
    from megatron.core.ssm.mamba_hybrid_layer_allocation import allocate_layers

    args = exported(tmp_path, name, size)
    pattern = value(args, "--hybrid-override-pattern")
    layers = allocate_layers(int(value(args, "--num-layers")), 0.0, 0.0, pattern)
    assert "".join(layers) == pattern == preset(name).pattern


# ----- Megatron-LM's own argument parser ----------------------------------------------------------
@pytest.fixture(scope="module")
def megatron_lm() -> Path:
    path = Path(os.environ.get("MEGATRON_LM", "/nonexistent"))
    if not (path / "megatron" / "training" / "arguments.py").is_file():
        pytest.skip(
            "Megatron-LM's training argument parser (megatron/training/arguments.py) is in no PyPI package "
            f"(megatron-core ships megatron/core only); set MEGATRON_LM to a checkout of {MEGATRON_RELEASE} "
            "to check the export against it"
        )
    return path


PARSE = r'''
import argparse, contextlib, io, json, sys, warnings
warnings.simplefilter("ignore")
import megatron.training.arguments as A
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.spec_utils import ModuleSpec, import_module
argv = json.loads(sys.argv[1])
parser = A.add_megatron_arguments(argparse.ArgumentParser(allow_abbrev=False))
args = parser.parse_args(argv)          # an unknown flag or a bad value exits 2 with argparse's message
args.rank, args.world_size = 0, 1       # parse_args reads them from the environment
with contextlib.redirect_stdout(io.StringIO()):
    A.validate_args(args, {"tokenizer_type": "GPT2BPETokenizer"})  # pretrain_mamba.py's args_defaults
config = A.core_transformer_config_from_args(args, TransformerConfig)
assert isinstance(import_module(args.spec), ModuleSpec), args.spec  # what mamba_builder does with --spec
print(json.dumps({k: getattr(config, k) for k in (
    "num_layers", "hidden_size", "num_attention_heads", "num_query_groups", "kv_channels", "ffn_hidden_size",
    "mamba_state_dim", "mamba_head_dim", "mamba_num_groups", "num_moe_experts", "moe_router_topk",
    "moe_ffn_hidden_size", "gated_linear_unit", "is_hybrid_model", "normalization", "add_bias_linear")}
    | {"pattern": args.hybrid_override_pattern, "seq_length": args.seq_length, "bf16": args.bf16,
       "train_samples": args.train_samples, "padded_vocab": args.vocab_size}))
'''


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), CASES, ids=IDS)
def test_megatron_lm_parses_and_validates_the_export(tmp_path, megatron_lm, name, size):
    # the user's part: data and tokenizer; and, on a machine without Transformer Engine (this one), no
    # fused RoPE kernel, whose absence TransformerConfig refuses
    argv = [*exported(tmp_path, name, size), "--mock-data", "--tokenizer-type", "NullTokenizer", "--no-rope-fusion"]
    env = {**os.environ, "PYTHONPATH": f"{megatron_lm}{os.pathsep}{REPO}"}
    r = subprocess.run([sys.executable, "-c", PARSE, json.dumps(argv)], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    cfg = preset(name) if size is None else scale(preset(name), size, vocab_size=256)
    assert got["pattern"] == cfg.pattern and got["num_layers"] == len(cfg.pattern)
    assert got["hidden_size"] == cfg.d_model and got["is_hybrid_model"] and got["bf16"]
    assert got["normalization"] == "RMSNorm" and got["add_bias_linear"] is False
    if cfg.attention is not None:
        heads, kv, hd = cfg.attention.dims(cfg.d_model)
        assert (got["num_attention_heads"], got["num_query_groups"], got["kv_channels"]) == (heads, kv, hd)
    if cfg.mlp is not None:
        assert got["ffn_hidden_size"] == cfg.mlp.d_ff(cfg.d_model)
        assert got["gated_linear_unit"] == (cfg.mlp.activation == "swiglu")
    if cfg.mamba2 is not None:
        m = cfg.mamba2
        assert (got["mamba_state_dim"], got["mamba_head_dim"], got["mamba_num_groups"]) == (
            m.d_state, m.head_dim, m.n_groups)
    if cfg.moe is not None:
        assert (got["num_moe_experts"], got["moe_router_topk"], got["moe_ffn_hidden_size"]) == (
            cfg.moe.experts, cfg.moe.top_k, cfg.moe.d_ff(cfg.d_model))


@pytest.mark.slow
def test_megatron_lm_refuses_what_the_export_leaves_out(tmp_path, megatron_lm):
    """The check can fail: without the run's arguments validate_args stops, and a misspelt flag is refused."""
    args = exported(tmp_path, "mamba2", 2e6)
    env = {**os.environ, "PYTHONPATH": f"{megatron_lm}{os.pathsep}{REPO}"}
    no_run = args[: args.index("--seq-length")]
    misspelt = [*args, "--hybrid-overide-pattern", "M"]
    for argv, words in ((no_run, "AssertionError"), (misspelt, "unrecognized arguments")):
        r = subprocess.run([sys.executable, "-c", PARSE, json.dumps(argv)], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=600)
        assert r.returncode != 0 and words in r.stderr, r.stderr[-2000:]
