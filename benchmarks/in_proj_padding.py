"""Mamba-2's input projection with its rows padded to a multiple of 16 elements, or not, or split in two: the conv
on a slice of that projection, and the compiled proxy's training, side by side in one run on a CUDA GPU.

    python benchmarks/in_proj_padding.py [--families mamba2,hybrid 1:7]
    python benchmarks/in_proj_padding.py --smoke      # tiny, CPU, eager: both forms train

`2·d_inner + 2·G·N + H` is 1934 at the 25M proxy's d448: a row of the projection's output is not a multiple of
16 bytes, and the conv kernels read their slice of it element by element. The model pads the rows as it runs
(`workers.models.mamba2.Mamba2._project`); *unpadded* is the projection as it was. The conv rows time the
forward and backward operators (`triton.testing.do_bench`) on a slice of rows 1934 and 1936 wide; the training
rows are `proxy_throughput.py`'s measurement (whole model compiled, B32 T2048, median of 6 steps after 3).
Output of the run that led to the padding: docs/benchmarks/logs/in-proj-padding-2026-12-01.log.

*xbc apart* (`--split`) projects the conv's input with its own GEMM and z and dt with another, from the same weight
(its rows gathered each step): the conv reads a contiguous [B, T, d_inner + 2·G·N] tensor, and in the backward its
gradient goes straight into its GEMMs, where the one projection's backward concatenates it with dz and ddt into a
[B, T, 1936] gradient first (Inductor's largest kernel of the compiled hybrid's step besides the GEMMs, 2.4 ms of 47,
fused with the gated norm's backward: docs/benchmarks/proxy_throughput.md, call 22). `--smoke` checks that each form's
loss and in_proj gradient equal the model's own.
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


def split_project(self: Mamba2, u: torch.Tensor, conv_state: torch.Tensor | None):
    """`Mamba2._split` with the conv's input projected apart from z and dt (two GEMMs, one weight)."""
    gn, w = self.n_groups * self.d_state, self.in_proj.weight
    z_end, xbc_end = self.d_inner, 2 * self.d_inner + 2 * gn
    xbc = F.linear(u, w[z_end:xbc_end])
    z, dt = F.linear(u, torch.cat([w[:z_end], w[xbc_end:]])).split([self.d_inner, self.n_heads], dim=-1)
    xbc, conv_state = self.conv(xbc, conv_state)
    x, B, C = xbc.split([self.d_inner, gn, gn], dim=-1)
    dt = F.softplus(dt.float() + self.dt_bias)
    return z, x, B, C, dt, conv_state


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
    ap.add_argument("--split", action="store_true", help="also train with the conv's input projected apart")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, eager")
    args = ap.parse_args()
    dev = gpu_or_smoke(args.smoke)
    if not args.smoke:
        time_conv(dev)
    params, T, tokens, steps, warmup = (2e5, 32, 64, 1, 1) if args.smoke else (2.5e7, 2048, 65536, 6, 3)
    padded_project, own_split = Mamba2._project, Mamba2._split
    forms = [("unpadded", unpadded_project, own_split), ("padded to 16", padded_project, own_split)]
    if args.split or args.smoke:
        forms.append(("xbc apart", padded_project, split_project))
    try:
        for fam in families(args.families, FAMILIES):
            cfg = arch(FAMILIES[fam], params)
            if args.smoke:
                same_as_the_model(cfg, forms)
            for name, project, split in forms:
                Mamba2._project, Mamba2._split = project, split
                torch.manual_seed(0)
                model = build_model(cfg).to(dev)
                if not args.smoke:
                    torch._dynamo.reset()
                    model = torch.compile(model)
                tps, first = train_timing(model, tokens // T, T, steps, warmup, dev)
                print(f"{fam} T{T} {name:14s} {tps / 1e6:.3f} M tok/s (first step {first:.0f} s)", flush=True)
    finally:
        Mamba2._project, Mamba2._split = padded_project, own_split


def same_as_the_model(cfg, forms) -> None:
    """Each form's loss and in_proj gradients equal the model's own (CPU, fp32): the forms differ in speed only."""
    idx = torch.randint(0, cfg.vocab_size, (2, 33))
    results = []
    for _, project, split in forms:
        Mamba2._project, Mamba2._split = project, split
        torch.manual_seed(0)
        model = build_model(cfg)
        loss = model(idx[:, :-1], idx[:, 1:]).loss
        loss.backward()
        grads = [m.in_proj.weight.grad for m in model.modules() if isinstance(m, Mamba2)]
        results.append((loss.detach(), grads))
    for (name, _, _), (loss, grads) in zip(forms[1:], results[1:]):
        torch.testing.assert_close(loss, results[0][0], rtol=1e-5, atol=1e-6)
        for g, ref in zip(grads, results[0][1], strict=True):
            torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-6)
        print(f"{name}: loss and in_proj gradients as the model's own", flush=True)


if __name__ == "__main__":
    main()
