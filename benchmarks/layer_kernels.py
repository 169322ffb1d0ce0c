"""One Mamba-2 layer's kernels at a proxy's shapes, for Nsight Compute, and its GEMMs timed at each padding.

    python benchmarks/layer_kernels.py --gemms                     # on a CUDA GPU: the GEMM table
    ncu --profile-from-start off --clock-control none --section SpeedOfLight --section Occupancy \\
        --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats \\
        python benchmarks/layer_kernels.py --ncu                    # the conv's and the SSD's kernels, once each
    python benchmarks/layer_kernels.py --time [--conv-before FILE --ssd-before FILE]  # their operators, timed
    python benchmarks/layer_kernels.py --smoke                     # tiny, CPU: every part runs

The layer is the 25M hybrid 1:7 proxy's (`proxy_throughput.py`: d448, so d_inner 896, 14 heads of 64, d_state 64,
one group, the conv over 1024 channels) at B32 T2048, bf16, laid out as the model lays it out: x, B and C slices of
the conv's output, the conv's input a slice of the padded in_proj output. `--ncu` runs the conv and the SSD forward
and backward once to tune them, then once more between `cudaProfilerStart` and `cudaProfilerStop`, which is what
`ncu --profile-from-start off` measures. `--gemms` times every GEMM of one training step of that layer (forward,
input gradient, weight gradient; `triton.testing.do_bench`, median) and the in_proj's at each row padding, with its
rate in TFLOP/s, beside the plain Transformer's GEMMs at d512.

`--time` times the conv's operators (forward, backward) and the SSD's (forward, forward+backward; `do_bench`,
median), the SSD on x, B and C cut from the conv's output as the model cuts them; `--conv-before FILE` and
`--ssd-before FILE` also time an earlier `kernels/conv1d/triton.py` or `kernels/ssd/triton.py` (its operators
renamed out of `hybrid_nas::`) on the same inputs. Logs: docs/benchmarks/logs/layer-kernels-*-2026-12-04.*
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NamedTuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels.conv1d import causal_conv1d
from kernels.ssd import ssd


class Layer(NamedTuple):
    b: int
    T: int
    d: int  # d_model
    di: int  # d_inner
    H: int
    P: int
    N: int  # d_state
    W: int  # d_conv


HYBRID = Layer(32, 2048, 448, 896, 14, 64, 64, 4)
SMOKE = Layer(2, 64, 64, 128, 2, 64, 16, 4)


def layer_inputs(shape: Layer, dev, dtype=torch.bfloat16):
    b, T, di, H, N, W = shape.b, shape.T, shape.di, shape.H, shape.N, shape.W
    width = 2 * di + 2 * N + H
    padded = width + (-width % 16)
    zxbcdt = torch.randn(b, T, padded, device=dev, dtype=dtype)
    xbc = zxbcdt[..., di:2 * di + 2 * N].requires_grad_(False)
    w = (torch.randn(di + 2 * N, W, device=dev) * 0.3).to(dtype).requires_grad_()
    bias = torch.zeros(di + 2 * N, device=dev, dtype=dtype, requires_grad=True)
    dt = torch.nn.functional.softplus(torch.randn(b, T, H, device=dev) - 2).requires_grad_()
    A = -torch.rand(H, device=dev) - 0.5
    D = torch.ones(H, device=dev, requires_grad=True)
    return xbc.detach().requires_grad_(), w, bias, dt, A.requires_grad_(), D


def step(shape: Layer, xbc, w, bias, dt, A, D, backend):
    b, T, di, H, P, N = shape.b, shape.T, shape.di, shape.H, shape.P, shape.N
    y = causal_conv1d(xbc, w, bias, activation="silu", backend=backend)
    x, B, C = y.split([di, N, N], dim=-1)
    out = ssd(x.reshape(b, T, H, P), dt, A, B.reshape(b, T, 1, N), C.reshape(b, T, 1, N), D=D, backend=backend)
    out.sum().backward()


def run_layer(shape, dev, backend, profile: bool) -> None:
    args = layer_inputs(shape, dev)
    for _ in range(2):  # autotuning, then a warm run
        step(shape, *args, backend)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    if profile:
        torch.cuda.cudart().cudaProfilerStart()
    step(shape, *args, backend)
    if profile:
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStop()


def load_before(path: str, name: str):
    """An earlier kernel module from its file, under a name of its own (its operators renamed out of
    `hybrid_nas::` when it was copied: `sed s/hybrid_nas::/hybrid_nas_before::/`)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_layer(shape: Layer, dev, conv_before: str | None, ssd_before: str | None, smoke: bool) -> None:
    from triton.testing import do_bench

    from kernels.conv1d import triton as conv
    from kernels.ssd import triton as ssd_now

    b, T, di, H, P, N = shape.b, shape.T, shape.di, shape.H, shape.P, shape.N
    xbc, w, bias, dt, A, D = layer_inputs(shape, dev)
    w, bias = w.detach(), bias.detach()
    dy = torch.randn_like(xbc)

    def report(what: str, first, second, names=("forward", "forward+backward")) -> None:
        if smoke:
            second()
            print(f"{what}: ran", flush=True)
            return
        print(f"{what}: {names[0]} {do_bench(first, return_mode='median') * 1e3:.0f} µs, {names[1]} "
              f"{do_bench(second, return_mode='median') * 1e3:.0f} µs", flush=True)

    print(f"conv B{b} T{T} C{di + 2 * N}, a slice of rows {xbc.stride(1)} wide; SSD B{b} T{T} H{H} P{P} N{N}, x, B "
          "and C slices of the conv's output", flush=True)
    convs = [("now", conv)] + ([("before", load_before(conv_before, "conv_before"))] if conv_before else [])
    for name, mod in convs:
        report(f"conv {name}", lambda mod=mod: mod.causal_conv1d_fwd_op(xbc.detach(), w, bias, None, True),
               lambda mod=mod: mod.causal_conv1d_bwd_op(dy, xbc.detach(), w, bias, None, True), ("forward", "backward"))
    y = xbc.detach().clone().requires_grad_()  # the conv's output, cut into x, B and C
    x, Bm, Cm = y.split([di, N, N], dim=-1)
    x, Bm, Cm = x.view(b, T, H, P), Bm.view(b, T, 1, N), Cm.view(b, T, 1, N)
    ssds = [("now", ssd_now)] + ([("before", load_before(ssd_before, "ssd_before"))] if ssd_before else [])
    for name, mod in ssds:
        if smoke:
            fwd = lambda: ssd(x, dt, A, Bm, Cm, D=D, backend="reference")  # noqa: E731
        else:
            fwd = lambda mod=mod: mod.ssd_triton(x, dt, A, Bm, Cm, D=D, chunk_size=64)[0]  # noqa: E731
        report(f"ssd {name}", fwd, lambda fwd=fwd: torch.autograd.grad(fwd().sum(), (y,)))


