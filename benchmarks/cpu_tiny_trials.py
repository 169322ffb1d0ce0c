"""Wall time of whole `cpu-tiny` trials: the demo study's architectures and every preset at proxy size.

    python benchmarks/cpu_tiny_trials.py                 # writes docs/benchmarks/cpu_tiny_trials.md
    python benchmarks/cpu_tiny_trials.py --no-demo --presets jamba --update   # re-measure rows, keep the rest
    python benchmarks/cpu_tiny_trials.py --smoke         # one small architecture at 1/20 of the budget (CI;
                                                         # writes nothing)

A trial is what a study's Ray task runs: `workers.evaluate.evaluate(arch, "cpu-tiny")`, i.e. LM
training and validation, the synthetic tasks, and the prefill/decode timings, one seed. The demo's
architectures are the `demo` study's space (8 layers at 0.2M parameters, placement `even`); a preset is
scaled to the profile's size by the presets' rule, which keeps its depth: a 64-sublayer preset at proxy
size costs about its depth's share more than a 16-sublayer proxy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# the project's packages, not this folder's kernels.py (a script's folder comes first)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import command, machine, write
from rich.console import Console
from rich.progress import Progress

from search_spaces import ArchConfig
from search_spaces.cost import param_counts
from search_spaces.presets import PRESETS, preset
from search_spaces.scaling import scale
from workers.evaluate import evaluate
from workers.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "cpu_tiny_trials.md"


def demo_archs() -> dict[str, ArchConfig]:
    """The demo study's points at placement `even` (each ratio with each SSM family; `all` once)."""
    from nas.spec import load_spec

    spec = load_spec(ROOT / "nas" / "studies" / "demo.yaml")
    space = spec.search_space()
    out = {}
    for ratio in space.dimensions["attn_ratio"]:
        families = space.dimensions["ssm"][:1] if ratio == "all" else space.dimensions["ssm"]  # no SSM layer
        for ssm in families:
            values = {"layers": space.dimensions["layers"], "attn_ratio": ratio, "placement": "even", "ssm": ssm}
            name = "demo all" if ratio == "all" else f"demo {ratio} {ssm}"
            out[name] = scale(space.build(values), spec.constraints.params.budget)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="*", default=list(PRESETS), help="presets to time (default: all)")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo study's architectures")
    ap.add_argument("--smoke", action="store_true", help="one small architecture, 1/20 of the budget")
    ap.add_argument("--update", action="store_true",
                    help="keep the table's other rows (re-measure some architectures after a change)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    profile = load_profile("cpu-tiny")
    if args.smoke:
        archs = {"smoke M-*-": ArchConfig(pattern="M-*-", d_model=32, vocab_size=256, attention={"heads": 1},
                                          mamba2={"d_state": 16, "head_dim": 32, "chunk_size": 16})}
        profile = profile.scaled(0.05)
    else:
        unknown = [p for p in args.presets if p not in PRESETS]
        if unknown:
            sys.exit(f"error: unknown preset {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
        archs = {} if args.no_demo else demo_archs()
        archs |= {name: scale(preset(name), profile.params, vocab_size=256) for name in args.presets}
    console = Console()
    runs, rows = read(args.out) if args.update else ([], {})
    run = f"`{command()}` on {machine()} (reference ops): "
    runs.append(run)
    measured: list[str] = []
    with Progress(console=console) as bar:
        task = bar.add_task("cpu-tiny trials", total=len(archs))
        for name, arch in archs.items():
            t0 = time.perf_counter()
            result = evaluate(arch, profile)
            wall = time.perf_counter() - t0
            if result.status != "ok":
                sys.exit(f"error: the {name} trial failed: {result.failure}")
            bar.console.print(f"{name:<28} {len(arch.pattern):>3} sublayers  {wall:6.1f} s")
            bar.advance(task)
            if not args.smoke:  # the table so far, so that a long run's finished rows are kept
                rows[name] = row(name, arch, wall)
                measured.append(name)
                runs[-1] = run + ", ".join(measured)  # only what this run has measured so far
                write_table(args.out, runs, rows)


def row(name: str, arch: ArchConfig, wall: float) -> str:
    shown = arch.pattern if len(arch.pattern) <= 24 else arch.pattern[:21] + "…"
    return f"| {name} (`{shown}`) | {len(arch.pattern)} | {arch.d_model} | {param_counts(arch).total:,} | {wall:.1f} |"


def read(out: Path) -> tuple[list[str], dict[str, str]]:
    """The runs and rows of an earlier table (for --update)."""
    if not out.exists():
        return [], {}
    lines = out.read_text().splitlines()
    runs = [ln.removeprefix("- ") for ln in lines if ln.startswith(("- `python", "`python"))]
    rows = {ln[2:].split(" (`")[0]: ln for ln in lines if ln.startswith("| ") and " (`" in ln}
    return runs, rows


def write_table(out: Path, runs: list[str], rows: dict[str, str]) -> None:
    write(out, [
        "# Wall time of whole cpu-tiny trials",
        "",
        "A trial: LM training and validation, the synthetic tasks, the prefill and decode timings; one seed "
        "(what a study's Ray task runs). The target for `cpu-tiny` is 60 s a trial.",
        "",
        "Each row is from the last of these runs that measured it:",
        "",
        *(f"- {r}" for r in runs),
        "",
        "| architecture | sublayers | d_model | params | wall s |",
        "|---|---:|---:|---:|---:|",
        *rows.values(),
    ])


if __name__ == "__main__":
    main()
