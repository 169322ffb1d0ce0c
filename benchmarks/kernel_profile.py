"""Where an op's time goes: the GPU time of each kernel of one forward and one forward+backward.

    python benchmarks/kernel_profile.py --op gated_delta                 # on a CUDA GPU
    python benchmarks/kernel_profile.py --op ssd --shape 8,8192,16,64,128,1   # Mamba-2's SSD (B,T,H,P,N,G)
    python benchmarks/kernel_profile.py --op mlstm --shape 4,8192,4,128,256   # xLSTM's mLSTM (B,T,H,K,V)
    python benchmarks/kernel_profile.py --op gated_delta --channel       # KDA's decay per key channel
    python benchmarks/kernel_profile.py --variants blocks,tiles:split    # several forms of the wy kernel
    python benchmarks/kernel_profile.py --wall --fla-src .anchors/fla_src  # and where the wall time goes
    python benchmarks/kernel_profile.py --smoke                          # tiny, CPU interpreter, no timing (CI)

The shape is `benchmarks/kernels.py`'s first of the op unless `--shape` says otherwise (bf16 inputs); each kernel's
time is the mean over `--steps` profiled steps after as many warm-up steps (autotuning included), from
torch.profiler.

`--wall` also sets each step's wall time (the median of `triton.testing.do_bench`, as kernels.py times it)
beside the sum of its kernels and the host's time to issue it (the mean over `--steps` calls made without
waiting for the GPU): a wall time above the kernels' sum, with a host time near it, is launch overhead.
`--host-profile N` prints the N functions where the host spends most of the forward's time (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _report import DELTA_VARIANTS_HELP, delta_variants, use_delta_variant


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", choices=["gated_delta", "ssd", "mlstm"], default="gated_delta")
    ap.add_argument("--channel", action="store_true", help="a decay per key channel (KDA)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--shape", help="B,T,H,K,V (gated_delta; default 8,2048,16,128,128), B,T,H,P,N,G (ssd; "
                                    "default 16,2048,16,64,64,1) or B,T,H,K,V (mlstm; default 16,2048,4,128,256): "
                                    "kernels.py's first shape of the op")
    ap.add_argument("--forward", action="store_true", help="the forwards only (no backward to tune and time)")
    ap.add_argument("--fla-src", help="a folder holding fla/ (the fla-core wheel unpacked): also profile fla's "
                                      "chunk_gated_delta_rule forward on the same inputs")
    ap.add_argument("--variants", default="", help=DELTA_VARIANTS_HELP + "; the forward of each is profiled, "
                                                   "forward+backward of the first (default: the environment's "
                                                   "form, or the kernels' default)")
    ap.add_argument("--wall", action="store_true", help="also each step's wall time and the host's time to issue it")
    ap.add_argument("--host-profile", type=int, default=0, metavar="N",
                    help="print the N functions where the host spends most of a forward's time (cProfile)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU interpreter, no timing")
    args = ap.parse_args()
    if args.op in PLAIN and (args.wall or args.variants or args.fla_src or args.channel or args.host_profile):
        raise SystemExit(f"--op {args.op} profiles the forward and forward+backward only: drop --wall, --variants, "
                         "--fla-src, --channel and --host-profile")

    import torch

    if not torch.cuda.is_available():
        if not args.smoke:
            raise SystemExit("kernel_profile.py times GPU kernels: run it on a machine with a CUDA GPU, "
                             "or use --smoke")
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
    import torch.nn.functional as F

    from kernels.delta import gated_delta

    if args.op in PLAIN:
        profile_plain(args)
        return
    args.shape = args.shape or "8,2048,16,128,128"
    try:
        B, T, H, K, V = (1, 37, 2, 16, 16) if args.smoke else (int(x) for x in args.shape.split(","))
    except ValueError:
        raise SystemExit(f"--shape {args.shape!r}: five positive integers B,T,H,K,V (8,2048,16,128,128)") from None
    torch.manual_seed(0)
    dev, bf16 = ("cpu" if args.smoke else "cuda"), torch.bfloat16
    t = {  # as benchmarks/kernels.py makes them: bf16 q, k, v, beta; the log decay in fp32
        "q": F.normalize(torch.randn(B, T, H, K, device=dev), dim=-1).to(bf16),
        "k": F.normalize(torch.randn(B, T, H, K, device=dev), dim=-1).to(bf16),
        "v": torch.randn(B, T, H, V, device=dev).to(bf16),
        "g": F.logsigmoid(torch.randn((B, T, H, K) if args.channel else (B, T, H), device=dev) + 3),
        "beta": torch.sigmoid(torch.randn(B, T, H, device=dev)).to(bf16),
    }
    for x in t.values():
        x.requires_grad_()
    chunk = 16 if args.channel else 64
    variants = delta_variants(args.variants)

    def fwd(variant: str = variants[0]):
        use_delta_variant(variant)
        return gated_delta(**t, chunk_size=chunk, backend="triton")

    dy = torch.randn_like(fwd())

    def fwd_bwd():  # the gradients returned, not added into .grad: no accumulation kernels in the profile
        torch.autograd.grad(fwd(), list(t.values()), dy)

    if args.smoke:
        for variant in variants:
            fwd(variant)
        fwd_bwd()
        print(f"smoke: forward ({', '.join(x or 'default' for x in variants)}) and backward ran; nothing timed")
        return
    steps = [(f"forward [{variant}]" if variant else "forward", lambda variant=variant: fwd(variant))
             for variant in variants]
    if not args.forward:
        steps.append(("forward+backward", fwd_bwd))
    if args.wall:  # the launches alone: no checks, no operator, no autograd around them
        from kernels.delta.triton import delta_fwd

        leaves = {k: x.detach() for k, x in t.items()}

        def launches():
            return delta_fwd(**leaves, S0=None, scale=K**-0.5, chunk_size=chunk)

        steps.append(("forward, kernels alone (delta_fwd)", launches))
    if args.fla_src and not args.channel:  # its forward only: its gated backward refuses Triton 3.4-3.7.0 on Hopper
        sys.path.insert(0, args.fla_src)
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule

        def fla_fwd():
            return chunk_gated_delta_rule(**t, scale=K**-0.5, output_final_state=True)

        steps.append(("fla chunk_gated_delta_rule forward", fla_fwd))
    walls = []
    for name, step in steps:
        total = print_profile(f"{args.op} {name}, B{B} T{T} H{H} K{K} V{V}, decay per "
                              f"{'key channel' if args.channel else 'head'}, bf16", step, args.steps)
        if args.wall:
            walls.append((name, total, *wall_and_host(step, args.steps)))
    if walls:
        print(f"## Wall time, B{B} T{T} H{H} K{K} V{V}, bf16 (median of do_bench; host: the mean time to issue "
              f"a call)\n")
        print("| step | kernels ms | wall ms | host ms a call |\n|---|---:|---:|---:|")
        for name, kernels, wall, host in walls:
            print(f"| {name} | {kernels:.3f} | {wall:.3f} | {host:.3f} |")
        print()
    if args.host_profile:
        host_profile(steps[0][1], args.steps, args.host_profile)


def print_profile(title: str, step, n: int) -> float:
    """Profiles n calls of `step` after n warm-up calls; prints each kernel's GPU time a step, the 12 largest, and
    returns the sum over all kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(n):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            step()
        torch.cuda.synchronize()
    rows = [(e.key, e.device_time_total / n / 1e3) for e in prof.key_averages() if e.device_time_total]
    rows.sort(key=lambda r: -r[1])
    total = sum(ms for _, ms in rows)
    print(f"## {title}: {total:.3f} ms of kernels a step\n")
    print("| kernel | ms a step | share |\n|---|---:|---:|")
    for key, ms in rows[:12]:
        print(f"| `{key[:60]}` | {ms:.3f} | {ms / total:.0%} |")
    print()
    return total


