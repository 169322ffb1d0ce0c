"""The conv's gradient kernel (`causal_conv1d_bwd_kernel_g`, the first of the backward's two kernels) at each of its
tuned configs, on a CUDA GPU.

    python benchmarks/conv_tiles.py             # the g kernel at each config; the forward and backward operators
    python benchmarks/conv_tiles.py --smoke     # CPU, interpreter: each tile's dw and db against the reference

Each program of the g kernel owns `G_TOKENS` tokens (they lay out the dw/db parts it writes) and walks them BT at a
time, so its sub-tile BT, its channels BC and its warps are tuned (`G_CONFIGS`); this times each config by
`triton.testing.do_bench` at the proxies' shapes, the conv input a slice of a wider projection as in the models,
bf16, SiLU and a bias; the forward and the backward operators beside, and the host's sums of the parts. The g
kernel's time leaves out the dx kernel that follows it. Runs before the g kernel walked its tokens (one 64 x 128
tile a program, the tile fixed): docs/benchmarks/logs/conv-tiles-2026-12-01.log and -2026-12-04.log.

The backward is these two kernels, the g kernel then the dx kernel, and has no other form: a one-kernel backward
(g recomputed at the W-1 tokens after each tile, never stored) was tried, and on an H200 (2026-12-04) took 1372 us
against the two kernels' 667 us at B32 T2048 C896 (docs/benchmarks/logs/conv-tiles-2026-12-04.log), so it was
removed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = ((32, 2048, 1024, 1936), (8, 8192, 1024, 1936), (32, 2048, 896, 1676))  # B, T, C, the projection's width


def launch_g(x, w, bias, dy, g, T: int, C: int, B: int, BT: int, BC: int, warps: int, TT: int,
             maxnreg: int | None = None):
    """The g kernel at one config (`maxnreg`: its cap on registers a thread); returns its dw and db parts."""
    import triton

    from kernels._triton import jit_function
    from kernels.conv1d import triton as conv

    nt = triton.cdiv(T, TT)
    dw_part, db_part = x.new_empty(B * nt, 4, C, dtype=torch.float32), x.new_empty(B * nt, C, dtype=torch.float32)
    jit_function(conv.causal_conv1d_bwd_kernel_g)[(nt, triton.cdiv(C, BC), B)](
        x, w, bias, None, dy, g, dw_part, db_part, T, C, x.stride(0), x.stride(1),
        W=4, HAS_BIAS=True, HAS_STATE=False, SILU=True, TT=TT, BT=BT, BC=BC, num_warps=warps,
        **({"maxnreg": maxnreg} if maxnreg else {}))
    return dw_part, db_part


def time_tiles(B: int, T: int, C: int, width: int) -> None:
    from triton.testing import do_bench

    from kernels.conv1d import triton as conv

    dev = "cuda"
    x = torch.randn(B, T, width, device=dev, dtype=torch.bfloat16)[..., :C]  # a slice of a projection
    w, bias = torch.randn(C, 4, device=dev), torch.randn(C, device=dev)
    dy = torch.randn(B, T, C, device=dev, dtype=torch.bfloat16)
    g = torch.empty(B, T, C, device=dev, dtype=torch.bfloat16)  # the g kernel writes g in the input dtype
    fwd = do_bench(lambda: conv.causal_conv1d_fwd_op(x, w, bias, None, True))
    bwd = do_bench(lambda: conv.causal_conv1d_bwd_op(dy, x, w, bias, None, True))
    print(f"B{B} T{T} C{C}: fwd op {fwd * 1e3:.0f} us, bwd op {bwd * 1e3:.0f} us", flush=True)
    for cfg in conv.G_CONFIGS:
        BT, BC, warps, cap = cfg.kwargs["BT"], cfg.kwargs["BC"], cfg.num_warps, cfg.maxnreg
        parts = launch_g(x, w, bias, dy, g, T, C, B, BT, BC, warps, conv.G_TOKENS, cap)
        t = do_bench(lambda BT=BT, BC=BC, warps=warps, cap=cap: launch_g(x, w, bias, dy, g, T, C, B, BT, BC, warps,
                                                                           conv.G_TOKENS, cap))
        sums = do_bench(lambda parts=parts: (parts[0].sum(0), parts[1].sum(0)))
        print(f"   kernel_g BT{BT:<4d} BC{BC:<4d} {warps} warps, registers {cap or 'uncapped':>8} {t * 1e3:6.0f} us  "
              f"(+ host sums {sums * 1e3:.0f} us)", flush=True)


def check_tiles() -> None:
    """Under the interpreter, tiny: at every tile the g kernel's parts sum to the reference's dw and db."""
    from kernels.conv1d import causal_conv1d

    B, T, C = 2, 40, 24
    x = torch.randn(B, T, 2 * C)[..., :C].requires_grad_()
    w, bias = torch.randn(C, 4, requires_grad=True), torch.randn(C, requires_grad=True)
    dy = torch.randn(B, T, C)
    ref = torch.autograd.grad(causal_conv1d(x, w, bias, activation="silu", backend="reference"), (x, w, bias), dy)
    for BT, BC, TT in ((8, 16, 16), (8, 8, 32), (4, 32, 8)):
        dw_part, db_part = launch_g(x.detach(), w.detach(), bias.detach(), dy, torch.empty(B, T, C), T, C, B,
                                    BT, BC, 4, TT)
        torch.testing.assert_close(dw_part.sum(0).t(), ref[1], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(db_part.sum(0), ref[2], rtol=1e-4, atol=1e-4)
        print(f"kernel_g BT{BT} BC{BC} over {TT} tokens a program: dw and db as the reference's", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU, Triton interpreter, tiny: the tiles checked, not timed")
    args = ap.parse_args()
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are imported
        check_tiles()
        return
    if not torch.cuda.is_available():
        sys.exit("conv_tiles.py times Triton kernels on a CUDA GPU; this machine has none (--smoke checks them)")
    for shape in SHAPES:
        time_tiles(*shape)


if __name__ == "__main__":
    main()
