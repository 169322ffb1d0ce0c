"""Early stopping: multi-objective asynchronous successive halving (MO-ASHA).

A trial trains at the study's first rung (a fraction of the profile's token budget), then waits. Whenever
a rung k has n trials, the best n // eta of them (by non-dominated rank, then crowding distance, larger
first) are promoted to rung k + 1 — with `promote: front`, every trial on the rung's non-dominated front
as well; the highest rung is the full budget. Trials never promoted are pruned when the study ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nas import record
from nas.pareto import crowding_distance, nondominated_ranks

__all__ = ["promotion", "rank"]


def rank(trials: Sequence[Any], values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[Any]:
    """Trials ordered by non-dominated rank, then by crowding distance (larger first) within a rank, then
    by number."""
    ranks = nondominated_ranks(values, directions)
    crowd = [0.0] * len(trials)
    for r in set(ranks.tolist()):
        idx = [i for i, x in enumerate(ranks) if x == r]
        for i, c in zip(idx, crowding_distance([values[i] for i in idx], directions)):
            crowd[i] = c
    order = sorted(range(len(trials)), key=lambda i: (ranks[i], -crowd[i], trials[i].number))
    return [trials[i] for i in order]


def promotion(
    trials: Sequence[Any], rungs: int, eta: int, directions: Sequence[str], in_flight: set[int],
    promote: str = "top",
) -> tuple[Any, int] | None:
    """The next (trial, rung) to start among `trials` (Optuna FrozenTrials), or None.

    Higher rungs go first. A trial is promotable from rung k when it is paused there (it finished rung k
    and nothing of it runs) and it is among the top n // eta of the n trials that reached rung k, or, with
    `promote="front"`, on their non-dominated front (once n ≥ eta).
    """
    if rungs == 1:
        return None
    reached = [t for t in trials if record.RUNG_RESULTS in t.user_attrs]
    for k in range(rungs - 2, -1, -1):
        at_k = [t for t in reached if str(k) in t.user_attrs[record.RUNG_RESULTS]]
        top = len(at_k) // eta
        if top == 0:
            continue
        values = [t.user_attrs[record.RUNG_RESULTS][str(k)] for t in at_k]
        order = rank(at_k, values, directions)
        chosen = order[:top]
        if promote == "front":
            front = {t.number for t, r in zip(at_k, nondominated_ranks(values, directions)) if r == 0}
            chosen += [t for t in order[top:] if t.number in front]
        for t in chosen:
            if (
                t.number not in in_flight
                and t.state.name == "RUNNING"
                and t.user_attrs.get(record.RUNG_DONE) == k
            ):
                return t, k + 1
    return None
