"""Multi-objective bookkeeping: the Pareto front, non-dominated ranks, crowding distance, hypervolume.

Every function takes points as rows of objective values and the directions ("maximize" / "minimize") of
the columns; internally everything is turned into minimisation. This is the one dominance test of the
project: the CLI, the runner's early stopping, the reader and the dashboard all use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["crowding_distance", "hypervolume", "nondominated_ranks", "pareto_mask"]


def _as_min(points: Sequence[Sequence[float]] | np.ndarray, directions: Sequence[str]) -> np.ndarray:
    p = np.asarray(points, dtype=float).reshape(len(points), len(directions))
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return p * sign


def _front(p: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of `p` [n, m], all objectives minimised.

    Rows are visited in lexicographic order: a row's dominators all come before it, so each row is checked
    against the front found so far only (O(n·front) instead of the O(n²) dominance matrix, which does not
    fit in memory at 10,000 trials). Equal rows do not dominate each other: both stay on the front.
    """
    n = len(p)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    front = np.empty((0, p.shape[1]))
    keep: list[int] = []
    for i in np.lexsort(p.T[::-1]):
        row = p[i]
        if len(front) and bool(((front <= row).all(1) & (front < row).any(1)).any()):
            continue
        keep.append(i)
        front = np.vstack([front, row])
    mask[keep] = True
    return mask


def pareto_mask(points, directions) -> np.ndarray:
    """Boolean mask of the points on the Pareto front."""
    return _front(_as_min(points, directions))


def nondominated_ranks(points, directions) -> np.ndarray:
    """Front index of each point: 0 for the Pareto front, 1 for the front once 0 is removed, ..."""
    p = _as_min(points, directions)
    ranks = np.full(len(p), -1)
    left = np.arange(len(p))
    r = 0
    while len(left):
        on = _front(p[left])
        ranks[left[on]] = r
        left = left[~on]
        r += 1
    return ranks


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
    return _hv(p[_front(p)], ref)


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
            total += depth * _hv(front[_front(front)], ref[:-1])
    return total
