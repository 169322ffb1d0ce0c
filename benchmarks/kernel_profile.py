"""Where an op's time goes: the GPU time of each kernel of one forward and one forward+backward.

    python benchmarks/kernel_profile.py --op gated_delta                 # on a CUDA GPU
    python benchmarks/kernel_profile.py --op gated_delta --channel       # KDA's decay per key channel
    python benchmarks/kernel_profile.py --variants blocks,tiles:split    # several forms of the wy kernel
    python benchmarks/kernel_profile.py --smoke                          # tiny, CPU interpreter, no timing (CI)

The shapes are `benchmarks/kernels.py`'s first (bf16 inputs); each kernel's time is the mean over
`--steps` profiled steps after as many warm-up steps (autotuning included), from torch.profiler.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _report import DELTA_VARIANTS_HELP, delta_variants, use_delta_variant


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", choices=["gated_delta"], default="gated_delta")
    ap.add_argument("--channel", action="store_true", help="a decay per key channel (KDA)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--fla-src", help="a folder holding fla/ (the fla-core wheel unpacked): also profile fla's "
                                      "chunk_gated_delta_rule forward on the same inputs")
    ap.add_argument("--variants", default="", help=DELTA_VARIANTS_HELP + "; the forward of each is profiled, "
                                                   "forward+backward of the first (default: the environment's "
                                                   "form, or the kernels' default)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU interpreter, no timing")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        if not args.smoke:
            raise SystemExit("kernel_profile.py times GPU kernels: run it on a machine with a CUDA GPU, "
                             "or use --smoke")
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from kernels.delta import gated_delta

    B, T, H, K, V = (1, 37, 2, 16, 16) if args.smoke else (8, 2048, 16, 128, 128)
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

    def fwd_bwd():
        fwd().backward(dy)

    if args.smoke:
        for variant in variants:
            fwd(variant)
        fwd_bwd()
        print(f"smoke: forward ({', '.join(x or 'default' for x in variants)}) and backward ran; nothing timed")
        return
    steps = [(f"forward [{variant}]" if variant else "forward", lambda variant=variant: fwd(variant))
             for variant in variants]
    steps.append(("forward+backward", fwd_bwd))
    if args.fla_src and not args.channel:  # its forward only: its gated backward refuses Triton 3.4-3.7.0 on Hopper
        sys.path.insert(0, args.fla_src)
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule

        def fla_fwd():
            with torch.no_grad():
                return chunk_gated_delta_rule(**t, scale=K**-0.5, output_final_state=True)

        steps.append(("fla chunk_gated_delta_rule forward", fla_fwd))
    for name, step in steps:
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(args.steps):
                step()
            torch.cuda.synchronize()
        rows = [(e.key, e.device_time_total / args.steps / 1e3) for e in prof.key_averages() if e.device_time_total]
        rows.sort(key=lambda r: -r[1])
        total = sum(ms for _, ms in rows)
        print(f"## {args.op} {name}, B{B} T{T} H{H} K{K} V{V}, decay per {'key channel' if args.channel else 'head'}"
              f", bf16: {total:.3f} ms of kernels a step\n")
        print("| kernel | ms a step | share |\n|---|---:|---:|")
        for key, ms in rows[:12]:
            print(f"| `{key[:60]}` | {ms:.3f} | {ms / total:.0%} |")
        print()


if __name__ == "__main__":
    main()
