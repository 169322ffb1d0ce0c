"""Where each kernel's bf16 error comes from: its own bf16 roundings switched off one at a time.

    python benchmarks/bf16_errors.py --smoke               # tiny shapes, CPU under the Triton interpreter (CI)
    python benchmarks/bf16_errors.py                       # CPU: T=512 under the interpreter (minutes)
    python benchmarks/bf16_errors.py --ops mlstm           # GPU: the benchmark's shapes, and each num_warps

bf16 inputs; every output and input gradient against the reference run in fp64 on the same rounded
inputs, under the same random cotangents (relative error). Variants:

    kernel        as shipped: bf16 dot operands, per-chunk states kept in bf16 between kernels
    fp32 states   the per-chunk states kept in fp32
    fp32 dots     the dot operands kept in fp32 (tf32x3 on the GPU, exact under the interpreter)
    warps=W       (GPU) every autotuned kernel held to its configs with W warps

The interpreter applies the same roundings as the GPU (`kernels/_triton.py`: round to nearest even in
the dots; its stores to bf16 truncate, which roughly doubles the output rounding), so a rounding that
explains an error shows on the CPU too, and falls when it is switched off. An error that only the GPU
shows, that no switch moves, or that moves with the number of warps, is the compiler's.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# op -> dims on the CPU (interpreter), on the GPU (the benchmark's, fewer sequences), and for --smoke
SHAPES = {
    "ssd": {"cpu": (1, 512, 4, 64, 64, 1), "gpu": (4, 2048, 16, 64, 64, 1), "smoke": (1, 37, 2, 16, 16, 1)},
    "mlstm": {"cpu": (1, 512, 2, 128, 256), "gpu": (4, 2048, 4, 128, 256), "smoke": (1, 37, 2, 16, 32)},
    "selective_scan": {"cpu": (1, 512, 64, 16), "gpu": (4, 2048, 2048, 16), "smoke": (1, 37, 32, 8)},
    "delta": {"cpu": (1, 512, 2, 128, 128), "gpu": (4, 2048, 16, 128, 128), "smoke": (1, 37, 2, 16, 32)},
    "kda": {"cpu": (1, 128, 2, 64, 64), "gpu": (4, 2048, 16, 128, 128), "smoke": (1, 37, 2, 16, 32)},
}
MODULE = {"kda": "delta"}  # the gated delta rule with a decay per key channel: the same kernels


def inputs_of(op: str, dims: tuple[int, ...], device: str) -> dict:
    """The benchmark's inputs (benchmarks/kernels.py), fp32, drawn on the CPU so every machine gets the same."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    if op == "ssd":
        B, T, H, P, N, G = dims
        inputs = {
            "x": torch.randn(B, T, H, P), "dt": F.softplus(torch.randn(B, T, H) - 3),
            "A": -torch.exp(torch.rand(H) * math.log(16)), "B": torch.randn(B, T, G, N),
            "C": torch.randn(B, T, G, N), "D": torch.randn(H),
        }
    elif op == "mlstm":
        B, T, H, K, V = dims
        inputs = {
            "q": torch.randn(B, T, H, K), "k": torch.randn(B, T, H, K), "v": torch.randn(B, T, H, V),
            "i": torch.randn(B, T, H), "f": torch.randn(B, T, H) + 3,
        }
    elif op in ("delta", "kda"):
        B, T, H, K, V = dims
        inputs = {
            "q": F.normalize(torch.randn(B, T, H, K), dim=-1), "k": F.normalize(torch.randn(B, T, H, K), dim=-1),
            "v": torch.randn(B, T, H, V), "beta": torch.sigmoid(torch.randn(B, T, H)),
            "g": F.logsigmoid(torch.randn((B, T, H, K) if op == "kda" else (B, T, H)) + 3),
        }
    else:
        B, T, Dc, N = dims
        inputs = {
            "u": torch.randn(B, T, Dc), "delta": F.softplus(torch.randn(B, T, Dc) - 3),
            "A": -torch.exp(torch.rand(Dc, N) * math.log(16)), "B": torch.randn(B, T, N),
            "C": torch.randn(B, T, N), "D": torch.randn(Dc), "z": torch.randn(B, T, Dc),
        }
    return {name: t.to(device) for name, t in inputs.items()}


def run_op(op: str, inputs: dict, backend: str) -> tuple:
    """The op's outputs, final state included (`backend`: "triton" for ours, "reference")."""
    if op == "ssd":
        from kernels.ssd import ssd

        return ssd(**inputs, return_final_state=True, backend=backend)
    if op == "mlstm":
        from kernels.mlstm import mlstm

        h, state = mlstm(**inputs, return_final_state=True, backend=backend)
        return h, *state
    if op in ("delta", "kda"):
        from kernels.delta import gated_delta

        return gated_delta(**inputs, return_final_state=True, backend=backend)
    from kernels.selective_scan import selective_scan

    return selective_scan(**inputs, return_final_state=True, backend=backend)


