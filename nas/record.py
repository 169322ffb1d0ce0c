"""The trial record: what a study keeps in its Optuna storage, and the rules read from it.

A study is an Optuna study whose user attributes hold the spec and bookkeeping (`SPEC`, `CREATED`, ...);
each trial's user attributes hold its architecture, the rungs it finished, the job in flight and, once
finished, its metrics and result (`ARCH`, `RUNG_DONE`, `JOB_RUNG`, ...). Everything that reads or writes
them (the runner, the reader, the queue, the CLI, the dashboard) uses these names and these rules:

    status = trial_status("RUNNING", attrs)      # "paused": early stopping parked it at a lower rung
    counts = count_statuses(statuses)            # {"complete": 3, "running": 1, ...}
    budget = trial_budget(spec, grid_points=24)  # how many trials the study trains

A trial's status, from its Optuna state and attributes:

| status | Optuna state | meaning |
|---|---|---|
| complete | COMPLETE | trained to the full budget; its values are the objectives (the mean over seeds) |
| running | RUNNING | a job is in flight (or was, when its driver died: `nas run` resumes it) |
| paused | RUNNING | early stopping left it at a lower rung, waiting for a promotion |
| interrupted | RUNNING | its driver was interrupted (Ctrl-C, SIGTERM) with its job in flight: `nas run` resumes it |
| failed | FAIL | diverged, out of memory, broke, or its worker died twice (`FAILURE` says which and why) |
| infeasible | FAIL | its architecture broke the study's constraints; never trained |
| cancelled | FAIL | in flight when the study was cancelled; no result |
| pruned | PRUNED | stopped at a lower rung when the study ended |
| waiting | WAITING | enqueued (a grid point) and not asked yet |

A running trial whose job has not started yet (the cluster lacks the CPUs or GPUs it asks for) says why
in `WAITING_FOR`.

The budget counts the trials that have a result, or are getting one: infeasible and cancelled ones do
not count, so a cancelled and resumed study still ends with its number of results.

An architecture is known by `arch_key` (its canonical form, the profile and the seeds): a study never
trains one key twice. A trial whose proposal repeats the key of a trial with a result (`has_result`)
takes that result instead of training (`DUPLICATE_OF` names the trial it came from; until that one
finishes it waits, as `running`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "ARCH",
    "ARCH_KEY",
    "CREATED",
    "DUPLICATE_OF",
    "ELAPSED",
    "FAILURE",
    "INTERRUPTED",
    "JOB_RUNG",
    "JOB_SECONDS",
    "METRICS",
    "MLFLOW_EXPERIMENT",
    "MLFLOW_PARENT_RUN",
    "MLFLOW_RUN",
    "PATTERN",
    "PROGRESS",
    "RESULT",
    "RESULT_FAILURES",
    "RUNG_DONE",
    "RUNG_RESULTS",
    "SEED_METRICS",
    "SPEC",
    "STATUSES",
    "THROUGHPUT",
    "TOKENS",
    "UNFINISHED",
    "WAITING_FOR",
    "Status",
    "arch_key",
    "count_statuses",
    "failure_kind",
    "finished",
    "has_result",
    "is_paused",
    "trained",
    "trial_budget",
    "trial_status",
    "unfinished",
]

# ----- study attributes ---------------------------------------------------------------------------
SPEC = "spec"  # the StudySpec, as JSON
CREATED = "created"  # epoch seconds
ELAPSED = "elapsed_seconds"  # wall-clock seconds, summed over resumed runs
MLFLOW_PARENT_RUN = "mlflow_parent_run_id"
MLFLOW_EXPERIMENT = "mlflow_experiment_id"

# ----- trial attributes ---------------------------------------------------------------------------
ARCH = "arch"  # the ArchConfig, as a dict (set when its first job starts)
ARCH_KEY = "arch_key"  # `arch_key` of the architecture, profile and seeds it trains
DUPLICATE_OF = "duplicate_of"  # the trial whose result this one took (the same arch_key), not trained again
PATTERN = "pattern"
JOB_RUNG = "job_rung"  # the rung of the job in flight; None when no job runs
RUNG_DONE = "rung_done"  # the highest rung finished
RUNG_RESULTS = "rung_results"  # {str(rung): objective values at that rung}
TOKENS = "tokens"  # tokens trained by the latest rung
THROUGHPUT = "throughput"  # each seed's prefill/decode figures at the first rung, carried to the later ones
JOB_SECONDS = "job_seconds"  # wall time of every job the trial ran, all rungs and seeds (its cost)
METRICS = "metrics"  # every metric of the finished trial (the mean over seeds)
METRICS_SD = "metrics_sd"  # each metric's standard deviation over the trial's seeds (two seeds or more)
SEED_METRICS = "seed_metrics"  # {str(seed): every metric of that seed's result} (two seeds or more)
RESULT = "result"  # the first seed's TrialResult, as JSON
FAILURE = "failure"  # {"kind": ..., "reason": ...}
MLFLOW_RUN = "mlflow_run_id"
PROGRESS = "progress"  # the latest training report of the job in flight
WAITING_FOR = "waiting_for"  # why the job in flight has not started ("waiting for 0.25 GPU; ..."); None once it runs
INTERRUPTED = "interrupted"  # epoch seconds its driver was interrupted with the job in flight; None once resumed

Status = Literal[
    "complete", "running", "paused", "interrupted", "failed", "infeasible", "cancelled", "pruned", "waiting"
]
STATUSES: tuple[Status, ...] = (
    "complete", "running", "paused", "interrupted", "failed", "infeasible", "cancelled", "pruned", "waiting"
)
# the statuses of a trial that is RUNNING in Optuna: it holds a place in the budget and `nas run` goes on with it
UNFINISHED: tuple[Status, ...] = ("running", "paused", "interrupted")
# failures of a trial of its own, which training it again would repeat
RESULT_FAILURES = ("diverged", "oom", "invalid")


def failure_kind(attrs: Mapping[str, Any]) -> str | None:
    return (attrs.get(FAILURE) or {}).get("kind")


def is_paused(attrs: Mapping[str, Any]) -> bool:
    """A running trial with no job in flight that finished a lower rung: early stopping parked it."""
    return attrs.get(JOB_RUNG) is None and RUNG_DONE in attrs


def trial_status(state: str, attrs: Mapping[str, Any]) -> Status:
    """The status of a trial in Optuna `state` (its name: COMPLETE, RUNNING, ...) with these attributes."""
    state = state.rsplit(".", 1)[-1].upper()  # "TrialState.RUNNING" as some drivers hand it back
    if state == "FAIL":
        kind = failure_kind(attrs)
        return kind if kind in ("infeasible", "cancelled") else "failed"  # type: ignore[return-value]
    if state == "RUNNING":
        if attrs.get(INTERRUPTED) is not None:
            return "interrupted"
        return "paused" if is_paused(attrs) else "running"
    return {"COMPLETE": "complete", "PRUNED": "pruned", "WAITING": "waiting"}[state]


def count_statuses(statuses: Iterable[str]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for s in statuses:
        counts[s] += 1
    return counts


def finished(counts: Mapping[str, int]) -> int:
    """Trials that ended with a result or a failure of their own (infeasible ones never ran)."""
    return counts["complete"] + counts["failed"] + counts["pruned"]


def unfinished(counts: Mapping[str, int]) -> int:
    """Trials RUNNING in Optuna: in flight, paused by early stopping, or interrupted."""
    return sum(counts[s] for s in UNFINISHED)


def trained(counts: Mapping[str, int]) -> int:
    """Trials that count against the budget: every one that got (or is getting) a job."""
    return finished(counts) + unfinished(counts)


def has_result(status: str, attrs: Mapping[str, Any]) -> bool:
    """Whether a trial holds (or is training to) a result of its architecture: training it again would
    repeat work. A job that broke, a dead worker or a cancel left no result; a divergence is one."""
    if status in ("complete", "pruned", *UNFINISHED):
        return True
    return status == "failed" and failure_kind(attrs) in RESULT_FAILURES


def arch_key(arch: Mapping[str, Any], profile: Mapping[str, Any], seeds: Sequence[int]) -> str:
    """What a trained architecture is known by: its canonical form (an ArchConfig's dict, every option
    given), the profile it trains under and its seeds, hashed."""
    canonical = json.dumps({"arch": arch, "profile": profile, "seeds": list(seeds)}, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def trial_budget(spec: Any, grid_points: int | None) -> int | None:
    """How many trials the study trains: `budget.trials`; for a grid (every ablation and fidelity study) its
    number of points, capped by `budget.trials` in a search. `spec` is a StudySpec or its stored JSON."""
    if not isinstance(spec, Mapping):
        spec = spec.model_dump(mode="json")
    kind = spec.get("kind", "search")
    trials = (spec.get("budget") or {}).get("trials")
    if kind in ("ablation", "fidelity") or spec.get("sampler") == "grid":
        return grid_points if kind in ("ablation", "fidelity") or trials is None else min(grid_points or 0, trials)
    return trials
