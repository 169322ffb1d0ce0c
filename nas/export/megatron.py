"""Megatron-LM arguments for hybrid models (`pretrain_mamba.py`'s `M*-E` patterns).

`build` gives the model-shape arguments as a list; `launch` what `pretrain_mamba.py` needs besides them
to build the model (the layer spec `--spec`, `--is-hybrid-model`); `training` the run's sequence
length, batch, schedule and precision from the training settings (`nas.export.native`); `script` writes
the three as bash arrays and `run_script` a launcher. Data, tokenizer and parallelism stay the user's.
An architecture Megatron-LM cannot build (Mamba-1, mLSTM, mismatched activations) is refused with the
reason. tests/nas/test_megatron_parser.py parses the lot with Megatron-LM's own argument parser.
"""

from __future__ import annotations

import shlex

from nas.export.unfit import Unfit
from search_spaces import ArchConfig
from search_spaces.pattern import SYMBOLS

__all__ = [
    "MEGATRON_SYMBOLS", "NEW_PATTERN_FLAG", "PATTERN_FLAG", "SCRIPT", "SPEC", "build", "launch", "run_script",
    "script", "training",
]

MEGATRON_SYMBOLS = "M*-E"
SCRIPT = "pretrain_mamba.py"  # Megatron-LM's hybrid-model entry point, at the root of its repository
# the layer spec pretrain_mamba.py builds the stack from (it refuses to start without one)
SPEC = ("megatron.core.models.mamba.mamba_layer_specs", "mamba_stack_spec")
PATTERN_FLAG = "--hybrid-override-pattern"  # newer Megatron-LM releases call it --hybrid-layer-pattern
NEW_PATTERN_FLAG = "--hybrid-layer-pattern"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else format(float(x), ".10g")


