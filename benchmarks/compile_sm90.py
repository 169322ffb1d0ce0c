"""Compile the gated delta rule's Triton kernels for Hopper (sm_90) on a machine without a GPU.

    python benchmarks/compile_sm90.py            # every kernel x tiles x dot mode x 2, 4 and 8 warps
    python benchmarks/compile_sm90.py --smoke    # one tile set, bf16, 4 warps (CI)

Triton's `compile` with a CUDA target needs only its bundled ptxas, so the front-end and back-end errors
that the interpreter cannot see (a `static_range` bound that is not a constexpr, a loop-carried value
that changes type, a layout the backend rejects) show here before a GPU call is spent on them. It does
not show miscompiles: the GPU suite and compute-sanitizer do (docs/benchmarks/delta_h200.md). Prints one
line per kernel with the largest shared memory any of its configs asked for; exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KERNELS = ("delta_fwd_kernel_wy", "delta_fwd_kernel_inverse", "delta_fwd_kernel_wu", "delta_fwd_kernel_states",
           "delta_fwd_kernel_output", "delta_bwd_kernel_dv_local", "delta_bwd_kernel_dstates", "delta_bwd_kernel_dwy",
           "delta_bwd_kernel_dqkg")
# (CHANNEL, BL, BK): a decay per head at chunks of 64 and 32, per key channel at 16
TILES = ((False, 64, 64), (False, 32, 32), (True, 16, 16))
# pointers in the input dtype (bf16 when the inputs are: the inputs, their gradients and what the forward
# keeps of its chunks but T); every other buffer is fp32
INPUT_DTYPE = {"q_ptr", "k_ptr", "v_ptr", "beta_ptr", "do_ptr", "o_ptr", "dq_ptr", "dk_ptr", "dv_ptr", "dbeta_ptr",
               "states_ptr", "dstates_ptr", "w_ptr", "u0_ptr", "u_ptr"}


def compile_kernel(kernel, constexprs: dict, num_warps: int, bf16: bool) -> int:
    """Compiles one config for sm_90; returns the shared memory it asks for, in bytes."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = kernel
    while not isinstance(fn, triton.runtime.jit.JITFunction):  # under autotune
        fn = fn.fn
    wanted = {p.name for p in fn.params if p.is_constexpr}
    consts = {name: value for name, value in constexprs.items() if name in wanted}
    missing = wanted - set(consts)
    if missing:
        raise ValueError(f"{fn.__name__}: no value for {sorted(missing)}")
    signature = {}
    for name in fn.arg_names:
        if name in consts:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = "*bf16" if bf16 and name in INPUT_DTYPE else "*fp32"
        else:
            signature[name] = "fp32" if name == "scale" else "i32"
    src = ASTSource(fn=fn, signature=signature, constexprs=consts)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "num_stages": 2})
    return compiled.metadata.shared


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="one tile set, bf16 products, 4 warps")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    from kernels._triton import DOT_BF16, DOT_FP32
    from kernels.delta import triton as delta

    if args.smoke:
        tiles, modes, warp_counts = TILES[:1], (DOT_BF16,), (4,)
    else:
        tiles, modes, warp_counts = TILES, (DOT_FP32, DOT_BF16), (2, 4, 8)
    failed = 0
    for name in KERNELS:
        kernel, most = getattr(delta, name), 0
        inverses = delta.INVERSES.values() if name in ("delta_fwd_kernel_wy", "delta_fwd_kernel_inverse") else (0,)
        for (channel, BL, BK), mode, inverse, num_warps in itertools.product(
            tiles, modes, inverses, warp_counts
        ):
            consts = dict(CHANNEL=channel, BL=BL, BK=BK, BV=64, BKF=128, MODE=mode, INVERSE=inverse,
                          HAS_INIT=True, HAS_DFINAL=True)
            try:
                most = max(most, compile_kernel(kernel, consts, num_warps, bf16=mode == DOT_BF16))
            except Exception as e:  # report every failure, then exit 1
                failed += 1
                last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                print(f"FAILED {name} {consts} warps={num_warps}: {last[:300]}")
        print(f"{name}: compiled, up to {most:,} bytes of shared memory")
    if failed:
        raise SystemExit(f"{failed} configs failed to compile for sm_90")


if __name__ == "__main__":
    main()
