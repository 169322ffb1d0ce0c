"""One Mamba-2 layer's kernels at a proxy's shapes, for Nsight Compute, and its GEMMs timed at each padding.

    python benchmarks/layer_kernels.py --gemms                     # on a CUDA GPU: the GEMM table
    ncu --profile-from-start off --clock-control none --section SpeedOfLight --section Occupancy \\
        --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats \\
        python benchmarks/layer_kernels.py --ncu                    # the conv's and the SSD's kernels, once each
    python benchmarks/layer_kernels.py --time [--conv-before FILE --ssd-before FILE]  # their operators, timed
    python benchmarks/layer_kernels.py --table ncu.csv             # an `ncu --csv` run of --ncu as a markdown table
    python benchmarks/layer_kernels.py --smoke                     # tiny, CPU: every part runs

The layer is the 25M hybrid 1:7 proxy's, read off the model `proxy_throughput.py` builds (d384: d_inner 768, 12
heads of 64, d_state 64, one group, the conv over 896 channels; the logs of 2026-12-04 are of its former width,
d448: d_inner 896, 14 heads, the conv over 1024), at B32 T2048, bf16, laid out as the model lays it:
x, B and C slices of the conv's output, the conv's input a slice of the padded in_proj output. `--ncu` runs the conv
and the SSD forward and backward once to tune them, then once more between `cudaProfilerStart` and
`cudaProfilerStop`, which is what `ncu --profile-from-start off` measures. `--gemms` times the GEMMs of every distinct
linear layer of that proxy and of the plain Transformer of the same size (forward, input gradient, weight gradient;
`triton.testing.do_bench`, median), the in_proj's at each row padding, with their rates in TFLOP/s.

`--time` times the conv's operators (forward, backward) and the SSD's (forward, forward+backward; `do_bench`,
median), the SSD on x, B and C cut from the conv's output as the model cuts them; `--conv-before FILE` and
`--ssd-before FILE` also time an earlier `kernels/conv1d/triton.py` or `kernels/ssd/triton.py` (its operators
renamed out of `hybrid_nas::`) on the same inputs. Every operator runs once untimed (its kernels tuned), then
`--rounds` rounds (2) time them in alternating order, now first then the earlier file first, and each figure is the
median of its rounds (until 2026-12-04's call 21 the tree's file was always timed first, once); then each file's
kernels' configs are printed, tuned in the run or read from Triton's cache. Logs:
docs/benchmarks/logs/layer-kernels-*-2026-12-04.*
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import NamedTuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy_evidence import arch
from proxy_throughput import FAMILIES, plain_transformer

from kernels.conv1d import causal_conv1d
from kernels.ssd import ssd
from workers.models import build_model
from workers.models.mamba2 import Mamba2

FAMILY = "hybrid 1:7"


class Layer(NamedTuple):
    """One Mamba-2 layer of the FAMILY proxy at `params`, as `build_model` makes it, at B×T tokens."""

    b: int
    T: int
    d: int  # d_model
    di: int  # d_inner
    H: int
    P: int
    G: int
    N: int  # d_state
    W: int  # d_conv
    proj: int  # in_proj's outputs
    width: int  # its rows as the model pads them
    params: float
    model: torch.nn.Module


def proxy_layer(params: float, b: int, T: int) -> Layer:
    model = build_model(arch(FAMILIES[FAMILY], params))
    m = next(mod for mod in model.modules() if isinstance(mod, Mamba2))
    return Layer(b, T, m.in_proj.in_features, m.d_inner, m.n_heads, m.head_dim, m.n_groups, m.d_state,
                 m.conv.conv.weight.shape[-1], m.in_proj.out_features, m.in_proj.out_features + m.in_pad, params, model)


def layer_inputs(shape: Layer, dev, dtype=torch.bfloat16):
    """The conv's input (a slice of the padded in_proj output), its weight and bias, and the SSD's dt, A and D."""
    b, T, di, H, G, N = shape.b, shape.T, shape.di, shape.H, shape.G, shape.N
    zxbcdt = torch.randn(b, T, shape.width, device=dev, dtype=dtype)
    xbc = zxbcdt[..., di:2 * di + 2 * G * N].requires_grad_()
    w = (torch.randn(di + 2 * G * N, shape.W, device=dev) * 0.3).to(dtype).requires_grad_()
    bias = torch.zeros(di + 2 * G * N, device=dev, dtype=dtype, requires_grad=True)
    dt = torch.nn.functional.softplus(torch.randn(b, T, H, device=dev) - 2).requires_grad_()
    A = (-torch.rand(H, device=dev) - 0.5).requires_grad_()
    D = torch.ones(H, device=dev, requires_grad=True)
    return xbc, w, bias, dt, A, D


def cut(shape: Layer, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, B and C as the model cuts them from the conv's output (views, not copies)."""
    b, T, di, G, N = shape.b, shape.T, shape.di, shape.G, shape.N
    x, B, C = y.split([di, G * N, G * N], dim=-1)
    return x.view(b, T, shape.H, shape.P), B.view(b, T, G, N), C.view(b, T, G, N)


