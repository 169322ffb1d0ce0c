"""The attention proxy beside proxy_throughput.py's anchor, compiled, with one thing changed at a time: the
anchor at the proxy's width (d448, 7 heads), the proxy with RoPE and without (NoPE). On a CUDA GPU:

    python benchmarks/attention_ab.py [--lengths 2048,8192]
    python benchmarks/attention_ab.py --smoke      # tiny, CPU, eager (CI)

Training tokens/s as `proxy_throughput.py` measures them (whole model compiled, 65,536 tokens a step, median of
6 steps after 3). Output: docs/benchmarks/logs/attention-ab-*-2026-12-01.log.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import gpu_or_smoke
from proxy_evidence import arch
from proxy_throughput import FAMILIES, PlainTransformer, plain_transformer, train_timing

from workers.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="2048")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, eager")
    args = ap.parse_args()
    dev = gpu_or_smoke(args.smoke)
    params, tokens, d, steps, warmup = (2e5, 64, 64, 1, 1) if args.smoke else (2.5e7, 65536, 448, 6, 3)
    cfg = arch(FAMILIES["attention"], params)
    nope = cfg.model_copy(update={"attention": cfg.attention.model_copy(update={"pos": "nope"})})
    variants = {
        f"anchor d{plain_transformer(params, 256).embed.embedding_dim}": lambda: plain_transformer(params, 256),
        f"anchor d{d} {d // 64} heads": lambda: PlainTransformer(256, d, 8, d // 64),
        "proxy attention (rope)": lambda: build_model(cfg),
        "proxy attention nope": lambda: build_model(nope),
    }
    for T in [32] if args.smoke else [int(x) for x in args.lengths.split(",")]:
        for name, make in variants.items():
            torch.manual_seed(0)
            model = make().to(dev)
            if not args.smoke:
                torch._dynamo.reset()
                model = torch.compile(model)
            tps, first = train_timing(model, max(1, tokens // T), T, steps, warmup, dev)
            print(f"T{T} {name:28s} {tps / 1e6:.3f} M tok/s (first step {first:.0f} s)", flush=True)
            del model
            if dev.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
