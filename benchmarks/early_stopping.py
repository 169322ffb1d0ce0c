"""What early stopping (MO-ASHA) saves, and what it costs in hypervolume.

    python benchmarks/early_stopping.py              # cpu-tiny, 27 trials each way, ~12 min on 2 CPU cores
    python benchmarks/early_stopping.py --asha 1/9,1/3,1:3 1/9,1/3,1:2     # several MO-ASHA settings
    python benchmarks/early_stopping.py --smoke      # a tiny profile, seconds (CI)

The same search (space, sampler and seed) runs on the embedded default: every trial to the end, then
with successive halving at each `--asha` setting (RUNGS:ETA; default rungs 1/9, 1/3, 1 and eta 3).
For each: the tokens trained (the compute),
the wall time, the trials that reached the full budget, and the hypervolume of the final Pareto front
of full-budget trials against a reference point of zero in every objective (both are maximised).
Writes `docs/benchmarks/early_stopping.md`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from _report import command, machine, project_path_for_ray, smoke_profile, write  # beside this script

project_path_for_ray()

from nas.pareto import hypervolume
from nas.reader import study_trials
from nas.runner import run_study
from nas.spec import StudySpec, validate

SMOKE_PROFILE = smoke_profile(2e5, lm_steps=9, task_steps=9)


def parse_asha(text: str) -> tuple[list[float], int]:
    """`1/9,1/3,1:3` -> ([1/9, 1/3, 1.0], 3)."""
    rungs, _, eta = text.partition(":")
    return [float(Fraction(x)) for x in rungs.split(",")], int(eta or 3)


def asha_label(rungs: list[float], eta: int) -> str:
    return "MO-ASHA, rungs " + ", ".join(str(Fraction(r).limit_denominator(100)) for r in rungs) + f"; eta {eta}"


def spec(name: str, tmp: Path, profile, trials: int, asha: tuple[list[float], int] | None) -> StudySpec:
    data = {
        "name": name,
        "space": "hybrid-ratio",
        "objectives": [{"metric": "synthetic_accuracy"}, {"metric": "decode_tps"}],
        "constraints": {"params": {"budget": 2e5, "tolerance": 0.35}},
        "sampler": "random",
        "seed": 7,
        "budget": {"trials": trials},
        "profile": profile,
        "concurrency": 2,
        "early_stopping": {"enabled": True, "rungs": asha[0], "eta": asha[1]} if asha else {"enabled": False},
        "storage": f"sqlite:///{tmp / 'studies.db'}",
        "tracking": f"sqlite:///{tmp / 'mlflow.db'}",
    }
    return validate(StudySpec.model_validate(data))


def measure(s: StudySpec) -> dict:
    t0 = time.perf_counter()
    run_study(s, show_progress=False, track=False)
    wall = time.perf_counter() - t0
    rows = study_trials(s.storage_url, s.name)
    tokens = _tokens(s)
    complete = [r.values for r in rows if r.state == "COMPLETE"]
    hv = hypervolume(complete, s.directions, [0.0] * len(s.directions)) if complete else 0.0
    failed = [r for r in rows if r.state == "FAIL" and (r.failure or {}).get("kind") != "infeasible"]
    if failed:  # a benchmark of broken trials would measure nothing
        raise SystemExit(f"{len(failed)} trial(s) of {s.name} failed, e.g. {failed[0].failure}")
    return {"tokens": tokens, "wall": wall, "complete": len(complete),
            "pruned": sum(r.state == "PRUNED" for r in rows), "hv": hv}


def _tokens(s: StudySpec) -> int:
    """Tokens trained over every job of the study, all rungs included."""
    from optuna import load_study

    from workers.profile import load_profile

    prof = load_profile(s.profile)
    per_rung = []
    for rung in (s.early_stopping.rungs if s.early_stopping.enabled else [1.0]):
        p = prof.scaled(rung)
        syn = sum((t.tokens or p.synthetic.tokens_per_task) for t in p.synthetic.tasks)
        per_rung.append(p.lm.tokens + syn)
    total = 0
    for t in load_study(study_name=s.name, storage=s.storage_url).trials:
        done = t.user_attrs.get("rung_done")
        if done is not None:
            total += sum(per_rung[: done + 1])
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--trials", type=int, default=27)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/early_stopping.md"))
    ap.add_argument("--asha", nargs="+", default=["1/9,1/3,1:3"], metavar="RUNGS:ETA",
                    help="MO-ASHA settings to compare with the full run, e.g. 1/9,1/3,1:3 1/9,1/3,1:2")
    args = ap.parse_args()
    try:
        settings = [parse_asha(a) for a in args.asha]
    except ValueError:
        raise SystemExit(f"--asha takes RUNGS:ETA such as 1/9,1/3,1:3; got {' '.join(args.asha)}") from None
    if args.smoke:
        profile, trials = SMOKE_PROFILE, 4
    else:
        profile, trials = "cpu-tiny", args.trials
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = [("every trial to the end", measure(spec("full", tmp, profile, trials, None)))]
        for i, (rungs, eta) in enumerate(settings):
            runs.append((asha_label(rungs, eta), measure(spec(f"asha{i}", tmp, profile, trials, (rungs, eta)))))
    for name, r in runs:
        print(f"{name:36s} tokens {r['tokens']:>12,}  wall {r['wall']:6.0f}s  complete {r['complete']:2d}  "
              f"pruned {r['pruned']:2d}  hypervolume {r['hv']:.4g}")
    if args.smoke:
        return
    full = runs[0][1]
    lines = [
        "# Early stopping: compute saved against hypervolume",
        "",
        f"`{command()}` on {machine()}: the "
        f"`hybrid-ratio` space at 0.2M parameters, profile `cpu-tiny`, {trials} trials each way, random sampler "
        "with seed 7, 2 trials at a time. Hypervolume of the full-budget Pareto front (synthetic accuracy × "
        "decode tokens/s, both maximised) against the origin.",
        "",
        "| run | tokens trained | wall time | full-budget trials | pruned | hypervolume |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {n} | {r['tokens']:,} | {r['wall']:.0f} s | {r['complete']} | {r['pruned']} | {r['hv']:.4g} |"
          for n, r in runs),
        "",
        *(f"{n} trained {r['tokens'] / full['tokens']:.0%} of the tokens and kept "
          f"{r['hv'] / full['hv']:.0%} of the hypervolume." for n, r in runs[1:] if full["hv"]),
        "",
    ]
    write(args.out, lines)


if __name__ == "__main__":
    main()
