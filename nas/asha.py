"""Early stopping: multi-objective asynchronous successive halving (MO-ASHA).

A trial trains at the study's first rung (a fraction of the profile's token budget), then waits. Whenever
a rung k has n trials, the best n // eta of them (by non-dominated rank, then crowding distance, larger
first) are promoted to rung k + 1; the highest rung is the full budget. Trials never promoted are pruned
when the study ends. A promoted trial's job trains from the start at the larger budget (with the same
seed) and takes the prefill/decode speed its first rung measured, instead of measuring it again.

Promotion is asynchronous by default, as in ASHA: a trial goes up as soon as it is in the top n // eta of
the n trials its rung holds so far, so the GPUs never wait for a rung to fill, and some early leaders go up
that the rung's later trials would have beaten (a promotion is never taken back). With `synchronous`
promotion and a study of known size, a trial goes up only when the trials still to come, were each to
take a place above it, would leave it in the top n // eta of the rung's final n: the promotions are those
of successive halving over the whole study, with no early guesses, and the first rung's last jobs still
run beside the first promotions. (With several objectives a newcomer can push a trial down more than
one place, by dominating it; the rule takes one place per trial.) A sampler learns only from trials
that complete, so under synchronous promotion a model-based sampler sees nothing until the first rung
is nearly over.

A lower rung exists to rank trials, so its job runs only what the study's objectives read
(`workers.result.parts_for`): recall against decoding speed trains the recall tasks and times the model,
and leaves the language-modelling run to the trials that reach the full budget.
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
    trials: Sequence[Any],
    rungs: int,
    eta: int,
    directions: Sequence[str],
    in_flight: set[int],
    to_come: int | None = None,
) -> tuple[Any, int] | None:
    """The next (trial, rung) to start among `trials` (Optuna FrozenTrials), or None.

    Higher rungs go first. A trial is promotable from rung k when it is paused there (it finished rung k
    and nothing of it runs) and it is among the top n // eta of the n trials that reached rung k.

    `to_come` makes promotion synchronous: at most that many more trials will reach the first rung, so
    at most m_0 = n_0 + to_come reach it in all, and m_k = max(n_k, m_(k-1) // eta) reach rung k. A trial
    at place p (from 0) of rung k is promoted when p + (m_k - n_k) < m_k // eta: in the top even if every
    trial still to come ranked above it. With nothing to come this is the asynchronous rule.
    """
    if rungs == 1:
        return None
    # a repeated architecture that took its twin's results is the twin's place, not one of its own
    reached = [t for t in trials
               if record.RUNG_RESULTS in t.user_attrs and t.user_attrs.get(record.DUPLICATE_OF) is None]
    at = [[t for t in reached if str(k) in t.user_attrs[record.RUNG_RESULTS]] for k in range(rungs - 1)]
    most = None  # synchronous: how many trials may reach each rung in the end
    if to_come is not None:
        most = [len(at[0]) + to_come]
        for k in range(1, rungs - 1):
            most.append(max(len(at[k]), most[-1] // eta))
    for k in range(rungs - 2, -1, -1):
        at_k = at[k]
        top = len(at_k) // eta if most is None else most[k] // eta - (most[k] - len(at_k))
        if top <= 0:
            continue
        order = rank(at_k, [t.user_attrs[record.RUNG_RESULTS][str(k)] for t in at_k], directions)
        for t in order[:top]:
            if (
                t.number not in in_flight
                and t.state.name == "RUNNING"
                and t.user_attrs.get(record.RUNG_DONE) == k
            ):
                return t, k + 1
    return None
