"""Speed of the Triton kernels (Mamba-2 SSD, Mamba-1 selective scan, xLSTM mLSTM) beside their anchors.

    python benchmarks/kernels.py --smoke          # tiny shapes; CPU under the Triton interpreter (CI)
    python benchmarks/kernels.py --out docs/benchmarks/kernels_h200.md \\
        --mamba-ssm-src /path/to/mamba                # a checkout of state-spaces/mamba (optional)

For every op and shape of issue 8 the kernel is first checked against the plain-PyTorch reference at
that shape (outputs and every input gradient: fp32 within 1e-3, bf16 within 2e-2); a kernel that fails
is not timed. Then forward and forward+backward are timed in bf16 with `triton.testing.do_bench`
(median), beside what of the anchors can be imported here: mamba_ssm's Triton
`mamba_chunk_scan_combined` (from `--mamba-ssm-src`, loaded without running the package's
`__init__`) and CUDA `selective_scan_fn`, flash-linear-attention's `chunk_simple_gla`, NX-AI's
`mlstm_kernels`, torch's `scaled_dot_product_attention`, and the compiled reference (`torch.compile`)
of the selective scan. An anchor that cannot be imported or run reads "not available". Each time
comes with its share of the HBM roofline: the bytes the op must move (inputs read, outputs written;
for forward+backward also the gradients) ÷ time ÷ `--hbm-tbps` (4.8 TB/s, an H200). The published
anchor times of the issue are printed beside the measured ones, and the tables go to `--out`.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import platform
import sys
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NA = "not available"


@dataclass
class Row:
    impl: str
    fwd_ms: float | None = None
    fwdbwd_ms: float | None = None
    note: str = ""
    bytes_fwd: float = 0.0
    bytes_fwdbwd: float = 0.0


@dataclass
class Table:
    op: str
    shape: str
    rows: list[Row] = field(default_factory=list)
    verdict: str = ""


# ------------------------------------------------------------------------------------------- shapes
# name -> dims; published anchors of the issue (H200 bf16 unless said): ms forward / forward+backward
SSD_SHAPES = {  # B, T, H, P, N, G
    "B16-T2048-H16-P64-N64-G1": ((16, 2048, 16, 64, 64, 1), {"mamba": (0.87, 3.30), "fla_fwd": 0.42}),
    "B8-T8192-H16-P64-N128-G1": ((8, 8192, 16, 64, 128, 1), {"mamba": (0.72, 4.42), "fla_fwd": 0.47}),
    "B4-T16384-H32-P64-N128-G1": ((4, 16384, 32, 64, 128, 1), {"mamba": (1.18, 5.16), "fla_fwd": 0.96}),
}
MLSTM_SHAPES = {  # B, T, H, K, V
    "B16-T2048-H4-K128-V256": (16, 2048, 4, 128, 256),
    "B4-T8192-H4-K128-V256": (4, 8192, 4, 128, 256),
}
TFLA_MS_PER_65536_TOKENS = 15.25  # NX-AI TFLA, H100, fwd+bwd, NH16 K128 V256
SCAN_SHAPES = {  # B, T, Dc, N; with z and D
    "B16-T2048-D2048-N16": ((16, 2048, 2048, 16), {"mamba_cuda": (1.11, 5.62)}),
}
SMOKE = {
    "ssd": {"B1-T37-H2-P16-N16-G1": ((1, 37, 2, 16, 16, 1), {})},
    "mlstm": {"B1-T37-H2-K16-V32": (1, 37, 2, 16, 32)},
    "selective_scan": {"B1-T37-D32-N8": ((1, 37, 32, 8), {})},
}


# ------------------------------------------------------------------------------------------ helpers
def rel_err(a, b) -> float:
    from kernels.testing import rel_error

    return rel_error(a, b)


def cast(inputs: dict, keys: tuple[str, ...], dtype) -> dict:
    """Leaves wanting gradients: the tensors named in `keys` in `dtype`, the others (A, D) as they are."""
    return {k: v.detach().to(dtype if k in keys else v.dtype).requires_grad_() for k, v in inputs.items()}


def check(
    name: str,
    run: Callable[[dict], tuple],
    ref: Callable[[dict], tuple],
    inputs: dict,
    keys: tuple[str, ...],
    dtype,
    tol: float,
) -> tuple[bool, str]:
    """Run `run` (the kernel, inputs `keys` in `dtype`) and `ref` (fp32, on the same values); compare
    the outputs and the gradient of every input under the same random cotangents."""
    import torch

    leaves = cast(inputs, keys, dtype)
    ref_leaves = {k: v.detach().float().requires_grad_() for k, v in leaves.items()}
    outs = run(leaves)
    ref_outs = ref(ref_leaves)
    worst, where = 0.0, ""
    for i, (o, r) in enumerate(zip(outs, ref_outs)):
        if not torch.isfinite(o).all():
            return False, f"{name}: output {i} has NaN/inf"
        e = rel_err(o, r)
        if e > worst:
            worst, where = e, f"output {i}"
    gen = torch.Generator(device=outs[0].device).manual_seed(1)
    cot = [torch.randn(o.shape, device=o.device, generator=gen).to(o.dtype) for o in outs]
    grads = torch.autograd.grad(outs, list(leaves.values()), cot)
    ref_grads = torch.autograd.grad(ref_outs, list(ref_leaves.values()), [c.float() for c in cot])
    for k, g, r in zip(leaves, grads, ref_grads):
        if not torch.isfinite(g).all():
            return False, f"{name}: d{k} has NaN/inf"
        e = rel_err(g, r)
        if e > worst:
            worst, where = e, f"d{k}"
    ok = worst <= tol
    return ok, f"{name}: worst relative error {worst:.1e} ({where}), limit {tol:.0e}"


def measure_ours(
    table: Table,
    label: str,
    run: Callable[[dict], tuple],
    ref: Callable[[dict], tuple],
    base: dict,
    keys: tuple[str, ...],
    smoke: bool,
    nbytes: tuple[float, float],
    note: Callable[[float | None], str] = lambda ms: "",
) -> None:
    """Check our kernel in fp32 (≤ 1e-3) and bf16 (≤ 2e-2) against the reference, then time it in bf16.

    A kernel that fails a check, or raises, gets a "refused" row and no time."""
    import torch

    try:
        for dtype, tol in ((torch.float32, 1e-3), (torch.bfloat16, 2e-2)):
            ok, msg = check(f"{label} {str(dtype)[6:]}", run, ref, base, keys, dtype, tol)
            if not ok:
                table.rows.append(Row(label, note=f"refused: {msg}"))
                return
            table.verdict += msg + ". "
        if smoke:
            table.rows.append(Row(label, note="checked"))
            return
        leaves = cast(base, keys, torch.bfloat16)
        fwd_ms, fb_ms = time_fwd_bwd(lambda: run(leaves), list(leaves.values()))
        table.rows.append(Row(label, fwd_ms, fb_ms, note(fb_ms), *nbytes))
    except Exception as e:
        traceback.print_exc()
        msg = str(e).splitlines()[0][:160] if str(e) else ""
        table.rows.append(Row(label, note=f"refused: raised {type(e).__name__}: {msg}"))


def bench(fn: Callable[[], object], grad_to_none=None) -> float | None:
    """Median ms of `fn` on the GPU; None on the CPU (the smoke run only checks)."""
    import torch

    if not torch.cuda.is_available():
        return None
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none, return_mode="median")


def time_fwd_bwd(fwd: Callable[[], object], leaves: list) -> tuple[float | None, float | None]:
    """(forward ms, forward+backward ms); fwd returns a tensor or a tuple whose first is the output."""
    import torch

    def first(out):
        return out[0] if isinstance(out, (tuple, list)) else out

    out = first(fwd())
    dy = torch.randn_like(out)

    def fwd_bwd():
        first(fwd()).backward(dy)

    fwd_ms = bench(fwd)
    fwdbwd_ms = bench(fwd_bwd, grad_to_none=leaves)
    return fwd_ms, fwdbwd_ms


def attempt(label: str, make: Callable[[], Row], verbose: bool) -> Row:
    try:
        return make()
    except Exception as e:  # an anchor that is missing or fails never stops the run
        if verbose:
            traceback.print_exc()
        msg = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        return Row(label, note=f"{NA} ({type(e).__name__}: {msg})")


def import_from_checkout(module: str, src: str | None):
    """Import `module` (e.g. mamba_ssm.ops.triton.ssd_combined) from a source checkout, skipping the
    package `__init__`s (which import CUDA extensions that may not be built): each package on the way
    becomes an empty module whose path is its folder."""
    if src is None:
        return importlib.import_module(module)
    root = Path(src).expanduser().resolve()
    top = module.split(".")[0]
    if not (root / top).is_dir():
        raise ImportError(f"{root} has no {top}/ folder")
    for folder in [root / top, *sorted(p.parent for p in (root / top).rglob("__init__.py"))]:
        name = ".".join(folder.relative_to(root).parts)
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__path__ = [str(folder)]
            sys.modules[name] = stub
    if str(root) not in sys.path:
        sys.path.append(str(root))
    return importlib.import_module(module)


def fmt_ms(ms: float | None) -> str:
    return "—" if ms is None else f"{ms:.3f}"


def fmt_pct(nbytes: float, ms: float | None, tbps: float) -> str:
    if ms is None or not nbytes:
        return "—"
    return f"{100 * nbytes / (ms * 1e-3) / (tbps * 1e12):.0f}%"


# ---------------------------------------------------------------------------------------------- SSD
def ssd_bytes(B, T, H, P, N, G, with_z: bool) -> tuple[float, float]:
    """bf16 bytes that must move: forward reads x, dt, B, C (z) and writes y; backward reads them and
    dy again and writes dx, ddt, dB, dC (dz)."""
    per_tok = H * P * (2 + (1 if with_z else 0)) + H + 2 * G * N  # x, y, (z), dt, B, C
    fwd = 2 * B * T * per_tok
    bwd = 2 * B * T * (2 * (H * P * (1 + with_z) + H + 2 * G * N) + H * P)  # inputs + grads, dy
    return fwd, fwd + bwd


def ssd_tables(shapes: dict, args, smoke: bool) -> list[Table]:
    import torch
    import torch.nn.functional as F

    from kernels.ssd import ssd
    from kernels.ssd.reference import ssd_chunked

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tables = []
    for name, (dims, published) in shapes.items():
        B, T, H, P, N, G = dims
        table = Table("ssd", name)
        tables.append(table)
        torch.manual_seed(0)
        base = {
            "x": torch.randn(B, T, H, P, device=dev),
            "dt": F.softplus(torch.randn(B, T, H, device=dev) - 3),
            "A": -torch.exp(torch.rand(H, device=dev) * math.log(16)),
            "B": torch.randn(B, T, G, N, device=dev),
            "C": torch.randn(B, T, G, N, device=dev),
            "D": torch.randn(H, device=dev),
        }
        fwd_bytes, all_bytes = ssd_bytes(B, T, H, P, N, G, with_z=False)
        keys = ("x", "dt", "B", "C")
        for L in args.ssd_chunk_sizes:
            label = f"triton (ours), chunk {L}"

            def run(t, L=L):
                return ssd(**t, return_final_state=True, chunk_size=L, backend="triton")

            def ref(t):
                return ssd_chunked(**t, chunk_size=64)

            measure_ours(table, label, run, ref, base, keys, smoke, (fwd_bytes, all_bytes))
        if smoke:
            continue

        def mamba_row() -> Row:
            mod = import_from_checkout("mamba_ssm.ops.triton.ssd_combined", args.mamba_ssm_src)
            t = cast(base, keys, torch.bfloat16)
            fwd_ms, fb_ms = time_fwd_bwd(
                lambda: mod.mamba_chunk_scan_combined(t["x"], t["dt"], t["A"], t["B"], t["C"], 256, D=t["D"]),
                list(t.values()),
            )
            return Row("mamba_ssm mamba_chunk_scan_combined (chunk 256)", fwd_ms, fb_ms,
                       bytes_fwd=fwd_bytes, bytes_fwdbwd=all_bytes)

        def fla_row() -> Row:
            if args.fla_src:
                sys.path.insert(0, args.fla_src)
            from fla.ops.simple_gla import chunk_simple_gla

            bf = torch.bfloat16
            q = base["C"].to(bf).expand(B, T, G, N).repeat_interleave(H // G, 2).contiguous().requires_grad_()
            k = base["B"].to(bf).repeat_interleave(H // G, 2).contiguous().requires_grad_()
            v = (base["x"] * base["dt"][..., None]).to(bf).requires_grad_()
            g = (base["dt"] * base["A"]).float().requires_grad_()
            kw = {"scale": 1.0}
            if "head_first" in inspect.signature(chunk_simple_gla).parameters:
                kw["head_first"] = False
            fwd_ms, fb_ms = time_fwd_bwd(lambda: chunk_simple_gla(q=q, k=k, v=v, g=g, **kw), [q, k, v, g])
            return Row("fla chunk_simple_gla (q=C, k=B, v=dt·x)", fwd_ms, fb_ms,
                       bytes_fwd=fwd_bytes, bytes_fwdbwd=all_bytes)

        table.rows.append(attempt("mamba_ssm mamba_chunk_scan_combined", mamba_row, args.verbose))
        table.rows.append(attempt("fla chunk_simple_gla", fla_row, args.verbose))
        if "mamba" in published:
            f, fb = published["mamba"]
            table.rows.append(Row("published: mamba_chunk_scan_combined", f, fb, "the issue's H200 anchor",
                                  fwd_bytes, all_bytes))
            table.rows.append(Row("published: fla chunk_simple_gla", published["fla_fwd"], None,
                                  "the issue's H200 anchor", fwd_bytes, all_bytes))
            ours = [r for r in table.rows if r.impl.startswith("triton") and r.fwdbwd_ms]
            if ours:
                best_fb = min(r.fwdbwd_ms for r in ours)
                best_f = min(r.fwd_ms for r in ours)
                table.verdict += (
                    f"Target fwd+bwd ≤ 0.5× mamba ({0.5 * fb:.2f} ms): ours {best_fb:.2f} ms "
                    f"({'met' if best_fb <= 0.5 * fb else 'NOT met'}). "
                    f"Target fwd ≤ fla ({published['fla_fwd']:.2f} ms): ours {best_f:.2f} ms "
                    f"({'met' if best_f <= published['fla_fwd'] else 'NOT met'})."
                )
    return tables


# -------------------------------------------------------------------------------------------- mLSTM
def mlstm_bytes(B, T, H, K, V) -> tuple[float, float]:
    fwd = 2 * B * T * H * (2 * K + 2 * V + 2)  # q, k, v, i, f read; h written
    bwd = 2 * B * T * H * (2 * (2 * K + V + 2) + 2 * V)  # inputs + grads, dh and h
    return fwd, fwd + bwd


def mlstm_tables(shapes: dict, args, smoke: bool) -> list[Table]:
    import torch

    from kernels.mlstm import mlstm
    from kernels.mlstm.reference import mlstm_chunked

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tables = []
    for name, dims in shapes.items():
        B, T, H, K, V = dims
        table = Table("mlstm", name)
        tables.append(table)
        torch.manual_seed(0)
        base = {
            "q": torch.randn(B, T, H, K, device=dev),
            "k": torch.randn(B, T, H, K, device=dev),
            "v": torch.randn(B, T, H, V, device=dev),
            "i": torch.randn(B, T, H, device=dev),
            "f": torch.randn(B, T, H, device=dev) + 3,
        }
        fwd_bytes, all_bytes = mlstm_bytes(*dims)
        keys = ("q", "k", "v", "i", "f")

        def per_65536(fb_ms: float | None, B=B, T=T, H=H) -> str:
            if fb_ms is None:
                return ""
            return f"fwd+bwd {fb_ms * 65536 / (B * T) * 16 / H:.2f} ms per 65,536 tokens at NH16-equivalent"
        for L in args.mlstm_chunk_sizes:
            label = f"triton (ours), chunk {L}"

            def run(t, L=L):
                h, (C, n, m) = mlstm(**t, return_final_state=True, chunk_size=L, backend="triton")
                return h, C, n, m

            def ref(t):
                h, (C, n, m) = mlstm_chunked(**t, chunk_size=64)
                return h, C, n, m

            measure_ours(table, label, run, ref, base, keys, smoke, (fwd_bytes, all_bytes), per_65536)
        if smoke:
            continue

        def tfla_row() -> Row:
            from mlstm_kernels.torch.chunkwise import mlstm_chunkwise__xl_chunk

            bf = torch.bfloat16
            q, k = (base[x].to(bf).transpose(1, 2).contiguous().requires_grad_() for x in "qk")
            v = base["v"].to(bf).transpose(1, 2).contiguous().requires_grad_()
            i, f = (base[x].to(bf).transpose(1, 2).contiguous().requires_grad_() for x in "if")
            fwd_ms, fb_ms = time_fwd_bwd(lambda: mlstm_chunkwise__xl_chunk(q, k, v, i, f), [q, k, v, i, f])
            return Row("mlstm_kernels mlstm_chunkwise__xl_chunk (TFLA)", fwd_ms, fb_ms, per_65536(fb_ms),
                       fwd_bytes, all_bytes)

        def sdpa_row() -> Row:
            import torch.nn.functional as F

            bf = torch.bfloat16
            q, k = (base[x].to(bf).transpose(1, 2).contiguous().requires_grad_() for x in "qk")
            v = base["v"].to(bf).transpose(1, 2).contiguous().requires_grad_()
            fwd_ms, fb_ms = time_fwd_bwd(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), [q, k, v])
            return Row("torch scaled_dot_product_attention (causal)", fwd_ms, fb_ms, "", fwd_bytes, all_bytes)

        table.rows.append(attempt("mlstm_kernels (TFLA)", tfla_row, args.verbose))
        table.rows.append(attempt("torch sdpa", sdpa_row, args.verbose))
        published_fb = TFLA_MS_PER_65536_TOKENS * (B * T) / 65536 * H / 16
        table.rows.append(Row("published: TFLA, H100, NH16 K128 V256", None, published_fb,
                              f"{TFLA_MS_PER_65536_TOKENS} ms per 65,536 tokens, scaled to this shape's tokens × heads"))
        ours = [r for r in table.rows if r.impl.startswith("triton") and r.fwdbwd_ms]
        if ours:
            best = min(r.fwdbwd_ms for r in ours)
            table.verdict += (f"Target fwd+bwd ≤ TFLA's published rate ({published_fb:.2f} ms here): ours "
                              f"{best:.2f} ms ({'met' if best <= published_fb else 'NOT met'}).")
    return tables


# ----------------------------------------------------------------------------------- selective scan
def scan_bytes(B, T, Dc, N) -> tuple[float, float]:
    fwd = 2 * B * T * (4 * Dc + 2 * N)  # u, delta, z read, y written; B, C
    bwd = 2 * B * T * (2 * (3 * Dc + 2 * N) + Dc)  # inputs + grads, dy
    return fwd, fwd + bwd


def scan_tables(shapes: dict, args, smoke: bool) -> list[Table]:
    import torch
    import torch.nn.functional as F

    from kernels.selective_scan import selective_scan
    from kernels.selective_scan.reference import selective_scan_blocked

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tables = []
    for name, (dims, published) in shapes.items():
        B, T, Dc, N = dims
        table = Table("selective_scan", name)
        tables.append(table)
        torch.manual_seed(0)
        base = {
            "u": torch.randn(B, T, Dc, device=dev),
            "delta": F.softplus(torch.randn(B, T, Dc, device=dev) - 3),
            "A": -torch.exp(torch.rand(Dc, N, device=dev) * math.log(16)),
            "B": torch.randn(B, T, N, device=dev),
            "C": torch.randn(B, T, N, device=dev),
            "D": torch.randn(Dc, device=dev),
            "z": torch.randn(B, T, Dc, device=dev),
        }
        fwd_bytes, all_bytes = scan_bytes(*dims)
        label = "triton (ours)"

        def run(t):
            return selective_scan(**t, return_final_state=True, backend="triton")

        def ref(t):
            return selective_scan_blocked(**t)

        bf_keys = ("u", "delta", "B", "C", "z")
        measure_ours(table, label, run, ref, base, bf_keys, smoke, (fwd_bytes, all_bytes))
        if smoke:
            continue

        def mamba_row() -> Row:
            mod = import_from_checkout("mamba_ssm.ops.selective_scan_interface", args.mamba_ssm_src)
            bf = torch.bfloat16
            u, delta, z = (base[x].to(bf).transpose(1, 2).contiguous().requires_grad_() for x in ("u", "delta", "z"))
            Bm, Cm = (base[x].to(bf).transpose(1, 2).contiguous().requires_grad_() for x in ("B", "C"))
            A, D = base["A"].clone().requires_grad_(), base["D"].clone().requires_grad_()
            fwd_ms, fb_ms = time_fwd_bwd(
                lambda: mod.selective_scan_fn(u, delta, A, Bm, Cm, D=D, z=z), [u, delta, A, Bm, Cm, D, z]
            )
            return Row("mamba_ssm selective_scan_fn (CUDA)", fwd_ms, fb_ms, bytes_fwd=fwd_bytes, bytes_fwdbwd=all_bytes)

        def compiled_row() -> Row:
            if not args.compile_reference:
                raise RuntimeError("skipped (--no-compile-reference)")
            fn = torch.compile(selective_scan_blocked)
            t = cast(base, bf_keys, torch.bfloat16)
            t0 = time.perf_counter()
            fn(**t)[0].sum().backward()
            compile_s = time.perf_counter() - t0
            fwd_ms, fb_ms = time_fwd_bwd(lambda: fn(**t), list(t.values()))
            return Row("reference, torch.compile", fwd_ms, fb_ms, f"compiled in {compile_s:.0f} s",
                       fwd_bytes, all_bytes)

        table.rows.append(attempt("mamba_ssm selective_scan_fn (CUDA)", mamba_row, args.verbose))
        table.rows.append(attempt("reference, torch.compile", compiled_row, args.verbose))
        f, fb = published["mamba_cuda"]
        table.rows.append(Row("published: mamba_ssm selective_scan_fn", f, fb, "the issue's anchor", fwd_bytes, all_bytes))
        ours = [r for r in table.rows if r.impl.startswith("triton") and r.fwdbwd_ms]
        compiled = [r for r in table.rows if r.impl.startswith("reference") and r.fwdbwd_ms]
        if ours:
            o = ours[0]
            table.verdict += (f"Target within 1.5× of mamba's CUDA ({1.5 * f:.2f} / {1.5 * fb:.2f} ms): ours "
                              f"{o.fwd_ms:.2f} / {o.fwdbwd_ms:.2f} ms "
                              f"({'met' if o.fwd_ms <= 1.5 * f and o.fwdbwd_ms <= 1.5 * fb else 'NOT met'}). ")
            if compiled:
                c = compiled[0]
                table.verdict += (f"Speed-up over the compiled reference: {c.fwd_ms / o.fwd_ms:.0f}× fwd, "
                                  f"{c.fwdbwd_ms / o.fwdbwd_ms:.0f}× fwd+bwd (target ≥ 20×).")
    return tables


# ------------------------------------------------------------------------------------------- report
def render(tables: list[Table], args, smoke: bool) -> str:
    import torch
    import triton

    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or 'cpu'}), Triton interpreter"
    lines = [
        "# Triton kernels: speed beside the anchors",
        "",
        f"Device: {dev}; torch {torch.__version__}, triton {triton.__version__}; bf16 inputs, fp32 state; "
        f"median of `triton.testing.do_bench`. % HBM: bytes that must move ÷ time ÷ {args.hbm_tbps} TB/s.",
        "",
        f"Command: `python benchmarks/kernels.py {' '.join(sys.argv[1:])}`",
        "",
    ]
    for t in tables:
        lines += [f"## {t.op} {t.shape}", ""]
        lines += ["| implementation | fwd ms | fwd+bwd ms | fwd % HBM | fwd+bwd % HBM | notes |",
                  "|---|---:|---:|---:|---:|---|"]
        for r in t.rows:
            lines.append(
                f"| {r.impl} | {fmt_ms(r.fwd_ms)} | {fmt_ms(r.fwdbwd_ms)} | "
                f"{fmt_pct(r.bytes_fwd, r.fwd_ms, args.hbm_tbps)} | "
                f"{fmt_pct(r.bytes_fwdbwd, r.fwdbwd_ms, args.hbm_tbps)} | {r.note} |"
            )
        if t.verdict:
            lines += ["", t.verdict.strip()]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, check only (CPU: Triton interpreter)")
    parser.add_argument("--out", type=Path, help="write the markdown tables here")
    parser.add_argument("--ops", default="ssd,mlstm,selective_scan", help="comma-separated subset")
    parser.add_argument("--mamba-ssm-src", help="a checkout of state-spaces/mamba (the folder holding mamba_ssm/)")
    parser.add_argument("--fla-src", help="a checkout of flash-linear-attention (the folder holding fla/)")
    parser.add_argument("--ssd-chunk-sizes", default="64,128", help="chunk sizes to time our SSD at")
    parser.add_argument("--mlstm-chunk-sizes", default="64", help="chunk sizes to time our mLSTM at")
    parser.add_argument("--no-compile-reference", dest="compile_reference", action="store_false",
                        help="skip torch.compile of the selective-scan reference (it compiles for minutes)")
    parser.add_argument("--hbm-tbps", type=float, default=4.8, help="HBM bandwidth for the roofline (H200: 4.8)")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of an anchor that fails")
    args = parser.parse_args(argv)
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    unknown = sorted(set(ops) - {"ssd", "mlstm", "selective_scan"})
    if unknown:
        parser.error(f"--ops: unknown op {', '.join(unknown)}; use ssd, mlstm, selective_scan")
    try:
        args.ssd_chunk_sizes = [int(x) for x in args.ssd_chunk_sizes.split(",")]
        args.mlstm_chunk_sizes = [int(x) for x in args.mlstm_chunk_sizes.split(",")]
    except ValueError:
        parser.error("--ssd-chunk-sizes/--mlstm-chunk-sizes: comma-separated positive integers, e.g. 64,128")

    import torch

    if not torch.cuda.is_available():
        if not args.smoke:
            parser.error("timing needs a CUDA GPU; use --smoke on the CPU")
        # before triton is imported: its @jit functions (ours and its standard library) must interpret
        os.environ["TRITON_INTERPRET"] = "1"
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 reference is the ground truth
    torch.backends.cudnn.allow_tf32 = False

    smoke = args.smoke
    if smoke:
        args.ssd_chunk_sizes = args.ssd_chunk_sizes[:1]
    tables: list[Table] = []
    if "ssd" in ops:
        tables += ssd_tables(SMOKE["ssd"] if smoke else SSD_SHAPES, args, smoke)
    if "mlstm" in ops:
        tables += mlstm_tables(SMOKE["mlstm"] if smoke else MLSTM_SHAPES, args, smoke)
    if "selective_scan" in ops:
        tables += scan_tables(SMOKE["selective_scan"] if smoke else SCAN_SHAPES, args, smoke)
    report = render(tables, args, smoke)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n")
    refused = [r for t in tables for r in t.rows if r.note.startswith("refused")]
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
