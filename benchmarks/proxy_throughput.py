"""Training, prefill and decode speed of every proxy family beside a plain compiled Transformer, in one run.

    python benchmarks/proxy_throughput.py                   # on a CUDA GPU: writes docs/benchmarks/proxy_throughput.md
    python benchmarks/proxy_throughput.py --families "mamba2,hybrid 1:7" --no-decode
    python benchmarks/proxy_throughput.py --families "hybrid 1:7,hybrid 1:7@d448" --no-decode   # two widths
    python benchmarks/proxy_throughput.py --smoke           # tiny, CPU, eager only (CI)

Every family is `benchmarks/proxy_evidence.py`'s pattern scaled to `--params` (vocab 256) by the presets' scaling
rule; `NAME@dWIDTH` pins the family's d_model at WIDTH (its MLP absorbing the rest), to time a width the rule does
not pick beside the one it does. The anchor is a plain nanoGPT-shaped Transformer (RMSNorm, causal SDPA, SwiGLU,
tied embeddings) of about the same size under `torch.compile`. A training step is forward, backward and a fused
AdamW update under bf16 autocast, at each `--lengths` with `--tokens-per-step` tokens (B = tokens / T); tokens/s is
the median over `--steps` steps after `--warmup`. Each family is timed eagerly and compiled (`torch.compile` of the
whole model; a family whose compile fails keeps its eager figure and says why), and its ratio is its best ÷ the
anchor's compiled figure at that length. Prefill and decode tokens/s are `workers.score.throughput` (bf16 weights;
decode replays a CUDA graph of the step, eager or compiled: `--decode-steps`) at `--contexts` with batch
`--decode-batch`. With `--mamba-scan-so`, the Mamba-1 proxy also trains on mamba_ssm's CUDA selective scan in place
of ours (`benchmarks/scan_anchor`): a row for training only. Rows are printed as they are measured; an out-of-memory
or a failure is a row with its reason.

One run's ratio moves by a few per cent between runs (the hybrid's at T8192 by up to ~9%,
docs/benchmarks/proxy_throughput.md): `--rounds R` times the anchor and then every family in turn R times over
(each model built and compiled again in each round, from the caches after the first), reports each figure's median
over the rounds and each ratio's median with its range, every round's ratio taken against that round's anchor. The
report ends with the config each of the project's autotuned kernels ran with at each of the run's keys: a pick
between near-equal configs is made by timing, and moves a figure by itself (docs/benchmarks/kernels_h200.md, call 21).
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn as nn
import torch.nn.functional as F
from _report import command, families, machine, publish, write
from proxy_evidence import FAMILIES as EVIDENCE_FAMILIES
from proxy_evidence import arch

from search_spaces import ArchConfig
from search_spaces.cost import cache_bytes, param_counts
from workers.models import build_model
from workers.score import throughput
from workers.train import autocast

FAMILIES = {**EVIDENCE_FAMILIES, "mamba1": "m-" * 8}
ANCHOR = "plain Transformer (anchor)"
DECODE_STEPS = ("eager", "compiled")


class PlainTransformer(nn.Module):
    """nanoGPT's shape with today's parts: RMSNorm, causal SDPA without biases, SwiGLU, tied embeddings."""

    def __init__(self, vocab: int, d: int, layers: int, heads: int):
        super().__init__()
        self.heads = heads
        self.embed = nn.Embedding(vocab, d)
        hidden = 64 * math.ceil(8 * d / 3 / 64)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({
                "norm1": nn.RMSNorm(d), "qkv": nn.Linear(d, 3 * d, bias=False), "proj": nn.Linear(d, d, bias=False),
                "norm2": nn.RMSNorm(d), "gate_up": nn.Linear(d, 2 * hidden, bias=False),
                "down": nn.Linear(hidden, d, bias=False),
            })
            for _ in range(layers)
        )
        self.norm_f = nn.RMSNorm(d)
        for m in self.modules():  # nanoGPT's initialisation
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        B, T, D = x.shape
        for b in self.blocks:
            q, k, v = b["qkv"](b["norm1"](x)).view(B, T, 3, self.heads, D // self.heads).unbind(2)
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
            x = x + b["proj"](y.transpose(1, 2).reshape(B, T, D))
            gate, up = b["gate_up"](b["norm2"](x)).chunk(2, dim=-1)
            x = x + b["down"](F.silu(gate) * up)
        logits = self.norm_f(x) @ self.embed.weight.t()
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def plain_transformer(params: float, vocab: int) -> PlainTransformer:
    """8 layers, head dim 64, d a multiple of 64 with about `params` parameters."""
    best = None
    for d in range(64, 4097, 64):
        model_params = vocab * d + 8 * (4 * d * d + 3 * d * 64 * math.ceil(8 * d / 3 / 64))
        if best is None or abs(model_params - params) < abs(best[1] - params):
            best = (d, model_params)
    d = best[0]
    return PlainTransformer(vocab, d, 8, d // 64)


@dataclass
class Row:
    name: str
    pattern: str
    d_model: int
    params: int
    rounds: list[dict[int, dict[str, float | str]]] = field(default_factory=list)  # length -> eager / compiled / note
    serve: dict[str, list] = field(default_factory=dict)  # decode step ("eager" / "compiled") -> Throughput rows
    note: str = ""
    cfg: object = None  # the ArchConfig of a family (None for the anchor)
    train_only: bool = False  # a reference row with no decoding (Mamba-1 on mamba_ssm's CUDA scan)

    @property
    def train(self) -> dict[int, dict[str, float | str]]:
        """Each length's cell over the rounds (`over_rounds`)."""
        lengths = dict.fromkeys(t for r in self.rounds for t in r)
        return {t: over_rounds([r[t] for r in self.rounds if t in r]) for t in lengths}


