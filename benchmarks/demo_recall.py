"""Does the demo's recall score rank attention above pure SSMs? The demo's architectures, several seeds.

    python benchmarks/demo_recall.py                    # cpu-demo, 3 seeds; writes docs/benchmarks/demo_recall.md
    python benchmarks/demo_recall.py --profile cpu-tiny --seeds 0 1 --out /tmp/tiny.md   # another profile
    python benchmarks/demo_recall.py --smoke            # 3 architectures, 1 seed, 1/20 of the budget (CI;
                                                        # writes nothing)

The architectures are the `demo` study's space (`nas/studies/demo.yaml`) at placement `even`: every
attention ratio with each of its SSM families, plus pure Mamba-1 built from the same base, each scaled
to the study's parameter budget as a demo trial is. Each is trained and scored by
`workers.evaluate.evaluate` once per seed (the seed sets the model's initialisation and its data), two
trials at a time with one CPU thread each, as `nas demo` runs them (two Ray workers of one CPU).

The table gives each architecture's recall (`synthetic_accuracy`: the MQAR accuracy) per seed, its mean
and spread, and its MQAR loss; below it, attention-bearing architectures against pure SSMs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# the project's packages, not this folder's kernels.py (a script's folder comes first)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _report import command, machine, write

OUT = ROOT / "docs" / "benchmarks" / "demo_recall.md"


def demo_archs(extra_ratios: tuple[str, ...] = ("1:3",), extra_ssm: tuple[str, ...] = ("mamba1",)) -> dict[str, dict]:
    """name -> ArchConfig dict: the demo's ratios × SSM families at placement `even`; then points the demo
    does not sample, to show where the ranking stops holding: each ratio of `extra_ratios` with the
    demo's SSM families, and each SSM family of `extra_ssm` alone."""
    from nas.spec import load_spec
    from search_spaces.scaling import scale

    spec = load_spec(ROOT / "nas" / "studies" / "demo.yaml")
    space = spec.search_space()
    dims = space.dimensions
    out = {}
    points = [(r, s) for r in dims["attn_ratio"] for s in (dims["ssm"][:1] if r == "all" else dims["ssm"])]
    extra = [(r, s) for r in extra_ratios if r not in dims["attn_ratio"] for s in dims["ssm"]]
    extra += [("0", s) for s in extra_ssm if s not in dims["ssm"]]
    for ratio, ssm in points + extra:
        values = {"layers": dims["layers"], "attn_ratio": ratio, "placement": "even", "ssm": ssm}
        name = ("all attention" if ratio == "all" else f"{ratio} {ssm}") + ("*" if (ratio, ssm) in extra else "")
        out[name] = scale(space.build(values), spec.constraints.params.budget).to_dict()
    return out


def _trial(job: tuple[str, dict, str, int, float]) -> dict:
    import torch

    torch.set_num_threads(1)  # one core per trial, as a Ray worker with cpus: 1
    from search_spaces import ArchConfig
    from workers.evaluate import evaluate

    name, arch, profile, seed, budget = job
    t0 = time.perf_counter()
    r = evaluate(ArchConfig.from_dict(arch), profile, seed=seed, budget=budget)
    if r.status != "ok":
        raise SystemExit(f"error: {name} (seed {seed}) failed: {r.failure}")
    mqar = r.tasks.get("mqar")
    return {
        "name": name,
        "seed": seed,
        "accuracy": r.synthetic_accuracy,
        "loss": mqar.val_loss if mqar else math.nan,
        "wall": time.perf_counter() - t0,
        "decode": r.throughput[-1].decode_tokens_per_s,
    }


def summary(rows: dict[str, dict]) -> list[str]:
    """The demo's attention-bearing architectures against every pure SSM measured (the demo's and the
    extra family), from the per-architecture means; then the extra attention-bearing points."""
    attn = {n: r for n, r in rows.items() if r["attention"] > 0 and not n.endswith("*")}
    extra = {n: r for n, r in rows.items() if r["attention"] > 0 and n.endswith("*")}
    pure = {n: r for n, r in rows.items() if r["attention"] == 0}
    if not attn or not pure:
        return []
    low = min(attn, key=lambda n: attn[n]["mean"])
    high = max(pure, key=lambda n: pure[n]["mean"])
    spread = statistics.median(r["sd"] for r in rows.values())
    gap = attn[low]["mean"] - pure[high]["mean"]
    mean = lambda rs: statistics.fmean(r["mean"] for r in rs.values())  # noqa: E731
    lines = [
        f"- the demo's attention-bearing architectures ({len(attn)}): mean recall {mean(attn):.3f}; "
        f"the lowest, {low}, {attn[low]['mean']:.3f}",
        f"- pure SSMs ({len(pure)}): mean recall {mean(pure):.3f}; the highest, {high}, {pure[high]['mean']:.3f}",
        f"- the lowest attention-bearing mean minus the highest pure-SSM mean: {gap:+.3f}; the median "
        f"standard deviation over seeds: {spread:.3f}",
    ]
    if extra:
        lines.append(
            "- not in the demo's space: "
            + ", ".join(f"{n[:-1]} {r['mean']:.3f}" for n, r in extra.items())
            + f" (against {pure[high]['mean']:.3f} for the best pure SSM)"
        )
    return lines


