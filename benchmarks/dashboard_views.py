"""How long the Study page's search views take on a 10,000-trial study: hypervolume, parallel
coordinates, slices.

    python benchmarks/dashboard_views.py            # 10,000 trials, 2 and 3 objectives; writes
                                                    # docs/benchmarks/dashboard_views.md
    python benchmarks/dashboard_views.py --smoke    # 500 trials (CI; writes nothing)

The studies are `dashboard_load.py`'s (its generator writes finished trials straight into Optuna's
tables), one with its two objectives and one with a third (`lm_loss`, minimised). Each tab is opened in
Streamlit's `AppTest` as a visit runs it: cold (Streamlit's caches cleared, so the trials are read and
the view computed anew), then warm (the same page again, as a refresh that finds nothing new). The
Trials tab, the page's default, is the baseline: the other tabs replace its table with their figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import command, machine, write

OUT = ROOT / "docs" / "benchmarks" / "dashboard_views.md"
OBJECTIVES = [
    {"metric": "synthetic_accuracy", "direction": "maximize"},
    {"metric": "decode_tps", "direction": "maximize"},
    {"metric": "lm_loss", "direction": "minimize"},
]


def time_tab(storage: str, name: str, tab: str, repeats: int) -> tuple[float, float, int]:
    """(median cold seconds, warm seconds, figures drawn) of the Study page opened on `tab`."""
    from dashboard_load import time_apptest

    cold, warm, figures = time_apptest(storage, name, repeats, tab=tab)
    return statistics.median(cold), warm, figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="500 trials, one repeat, writes nothing")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    trials, repeats = (500, 1) if args.smoke else (args.trials, args.repeats)

    from dashboard_load import make_study

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'studies.db'}"
        studies = {"bench2": OBJECTIVES[:2], "bench3": OBJECTIVES}
        for name, objectives in studies.items():
            make_study(storage, name, trials, objectives=objectives)
        for name, objectives in studies.items():
            for tab in ("Trials", "Hypervolume", "Parallel coordinates", "Slices"):
                cold, warm, n = time_tab(storage, name, tab, repeats)
                rows.append((len(objectives), tab, cold, warm))
                print(f"{len(objectives)} objectives  {tab:<22} cold {cold:5.2f} s  warm {warm:5.2f} s  "
                      f"({n} figures)", flush=True)
    if args.smoke:
        return
    import streamlit

    lines = [
        f"# Dashboard: the Study page's search views on a {trials:,}-trial study",
        "",
        f"`{command()}` on {machine()}; streamlit {streamlit.__version__}, SQLite.",
        "",
        f"The studies: {trials:,} finished trials each from `dashboard_load.py`'s generator (about 97% "
        "complete), with two objectives (recall, decode speed) and with three (and LM loss). Each tab: the "
        f"Study page opened on it in `AppTest` with Streamlit's caches cleared, median of {repeats} (cold: "
        "the trials read, the front, the page's header and the tab's view computed), then run again (warm). "
        "The Trials tab, the page's default, is the baseline; each other tab draws its figure instead of "
        "the table. The parallel coordinates draw 2,000 of the trials and the slices 3,000 (every front "
        "trial and a sample of the others); the hypervolume is evaluated at 300 completions.",
        "",
        "| objectives | tab | cold s | warm s |",
        "|---:|---|---:|---:|",
    ]
    for k, tab, cold, warm in rows:
        lines.append(f"| {k} | {tab} | {cold:.2f} | {warm:.2f} |")
    write(args.out, lines)


if __name__ == "__main__":
    main()
