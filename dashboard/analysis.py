"""What the Study page computes from a `nas.reader` frame before drawing it; no Streamlit here.

    shown = shown_params(trials, ["ssm", "placement"])            # None where a parameter did not apply
    history = hypervolume_history(trials, ["acc", "tps"], ["maximize", "maximize"])
    sample = thin(complete, 2000)                                 # every front trial, a sample of the rest

Hypervolume is measured in a normalised objective box, so that objectives of different units (accuracy
and tokens/s) weigh alike and the curve reads as a share: each objective is scaled so that its best
value among the complete trials is 1 and the reference point, its worst value pushed a tenth of its
range further, is 0. The hypervolume is then the share of that box the front dominates (at most 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from nas.pareto import hypervolume
from search_spaces.space import applies

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "HISTORY_POINTS",
    "MISSING",
    "REFERENCE_MARGIN",
    "best_so_far",
    "hypervolume_history",
    "search_params",
    "shown_params",
    "thin",
]

# hypervolume is evaluated at most at this many points along the completion sequence (a 10,000-trial
# study draws the same curve from 300 evaluations as from 10,000)
HISTORY_POINTS = 300
# how a parameter that did not apply to a trial's architecture is shown
MISSING = "–"
# the reference point lies this share of each objective's range beyond its worst value, so that the
# worst trials still dominate a sliver of the box
REFERENCE_MARGIN = 0.1


def search_params(trials: pd.DataFrame, *, solved_width: bool = False) -> list[str]:
    """The search parameters of a frame (`p.<name>` columns, without the prefix), in column order.

    `solved_width`: the study solves the width from a parameter budget, so a sampled `d_model` was
    overwritten on every trial and is left out.
    """
    names = [c[2:] for c in trials.columns if c.startswith("p.")]
    return [n for n in names if not (solved_width and n == "d_model")]


def shown_params(trials: pd.DataFrame, params: Sequence[str]) -> pd.DataFrame:
    """The `p.<name>` columns of `trials` with None where the parameter did not shape the trial's
    architecture (`search_spaces.space.applies`: the `ssm` of an all-attention model, say)."""
    import pandas as pd


    cols = {p: trials[f"p.{p}"].to_numpy(dtype=object).copy() for p in params}
    patterns = trials["pattern"].to_numpy(dtype=object) if "pattern" in trials else [None] * len(trials)
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern:
            continue
        values = {p: c[i] for p, c in cols.items()}
        for p, c in cols.items():
            if c[i] is not None and not applies(p, values, pattern):
                c[i] = None
    # object columns, so that a missing value stays None (pandas would infer strings and make it NaN)
    return pd.DataFrame({p: pd.Series(c, index=trials.index, dtype=object) for p, c in cols.items()})


def thin(trials: pd.DataFrame, limit: int, *, seed: int = 0) -> pd.DataFrame:
    """At most `limit` rows: every Pareto-front trial, then an even random sample of the others, in
    their original order (a figure of 10,000 lines or points is slow to draw and no clearer)."""
    if len(trials) <= limit:
        return trials
    front = trials["pareto"].to_numpy(dtype=bool) if "pareto" in trials else np.zeros(len(trials), bool)
    keep = np.flatnonzero(front)[:limit]
    rest = np.flatnonzero(~front)
    room = limit - len(keep)
    if room > 0 and len(rest):
        keep = np.concatenate([keep, np.random.default_rng(seed).choice(rest, min(room, len(rest)), replace=False)])
    return trials.iloc[np.sort(keep)]


def _complete(trials: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Complete trials with every objective finite, in order of completion."""
    done = trials[trials["status"] == "complete"]
    values = done[list(metrics)].to_numpy(dtype=float)
    done = done[np.isfinite(values).all(1) & np.isfinite(done["completed"].to_numpy(dtype=float))]
    return done.sort_values(["completed", "number"], kind="stable")


