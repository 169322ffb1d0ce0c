"""Multi-objective bookkeeping: non-dominated sorting, crowding distance, hypervolume.

Every function takes points as rows of objective values and the directions ("maximize" /
"minimize") of the columns; internally everything is turned into minimisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["crowding_distance", "hypervolume", "nondominated_ranks", "pareto_mask"]


def _as_min(points: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    p = np.asarray(points, dtype=float).reshape(len(points), len(directions))
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return p * sign


def _dominates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n, m] bool: row i dominates row j (no worse everywhere, better somewhere)."""
    le = (a[:, None, :] <= b[None, :, :]).all(-1)
    lt = (a[:, None, :] < b[None, :, :]).any(-1)
    return le & lt


def nondominated_ranks(points, directions) -> np.ndarray:
    """Front index of each point: 0 for the Pareto front, 1 for the front once 0 is removed, ..."""
    p = _as_min(points, directions)
    n = len(p)
    ranks = np.full(n, -1)
    if n == 0:
        return ranks
    dom = _dominates(p, p)  # dom[i, j]: i dominates j
    count = dom.sum(0)  # how many dominate j
    front = np.flatnonzero(count == 0)
    r = 0
    while len(front):
        ranks[front] = r
        count = count - dom[front].sum(0)
        count[ranks >= 0] = -1
        front = np.flatnonzero(count == 0)
        r += 1
    return ranks


def pareto_mask(points, directions) -> np.ndarray:
    return nondominated_ranks(points, directions) == 0


def crowding_distance(points, directions) -> np.ndarray:
    """NSGA-II crowding distance within one set of points (inf at each objective's extremes)."""
    p = _as_min(points, directions)
    n, m = p.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(p[:, k], kind="stable")
        span = p[order[-1], k] - p[order[0], k]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (p[order[2:], k] - p[order[:-2], k]) / span
    return dist


def hypervolume(points, directions, reference) -> float:
    """Volume dominated by `points` and bounded by `reference` (a point worse than all in every objective)."""
    p = _as_min(points, directions)
    ref = _as_min([reference], directions)[0]
    p = p[(p < ref).all(1)]
    if len(p) == 0:
        return 0.0
    return _hv(p[pareto_mask(p, ["minimize"] * p.shape[1])], ref)


def _hv(p: np.ndarray, ref: np.ndarray) -> float:
    """Slicing on the last objective (exact; fine for the few hundred points of a study)."""
    if p.shape[1] == 1:
        return float(ref[0] - p[:, 0].min())
    order = np.argsort(p[:, -1])
    p = p[order]
    total = 0.0
    for i in range(len(p)):
        upper = p[i + 1, -1] if i + 1 < len(p) else ref[-1]
        depth = upper - p[i, -1]
        if depth > 0:
            front = p[: i + 1, :-1]
            total += depth * _hv(front[pareto_mask(front, ["minimize"] * front.shape[1])], ref[:-1])
    return total