def next_token_loss(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """The next-token loss of a proxy (`HybridLM`) or the anchor over idx [B, T + 1]."""
    out = model(idx[:, :-1], idx[:, 1:])
    return out if isinstance(out, torch.Tensor) else out.loss


def train_tokens_per_s(model: nn.Module, batch: int, length: int, steps: int, warmup: int, dev: torch.device) -> float:
    """Median tokens/s of forward + backward + fused AdamW (bf16 autocast on the GPU)."""
    return train_timing(model, batch, length, steps, warmup, dev)[0]


def train_timing(model: nn.Module, batch: int, length: int, steps: int, warmup: int,
                 dev: torch.device) -> tuple[float, float]:
    """(median tokens/s, seconds of the first step) of forward + backward + fused AdamW: under torch.compile
    the first step's time is mostly compiling."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
    idx = torch.randint(0, 256, (batch, length + 1), device=dev)
    times = []
    for i in range(warmup + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast(dev):
            loss = next_token_loss(model, idx)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i == 0:
            first = time.perf_counter() - t0
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return batch * length / statistics.median(times), first


def _reason(e: BaseException) -> str:
    if isinstance(e, torch.OutOfMemoryError):
        return "out of memory"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:120] if text else ''}"


def measure(row: Row, make, args, dev: torch.device, compiled_only: bool = False) -> None:
    """Times one round of `row` at every length and appends it to `row.rounds`."""
    cells: dict[int, dict[str, float | str]] = {}
    row.rounds.append(cells)
    for length in args.lengths:
        batch = max(1, args.tokens_per_step // length)
        cell: dict[str, float | str] = {}
        for mode in ("compiled",) if compiled_only else args.modes:
            torch.manual_seed(0)
            try:
                model = make().to(dev)
                if mode == "compiled":  # a fresh compile at this length, as a trial's worker makes it
                    torch._dynamo.reset()
                    model = torch.compile(model)
                cell[mode], first = train_timing(model, batch, length, args.steps, args.warmup, dev)
                if mode == "compiled":
                    cell["compile s"] = first
            except Exception as e:  # an OOM or a compile failure is a result, not the end of the run
                cell[f"{mode} note"] = _reason(e)
            finally:
                model = None
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
        cells[length] = cell
        shown = ", ".join(f"{k} {v:.0f}" if k == "compile s" else f"{k} {v / 1e6:.3f} M tok/s"
                          if isinstance(v, float) else f"{k}: {v}" for k, v in cell.items())
        of = f" (round {len(row.rounds)})" if getattr(args, "rounds", 1) > 1 else ""
        print(f"  {row.name:30s} T{length:<6d} B{batch:<3d} {shown}{of}", flush=True)


def over_rounds(cells: list[dict[str, float | str]]) -> dict[str, float | str]:
    """One length's cells of several rounds as one: each figure's median over the rounds that have it (the first
    compiled step's seconds: the first round's, the only one that compiled from a cold start), and a mode's note
    (why it failed) only where no round has its figure."""
    keys = list(dict.fromkeys(k for c in cells for k in c))
    out: dict[str, float | str] = {}
    for key in keys:
        values = [c[key] for c in cells if isinstance(c.get(key), float)]
        if values:
            out[key] = values[0] if key == "compile s" else statistics.median(values)
    for key in keys:
        if key.endswith(" note") and key.removesuffix(" note") not in out:
            out[key] = next(c[key] for c in reversed(cells) if key in c)
    return out


def ratios(row: Row, anchor: Row, length: int) -> list[float]:
    """The row's best ÷ the anchor's at `length`, one a round, each against the anchor of its own round."""
    out = []
    for mine, theirs in zip(row.rounds, anchor.rounds):
        a, b = best(theirs.get(length, {})), best(mine.get(length, {}))
        if a and b:
            out.append(b / a)
    return out


def ratio_cell(values: list[float]) -> str:
    if not values:
        return "–"
    mid, lo, hi = (f"{v:.2f}" for v in (statistics.median(values), min(values), max(values)))
    return mid if lo == hi else f"{mid} ({lo}–{hi})"


def serve(row: Row, args, dev: torch.device) -> None:
    """Prefill and decode tokens/s of one family at every context, for each decode step form."""
    for mode in args.decode_steps:
        try:
            torch.manual_seed(0)
            model = build_model(row.cfg).to(dev)
            row.serve[mode] = throughput(model, args.contexts, args.decode_batch, args.decode_tokens, 1, dev,
                                         compiled="inductor" if mode == "compiled" else None)
            for s in row.serve[mode]:
                print(f"  {row.name:30s} context {s.context:<6d} prefill {s.prefill_tokens_per_s:,.0f} tok/s, "
                      f"decode ({mode} step) {s.decode_tokens_per_s:,.0f} tok/s", flush=True)
        except Exception as e:  # an OOM at 64K is a result
            row.note += f" ({mode}-step serving: {_reason(e)})"
            print(f"  {row.name:30s} {mode}-step serving: {_reason(e)}", flush=True)
        finally:
            model = None
            if dev.type == "cuda":
                torch.cuda.empty_cache()


def _k(c: int) -> str:
    return f"{c // 1024}K" if c >= 1024 else str(c)


def hbm_bound(cfg, context: int, batch: int, tb_s: float) -> float:
    """Decode tokens/s if a step only read the bf16 weights and each sequence's KV cache and state once."""
    step_bytes = 2 * param_counts(cfg).total + batch * cache_bytes(cfg, context).total
    return batch / (step_bytes / (tb_s * 1e12))


def best(cell: dict) -> float | None:
    values = [v for k, v in cell.items() if isinstance(v, float) and k in ("eager", "compiled")]
    return max(values) if values else None


def report(rows: list[Row], args, dev: torch.device) -> list[str]:
    anchor = rows[0]
    lines = [
        "# Proxy speed beside a plain compiled Transformer",
        "",
        f"`{command()}` on {machine(gpu=dev.type == 'cuda')}. ~{args.params / 1e6:g}M parameters, vocab 256"
        + (f"; training {args.tokens_per_step:,} tokens a step, "
           f"{'bf16 autocast, fused AdamW' if dev.type == 'cuda' else 'fp32, AdamW'}, "
           f"median of {args.steps} steps after {args.warmup}. The ratio is a model's best (eager or compiled) ÷ "
           f"the anchor's {'compiled' if args.compile else 'eager'} figure at that length."
           + (f" {args.rounds} rounds, each timing the anchor and then every family: each figure is its median over "
              "the rounds, each ratio the median of the rounds' ratios (each against its round's anchor) with their "
              "range." if args.rounds > 1 else "") if args.train else "."),
        "",
    ]
    if args.train:
        lines += [
            "## Training tokens/s",
            "",
            "| model | pattern | d_model | params | " + " | ".join(
                f"T{t} eager | T{t} compiled | T{t} first compiled step | T{t} ÷ anchor" for t in args.lengths) + " |",
            "|---|---|---:|---:|" + "---:|---:|---:|---:|" * len(args.lengths),
        ]
    for r in rows if args.train else []:
        cells = [r.name, f"`{r.pattern}`" if r.pattern else "", str(r.d_model), f"{r.params / 1e6:.1f}M"]
        for t in args.lengths:
            cell = r.train.get(t, {})
            for mode in ("eager", "compiled"):
                v = cell.get(mode)
                cells.append(f"{v / 1e6:.3f} M" if isinstance(v, float) else str(cell.get(f"{mode} note", "–")))
            cells.append(f"{cell['compile s']:.0f} s" if "compile s" in cell else "–")
            cells.append(ratio_cell(ratios(r, anchor, t)))
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.serve for r in rows):
        steps = [m for m in DECODE_STEPS if any(m in r.serve for r in rows)]
        lines += ["", f"## Prefill and decode tokens/s (batch {args.decode_batch}, {args.decode_tokens} decoded "
                  "tokens; bf16 weights and CUDA-graph decode on the GPU)", "",
                  "The decode step runs each block's step eagerly (*eager step*) or compiled by Inductor "
                  "(*compiled step*, `HybridLM.step(..., compiled=\"inductor\")`), then captured as one CUDA graph "
                  f"either way. *of bound*: the better decode tokens/s ÷ the HBM bound, batch ÷ ((bf16 weights + "
                  f"batch × KV/state bytes of `search_spaces.cost.cache_bytes`) ÷ {args.hbm_tb_s:g} TB/s): the share "
                  "of the memory bandwidth a decode step would need at the least.", "",
                  "| model | " + " | ".join(
                      f"{_k(c)} prefill | " + " | ".join(f"{_k(c)} decode, {m} step" for m in steps)
                      + f" | {_k(c)} of bound" for c in args.contexts) + " |",
                  "|---|" + ("---:|" * (len(steps) + 2)) * len(args.contexts)]
        for r in rows[1:]:
            if r.train_only:
                continue
            by = {m: {s.context: s for s in r.serve.get(m, [])} for m in steps}
            cells = [r.name]
            for c in args.contexts:
                got = {m: by[m][c] for m in steps if c in by[m]}
                bound = hbm_bound(r.cfg, c, args.decode_batch, args.hbm_tb_s) if r.cfg is not None else None
                cells.append(f"{next(iter(got.values())).prefill_tokens_per_s:,.0f}" if got else "–")
                cells += [f"{got[m].decode_tokens_per_s:,.0f}" if m in got else "–" for m in steps]
                top = max((s.decode_tokens_per_s for s in got.values()), default=None)
                cells.append(f"{top / bound:.1%}" if top and bound else "–")
            lines.append("| " + " | ".join(cells) + (f" {r.note}" if r.note else "") + " |")
    # imported here: a script that imports this module and then sets TRITON_INTERPRET (layer_kernels.py --smoke)
    # needs kernels._triton's jitted helpers defined after it
    from kernels._triton import tuned_configs

    tuned = [row for name, module in sorted(sys.modules.items())
             if name.startswith("kernels.") and name.endswith(".triton") for row in tuned_configs(module)]
    if tuned:  # the configs a figure ran with: a ratio that moves between runs may have moved with them
        lines += ["", "## The project's tuned kernels in this run", "",
                  "Each autotuned kernel's config at each key it launched with (tuned in this run, or read from "
                  "Triton's cache).", "", "| kernel | key | config |", "|---|---|---|"]
        lines += [f"| `{kernel}` | {key} | {cfg} |" for kernel, key, cfg in tuned]
    return [*lines, ""]


