"""Where a decode step's GPU time goes: the kernels of one captured step, by group, against the HBM bound.

    python benchmarks/decode_profile.py                     # on a CUDA GPU: docs/benchmarks/decode_profile.md
    python benchmarks/decode_profile.py --families mamba2 --context 16384
    python benchmarks/decode_profile.py --smoke             # tiny, CPU, nothing written (CI)

Each family is `proxy_throughput.py`'s, served as `workers.score.throughput` serves it: bf16 weights, a prompt
of `--context` tokens prefilled at batch `--batch`, then the step (each block's step compiled by Inductor unless
`--eager-step`) captured as a CUDA graph and replayed. `torch.profiler` records `--tokens` replays; a kernel's
time is its GPU time per step, and *launches* how many kernels one step runs. *HBM floor* is the time the
step's bytes (bf16 weights + batch × KV/state bytes of `search_spaces.cost.cache_bytes`) take at `--hbm-tb-s`:
what the step would cost if it only moved its bytes once.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from _report import command, families, machine, publish
from proxy_evidence import arch
from proxy_profile import group_of, kernel_times
from proxy_throughput import FAMILIES, hbm_bound

from workers.models import GraphDecoder, build_model
from workers.score import serving_copy


@torch.no_grad()
def profile_decode(cfg, batch: int, context: int, tokens: int, compiled: str | None, dev: torch.device):
    """(µs per step by the clock, {kernel: (GPU µs per step, launches per step)}) over `tokens` steps."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = serving_copy(build_model(cfg).to(dev), dev)
    cache = model.init_cache(batch, context + 3 * tokens)  # three runs of `tokens` steps
    token = model.prefill(torch.randint(0, cfg.vocab_size, (batch, context), device=dev), cache)[:, -1].argmax(-1)
    if dev.type == "cuda":
        decoder = GraphDecoder(model, cache, token, compiled=compiled)
        run = decoder.advance
    else:  # no CUDA graphs on the CPU: the step itself, op by op
        state = {"token": token}

        def run(n: int) -> None:
            for _ in range(n):
                state["token"] = model.step(state["token"], cache, compiled).argmax(-1)
    run(tokens)  # warm
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    run(tokens)
    sync()
    per_step_us = (time.perf_counter() - t0) * 1e6 / tokens
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run(tokens)
        sync()
    return per_step_us, kernel_times(prof, dev, tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="mamba2,hybrid 1:7,attention")
    ap.add_argument("--params", type=float, default=2.5e7)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--context", type=int, default=16384)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--eager-step", action="store_true", help="the blocks' step eagerly, not compiled")
    ap.add_argument("--hbm-tb-s", type=float, default=4.8)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/decode_profile.md"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, nothing written")
    args = ap.parse_args()
    chosen = families(args.families, FAMILIES)
    if args.smoke:
        args.params, args.batch, args.context, args.tokens, args.eager_step = 2e5, 2, 16, 2, True
        chosen = chosen[:2]
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    compiled = None if args.eager_step else "inductor"
    lines = [
        "# Where a decode step's GPU time goes",
        "",
        f"`{command()}` on {machine(gpu=dev.type == 'cuda')}. ~{args.params / 1e6:g}M parameters, vocab 256, "
        f"batch {args.batch} at {args.context:,} tokens of context, bf16 weights, the blocks' step "
        f"{'eager' if compiled is None else 'compiled (Inductor)'}, captured as a CUDA graph; {args.tokens} steps "
        f"profiled. *HBM floor*: the step's bytes ÷ {args.hbm_tb_s:g} TB/s.",
        "",
        "| family | µs / step | HBM floor µs | of bound | launches / step | " + "GPU µs by group |",
        "|---|---:|---:|---:|---:|---|",
    ]
    detail: list[str] = []
    for name in chosen:
        cfg = arch(FAMILIES[name], args.params)
        try:
            us, kernels = profile_decode(cfg, args.batch, args.context, args.tokens, compiled, dev)
        except torch.OutOfMemoryError:
            print(f"{name}: out of memory", flush=True)
            continue
        finally:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        floor = args.batch / hbm_bound(cfg, args.context, args.batch, args.hbm_tb_s) * 1e6
        groups: dict[str, float] = defaultdict(float)
        for k, (t, _) in kernels.items():
            groups[group_of(k)] += t
        launches = sum(n for _, n in kernels.values())
        by_group = ", ".join(f"{g} {t:.0f}" for g, t in sorted(groups.items(), key=lambda kv: -kv[1]))
        row = (f"| {name} | {us:.0f} | {floor:.0f} | {floor / us:.1%} | {launches:.0f} | {by_group} |")
        print(row, flush=True)
        lines.append(row)
        detail += [f"### {name} `{cfg.pattern}` d{cfg.d_model}: {us:.0f} µs per step", "",
                   "| kernel | group | launches / step | GPU µs / step |", "|---|---|---:|---:|"]
        for k, (t, n) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[: args.top]:
            short = k if len(k) <= 90 else k[:87] + "..."
            detail.append(f"| `{short}` | {group_of(k)} | {n:.0f} | {t:.1f} |")
        detail.append("")
    lines += ["", "## The top kernels of each", "", *detail]
    publish(args.out, lines, args.smoke)


if __name__ == "__main__":
    main()
