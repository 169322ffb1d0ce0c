"""What early stopping (MO-ASHA) saves, and what it costs in hypervolume.

    python benchmarks/early_stopping.py              # cpu-tiny, 27 trials each way, the default rungs
    python benchmarks/early_stopping.py --asha 1/9,1/3,1:3 1/4,1:3:sync   # several settings, each a study
    python benchmarks/early_stopping.py --replay --asha 1/8,1:4 1/4,1:3   # every setting from one table
    python benchmarks/early_stopping.py --profile gpu-quick --gpus 0.25 --concurrency 4 --trials 24 --replay
    python benchmarks/early_stopping.py --smoke      # a tiny profile, seconds (CI)

The same search (space, sampler and seed: the same architectures) runs on the embedded default: every trial
to the end, then with successive halving at each `--asha` setting (RUNGS:ETA; default rungs 1/4, 1 and
eta 4, the spec's default; RUNGS:ETA:sync promotes synchronously, `nas.asha`).

Two ways to measure a setting:
- by default each setting runs as a study of its own, asynchronously, as a user's study would;
- `--replay` runs the same trials once more at each lower rung's budget (a study per budget whose first
  rung is that budget and which promotes nothing: its jobs run what a lower rung runs, the parts the
  objectives read) and plays every setting's successive halving over that table, rung by rung: the trials
  a setting promotes are trained exactly as in the table (the same seed and budget), so its hypervolume is
  the one it would get, and its cost is the sum of the measured job times of the jobs it would run. One
  table answers any number of settings; the asynchronous promotion of a real run differs in which trials
  reach a rung first (`--run RUNGS:ETA ...` also runs those settings as studies).

For each: the tokens trained, the job time (the sum of every job's wall time: GPU time at a fixed packing),
the trials that reached the full budget, and the hypervolume of the final Pareto front of full-budget
trials against a reference point of zero in every objective (both are maximised). Each run's line is
printed as it finishes and `docs/benchmarks/early_stopping.md` (`--out` elsewhere) rewritten with every
run so far, so that a run cut short by a time limit keeps what it measured.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

from _report import (  # beside this script
    RECALL_SPEED,
    command,
    machine,
    project_path_for_ray,
    recall_speed_study,
    smoke_profile,
    write,
)

project_path_for_ray()

from nas.asha import rank
from nas.pareto import hypervolume
from nas.reader import study_trials
from nas.runner import run_study
from nas.spec import StudySpec, validate

SMOKE_PROFILE = smoke_profile(2e5, lm_steps=9, task_steps=9)


def parse_asha(text: str) -> tuple[list[float], int, str]:
    """`1/9,1/3,1:3` -> ([1/9, 1/3, 1.0], 3, "asynchronous"); `1/4,1:3:sync` promotes synchronously."""
    rungs, _, rest = text.partition(":")
    eta, _, mode = rest.partition(":")
    if mode not in ("", "sync"):
        raise ValueError(mode)
    return [float(Fraction(x)) for x in rungs.split(",")], int(eta or 3), "synchronous" if mode else "asynchronous"


def asha_label(rungs: list[float], eta: int, promotion: str = "asynchronous") -> str:
    fractions = ", ".join(str(Fraction(r).limit_denominator(100)) for r in rungs)
    return f"MO-ASHA, rungs {fractions}; eta {eta}" + ("; synchronous" if promotion == "synchronous" else "")


def spec(name: str, tmp: Path, args, profile, asha: tuple[list[float], int] | None) -> StudySpec:
    es = {"enabled": True, "rungs": asha[0], "eta": asha[1], "promotion": asha[2]} if asha else None
    data = recall_speed_study(name, tmp, params=args.params, trials=args.trials, seed=args.seed, profile=profile,
                              concurrency=args.concurrency, gpus=args.gpus, early_stopping=es)
    return validate(StudySpec.model_validate(data))


def _tokens_per_job(profile, budget: float, lower: bool = False) -> int:
    """Tokens one job trains at `budget`; a job of a `lower` rung runs what the objectives read alone."""
    from workers.profile import load_profile
    from workers.result import parts_for

    p = load_profile(profile).scaled(budget)
    parts = parts_for(RECALL_SPEED, [t.name for t in p.synthetic.tasks]) if lower else None
    lm = p.lm.tokens if parts is None or "lm" in parts else 0
    return lm + sum((t.tokens or p.synthetic.tokens_per_task) for t in p.synthetic.tasks
                    if parts is None or t.name in parts)


def measure(s: StudySpec) -> dict:
    """Run a study to its end: its wall time, job time, tokens, full-budget trials and hypervolume."""
    t0 = time.perf_counter()
    run_study(s, show_progress=False, track=False)
    wall = time.perf_counter() - t0
    rows = study_trials(s.storage_url, s.name)
    failed = [r for r in rows if r.state == "FAIL" and (r.failure or {}).get("kind") != "infeasible"]
    if failed:  # a benchmark of broken trials would measure nothing
        raise SystemExit(f"{len(failed)} trial(s) of {s.name} failed, e.g. {failed[0].failure}")
    complete = [r for r in rows if r.state == "COMPLETE"]
    return {
        **_spent(s), "wall": wall, "complete": len(complete),
        "pruned": sum(r.state == "PRUNED" for r in rows),
        "hv": hypervolume([r.values for r in complete], s.directions, [0.0] * len(s.directions)) if complete else 0.0,
        "rows": complete,
    }


def _spent(s: StudySpec) -> dict[str, float]:
    """Tokens trained and job seconds over every job of the study, all rungs included."""
    from optuna import load_study

    rungs = s.early_stopping.rungs if s.early_stopping.enabled else [1.0]
    per_rung = [_tokens_per_job(s.profile, r, lower=k < len(rungs) - 1) for k, r in enumerate(rungs)]
    tokens = seconds = 0.0
    for t in load_study(study_name=s.name, storage=s.storage_url).trials:
        done = t.user_attrs.get("rung_done")
        if done is not None:
            tokens += sum(per_rung[: done + 1])
        seconds += t.user_attrs.get("job_seconds", 0.0)
    return {"tokens": tokens, "job_s": seconds}


def replay(table: dict[float, dict[str, dict]], rungs: list[float], eta: int, profile) -> dict:
    """Successive halving over `table` (budget -> architecture -> {values, seconds}), rung by rung: the
    promotions a synchronous study would make over these measurements."""
    directions = ["maximize"] * len(RECALL_SPEED)
    alive = sorted(table[rungs[0]])
    tokens = seconds = 0.0
    for k, budget in enumerate(rungs):
        tokens += len(alive) * _tokens_per_job(profile, budget, lower=k < len(rungs) - 1)
        seconds += sum(table[budget][key]["seconds"] for key in alive)
        if k == len(rungs) - 1:
            break
        values = [table[budget][key]["values"] for key in alive]
        trials = [SimpleNamespace(number=key) for key in alive]  # what nas.asha.rank reads of a trial
        alive = sorted(t.number for t in rank(trials, values, directions)[: len(alive) // eta])
    final = [table[1.0][key]["values"] for key in alive]
    return {"tokens": tokens, "job_s": seconds, "complete": len(alive), "pruned": len(table[rungs[0]]) - len(alive),
            "hv": hypervolume(final, directions, [0.0] * len(directions)) if final else 0.0, "wall": None}


def measure_rung(s: StudySpec) -> dict[str, dict]:
    """The first rung of `s` (its rungs: [budget, 1], with an eta that promotes nothing) for every trial, by
    architecture: objective values and job seconds, as a study's lower-rung jobs would measure them."""
    from optuna import load_study

    run_study(s, show_progress=False, track=False)
    out = {}
    for t in load_study(study_name=s.name, storage=s.storage_url).trials:
        a = t.user_attrs
        if "failure" in a and a["failure"].get("kind") != "infeasible":
            raise SystemExit(f"trial {t.number} of {s.name} failed: {a['failure']}")
        if "0" in a.get("rung_results", {}):
            key = repr(sorted(a["arch"].items()))
            out.setdefault(key, {"values": a["rung_results"]["0"], "seconds": a.get("job_seconds", 0.0)})
    return out