# ops profiled as they are (no variants, no anchor): default shape, smoke shape, what the shape names
PLAIN = {
    "ssd": ("16,2048,16,64,64,1", (1, 37, 4, 16, 16, 2), "B,T,H,P,N,G"),
    "mlstm": ("16,2048,4,128,256", (1, 37, 2, 16, 32), "B,T,H,K,V"),
}


def plain_inputs(op: str, dims: tuple[int, ...], dev: str) -> dict:
    """The op's inputs as `bf16_errors.inputs_of` draws them (benchmarks/kernels.py's), in bf16 where kernels.py runs
    them in bf16, each a leaf that takes a gradient. SSD: bf16 x, B, C; fp32 dt, A, D. mLSTM: bf16 q, k, v, i, f."""
    import torch
    from bf16_errors import inputs_of

    keep_fp32 = ("dt", "A", "D")  # the SSD's step sizes, decays and skip, as kernels.py keeps them
    return {name: (x if name in keep_fp32 else x.to(torch.bfloat16)).requires_grad_()
            for name, x in inputs_of(op, dims, dev).items()}


def profile_plain(args) -> None:
    """Mamba-2's SSD or the mLSTM at the given shape, chunks of 64: each kernel's GPU time in a forward and in a
    forward+backward."""
    import torch

    default, tiny, names = PLAIN[args.op]
    try:
        dims = tuple(int(x) for x in (args.shape or default).split(","))
        if len(dims) != len(tiny) or min(dims) < 1:
            raise ValueError
    except ValueError:
        raise SystemExit(f"--shape {args.shape!r}: {len(tiny)} positive integers {names} ({default})") from None
    dims = tiny if args.smoke else dims
    t = plain_inputs(args.op, dims, "cpu" if args.smoke else "cuda")
    if args.op == "ssd":
        from kernels.ssd import ssd

        def fwd():
            return ssd(**t, chunk_size=64, backend="triton")
    else:
        from kernels.mlstm import mlstm

        def fwd():
            return mlstm(**t, chunk_size=64, backend="triton")

    dy = torch.randn_like(fwd())

    def fwd_bwd():  # the gradients returned, not added into .grad: no accumulation kernels in the profile
        torch.autograd.grad(fwd(), list(t.values()), dy)

    if args.smoke:
        fwd_bwd()
        print(f"smoke: the {args.op}'s forward and backward ran; nothing timed")
        return
    shape = " ".join(f"{n}{d}" for n, d in zip(names.split(","), dims)) + ", bf16, chunks of 64"
    print_profile(f"{args.op} forward, {shape}", fwd, args.steps)
    if not args.forward:
        print_profile(f"{args.op} forward+backward, {shape}", fwd_bwd, args.steps)


def wall_and_host(step, n: int) -> tuple[float, float]:
    """(do_bench median ms, host ms to issue one call): the calls issued back to back, the GPU left to
    catch up after the clock stops (n calls of a few kernels each fit in the launch queue)."""
    import torch
    from triton.testing import do_bench

    wall = do_bench(step, warmup=25, rep=100, return_mode="median")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    host = (time.perf_counter() - t0) / n * 1e3
    torch.cuda.synchronize()
    return wall, host


def host_profile(step, n: int, top: int) -> None:
    """The functions where the host spends its time in n calls of `step`, by their own time."""
    import torch

    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        step()
    prof.disable()
    torch.cuda.synchronize()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    print(f"## Host profile of {n} forwards (cProfile, by own time)\n\n```\n{out.getvalue().strip()}\n```")


if __name__ == "__main__":
    main()