def best_so_far(trials: pd.DataFrame, metric: str, direction: str) -> pd.DataFrame:
    """One objective's best value after each completion: columns completed, trials (complete so far),
    number (the trial that completed), value (its own) and best."""
    import pandas as pd

    done = _complete(trials, [metric])
    v = done[metric].to_numpy(dtype=float)
    best = np.maximum.accumulate(v) if direction == "maximize" else np.minimum.accumulate(v)
    return pd.DataFrame(
        {
            "completed": done["completed"].to_numpy(dtype=float),
            "trials": np.arange(1, len(done) + 1),
            "number": done["number"].to_numpy(),
            "value": v,
            "best": best,
        }
    )


def _hv2(p: np.ndarray) -> float:
    """Hypervolume of points [n, 2] (minimised) against the reference (1, 1); points beyond it add nothing."""
    p = p[(p < 1).all(1)]
    if not len(p):
        return 0.0
    p = p[np.lexsort((p[:, 1], p[:, 0]))]
    # the staircase: only points lower than every point to their left count
    low = np.minimum.accumulate(p[:, 1])
    keep = np.ones(len(p), dtype=bool)
    keep[1:] = p[1:, 1] < low[:-1]
    x, y = p[keep, 0], p[keep, 1]
    right = np.append(x[1:], 1.0)
    return float(((right - x) * (1.0 - y)).sum())


def _hv(p: np.ndarray) -> float:
    """Exact hypervolume of minimised points [n, k] against the reference (1, …, 1).

    One or two objectives by a sort; three by sweeping the third and summing two-objective slices
    (n sorts of at most n points, milliseconds for the few hundred points of a front); more by
    `nas.pareto.hypervolume`.
    """
    k = p.shape[1]
    if k == 1:
        return float(max(0.0, 1.0 - p[:, 0].min())) if len(p) else 0.0
    if k == 2:
        return _hv2(p)
    if k == 3:
        p = p[(p < 1).all(1)]
        p = p[np.argsort(p[:, 2], kind="stable")]
        z = np.append(p[:, 2], 1.0)
        return float(sum(_hv2(p[: i + 1, :2]) * (z[i + 1] - z[i]) for i in range(len(p)) if z[i + 1] > z[i]))

    return hypervolume(p, ["minimize"] * k, np.ones(k))


def _normalised(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Objective rows → minimisation in the box where the reference point is 1 and the best value 0."""
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    p = values * sign
    best, worst = p.min(0), p.max(0)
    span = worst - best
    span = np.where(span > 0, span, np.maximum(np.abs(best), 1.0))  # one value seen: any positive scale
    ref = worst + REFERENCE_MARGIN * span
    return (p - best) / (ref - best)


def hypervolume_history(
    trials: pd.DataFrame, metrics: Sequence[str], directions: Sequence[str], *, points: int = HISTORY_POINTS
) -> pd.DataFrame:
    """The front's hypervolume after each completion (at most `points` of them, evenly spaced, always
    the last): columns completed (epoch seconds), trials (complete so far) and hypervolume (0–1, in the
    normalised box of the module's docstring).

    Incremental: a trial the front dominates adds nothing; one that joins it adds its exclusive share,
    its own box less what the front already covers of it (the hypervolume of the front clipped to that
    box), so each completion costs one small hypervolume at most, not one of the whole front.
    """
    import pandas as pd

    done = _complete(trials, metrics)
    n = len(done)
    if n == 0:
        return pd.DataFrame({"completed": [], "trials": [], "hypervolume": []})
    p = _normalised(done[list(metrics)].to_numpy(dtype=float), directions)
    at = np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(np.int64))
    wanted = np.zeros(n, dtype=bool)
    wanted[at] = True
    front = np.empty((0, p.shape[1]))
    hv = 0.0
    out = np.empty(len(at))
    j = 0
    for i, row in enumerate(p):
        if not (len(front) and bool((front <= row).all(1).any())):  # neither dominated by nor equal to it
            room = 1.0 - row
            covered = _hv((np.maximum(front, row) - row) / room) if len(front) else 0.0
            hv += float(np.prod(room)) * (1.0 - covered)
            front = np.vstack([front[~(row <= front).all(1)], row])
        if wanted[i]:
            out[j] = hv
            j += 1
    return pd.DataFrame(
        {"completed": done["completed"].to_numpy(dtype=float)[at], "trials": at + 1, "hypervolume": out}
    )
