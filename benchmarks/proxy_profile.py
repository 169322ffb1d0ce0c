"""Where a proxy's training step spends its GPU time, kernel by kernel, and what fusing the conv changed.

    python benchmarks/proxy_profile.py                      # on a CUDA GPU: docs/benchmarks/proxy_profile.md
    python benchmarks/proxy_profile.py --families mamba2 --conv unfused,fused
    python benchmarks/proxy_profile.py --families "anchor,attention" --compiled --conv fused
    python benchmarks/proxy_profile.py --smoke              # tiny, CPU, nothing written (CI)

Each family is `proxy_throughput.py`'s (the proxy-evidence pattern scaled to `--params`, vocab 256; `anchor`
is its plain Transformer), trained eagerly as the profiles train it, or under `torch.compile` with
`--compiled` (the whole model, as `proxy_throughput.py` compiles it): forward, backward and fused AdamW under
bf16 autocast, B = tokens / T.
`torch.profiler` records `--steps` steps after `--warmup`; each kernel's time is its GPU time per step, and
kernels fall into groups by name (GEMMs, the recurrent ops' Triton kernels, the conv, norms, the optimizer,
the rest). `--conv unfused` runs the short convolution as before the fused kernel (cuDNN's depthwise
`conv1d`, then SiLU as its own op), `fused` as now (`kernels.conv1d`): both in one run, side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from _report import command, families, machine, publish
from proxy_evidence import arch
from proxy_throughput import FAMILIES, next_token_loss, plain_transformer

from workers.models import build_model
from workers.models.conv import CausalConv1d
from workers.train import autocast

GROUPS = [  # (group, pattern of kernel names), first match wins
    ("optimizer", r"adam|multi_tensor|foreach"),
    ("conv", r"conv1d|conv_depthwise|convolution|conv2d|causal_conv"),
    ("recurrent op (Triton)", r"ssd_|selective_scan|mlstm_|gated_delta|_delta_|chunk_"),
    ("attention", r"flash|fmha|attention|sdpa|efficient_attention"),
    ("GEMM", r"gemm|sm90_xmma|cutlass|nvjet|cublas|matmul|dot_kernel"),
    ("norm", r"norm|rsqrt"),
    ("softmax / loss", r"softmax|cross_entropy|nll|log_softmax"),
    ("copy / cast", r"copy|cast|convert|to_copy|cat|transpose"),
    ("elementwise / reduce", r"elementwise|vectorized|reduce|unrolled|index|fill|silu|sigmoid|softplus|exp"),
]


def group_of(name: str) -> str:
    low = name.lower()
    return next((g for g, pat in GROUPS if re.search(pat, low)), "other")


def _unfused_forward(self: CausalConv1d, x: torch.Tensor, state: torch.Tensor | None = None):
    """The conv as it ran before `kernels.conv1d`: the input padded by a copy, cuDNN's depthwise conv, SiLU."""
    if state is None:
        state = self.init_state(x.shape[0], x.device, x.dtype)
    xp = torch.cat([state.to(x.dtype), x], dim=1)
    y = F.conv1d(xp.transpose(1, 2), self.conv.weight, self.conv.bias, groups=self.conv.groups).transpose(1, 2)
    if self.activation == "silu":
        y = F.silu(y)
    return y, xp[:, xp.shape[1] - (self.width - 1) :]


@contextlib.contextmanager
def conv_path(kind: str):
    if kind == "fused":
        yield
        return
    fused = CausalConv1d.forward
    CausalConv1d.forward = _unfused_forward
    try:
        yield
    finally:
        CausalConv1d.forward = fused


def profile_step(model, batch: int, length: int, steps: int, warmup: int, dev: torch.device):
    """(ms per step by wall clock, {kernel name: GPU µs per step}) over `steps` profiled training steps."""
    from torch.profiler import ProfilerActivity, profile

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
    idx = torch.randint(0, 256, (batch, length + 1), device=dev)

    def step():
        with autocast(dev):
            loss = next_token_loss(model, idx)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        per_step_ms = (time.perf_counter() - t0) * 1e3 / steps
    return per_step_ms, {k: t for k, (t, _) in kernel_times(prof, dev, steps).items()}