def step(shape: Layer, xbc, w, bias, dt, A, D, backend):
    y = causal_conv1d(xbc, w, bias, activation="silu", backend=backend)
    x, B, C = cut(shape, y)
    ssd(x, dt, A, B, C, D=D, backend=backend).sum().backward()


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


def time_layer(shape: Layer, dev, conv_before: str | None, ssd_before: str | None, smoke: bool,
               rounds: int = 2) -> None:
    """Times each module's operators (the tree's, and an earlier file's beside it): each once untimed first (its
    kernels tuned), then `rounds` rounds in alternating order (now, before; before, now; ...), each figure the
    median of its rounds' medians, so that neither file is always timed first."""
    from triton.testing import do_bench

    from kernels.conv1d import triton as conv
    from kernels.ssd import triton as ssd_now

    xbc, w, bias, dt, A, D = (t.detach() for t in layer_inputs(shape, dev))
    dy = torch.randn_like(xbc)

    def compare(what: str, cases: list[tuple[str, object, object]], names=("forward", "forward+backward")) -> None:
        for _, _, second in cases:  # tunes every kernel before any timing
            second()
        if smoke:
            for name, _, _ in cases:
                print(f"{what} {name}: ran", flush=True)
            return
        times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in cases}
        for r in range(rounds):
            for name, first, second in cases if r % 2 == 0 else cases[::-1]:
                times[name].append((do_bench(first, return_mode="median"), do_bench(second, return_mode="median")))
        for name, _, _ in cases:
            a, b = (statistics.median(t[i] for t in times[name]) * 1e3 for i in (0, 1))
            print(f"{what} {name}: {names[0]} {a:.0f} µs, {names[1]} {b:.0f} µs", flush=True)

    b, T = shape.b, shape.T
    print(f"conv B{b} T{T} C{xbc.shape[-1]}, a slice of rows {xbc.stride(1)} wide; SSD B{b} T{T} H{shape.H} P{shape.P} "
          f"G{shape.G} N{shape.N}, x, B and C slices of the conv's output; medians of {rounds} rounds in alternating "
          "order", flush=True)
    convs = [("now", conv)] + ([("before", load_before(conv_before, "conv_before"))] if conv_before else [])
    compare("conv", [(name, lambda mod=mod: mod.causal_conv1d_fwd_op(xbc, w, bias, None, True),
                      lambda mod=mod: mod.causal_conv1d_bwd_op(dy, xbc, w, bias, None, True)) for name, mod in convs],
            ("forward", "backward"))
    y = xbc.clone().requires_grad_()  # the conv's output
    x, Bm, Cm = cut(shape, y)
    ssds = [("now", ssd_now)] + ([("before", load_before(ssd_before, "ssd_before"))] if ssd_before else [])
    cases = []
    for name, mod in ssds:
        if smoke:
            fwd = lambda: ssd(x, dt, A, Bm, Cm, D=D, backend="reference")  # noqa: E731
        else:
            fwd = lambda mod=mod: mod.ssd_triton(x, dt, A, Bm, Cm, D=D, chunk_size=64)[0]  # noqa: E731
        cases.append((name, fwd, lambda fwd=fwd: torch.autograd.grad(fwd().sum(), (y,))))
    compare("ssd", cases)
    if not smoke:  # what each file's kernels ran with: tuned here, or read from Triton's cache
        from kernels._triton import tuned_configs

        for label, modules in (("now", (conv, ssd_now)), ("before", [m for n, m in convs[1:] + ssds[1:]])):
            for kernel, key, cfg in tuned_configs(*modules):
                print(f"tuned ({label}): {kernel} at {key}: {cfg}", flush=True)