def pinned(name: str) -> tuple[str, int | None]:
    """`NAME@dWIDTH` -> (NAME, WIDTH); a plain family name -> (name, None). A malformed width ends the run."""
    family, at, width = name.partition("@")
    if at and not re.fullmatch(r"d[1-9]\d*", width):
        raise SystemExit(f"{name!r}: a pinned width is written NAME@dWIDTH, e.g. 'hybrid 1:7@d448'")
    return family, int(width[1:]) if at else None


def family_arch(name: str, params: float) -> ArchConfig:
    """A family of FAMILIES at `params`, or `NAME@dWIDTH`: that family with its d_model pinned at WIDTH."""
    family, width = pinned(name)
    return arch(FAMILIES[family], params, width=width)


def cuda_scan_row(args, dev: torch.device) -> Row:
    """The Mamba-1 proxy trained on mamba_ssm's CUDA selective scan (benchmarks/scan_anchor) in place of ours: how
    fast the family could train with the reference kernel, beside ours and the anchor in the same run."""
    from scan_anchor.ops import anchor_scan, load

    cfg = family_arch("mamba1", args.params)
    row = Row("mamba1 on mamba_ssm's CUDA scan", cfg.pattern, cfg.d_model, param_counts(cfg).total, cfg=cfg,
              train_only=True)
    print(f"{row.name}: {cfg.pattern} d{cfg.d_model}, {row.params / 1e6:.1f}M parameters", flush=True)
    try:
        module = load(args.mamba_scan_so)
    except Exception as e:  # not built, or not loadable here: a row that says so
        row.rounds = [{t: {"eager note": f"not available ({_reason(e)})"} for t in args.lengths}]
        print(f"  {row.name:30s} not available ({_reason(e)})", flush=True)
        return row
    with anchor_scan(module):
        measure(row, lambda: build_model(cfg), args, dev)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of: {', '.join(FAMILIES)}")
    ap.add_argument("--params", type=float, default=2.5e7)
    ap.add_argument("--lengths", default="2048,8192")
    ap.add_argument("--tokens-per-step", type=int, default=65536)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1,
                    help="time the anchor and every family this many times over, in turn (training only)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--modes", default="eager,compiled",
                    help="the training forms to time, of: eager, compiled (the anchor is always compiled)")
    ap.add_argument("--contexts", default="2048,16384,65536")
    ap.add_argument("--decode-batch", type=int, default=64)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--no-decode", dest="decode", action="store_false")
    ap.add_argument("--no-train", dest="train", action="store_false", help="prefill and decode only")
    ap.add_argument("--decode-steps", default=",".join(DECODE_STEPS),
                    help="the decode step's forms to time, of: eager, compiled (Inductor)")
    ap.add_argument("--hbm-tb-s", type=float, default=4.8, help="the GPU's memory bandwidth (H200: 4.8 TB/s)")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/proxy_throughput.md"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, eager only, nothing written")
    ap.add_argument("--mamba-scan-so", help="also train the Mamba-1 proxy on mamba_ssm's CUDA selective scan, the "
                    "library benchmarks/scan_anchor/build.sh makes (.anchors/selective_scan_anchor.so)")
    args = ap.parse_args()
    chosen = [f.strip() for f in args.families.split(",") if f.strip()]
    families(",".join(pinned(f)[0] for f in chosen), FAMILIES)  # an unknown family ends the run
    if args.smoke:
        args.params, args.lengths, args.tokens_per_step, args.steps, args.warmup = 2e5, "32", 64, 2, 1
        args.contexts, args.decode_batch, args.decode_tokens, args.compile = "16", 2, 2, False
        args.decode_steps = "eager"
    if not args.compile:  # --no-compile (and --smoke): the anchor and every family eager
        args.modes = "eager"
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or not set(args.modes) <= {"eager", "compiled"}:
        raise SystemExit(f"--modes: one or both of eager, compiled, got {args.modes!r}")
    args.lengths = [int(x) for x in args.lengths.split(",")]
    args.contexts = [int(x) for x in args.contexts.split(",")]
    args.decode_steps = [m.strip() for m in args.decode_steps.split(",") if m.strip()]
    if not set(args.decode_steps) <= set(DECODE_STEPS):
        raise SystemExit(f"unknown decode step in {args.decode_steps}; choose from {', '.join(DECODE_STEPS)}")
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cpu" and not args.smoke:
        print("no CUDA GPU: timing on the CPU (the figures say little about a GPU)", flush=True)

    if args.rounds < 1:
        raise SystemExit(f"--rounds: at least 1, got {args.rounds}")
    anchor_model = plain_transformer(args.params, 256)
    rows = [Row(ANCHOR, "", anchor_model.embed.weight.shape[1], sum(p.numel() for p in anchor_model.parameters()))]
    print(f"{ANCHOR}: d{rows[0].d_model}, {rows[0].params / 1e6:.1f}M parameters", flush=True)
    for name in chosen:
        cfg = family_arch(name, args.params)
        rows.append(Row(name, cfg.pattern, cfg.d_model, param_counts(cfg).total, cfg=cfg))
        print(f"{name}: {cfg.pattern} d{cfg.d_model}, {rows[-1].params / 1e6:.1f}M parameters", flush=True)
    for round_ in range(args.rounds):
        if args.rounds > 1:
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
        if args.train:
            measure(rows[0], lambda: plain_transformer(args.params, 256), args, dev, compiled_only=args.compile)
        for row in rows[1:]:
            if args.train:
                measure(row, lambda cfg=row.cfg: build_model(cfg), args, dev)
            if args.decode and round_ == 0:
                serve(row, args, dev)
            if not args.smoke:  # the table so far: a run cut short by a time limit keeps the families it measured
                write(args.out, report(rows, args, dev))
    if args.mamba_scan_so and args.train:
        rows.append(cuda_scan_row(args, dev))
        if not args.smoke:
            write(args.out, report(rows, args, dev))
    publish(args.out, report(rows, args, dev), args.smoke)


if __name__ == "__main__":
    main()