def kernel_times(prof, dev: torch.device, per: int) -> dict[str, tuple[float, float]]:
    """{kernel name: (GPU µs, launches)} of a finished profile, each divided by `per` (steps); on the CPU the
    operators' own CPU time instead."""
    kernels: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for e in prof.key_averages():
        if dev.type == "cuda" and e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        t = e.device_time_total if dev.type == "cuda" else e.self_cpu_time_total
        if t > 0:
            kernels[e.key][0] += t / per
            kernels[e.key][1] += e.count / per
    return {k: (t, n) for k, (t, n) in kernels.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="mamba2,hybrid 1:7,mamba1,mlstm,gated deltanet,attention",
                    help=f"comma-separated, of: anchor, {', '.join(FAMILIES)}")
    ap.add_argument("--compiled", action="store_true", help="torch.compile each model (whole) before profiling")
    ap.add_argument("--conv", default="unfused,fused", help="unfused, fused or both (comma-separated)")
    ap.add_argument("--params", type=float, default=2.5e7)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--tokens-per-step", type=int, default=65536)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/proxy_profile.md"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, nothing written")
    args = ap.parse_args()
    chosen = families(args.families, {"anchor": None, **FAMILIES})
    convs = [c.strip() for c in args.conv.split(",") if c.strip()]
    if bad := [c for c in convs if c not in ("unfused", "fused")]:
        raise SystemExit(f"--conv: unknown path {bad[0]!r}; use unfused, fused or unfused,fused")
    if args.smoke:
        args.params, args.length, args.tokens_per_step, args.steps, args.warmup = 2e5, 32, 64, 1, 1
        chosen = chosen[:2]
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cpu" and not args.smoke:
        print("no CUDA GPU: the profile shows CPU operator times, not GPU kernels", flush=True)
    batch = max(1, args.tokens_per_step // args.length)

    mode = "compiled (torch.compile of the whole model)" if args.compiled else "eager"
    lines = [
        "# Where a proxy's training step spends its GPU time",
        "",
        f"`{command()}` on {machine(gpu=dev.type == 'cuda')}. ~{args.params / 1e6:g}M parameters, vocab 256, "
        f"B{batch} T{args.length}, {mode}, {'bf16 autocast, fused AdamW' if dev.type == 'cuda' else 'fp32'}; "
        f"{args.steps} profiled steps after {args.warmup}. ms per step by the clock over the "
        "profiled steps (the profiler's own cost included); "
        "kernel times are GPU time per step. *unfused*: cuDNN depthwise conv1d then SiLU (the conv as it ran "
        "before); *fused*: `kernels.conv1d` (one Triton kernel each way).",
        "",
        "## By group (ms per step)",
        "",
    ]
    detail: list[str] = []
    summary: list[tuple[str, str, float, dict[str, float]]] = []
    for name in chosen:
        cfg = arch(FAMILIES[name], args.params) if name != "anchor" else None
        if cfg is None:
            pattern, d_model = "", plain_transformer(args.params, 256).embed.embedding_dim
        else:
            pattern, d_model = cfg.pattern, cfg.d_model
        for conv in convs:
            if conv == "unfused" and not any(s in pattern for s in "mMD"):
                continue  # no conv in this family
            torch.manual_seed(0)
            try:
                model = (build_model(cfg) if cfg else plain_transformer(args.params, 256)).to(dev)
                if args.compiled:
                    torch._dynamo.reset()  # each model compiles afresh, as in proxy_throughput.py
                    model = torch.compile(model)
                with conv_path(conv):
                    ms, kernels = profile_step(model, batch, args.length, args.steps, args.warmup, dev)
            except torch.OutOfMemoryError:
                print(f"{name} ({conv}): out of memory", flush=True)
                continue
            finally:
                model = None
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            groups: dict[str, float] = defaultdict(float)
            for k, us in kernels.items():
                groups[group_of(k)] += us / 1e3
            summary.append((name, conv, ms, dict(groups)))
            total = sum(kernels.values()) / 1e3
            print(f"{name:16s} {conv:8s} {ms:8.2f} ms/step; " + ", ".join(
                f"{g} {v:.2f}" for g, v in sorted(groups.items(), key=lambda kv: -kv[1])), flush=True)
            detail += [f"### {name} `{pattern}` d{d_model}, {conv}: {ms:.2f} ms per step", "",
                       "| kernel | group | ms / step | share of GPU time |", "|---|---|---:|---:|"]
            for k, us in sorted(kernels.items(), key=lambda kv: -kv[1])[: args.top]:
                short = k if len(k) <= 90 else k[:87] + "..."
                detail.append(f"| `{short}` | {group_of(k)} | {us / 1e3:.3f} | {us / 1e3 / total:.0%} |")
            detail.append("")
    names = sorted({g for *_, gs in summary for g in gs}, key=lambda g: -sum(s[3].get(g, 0) for s in summary))
    lines += ["| family | conv | ms / step | tok/s | " + " | ".join(names) + " |",
              "|---|---|---:|---:|" + "---:|" * len(names)]
    for name, conv, ms, gs in summary:
        lines.append(f"| {name} | {conv} | {ms:.2f} | {batch * args.length / ms * 1e3 / 1e6:.3f} M | "
                     + " | ".join(f"{gs.get(g, 0):.2f}" for g in names) + " |")
    lines += ["", "## The top kernels of each", "", *detail]
    publish(args.out, lines, args.smoke)


if __name__ == "__main__":
    main()
