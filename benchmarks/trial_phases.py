"""Where a trial's time goes: every phase of `workers.evaluate` timed, for one architecture per family.

    python benchmarks/trial_phases.py                        # gpu-quick at a quarter of its tokens, on the GPU
    python benchmarks/trial_phases.py --profile cpu-tiny --budget 1     # on a CPU
    python benchmarks/trial_phases.py --smoke                # a tiny profile, seconds (CI)

Each architecture is evaluated `--runs` times in this one process (the first run pays for compiling and
autotuning the kernels; the later ones are what a worker that has run a trial before pays). Phases: the
corpus and tasks, building models, training (language modelling and each synthetic task), scoring, and the
throughput measurement split into cache allocation, prefill, CUDA-graph capture and decoding. Each timed
call synchronises the GPU first and last, so a phase's figure is its own. Writes nothing: the table is
printed (docs/gpu-studies.md quotes it with this command).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import defaultdict

from _report import machine, project_path_for_ray, smoke_profile

project_path_for_ray()

import torch

import workers.evaluate as ev
import workers.score as score
from search_spaces import ArchConfig
from search_spaces.scaling import scale
from workers.models import GraphDecoder, HybridLM
from workers.profile import load_profile

FAMILIES = {
    "attention": "*-*-*-*-*-*-*-*-",
    "mamba2 1:7": "M-M-M-M-*-M-M-M-",
    "mamba1 1:7": "m-m-m-m-*-m-m-m-",
    "mlstm 1:7": "X-X-X-X-*-X-X-X-",
    "deltanet 1:7": "D-D-D-D-*-D-D-D-",
}
BASE = {"d_model": 256, "vocab_size": 256, "attention": {"heads": 4}}

spent: dict[str, float] = defaultdict(float)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(name: str, fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        _sync()
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            _sync()
            spent[name] += time.perf_counter() - t0

    return wrapper


def instrument() -> None:
    """Wrap every phase where `workers.evaluate` and `workers.score` look it up."""
    for name in ("load_corpus", "make_task", "build_model", "lm_val_loss", "task_scores", "throughput"):
        setattr(ev, name, timed(name, getattr(ev, name)))
    original_train = ev.train
    ev.train = lambda *a, task, **k: timed(f"train {'lm' if task == 'lm' else 'tasks'}", original_train)(
        *a, task=task, **k)
    HybridLM.init_cache = timed("  throughput: cache", HybridLM.init_cache)
    HybridLM.prefill = timed("  throughput: prefill", HybridLM.prefill)
    GraphDecoder.__init__ = timed("  throughput: graph capture", GraphDecoder.__init__)
    GraphDecoder.advance = timed("  throughput: decode", GraphDecoder.advance)
    score.GraphDecoder = GraphDecoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="gpu-quick")
    ap.add_argument("--budget", type=float, default=0.25)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--smoke", action="store_true", help="a tiny profile on the CPU, two families, one run each")
    args = ap.parse_args()
    if args.smoke:
        args.profile, args.budget, args.runs = smoke_profile(1e5, lm_steps=3, task_steps=3), 1.0, 1
        args.families = "attention,mamba2 1:7"
    profile = load_profile(args.profile)
    instrument()
    columns = []
    for family in args.families.split(","):
        arch = scale(ArchConfig.from_dict({**BASE, "pattern": FAMILIES[family]}), profile.params, vocab_size=256)
        for run in range(args.runs):
            spent.clear()
            t0 = time.perf_counter()
            r = ev.evaluate(arch, profile, budget=args.budget)
            total = time.perf_counter() - t0
            phases = dict(spent)
            phases["throughput"] = phases.get("throughput", 0.0)
            named = sum(v for k, v in phases.items() if not k.startswith("  "))
            phases["(the rest)"] = total - named
            phases["total"] = total
            columns.append((f"{family} #{run + 1}", phases))
            print(f"{family} run {run + 1}: {total:.1f} s ({r.status})", flush=True)
    names = sorted({k for _, p in columns for k in p} - {"total", "(the rest)"}, key=lambda k: k.strip())
    names += ["(the rest)", "total"]
    print(f"\n{profile.name} at {args.budget:g} of its tokens on {machine(gpu=True)}; seconds\n")
    print("| phase | " + " | ".join(c for c, _ in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{p.get(n, 0.0):.2f}" for _, p in columns) + " |")


if __name__ == "__main__":
    main()
