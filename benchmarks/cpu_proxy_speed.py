"""Training speed of ~1M-parameter proxies of each family on the CPU, with the reference ops.

    python benchmarks/cpu_proxy_speed.py            # batch 8, length 256, writes docs/benchmarks/cpu_proxy_speed.md
    python benchmarks/cpu_proxy_speed.py --smoke    # tiny sizes, a few seconds (CI)

Each family is four (mixer, MLP) layers; the width is solved for about 1M parameters by the presets'
scaling rule. A step is forward, backward and an AdamW update; the figure is the median over steps
after warm-up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# the project's `kernels` package, not this folder's kernels.py (a script's folder comes first)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from _report import command, machine, write
from proxy_throughput import train_tokens_per_s  # beside this script

from search_spaces import ArchConfig
from search_spaces.cost import param_counts
from search_spaces.scaling import scale
from workers.models import build_model

FAMILIES = {
    "attention": ArchConfig(pattern="*-" * 4, d_model=256, attention={"heads": 4}),
    "mamba2": ArchConfig(pattern="M-" * 4, d_model=256, mamba2={"d_state": 64, "head_dim": 32, "chunk_size": 64}),
    "mamba1": ArchConfig(pattern="m-" * 4, d_model=256),
    "mlstm": ArchConfig(pattern="X-" * 4, d_model=256, mlstm={"heads": 4}),
    "hybrid 1:3 (M2)": ArchConfig(
        pattern="M-M-M-*-", d_model=256, mamba2={"d_state": 64, "head_dim": 32, "chunk_size": 64}
    ),
}


def bench(cfg: ArchConfig, batch: int, seq_len: int, steps: int, warmup: int) -> float:
    """Median seconds of a training step (forward, backward, AdamW) on the CPU."""
    torch.manual_seed(0)
    return batch * seq_len / train_tokens_per_s(build_model(cfg), batch, seq_len, steps, warmup, torch.device("cpu"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--params", type=float, default=1e6)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/cpu_proxy_speed.md"))
    args = ap.parse_args()
    if args.smoke:
        args.batch, args.seq_len, args.params, args.steps = 2, 32, 1e5, 2
    rows = []
    for name, base in FAMILIES.items():
        cfg = scale(base, args.params, vocab_size=256)
        dt = bench(cfg, args.batch, args.seq_len, args.steps, warmup=1 if args.smoke else 3)
        rows.append((name, cfg.pattern, cfg.d_model, param_counts(cfg).total, 1 / dt, args.batch * args.seq_len / dt))
        size = f"d={cfg.d_model:4d} {rows[-1][3] / 1e6:5.2f}M"
        print(f"{name:16s} {cfg.pattern:10s} {size}  {1 / dt:6.2f} steps/s  {rows[-1][5]:8.0f} tok/s", flush=True)
    if args.smoke:
        return
    lines = [
        "# CPU training speed of ~1M-parameter proxies (reference ops)",
        "",
        f"`{command()}` on {machine()}, {torch.get_num_threads()} threads; batch {args.batch}, length {args.seq_len}, "
        f"fp32, forward + backward + AdamW, median of {args.steps} steps.",
        "",
        "| family | pattern | d_model | params | steps/s | tokens/s |",
        "|---|---|---:|---:|---:|---:|",
        *(f"| {n} | `{p}` | {d} | {c / 1e6:.2f}M | {s:.2f} | {t:,.0f} |" for n, p, d, c, s, t in rows),
        "",
    ]
    write(args.out, lines)


if __name__ == "__main__":
    main()
