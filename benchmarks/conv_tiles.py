"""The conv's backward kernels at nine fixed tiles, on a CUDA GPU: the gradient kernel of the two-kernel backward
(`causal_conv1d_bwd_kernel_g`) and the one-kernel backward (`causal_conv1d_bwd_kernel_fused`, KERNELS_CONV_BWD=fused).

    python benchmarks/conv_tiles.py                       # both kernels; the backward operator in each form
    python benchmarks/conv_tiles.py --kernels fused
    python benchmarks/conv_tiles.py --smoke     # CPU, interpreter: each tile's dw, db (and dx) against the reference

Their tiles are fixed rather than tuned (the dw/db parts they write are laid out by BT), so this is how they are
chosen: each (BT, BC) timed by `triton.testing.do_bench` at the proxies' shapes, the conv input a slice of a
wider projection as in the models, bf16, SiLU and a bias; the forward and the backward operators beside (the
backward in each form), and the host's sums of the parts. The g kernel's time leaves out the dx kernel that
follows it; the fused kernel's includes dx. Output of the run that chose 64 x 128 for the g kernel:
docs/benchmarks/logs/conv-tiles-2026-12-01.log.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = ((32, 2048, 896, 1676), (8, 8192, 896, 1676), (32, 2048, 1664, 3200))  # B, T, C, the projection's width
TILES = ((64, 64), (128, 64), (64, 128), (32, 128), (128, 32), (32, 64), (256, 32), (16, 256), (32, 256))
KERNELS = {"g": "causal_conv1d_bwd_kernel_g", "fused": "causal_conv1d_bwd_kernel_fused"}


def time_tiles(B: int, T: int, C: int, width: int, kernels: list[str]) -> None:
    import triton
    from triton.testing import do_bench

    from kernels.conv1d import triton as conv

    dev = "cuda"
    x = torch.randn(B, T, width, device=dev, dtype=torch.bfloat16)[..., :C]  # a slice of a projection
    w, bias = torch.randn(C, 4, device=dev), torch.randn(C, device=dev)
    dy = torch.randn(B, T, C, device=dev, dtype=torch.bfloat16)
    outs = {"g": torch.empty(B, T, C, device=dev, dtype=torch.float32),  # the g kernel writes g in fp32
            "fused": torch.empty(B, T, C, device=dev, dtype=torch.bfloat16)}  # the fused kernel dx, as x
    fwd = do_bench(lambda: conv.causal_conv1d_fwd_op(x, w, bias, None, True))
    ops = []
    for form in ("split", "fused"):
        os.environ["KERNELS_CONV_BWD"] = form
        ms = do_bench(lambda: conv.causal_conv1d_bwd_op(dy, x, w, bias, None, True))
        ops.append(f"bwd op ({form}) {ms * 1e3:.0f} us")
    os.environ.pop("KERNELS_CONV_BWD")
    print(f"B{B} T{T} C{C}: fwd op {fwd * 1e3:.0f} us, {', '.join(ops)}", flush=True)
    for name, (BT, BC) in itertools.product(kernels, TILES):
        kernel, out = getattr(conv, KERNELS[name]), outs[name]
        nt = triton.cdiv(T, BT)
        dw_part = torch.empty(B * nt, 4, C, device=dev)
        db_part = torch.empty(B * nt, C, device=dev)

        def launch(kernel=kernel, out=out, BT=BT, BC=BC, nt=nt, dw_part=dw_part, db_part=db_part):
            kernel[(nt, triton.cdiv(C, BC), B)](
                x, w, bias, None, dy, out, dw_part, db_part, T, C, x.stride(0), x.stride(1),
                W=4, HAS_BIAS=True, HAS_STATE=False, SILU=True, BT=BT, BC=BC)

        t = do_bench(launch)
        sums = do_bench(lambda dw_part=dw_part, db_part=db_part: (dw_part.sum(0), db_part.sum(0)))
        print(f"   kernel_{name:<5s} BT{BT:<4d} BC{BC:<4d} {t * 1e3:6.0f} us  (+ host sums {sums * 1e3:.0f} us)",
              flush=True)


def check_tiles(kernels: list[str]) -> None:
    """Under the interpreter, tiny: at every tile each kernel's parts sum to the reference's dw and db, and the fused
    kernel's dx is the reference's."""
    import triton

    from kernels.conv1d import causal_conv1d
    from kernels.conv1d import triton as conv

    B, T, C = 2, 40, 24
    x = torch.randn(B, T, 2 * C)[..., :C].requires_grad_()
    w, bias = torch.randn(C, 4, requires_grad=True), torch.randn(C, requires_grad=True)
    dy = torch.randn(B, T, C)
    ref = torch.autograd.grad(causal_conv1d(x, w, bias, activation="silu", backend="reference"), (x, w, bias), dy)
    for name, (BT, BC) in itertools.product(kernels, ((16, 16), (32, 8), (8, 32))):
        nt = triton.cdiv(T, BT)
        dw_part, db_part, out = torch.empty(B * nt, 4, C), torch.empty(B * nt, C), torch.empty(B, T, C)
        getattr(conv, KERNELS[name])[(nt, triton.cdiv(C, BC), B)](
            x.detach(), w.detach(), bias.detach(), None, dy, out, dw_part, db_part, T, C,
            x.stride(0), x.stride(1), W=4, HAS_BIAS=True, HAS_STATE=False, SILU=True, BT=BT, BC=BC)
        torch.testing.assert_close(dw_part.sum(0).t(), ref[1], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(db_part.sum(0), ref[2], rtol=1e-4, atol=1e-4)
        if name == "fused":
            torch.testing.assert_close(out, ref[0], rtol=1e-4, atol=1e-4)
        print(f"kernel_{name} BT{BT} BC{BC}: {'dx, ' if name == 'fused' else ''}dw and db as the reference's",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU, Triton interpreter, tiny: the tiles checked, not timed")
    ap.add_argument("--kernels", default="g,fused", help=f"comma-separated, of: {', '.join(KERNELS)}")
    args = ap.parse_args()
    kernels = [k for k in args.kernels.split(",") if k]
    if not kernels or any(k not in KERNELS for k in kernels):
        ap.error(f"--kernels {args.kernels!r}: use some of {', '.join(KERNELS)} (comma-separated)")
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are imported
        check_tiles(kernels)
        return
    if not torch.cuda.is_available():
        sys.exit("conv_tiles.py times Triton kernels on a CUDA GPU; this machine has none (--smoke checks them)")
    for shape in SHAPES:
        time_tiles(*shape, kernels)


if __name__ == "__main__":
    main()
