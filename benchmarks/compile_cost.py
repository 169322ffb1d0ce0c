"""What compiling a proxy costs and gains: whole-model `torch.compile` against each block compiled
(`compile: true` in a profile, `workers.models.compile_blocks`), from a cold compile cache.

    python benchmarks/compile_cost.py                     # on a CUDA GPU: docs/benchmarks/compile_cost.md
    python benchmarks/compile_cost.py --families mamba2
    python benchmarks/compile_cost.py --smoke             # tiny, CPU, aot_eager, nothing written (CI)

Each family is `proxy_throughput.py`'s (the proxy-evidence pattern scaled to `--params`, vocab 256), trained
as there (bf16 autocast, fused AdamW, B = tokens / T). Inductor's and Triton's caches start empty in a fresh
folder, so the first step's time is what a worker's first trial of that shape pays. *next model*: a second
model of the same architecture compiled by blocks in the same process (a trial's next task, or the next trial
of that width): what the process's own cache saves. The break-even is how many training tokens the compiled
model must train before its faster steps repay the compile: first step ÷ (1/eager − 1/compiled tok/s).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="hybrid 1:7,mamba2")
    ap.add_argument("--params", type=float, default=2.5e7)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--tokens-per-step", type=int, default=65536)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--backend", default="inductor")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/compile_cost.md"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, aot_eager, nothing written")
    args = ap.parse_args()
    if args.smoke:
        args.params, args.length, args.tokens_per_step, args.steps, args.warmup = 2e5, 32, 64, 2, 1
        args.backend, args.families = "aot_eager", args.families.split(",")[0]
    cache = tempfile.mkdtemp(prefix="compile-cost-")  # cold caches, set before torch and triton are imported
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache, "inductor")
    os.environ["TRITON_CACHE_DIR"] = os.path.join(cache, "triton")

    import torch
    from _report import command, families, machine, write
    from proxy_evidence import arch
    from proxy_throughput import FAMILIES, train_timing

    from workers.models import build_model, compile_blocks

    chosen = families(args.families, FAMILIES)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = max(1, args.tokens_per_step // args.length)

    def timing(cfg, how: str) -> tuple[float, float]:
        torch.manual_seed(0)
        model = build_model(cfg).to(dev)
        if how == "whole":
            model = torch.compile(model, backend=args.backend)
        elif how == "blocks":
            model = compile_blocks(model, backend=args.backend)
        return train_timing(model, batch, args.length, args.steps, args.warmup, dev)

    lines = [
        "# What compiling a proxy costs and gains",
        "",
        f"`{command()}` on {machine(gpu=dev.type == 'cuda')}. ~{args.params / 1e6:g}M parameters, vocab 256, "
        f"B{batch} T{args.length}, {'bf16 autocast, fused AdamW' if dev.type == 'cuda' else 'fp32'}, backend "
        f"{args.backend}; median of {args.steps} steps after {args.warmup}; compile caches cold at the start "
        "(eager first warms the Triton kernels of the recurrent ops, which every column shares).",
        "",
        "| family | eager tok/s | whole: first step | whole tok/s | blocks: first step | blocks tok/s | "
        "blocks, next model: first step | break-even, blocks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in chosen:
        cfg = arch(FAMILIES[name], args.params)
        torch._dynamo.reset()
        eager, _ = timing(cfg, "eager")
        blocks_rate, blocks_first = timing(cfg, "blocks")
        _, next_first = timing(cfg, "blocks")
        torch._dynamo.reset()
        whole_rate, whole_first = timing(cfg, "whole")
        gain = 1 / eager - 1 / blocks_rate
        even = f"{blocks_first / gain / 1e6:.0f} M tokens" if gain > 0 else "never"
        row = (f"| {name} | {eager / 1e6:.3f} M | {whole_first:.0f} s | {whole_rate / 1e6:.3f} M "
               f"| {blocks_first:.0f} s | {blocks_rate / 1e6:.3f} M | {next_first:.1f} s | {even} |")
        print(row, flush=True)
        lines.append(row)
        if not args.smoke:
            write(args.out, [*lines, ""])
    if args.smoke:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