def render(command: str, machine: str, profile, seeds: list[int], rows: dict[str, dict], minutes: float) -> str:
    task = profile.synthetic.tasks[0] if profile.synthetic.tasks else None
    what = "the mean task accuracy."
    if task is not None and task.name == "mqar":
        v = task.settings.get("vocab_size", 8192)
        settings = ", ".join(f"{k} {x}" for k, x in task.settings.items())
        what = (f"MQAR accuracy over {profile.synthetic.eval_examples} held-out sequences ({settings}; "
                f"chance is 1/{v - v // 2} = {1 / (v - v // 2):.3f}).")
    lines = [
        "# Recall of the demo's architectures",
        "",
        f"`{command}` on {machine}; {minutes:.1f} min in all (two trials at a time, one thread each).",
        "",
        f"Profile `{profile.name}`: {profile.description.strip()}",
        "",
        "Recall is `synthetic_accuracy`, the demo's first objective: " + what,
        f"Seeds {', '.join(map(str, seeds))}: each sets the model's initialisation and its training and "
        "evaluation data. Wall seconds are per trial, the mean over seeds. Architectures marked * are not "
        "in the demo's space: the summary below counts a pure SSM among them with the pure SSMs and lists "
        "the others apart.",
        "",
        "| architecture | pattern | attention layers | d_model | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | mean | sd | MQAR loss | wall s |",
        "|---|---|---:|---:|" + "---:|" * (len(seeds) + 4),
    ]
    for name, r in rows.items():
        cells = [name, f"`{r['pattern']}`", str(r["attention"]), str(r["d_model"])]
        cells += [f"{a:.3f}" for a in r["accuracies"]]
        cells += [f"**{r['mean']:.3f}**", f"{r['sd']:.3f}", f"{r['loss']:.2f}", f"{r['wall']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *summary(rows), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu-demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=2, help="trials at a time (one thread each)")
    ap.add_argument("--smoke", action="store_true", help="3 architectures, 1 seed, 1/20 of the budget")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    from search_spaces import ArchConfig
    from workers.profile import load_profile

    profile = load_profile(args.profile)
    archs = demo_archs()
    budget, seeds = 1.0, args.seeds
    if args.smoke:
        archs = {n: archs[n] for n in ("all attention", "0 mamba2", "0 mamba1*")}
        budget, seeds = 0.05, seeds[:1]
    jobs = [(name, archs[name], args.profile, seed, budget) for name in archs for seed in seeds]
    t0 = time.perf_counter()
    results: dict[str, list[dict]] = {name: [] for name in archs}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for r in pool.map(_trial, jobs):
            results[r["name"]].append(r)
            print(f"{r['name']:<16} seed {r['seed']}  recall {r['accuracy']:.3f}  loss {r['loss']:.2f}  "
                  f"{r['wall']:5.1f} s", flush=True)
    rows = {}
    for name, rs in results.items():
        cfg = ArchConfig.from_dict(archs[name])
        acc = [r["accuracy"] for r in sorted(rs, key=lambda r: r["seed"])]
        rows[name] = {
            "pattern": cfg.pattern,
            "attention": cfg.pattern.count("*"),
            "d_model": cfg.d_model,
            "accuracies": acc,
            "mean": statistics.fmean(acc),
            "sd": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "loss": statistics.fmean(r["loss"] for r in rs),
            "wall": statistics.fmean(r["wall"] for r in rs),
        }
    for line in summary(rows):
        print(line)
    if args.smoke:
        return
    import torch  # noqa: F401  (named in the machine line)

    text = render(command(), machine(), profile, seeds, rows, (time.perf_counter() - t0) / 60)
    write(args.out, text.splitlines())


if __name__ == "__main__":
    main()
