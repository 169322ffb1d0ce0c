"""Mamba-2's input projection with its rows padded to a multiple of 16 elements, or not: the conv on a slice of
that projection, and the compiled proxy's training, side by side in one run on a CUDA GPU.

    python benchmarks/in_proj_padding.py [--families mamba2,hybrid 1:7]
    python benchmarks/in_proj_padding.py --smoke      # tiny, CPU, eager: both forms train

`2·d_inner + 2·G·N + H` is 1934 at the 25M proxy's d448: a row of the projection's output is not a multiple of
16 bytes, and the conv kernels read their slice of it element by element. The model pads the rows as it runs
(`workers.models.mamba2.Mamba2._project`); *unpadded* is the projection as it was. The conv rows time the
forward and backward operators (`triton.testing.do_bench`) on a slice of rows 1934 and 1936 wide; the training
rows are `proxy_throughput.py`'s measurement (whole model compiled, B32 T2048, median of 6 steps after 3).
Output of the run that led to the padding: docs/benchmarks/logs/in-proj-padding-2026-12-01.log.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import families, gpu_or_smoke
from proxy_evidence import arch
from proxy_throughput import FAMILIES, train_timing

from workers.models import build_model
from workers.models.mamba2 import Mamba2


def unpadded_project(self: Mamba2, u: torch.Tensor) -> torch.Tensor:
    """`Mamba2._project` as it was: the projection's output as wide as its weight."""
    return F.linear(u, self.in_proj.weight)


def time_conv(dev: torch.device) -> None:
    from triton.testing import do_bench

    from kernels.conv1d.triton import causal_conv1d_bwd_op, causal_conv1d_fwd_op

    C = 1024  # d_inner + 2·G·N at d448
    for width in (1934, 1936):
        x = torch.randn(32, 2048, width, device=dev, dtype=torch.bfloat16)[..., 448 : 448 + C]
        w, bias = torch.randn(C, 4, device=dev), torch.randn(C, device=dev)
        dy = torch.randn(32, 2048, C, device=dev, dtype=torch.bfloat16)
        f = do_bench(lambda x=x, w=w, bias=bias: causal_conv1d_fwd_op(x, w, bias, None, True))
        b = do_bench(lambda x=x, w=w, bias=bias, dy=dy: causal_conv1d_bwd_op(dy, x, w, bias, None, True))
        print(f"conv C{C} row stride {width}: fwd {f * 1e3:.0f} us, bwd {b * 1e3:.0f} us", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="mamba2")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, eager")
    args = ap.parse_args()
    dev = gpu_or_smoke(args.smoke)
    if not args.smoke:
        time_conv(dev)
    params, T, tokens, steps, warmup = (2e5, 32, 64, 1, 1) if args.smoke else (2.5e7, 2048, 65536, 6, 3)
    padded_project = Mamba2._project
    try:
        for fam in families(args.families, FAMILIES):
            cfg = arch(FAMILIES[fam], params)
            for name, project in (("unpadded", unpadded_project), ("padded to 16", padded_project)):
                Mamba2._project = project
                torch.manual_seed(0)
                model = build_model(cfg).to(dev)
                if not args.smoke:
                    torch._dynamo.reset()
                    model = torch.compile(model)
                tps, first = train_timing(model, tokens // T, T, steps, warmup, dev)
                print(f"{fam} T{T} {name:14s} {tps / 1e6:.3f} M tok/s (first step {first:.0f} s)", flush=True)
    finally:
        Mamba2._project = padded_project


if __name__ == "__main__":
    main()