def gemm_rows(shape, dev, smoke: bool) -> list[tuple[str, int, int, int]]:
    """(name, M, N, K) of each linear layer's forward GEMM: M tokens, N outputs, K inputs."""
    b, T, d, di, H, N = shape.b, shape.T, shape.d, shape.di, shape.H, shape.N
    width = 2 * di + 2 * N + H
    rows = [(f"in_proj, {width} wide (pad {p})", b * T, width + (-width % p if p > 1 else 0), d)
            for p in (1, 16, 64, 128)]
    rows += [("out_proj", b * T, d, di), ("MLP gate+up (d448, 2×1408)", b * T, 2 * 1408, d),
             ("MLP down (d448)", b * T, d, 1408), ("attention qkv (d448)", b * T, 3 * d, d),
             ("anchor qkv (d512)", b * T, 1536, 512), ("anchor gate+up (d512)", b * T, 2816, 512),
             ("anchor down (d512)", b * T, 512, 1408), ("anchor proj (d512)", b * T, 512, 512)]
    return rows


def time_gemms(shape, dev, smoke: bool) -> None:
    from triton.testing import do_bench

    print("| GEMM | M×N×K | forward | input grad | weight grad | TFLOP/s (fwd, dX, dW) |")
    print("|---|---|---:|---:|---:|---|")
    for name, M, N, K in gemm_rows(shape, dev, smoke):
        x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
        w = torch.randn(N, K, device=dev, dtype=torch.bfloat16)
        dy = torch.randn(M, N, device=dev, dtype=torch.bfloat16)
        if smoke:
            x @ w.t(), dy @ w, dy.t() @ x
            print(f"| {name} | {M}×{N}×{K} | ran | ran | ran | – |")
            continue
        products = (lambda x=x, w=w: x @ w.t(), lambda dy=dy, w=w: dy @ w, lambda dy=dy, x=x: dy.t() @ x)
        ms = [do_bench(f, warmup=25, rep=100, return_mode="median") for f in products]
        tf = [2 * M * N * K / (m * 1e-3) / 1e12 for m in ms]
        print(f"| {name} | {M}×{N}×{K} | {ms[0]*1e3:.0f} µs | {ms[1]*1e3:.0f} µs | {ms[2]*1e3:.0f} µs | "
              f"{tf[0]:.0f}, {tf[1]:.0f}, {tf[2]:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ncu", action="store_true", help="the layer's conv and SSD, once, inside a profiler range")
    ap.add_argument("--gemms", action="store_true", help="time the layer's GEMMs")
    ap.add_argument("--time", action="store_true", help="time the conv's and the SSD's operators")
    ap.add_argument("--conv-before", help="an earlier kernels/conv1d/triton.py to time beside (--time)")
    ap.add_argument("--ssd-before", help="an earlier kernels/ssd/triton.py to time beside (--time)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (reference ops; interpreter-free)")
    args = ap.parse_args()
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before the Triton kernels are imported
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("layer_kernels.py needs a CUDA GPU; --smoke runs it on the CPU")
    dev = torch.device("cpu" if args.smoke else "cuda")
    shape = SMOKE if args.smoke else HYBRID
    if args.ncu or args.smoke:
        run_layer(shape, dev, "reference" if args.smoke else "triton", profile=args.ncu and not args.smoke)
        print("layer ran: conv and SSD, forward and backward", flush=True)
    if args.time or args.smoke:
        time_layer(shape, dev, args.conv_before, args.ssd_before, args.smoke)
    if args.gemms or args.smoke:
        time_gemms(shape, dev, args.smoke)


if __name__ == "__main__":
    main()
