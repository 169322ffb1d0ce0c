"""The gated delta rule's forward beside flash-linear-attention's, in one process, alternating rounds.

    python benchmarks/delta_vs_fla.py --fla-src .anchors/fla_src        # on a CUDA GPU (shared/gpu/README.md)
    python benchmarks/delta_vs_fla.py --smoke                           # tiny, CPU interpreter, ours only

`benchmarks/kernels.py` runs each anchor in a process of its own, with its own time limit; this script
times ours and fla's `chunk_gated_delta_rule` in the same process, one after the other, `--rounds` times
(median of `triton.testing.do_bench` each), so that a slow round on a shared or throttled GPU shows as
disagreeing rounds instead of a wrong ratio. Both return the final state. The inputs are made as the layer
makes them (q and k L2-normalised, bf16; g = logσ(·) in fp32; β = σ(·)); the last line is how far the two
outputs are apart, relative to the largest of fla's. `--variants blocks,tiles:split` times several forms of
ours in the same rounds.

do_bench times each call on the wall clock, the host's work included: fla launches seven kernels from Python
that checks and prepares its inputs, and on a slow host that, not the GPU, sets its time (docs/benchmarks/
delta_h200.md, section 6). `benchmarks/kernel_profile.py --fla-src DIR` gives both sides' GPU kernel time.
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
    ap.add_argument("--shape", default="8,2048,16,128,128", help="B,T,H,K,V")
    ap.add_argument("--fla-src", help="a folder holding fla/ (the fla-core wheel unpacked)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default="", help=DELTA_VARIANTS_HELP + "; timed in the same rounds (default: "
                                                   "the environment's form, or the kernels' default)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU interpreter, ours only, no timing")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        if not args.smoke:
            raise SystemExit("delta_vs_fla.py times GPU kernels: run it on a machine with a CUDA GPU, or use --smoke")
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
    import torch.nn.functional as F
    import triton

    from kernels.delta import gated_delta

    B, T, H, K, V = (1, 37, 2, 16, 16) if args.smoke else (int(x) for x in args.shape.split(","))
    dev = "cpu" if args.smoke else "cuda"
    torch.manual_seed(0)
    q = F.normalize(torch.randn(B, T, H, K, device=dev), dim=-1).bfloat16()
    k = F.normalize(torch.randn(B, T, H, K, device=dev), dim=-1).bfloat16()
    v = torch.randn(B, T, H, V, device=dev).bfloat16()
    g = F.logsigmoid(torch.randn(B, T, H, device=dev) + 3)
    beta = torch.sigmoid(torch.randn(B, T, H, device=dev)).bfloat16()

    variants = delta_variants(args.variants)

    def ours(variant: str = variants[0]):
        use_delta_variant(variant)
        return gated_delta(q, k, v, g, beta, return_final_state=True, backend="triton")

    if args.smoke:
        for variant in variants:
            o, state = ours(variant)
            assert torch.isfinite(o.float()).all() and torch.isfinite(state).all()
        print(f"smoke: forward ran ({', '.join(x or 'default' for x in variants)}); nothing timed")
        return

    if args.fla_src:
        sys.path.insert(0, args.fla_src)
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    def fla():
        return chunk_gated_delta_rule(q, k, v, g, beta, scale=K**-0.5, output_final_state=True)

    for _ in range(3):  # compile and autotune every variant first
        for variant in variants:
            ours(variant)
        fla()
    torch.cuda.synchronize()
    names = [x or "default" for x in variants]
    print(f"B{B} T{T} H{H} K{K} V{V}, bf16, forward with the final state; ours as INVERSE:FORM")
    for rnd in range(args.rounds):
        row = []
        for variant, name in zip(variants, names):
            a = triton.testing.do_bench(lambda variant=variant: ours(variant), warmup=50, rep=300, return_mode="median")
            row.append((name, a))
        b = triton.testing.do_bench(fla, warmup=50, rep=300, return_mode="median")
        cells = "  ".join(f"ours[{name}] {a:.3f} ms ({a / b:.2f}x)" for name, a in row)
        print(f"round {rnd}: {cells}  fla {b:.3f} ms")
    o2, _ = fla()
    for variant, name in zip(variants, names):
        o1, _ = ours(variant)
        gap = ((o1.float() - o2.float()).abs().max() / o2.float().abs().max()).item()
        print(f"ours[{name}]: max |ours - fla| / max |fla|: {gap:.1e}")
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)


if __name__ == "__main__":
    main()