def _table_column(m: dict) -> dict[str, dict]:
    """One budget's trials by architecture: objective values and job seconds."""
    out = {}
    for r in m["rows"]:
        key = repr(sorted(r.arch.items()))
        out[key] = {"values": r.values, "seconds": r.metrics["wall_seconds"]}
    return out


def _seconds(s: float | None) -> str:
    return "—" if s is None else f"{s:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--profile", default="cpu-tiny")
    ap.add_argument("--budget", type=float, default=1.0, help="scale the profile's token budgets")
    ap.add_argument("--params", type=float, default=None, help="the space's parameter budget (default: the profile's)")
    ap.add_argument("--trials", type=int, default=27)
    ap.add_argument("--seed", type=int, default=7, help="the random sampler's seed (which architectures)")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--gpus", type=float, default=0.0, help="the GPU share of each trial (0.25: four per GPU)")
    ap.add_argument("--replay", action="store_true", help="play every setting over one table of rung results")
    ap.add_argument("--run", nargs="+", default=[], metavar="RUNGS:ETA",
                    help="with --replay: these settings also run as studies")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/early_stopping.md"))
    ap.add_argument("--asha", nargs="+", default=["1/4,1:4"], metavar="RUNGS:ETA[:sync]",
                    help="MO-ASHA settings to compare with the full run, e.g. 1/9,1/3,1:3 1/8,1:4 1/4,1:3:sync "
                         "(:sync promotes synchronously)")
    args = ap.parse_args()
    try:
        settings = [parse_asha(a) for a in args.asha]
        studies = [parse_asha(a) for a in args.run] if args.replay else settings
    except ValueError:
        raise SystemExit("--asha takes RUNGS:ETA[:sync] such as 1/9,1/3,1:3 or 1/4,1:3:sync; got "
                         f"{' '.join(args.asha)}") from None
    from workers.profile import load_profile

    profile = SMOKE_PROFILE if args.smoke else args.profile
    if args.smoke:
        args.trials = 4
    if args.budget != 1.0:
        profile = load_profile(profile).scaled(args.budget).model_dump()
    args.params = args.params or load_profile(profile).params
    name = profile if isinstance(profile, str) else profile.get("name", "smoke")
    share = f"{args.gpus:g} GPU each" if args.gpus else "on CPUs"
    runs: list[tuple[str, dict]] = []

    def report(label: str, r: dict) -> None:
        """Print a run's line as it finishes and rewrite the table with every run so far (a run cut short
        by a time limit keeps what it measured)."""
        runs.append((label, r))
        print(f"{label:56s} tokens {r['tokens']:>12,.0f}  job time {r['job_s']:7.0f}s  complete {r['complete']:2d}  "
              f"pruned {r['pruned']:2d}  hypervolume {r['hv']:.4g}", flush=True)
        if args.smoke:
            return
        full = runs[0][1]
        write(args.out, [
            "# Early stopping: compute saved against hypervolume",
            "",
            f"`{command()}` on {machine(gpu=bool(args.gpus))}: the `hybrid-ratio` space at "
            f"{args.params / 1e6:g}M parameters, profile `{name}`, {args.trials} trials each way, random sampler "
            f"with seed {args.seed}, {args.concurrency} trials at a time ({share}). Hypervolume of the full-budget "
            "Pareto front (synthetic accuracy × decode tokens/s, both maximised) against the origin; job time is "
            "the sum of every job's wall time.",
            "",
            "| run | tokens trained | job time | study wall time | full-budget trials | pruned | hypervolume |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(f"| {n} | {r['tokens']:,.0f} | {r['job_s']:.0f} s | {_seconds(r['wall'])} | {r['complete']} | "
              f"{r['pruned']} | {r['hv']:.4g} |" for n, r in runs),
            "",
            *(f"{n} trained {r['tokens'] / full['tokens']:.0%} of the tokens in {r['job_s'] / full['job_s']:.0%} of "
              f"the job time and kept {r['hv'] / full['hv']:.0%} of the hypervolume."
              for n, r in runs[1:] if full["hv"]),
            "",
        ])

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        full = measure(spec("full", tmp, args, profile, None))
        report("every trial to the end", full)
        if args.replay:
            table = {1.0: _table_column(full)}
            for budget in sorted({r for rungs, *_ in settings for r in rungs[:-1]}):
                # a study whose first rung is `budget` and whose eta promotes none of its trials
                table[budget] = measure_rung(spec(f"budget-{len(table)}", tmp, args, profile,
                                                  ([budget, 1.0], args.trials + 1, "asynchronous")))
                if set(table[budget]) != set(table[1.0]):
                    raise SystemExit(f"the study at budget {budget:g} sampled other architectures than the full "
                                     "run; the replay needs the same trials")
            for s in settings:
                report(asha_label(*s) + " (replayed)", replay(table, s[0], s[1], profile))
        for i, s in enumerate(studies):
            report(asha_label(*s), measure(spec(f"asha{i}", tmp, args, profile, s)))


if __name__ == "__main__":
    main()