def build(cfg: ArchConfig, pattern_flag: str = PATTERN_FLAG) -> list[str]:
    """Megatron-LM's arguments for the hybrid model `cfg` (pretrain_mamba.py / the hybrid model builder).

    Model shape only: add data, parallelism, sequence length and optimiser arguments. Valued flags come
    as "--flag", "value" pairs, except a pattern that starts with '-' ("--flag=-M-M"), which argparse
    would otherwise read as a flag.
    """
    for sym, (_, fam) in SYMBOLS.items():
        if sym in cfg.pattern and sym not in MEGATRON_SYMBOLS:
            raise Unfit(
                f"Megatron-LM's hybrid models have no {fam} layer (their symbols are "
                f"{' '.join(MEGATRON_SYMBOLS)})"
            )
    if (a := cfg.attention) is not None and (a.window is not None or a.output_gate):
        what = "sliding window (attention.window)" if a.window is not None else "output gate (attention.output_gate)"
        raise Unfit(f"Megatron-LM's hybrid attention has no {what}")
    d = cfg.d_model
    p = cfg.pattern
    pattern = [f"{pattern_flag}={p}"] if p.startswith("-") else [pattern_flag, p]
    args = ["--num-layers", str(cfg.n_sublayers), *pattern, "--hidden-size", str(d)]

    ffns = [(f, o) for f, o in (("mlp", cfg.mlp), ("moe", cfg.moe)) if o is not None]
    acts = {o.activation for _, o in ffns}
    if len(acts) > 1:
        raise Unfit(
            "Megatron-LM uses one activation for MLP and MoE layers, and mlp.activation is "
            f"{cfg.mlp.activation} while moe.activation is {cfg.moe.activation} (make them equal)"
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
        if a.qk_norm:
            args.append("--qk-layernorm")  # the model's normalization (RMSNorm) over each head's q and k
        if a.pos == "rope":
            if not float(a.rope_theta).is_integer():
                raise Unfit(
                    "Megatron-LM takes a whole-number RoPE base, and attention.rope_theta is "
                    f"{a.rope_theta:g}"
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
            raise Unfit(
                f"Megatron-LM's Mamba-2 layer has a convolution of width 4, and mamba2.d_conv is {m.d_conv}"
            )
        if m.norm != "group":
            raise Unfit(f"Megatron-LM's Mamba-2 layer normalises y·silu(z) over each group of channels, and "
                        f"mamba2.norm is {m.norm}")
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


def launch(cfg: ArchConfig) -> list[str]:
    """What pretrain_mamba.py needs besides the shape to build the model: the stack's layer spec (without
    it the script stops: "You must provide a valid Mamba layer spec via --spec") and the hybrid flag
    (output-layer initialisation and FLOPs as for a hybrid)."""
    return ["--spec", *SPEC, "--is-hybrid-model"]


def training(settings: dict) -> list[str]:
    """The run's arguments from `nas.export.native.training(...)`'s settings: sequence length, batch,
    samples, AdamW, warmup + cosine schedule, clipping, precision, seed. One sequence per GPU per micro-batch
    (raise --micro-batch-size to fit memory); the global batch is the settings' batch."""
    seq, batch, o = settings["seq_len"], settings["batch_size"], settings["optim"]
    samples = max(batch, round(settings["tokens"] / seq))
    args = [
        "--seq-length", str(seq), "--max-position-embeddings", str(seq),
        "--micro-batch-size", "1", "--global-batch-size", str(batch),
        "--train-samples", str(samples),
        "--lr", _num(o["lr"]), "--min-lr", _num(o["lr"] * o["min_lr_ratio"]),
        "--lr-decay-style", "cosine", "--lr-decay-samples", str(samples),
        "--lr-warmup-samples", str(round(samples * o["warmup_fraction"])),
        "--weight-decay", _num(o["weight_decay"]),
        "--adam-beta1", _num(o["betas"][0]), "--adam-beta2", _num(o["betas"][1]),
        "--clip-grad", _num(o["grad_clip"]),
        "--seed", str(settings["seed"]),
    ]
    if settings["precision"] == "bf16":
        args.append("--bf16")
    return args


def _array(name: str, args: list[str]) -> list[str]:
    lines, i = [f"{name}=("], 0
    while i < len(args):
        a = args[i]
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            values = []
            while i + 1 < len(args) and not args[i + 1].startswith("--"):
                values.append(shlex.quote(args[i + 1]))
                i += 1
            lines.append(f"  {a} {' '.join(values)}")
        else:
            lines.append(f"  {a}")
        i += 1
    return [*lines, ")"]


def run_script() -> str:
    """train.sh: pretrain_mamba.py on this host's GPUs with the three arrays plus the user's arguments."""
    return "\n".join([
        "#!/usr/bin/env bash",
        "# Train this architecture with Megatron-LM (written by `nas export`, hybrid-nas).",
        "#   MEGATRON_LM=/path/to/Megatron-LM bash train.sh --data-path DATA --tokenizer-type ... [more arguments]",
        "# A smoke run without data: bash train.sh --mock-data --tokenizer-type NullTokenizer",
        "# NPROC sets the processes (default: one per GPU); parallelism flags go among the arguments.",
        "set -euo pipefail",
        'here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        'source "$here/megatron_args.sh"',
        ': "${MEGATRON_LM:?set MEGATRON_LM to a Megatron-LM checkout}"',
        'nproc="${NPROC:-$(nvidia-smi -L 2>/dev/null | wc -l)}"',
        'exec torchrun --nproc-per-node "${nproc:-1}" "$MEGATRON_LM/$MEGATRON_SCRIPT" \\',
        '    "${MEGATRON_BUILD[@]}" "${MEGATRON_ARGS[@]}" "${MEGATRON_TRAINING[@]}" "$@"',
    ]) + "\n"


def script(cfg: ArchConfig, args: list[str], train: list[str] | None = None) -> str:
    """megatron_args.sh: the arguments as a bash array, the pattern flag overridable for newer releases."""
    lines = [
        "# Megatron-LM model arguments written by `nas export` (hybrid-nas).",
        f"# pattern: {cfg.pattern}",
        "# Use:   MEGATRON_LM=/path/to/Megatron-LM bash train.sh --data-path ... --tokenizer-type ...",
        '#   or:  source megatron_args.sh; torchrun ... pretrain_mamba.py "${MEGATRON_BUILD[@]}" \\',
        '#        "${MEGATRON_ARGS[@]}" "${MEGATRON_TRAINING[@]}" <data, tokenizer, parallelism args>',
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
    lines += [
        "# what pretrain_mamba.py needs besides the shape: the stack's layer spec and the hybrid flag",
        f"MEGATRON_SCRIPT={SCRIPT}",
        *_array("MEGATRON_BUILD", launch(cfg)),
    ]
    if train is not None:
        lines += ["# the run: from training settings (`nas export --training FILE` overrides them)",
                  *_array("MEGATRON_TRAINING", train)]
    return "\n".join(lines) + "\n"