def errors(op: str, base: dict) -> dict[str, float]:
    """Relative error of every output and input gradient of our bf16 run against fp64."""
    import torch

    from kernels.testing import rel_error

    keep_fp32 = ("A", "D", "g")  # as in Mamba, Gated DeltaNet and the benchmark: decays and per-channel parameters
    leaves = {k: (v if k in keep_fp32 else v.to(torch.bfloat16)).detach().requires_grad_() for k, v in base.items()}
    ref_leaves = {k: v.detach().double().requires_grad_() for k, v in leaves.items()}
    outs, ref_outs = run_op(op, leaves, "triton"), run_op(op, ref_leaves, "reference")
    gen = torch.Generator().manual_seed(1)
    cot = [torch.randn(o.shape, generator=gen).to(o.device, o.dtype) for o in outs]
    grads = torch.autograd.grad(outs, list(leaves.values()), cot)
    ref_grads = torch.autograd.grad(ref_outs, list(ref_leaves.values()), [c.double() for c in cot])
    names = {"ssd": ("y", "state"), "mlstm": ("h", "C", "n", "m"), "selective_scan": ("y", "state"),
             "delta": ("o", "state"), "kda": ("o", "state")}[op]
    found = {name: rel_error(o, r) for name, o, r in zip(names, outs, ref_outs)}
    found |= {f"d{name}": rel_error(g, r) for name, g, r in zip(leaves, grads, ref_grads)}
    return found


def variants(op: str, on_gpu: bool, smoke: bool) -> list[tuple[str, Callable[[object], Callable[[], None]]]]:
    """(name, patch): `patch(module)` changes the op's Triton module and returns what undoes it."""
    import torch

    import kernels._triton as kt

    def patched(**values):
        def patch(module):
            old = {name: getattr(module, name) for name in values}
            for name, value in values.items():
                setattr(module, name, value)
            return lambda: [setattr(module, name, value) for name, value in old.items()]

        return patch

    found = [("kernel", patched())]
    tiles = op != "selective_scan"  # the scan keeps no per-chunk states and multiplies no tiles
    if tiles:
        found.append(("fp32 dots", patched(dot_mode=lambda dtype: kt.DOT_FP32)))
    if on_gpu:
        found += [(f"warps={w}", held_to_warps(w)) for w in (2, 4, 8)]
    if tiles and not smoke:
        fp32_dots, fp32_states = lambda dtype: kt.DOT_FP32, lambda dtype: torch.float32
        found.append(("fp32 states", patched(state_dtype=fp32_states)))
        found.append(("fp32 both", patched(dot_mode=fp32_dots, state_dtype=fp32_states)))
    return found


def held_to_warps(num_warps: int):
    """A patch that keeps, in every autotuned kernel of the module, only its configs with `num_warps`."""
    from triton.runtime.autotuner import Autotuner

    def patch(module):
        tuned = [k for k in vars(module).values() if isinstance(k, Autotuner)]
        old = [(k, k.configs, dict(k.cache)) for k in tuned]
        before = os.environ.get("KERNELS_WARPS")
        os.environ["KERNELS_WARPS"] = str(num_warps)  # past the warp counts the kernels avoid on this Triton
        for k in tuned:
            same = [c for c in k.configs if c.num_warps == num_warps]
            k.configs = same or [_with_warps(k.configs[0], num_warps)]
            k.cache.clear()

        def undo():
            for k, configs, cache in old:
                k.configs, k.cache = configs, cache
            if before is None:
                os.environ.pop("KERNELS_WARPS", None)
            else:
                os.environ["KERNELS_WARPS"] = before

        return undo

    return patch


def _with_warps(config, num_warps: int):
    import triton

    return triton.Config(dict(config.kwargs), num_warps=num_warps, num_stages=config.num_stages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (CPU: the interpreter)")
    parser.add_argument("--ops", default="ssd,mlstm,selective_scan,delta,kda", help="comma-separated subset")
    parser.add_argument("--shape", help="one op's dims, comma-separated, instead of the defaults")
    args = parser.parse_args(argv)
    ops = [op for op in args.ops.split(",") if op]
    if any(op not in SHAPES for op in ops):
        parser.error(f"--ops: use some of {', '.join(SHAPES)}")
    import torch

    on_gpu = torch.cuda.is_available()
    if not on_gpu:  # before triton is imported: its @jit functions (ours and its library) must interpret
        os.environ["TRITON_INTERPRET"] = "1"
    device = "cuda" if on_gpu else "cpu"
    import importlib

    for op in ops:
        dims = tuple(int(x) for x in args.shape.split(",")) if args.shape else \
            SHAPES[op]["smoke" if args.smoke else ("gpu" if on_gpu else "cpu")]
        module = importlib.import_module(f"kernels.{MODULE.get(op, op)}.triton")
        base = inputs_of(op, dims, device)
        print(f"\n## {op} {'x'.join(map(str, dims))}, bf16, relative error against fp64\n", flush=True)
        header = None
        for name, patch in variants(op, on_gpu, args.smoke):
            undo = patch(module)
            try:
                found = errors(op, base)
            except Exception as e:  # a variant that cannot run says so and the others go on
                print(f"| {name} | raised {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''} |")
                continue
            finally:
                undo()
            if header is None:
                header = list(found)
                print("| variant | " + " | ".join(header) + " |\n|---|" + "---:|" * len(header), flush=True)
            print(f"| {name} | " + " | ".join(f"{found[k]:.1e}" for k in header) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