def gemm_rows(shape: Layer) -> list[tuple[str, int, int, int]]:
    """(name, M, N, K) of each distinct linear layer's forward GEMM, the proxy's and then the anchor's (the plain
    Transformer of proxy_throughput.py at the same size): M tokens, N outputs, K inputs; the in_proj at each
    padding of its rows."""
    M = shape.b * shape.T
    rows = [(f"in_proj, {shape.proj} wide (pad {p})", M, shape.proj + (-shape.proj % p), shape.d)
            for p in (1, 16, 64, 128)]
    anchor = plain_transformer(shape.params, 256)
    for label, model in ((FAMILY, shape.model), ("anchor", anchor)):
        seen = set()
        for name, mod in model.named_modules():
            key = (mod.out_features, mod.in_features) if isinstance(mod, torch.nn.Linear) else None
            if key and key not in seen and not name.endswith("in_proj"):
                seen.add(key)
                rows.append((f"{label} {name.split('.')[-1]}", M, *key))
    return rows


def time_gemms(shape, dev, smoke: bool) -> None:
    from triton.testing import do_bench

    print("| GEMM | M×N×K | forward | input grad | weight grad | TFLOP/s (fwd, dX, dW) |")
    print("|---|---|---:|---:|---:|---|")
    for name, M, N, K in gemm_rows(shape):
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


# ncu's metric names, by the table's columns
NCU_COLUMNS = {"µs": "Duration", "DRAM %": "DRAM Throughput", "L1 %": "L1/TEX Cache Throughput",
               "L2 %": "L2 Cache Throughput", "SM %": "Compute (SM) Throughput", "registers": "Registers Per Thread",
               "occupancy, theoretical %": "Theoretical Occupancy", "achieved %": "Achieved Occupancy"}
_MICROSECONDS = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}


def ncu_table(csv_text: str) -> list[str]:
    """An `ncu --csv` run's kernels as a markdown table, one row each in launch order (the sections SpeedOfLight,
    Occupancy and LaunchStats give its columns; a metric a run lacks is a dash). ncu's own lines before the
    header are skipped."""
    import csv
    import io

    lines = csv_text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        raise ValueError("no ncu CSV header (a line starting with \"ID\") in the input: run ncu with --csv")
    kernels: dict[str, dict[str, str]] = {}
    for r in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        k = kernels.setdefault(r["ID"], {"kernel": r["Kernel Name"], "grid": r["Grid Size"],
                                         "threads": r["Block Size"].strip("()").split(",")[0].strip()})
        for column, metric in NCU_COLUMNS.items():
            if r["Metric Name"] == metric:
                value = r["Metric Value"].replace(",", "")
                if column == "µs":
                    value = f"{float(value) * _MICROSECONDS[r['Metric Unit']]:.1f}"
                k[column] = value
    header = ["kernel", "grid", "threads", *NCU_COLUMNS]
    out = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for k in kernels.values():
        name = k["kernel"] if len(k["kernel"]) <= 60 else k["kernel"][:57] + "..."
        out.append("| " + " | ".join([f"`{name}`", k["grid"], k["threads"], *(k.get(c, "–") for c in NCU_COLUMNS)])
                   + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ncu", action="store_true", help="the layer's conv and SSD, once, inside a profiler range")
    ap.add_argument("--gemms", action="store_true", help="time the layer's GEMMs")
    ap.add_argument("--time", action="store_true", help="time the conv's and the SSD's operators")
    ap.add_argument("--conv-before", help="an earlier kernels/conv1d/triton.py to time beside (--time)")
    ap.add_argument("--ssd-before", help="an earlier kernels/ssd/triton.py to time beside (--time)")
    ap.add_argument("--rounds", type=int, default=2, help="--time's rounds, in alternating order (default 2)")
    ap.add_argument("--table", type=Path, metavar="CSV",
                    help="print an `ncu --csv` output of --ncu as a markdown table, one row a kernel (no GPU needed)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (reference ops; interpreter-free)")
    args = ap.parse_args()
    if args.table:
        try:
            print("\n".join(ncu_table(args.table.read_text())))
        except (OSError, ValueError) as e:
            raise SystemExit(f"--table {args.table}: {e}") from None
        return
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before the Triton kernels are imported
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("layer_kernels.py needs a CUDA GPU; --smoke runs it on the CPU")
    dev = torch.device("cpu" if args.smoke else "cuda")
    shape = proxy_layer(2e5, 2, 64) if args.smoke else proxy_layer(2.5e7, 32, 2048)
    if args.ncu or args.smoke:
        run_layer(shape, dev, "reference" if args.smoke else "triton", profile=args.ncu and not args.smoke)
        print("layer ran: conv and SSD, forward and backward", flush=True)
    if args.time or args.smoke:
        time_layer(shape, dev, args.conv_before, args.ssd_before, args.smoke, args.rounds)
    if args.gemms or args.smoke:
        time_gemms(shape, dev, args.smoke)


if __name__ == "__main__":
    main()
