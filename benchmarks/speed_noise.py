"""How far a packed trial's speed figure is from the same architecture's speed measured alone.

    python benchmarks/speed_noise.py                   # a GPU machine: gpu-quick at 1/4 of its tokens, 4 per GPU
    python benchmarks/speed_noise.py --profile cpu-tiny --per 2      # a CPU machine: two at a time
    python benchmarks/speed_noise.py --smoke           # a tiny profile on the CPU (CI)

The eight architectures of `gpu_packing.py` (8-layer 1:7 hybrids of the four linear families, RoPE and
NoPE) run three times on the embedded default: one trial at a time (the reference: nothing else runs),
then `--per` at a time taking turns to measure speed (`workers/turns.py`, the default), then `--per` at a
time with turns off (`NAS_TURNS=off`: each trial times its decoding while the others train). For each
packed run: every architecture's decode tokens/s at the profile's longest context divided by its
reference, and the spread of those ratios. Writes `docs/benchmarks/speed_noise.md` (`--out` elsewhere).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from pathlib import Path

from _report import command, machine, project_path_for_ray, smoke_profile, write
from gpu_packing import FACTORS, spec  # beside this script: import it before the path leaves benchmarks/ out

project_path_for_ray()

from nas.reader import study_trials
from nas.runner import run_study

SMOKE_PROFILE = smoke_profile(5e4, lm_steps=4, task_steps=3)
SMOKE_FACTORS = {"ssm": ["mamba2", "mlstm"], "pos": FACTORS["pos"]}  # --smoke: half the grid, both positions


def speeds(profile, per: int, gpu: bool, turns: bool, factors: dict) -> dict[str, float]:
    """Decode tokens/s at the longest context, by pattern and position setting, for one run of the grid."""
    os.environ["NAS_TURNS"] = "on" if turns else "off"  # the local Ray's workers inherit it
    with tempfile.TemporaryDirectory() as tmp:
        s = spec(f"speed-{per}", Path(tmp), profile, per, 1, gpu, factors)
        run_study(s, show_progress=False, track=False)
        rows = study_trials(s.storage_url, s.name)
    os.environ.pop("NAS_TURNS")
    failed = [r for r in rows if r.state != "COMPLETE"]
    if failed:
        raise SystemExit(f"{len(failed)} trial(s) did not complete, e.g. {failed[0].failure}")
    return {f"{r.pattern} {r.params['pos']}": r.metrics["decode_tps"] for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="gpu-quick")
    ap.add_argument("--budget", type=float, default=0.25, help="scale the profile's token budgets")
    ap.add_argument("--per", type=int, default=4, help="trials at a time in the packed runs")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/speed_noise.md"))
    args = ap.parse_args()
    import torch

    from workers.profile import load_profile

    gpu = torch.cuda.is_available() and not args.smoke
    profile = SMOKE_PROFILE if args.smoke else load_profile(args.profile).scaled(args.budget).model_dump()
    if args.smoke:
        args.per, args.budget = 2, 1.0
    factors = SMOKE_FACTORS if args.smoke else FACTORS
    alone = speeds(profile, 1, gpu, True, factors)
    runs = {"taking turns": speeds(profile, args.per, gpu, True, factors),
            "turns off": speeds(profile, args.per, gpu, False, factors)}
    unit = "GPU" if gpu else "machine"
    name = profile.get("name", "smoke")
    lines = [
        "# Speed measured beside other trials", "",
        f"`{command()}` on {machine(gpu=gpu)}; profile `{name}` at {args.budget:g} of its tokens; decode tokens/s "
        f"at the longest context of each architecture with {args.per} trials per {unit}, divided by the same "
        f"architecture's figure with one trial per {unit}.", "",
        "| architecture | alone, tokens/s | " + " | ".join(f"{k} ÷ alone" for k in runs) + " |",
        "|---|---:|" + "---:|" * len(runs),
    ]
    for arch, ref in alone.items():
        lines.append(f"| `{arch}` | {ref:,.0f} | " + " | ".join(f"{r[arch] / ref:.2f}" for r in runs.values()) + " |")
    lines.append("")
    for label, r in runs.items():
        logs = [abs(math.log(r[a] / alone[a])) for a in alone]
        lines.append(f"{label}: median |log ratio| {statistics.median(logs):.2f}, worst ratio "
                     f"{max(max(r[a] / alone[a], alone[a] / r[a]) for a in alone):.2f}× away from alone.")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.smoke:
        write(args.out, text.splitlines())


if __name__ == "__main__":
    main()
