"""Fast reads of studies for the dashboard: plain SQL over Optuna's tables into pandas.

Optuna's `get_trials` builds a FrozenTrial with every attribute of every trial; for 10,000 trials with
their `result` attributes that takes many seconds, and a page needs a few columns. These functions read
Optuna's RDB schema directly (`optuna/storages/_rdb/models.py`: `studies`, `study_directions`,
`study_user_attributes`, `trials`, `trial_values`, `trial_params`, `trial_user_attributes`), fetch only
the attributes a page shows (never `result` or `arch`, except for the one trial asked for) and never
write.

    studies = list_studies(url)                   # one row per study: status, counts, best, ETA
    key = study_version(url, "demo")              # changes when a trial is added, starts or finishes
    meta, trials = study_frame(url, "demo")       # one row per trial, `pareto` computed once
    attrs = trial_attrs(url, "demo", 7, ("arch",))

Timestamps are seconds since the epoch (UTC); Optuna stores naive UTC datetimes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas import record
from nas.pareto import pareto_mask
from nas.settings import mask_url
from nas.store import engine
from search_spaces import ArchConfig
from search_spaces.config import ConfigError
from workers.result import TrialResult

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ACTIVE_WINDOW",
    "TRIAL_ATTRS",
    "StudyMeta",
    "StudySummary",
    "TrialRow",
    "attention_ratio",
    "finish_times",
    "list_studies",
    "param_distributions",
    "pareto_trials",
    "running_trials",
    "seed_metrics",
    "ssm_family",
    "storage_exists",
    "study_frame",
    "study_meta",
    "study_names",
    "study_summaries",
    "study_summary",
    "study_trials",
    "study_version",
    "trial_archs",
    "trial_attrs",
    "trial_curves",
]

# the trial attributes a page shows; `result` (every curve of every task) and `arch` stay in the database
TRIAL_ATTRS = (
    record.PATTERN, record.METRICS, record.METRICS_SD, record.FAILURE, record.MLFLOW_RUN, record.RUNG_DONE,
    record.JOB_RUNG, record.PROGRESS, record.WAITING_FOR, record.INTERRUPTED,
)
# what decides a trial's status beyond its state (`record.trial_status`)
_STATUS_ATTRS = (record.FAILURE, record.JOB_RUNG, record.RUNG_DONE, record.INTERRUPTED)
_STUDY_ATTRS = (record.SPEC, record.CREATED, record.ELAPSED, record.MLFLOW_EXPERIMENT, record.MLFLOW_PARENT_RUN)
# a study whose newest trial event (start, end, progress report) is older than this is not running
ACTIVE_WINDOW = 15 * 60.0
_FAMILY_NAMES = {"M": "Mamba-2", "m": "Mamba-1", "X": "mLSTM", "D": "Gated DeltaNet", "C": "short conv"}


# ----- connections --------------------------------------------------------------------------------
def storage_exists(url: str) -> bool:
    """False for an SQLite file that is not there yet (reading must not create it)."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        return path in ("", ":memory:") or Path(path).is_file()
    return True


def _query(url: str, sql: str, **params: Any) -> list:
    from sqlalchemy import text

    with engine(url).connect() as conn:
        result = conn.execute(text(sql), params)
        # the DBAPI cursor's plain tuples: a text() query has no result processing to skip, and pandas
        # probing SQLAlchemy's Row objects for attributes costs more than the read itself
        return result.cursor.fetchall() if result.cursor is not None else []


def _has_tables(url: str) -> bool:
    if not storage_exists(url):
        return False
    from sqlalchemy import inspect

    return inspect(engine(url)).has_table("trials")


def _epoch(dt: Any) -> float | None:
    """Optuna's naive-UTC datetime (SQLite hands back a string) as seconds since the epoch."""
    if dt is None:
        return None
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt)
    return dt.replace(tzinfo=timezone.utc).timestamp()


def _state(state: Any) -> str:
    """A trial state as its name: PostgreSQL's enum hands back `TrialState.COMPLETE`, SQLite `COMPLETE`."""
    return str(state).rsplit(".", 1)[-1]


def _in(names: tuple[str, ...]) -> str:
    """A literal `IN (...)` list for our own constant keys (no user input reaches it)."""
    return "(" + ", ".join(f"'{n}'" for n in names) + ")"


# ----- patterns -----------------------------------------------------------------------------------
def ssm_family(pattern: str | None) -> str:
    """The recurrent family of a pattern: Mamba-2, Mamba-1, mLSTM, Gated DeltaNet, short conv, 'mixed' or 'none'
    (attention only)."""
    if not pattern:
        return "unknown"
    found = [name for sym, name in _FAMILY_NAMES.items() if sym in pattern]
    return found[0] if len(found) == 1 else "mixed" if found else "none"


def attention_ratio(pattern: str | None) -> float:
    """Attention's share of the mixers (`*` and `W` among `*MmXDCW`): 0 for a pure SSM, 1 for a Transformer."""
    if not pattern:
        return math.nan
    mixers = sum(pattern.count(s) for s in "*MmXDCW")
    return (pattern.count("*") + pattern.count("W")) / mixers if mixers else math.nan


# ----- studies ------------------------------------------------------------------------------------
@dataclass
class StudyMeta:
    """What a page needs to know about a study besides its trials."""

    name: str
    study_id: int
    spec: dict[str, Any]
    metrics: list[str]
    directions: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)  # the study's small user attributes

    @property
    def kind(self) -> str:
        return self.spec.get("kind", "search")

    @property
    def experiment_id(self) -> str | None:
        return self.attrs.get(record.MLFLOW_EXPERIMENT)


def _studies(url: str, name: str | None = None) -> dict[int, StudyMeta]:
    where = "WHERE s.study_name = :name" if name is not None else ""
    rows = _query(
        url, f"SELECT s.study_id, s.study_name FROM studies s {where}", **({"name": name} if name else {})
    )
    if not rows:
        return {}
    ids = {sid: n for sid, n in rows}
    only = f"AND study_id = {int(rows[0][0])}" if name is not None else ""
    attrs: dict[int, dict[str, Any]] = {sid: {} for sid in ids}
    for sid, key, value in _query(
        url,
        "SELECT study_id, key, value_json FROM study_user_attributes "
        f"WHERE key IN {_in(_STUDY_ATTRS)} {only}",
    ):
        if sid in attrs:
            attrs[sid][key] = json.loads(value)
    directions: dict[int, dict[int, str]] = {sid: {} for sid in ids}
    for sid, objective, direction in _query(
        url, f"SELECT study_id, objective, direction FROM study_directions WHERE 1=1 {only}"
    ):
        if sid in directions:
            directions[sid][objective] = _state(direction).lower()
    out = {}
    for sid, n in ids.items():
        spec = attrs[sid].pop(record.SPEC, None)
        if spec is None:
            continue  # not a hybrid-nas study (someone else's Optuna study in the same database)
        metrics = [o["metric"] for o in spec.get("objectives", [])]
        dirs = [directions[sid].get(i, "minimize") for i in range(len(metrics))]
        out[sid] = StudyMeta(n, sid, spec, metrics, dirs, attrs[sid])
    return out


def study_names(url: str) -> list[str]:
    """The names of the hybrid-nas studies in the storage (those with a spec), oldest first."""
    if not _has_tables(url):
        return []
    return [m.name for m in sorted(_studies(url).values(), key=lambda m: m.study_id)]


def finish_times(url: str, names: list[str]) -> dict[str, np.ndarray]:
    """Each named study's trial end times (complete, failed or pruned), epoch seconds, in order."""
    if not names or not _has_tables(url):
        return {}
    ids = {m.study_id: m.name for m in _studies(url).values() if m.name in set(names)}
    if not ids:
        return {}
    rows = _query(
        url,
        "SELECT study_id, datetime_complete FROM trials WHERE datetime_complete IS NOT NULL "
        f"AND state IN ('COMPLETE', 'FAIL', 'PRUNED') AND study_id IN ({', '.join(str(int(i)) for i in ids)})",
    )
    out: dict[str, list[float]] = {ids[i]: [] for i in ids}
    for sid, done in rows:
        out[ids[sid]].append(_epoch(done))
    return {name: np.sort(np.array(t, dtype=float)) for name, t in out.items()}


def study_meta(url: str, name: str) -> StudyMeta | None:
    if not _has_tables(url):
        return None
    return next(iter(_studies(url, name).values()), None)


def _meta_or_error(url: str, name: str) -> StudyMeta:
    meta = study_meta(url, name)
    if meta is None:
        names = study_names(url)
        hint = f"; studies there: {', '.join(names)}" if names else " (it holds no studies yet)"
        raise ConfigError(f"no study named {name!r} in {mask_url(url)}{hint}")
    return meta


def _status_attrs(url: str, states: tuple[str, ...], sid: int | None = None) -> dict[int, dict[str, Any]]:
    """trial_id -> the attributes `record.trial_status` needs (and the latest progress report), for the
    trials in `states` (of one study, or of all)."""
    only = f"AND t.study_id = {int(sid)}" if sid is not None else ""
    out: dict[int, dict[str, Any]] = {}
    for tid, key, value in _query(
        url,
        "SELECT t.trial_id, a.key, a.value_json FROM trials t "
        "JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
        f"WHERE t.state IN {_in(states)} AND a.key IN {_in((*_STATUS_ATTRS, record.PROGRESS, record.WAITING_FOR))} "
        f"{only}",
    ):
        out.setdefault(tid, {})[key] = json.loads(value)
    return out


def _study_status(
    c: dict[str, int], budget: int | None, hours: float | None, elapsed: float, last: float | None, now: float
) -> str:
    unfinished = record.unfinished(c)
    if c["running"] and last is not None and now - last < ACTIVE_WINDOW:
        return "running"
    if c["interrupted"]:
        return "interrupted"  # its driver was stopped with trials in flight: `nas run` resumes it
    if unfinished:
        return "stopped"  # a driver left trials in flight: `nas run` resumes it
    if sum(c.values()) == 0:
        return "empty"
    if (budget is not None and record.trained(c) >= budget and not c["waiting"]) or (
        hours and elapsed >= hours * 3600
    ):
        return "done"
    return "stopped"


def list_studies(url: str, now: float | None = None) -> pd.DataFrame:
    """One row per hybrid-nas study: status, trial counts, budget, best objective values, elapsed, ETA.

    status is `running` (trials in flight and something happened in the last ACTIVE_WINDOW seconds),
    `interrupted` (its driver was stopped with trials in flight), `stopped` (unfinished: `nas run` resumes
    it), `done` (budget spent) or `empty` (no trial yet). `waiting_for` is why a trial in flight has not
    started ("waiting for 0.25 GPU; the cluster has none"), None when every one has.
    """
    import pandas as pd

    columns = [
        "name", "kind", "status", *record.STATUSES, "queued", "budget", "finished", "best", "elapsed", "eta",
        "created", "last_activity", "metrics", "directions", "description", "waiting_for",
    ]
    if not _has_tables(url):
        return pd.DataFrame(columns=columns)
    now = time.time() if now is None else now
    metas = _studies(url)
    if not metas:
        return pd.DataFrame(columns=columns)
    counts = {sid: dict.fromkeys(record.STATUSES, 0) for sid in metas}
    last: dict[int, float] = {}

    def touch(sid: int, t: float | None) -> None:
        if t is not None and t > last.get(sid, 0):
            last[sid] = t

    # a trial's state decides its status, except FAIL and RUNNING, whose attributes do (record.trial_status)
    for sid, state, n, start, end in _query(
        url,
        "SELECT study_id, state, count(*), max(datetime_start), max(datetime_complete) FROM trials "
        "GROUP BY study_id, state",
    ):
        if sid not in counts:
            continue
        state = _state(state)
        if state not in ("FAIL", "RUNNING"):
            counts[sid][record.trial_status(state, {})] += n
        touch(sid, _epoch(start))
        touch(sid, _epoch(end))
    attrs = _status_attrs(url, ("FAIL", "RUNNING"))
    waiting: dict[int, str] = {}
    for sid, tid, state in _query(
        url, "SELECT study_id, trial_id, state FROM trials WHERE state IN ('FAIL', 'RUNNING') ORDER BY number"
    ):
        if sid in counts:
            a = attrs.get(tid, {})
            status = record.trial_status(_state(state), a)
            counts[sid][status] += 1
            touch(sid, (a.get(record.PROGRESS) or {}).get("time"))
            if status == "running" and a.get(record.WAITING_FOR):
                waiting.setdefault(sid, a[record.WAITING_FOR])
    best: dict[int, dict[int, tuple[float, float]]] = {}
    for sid, objective, hi, lo in _query(
        url,
        "SELECT t.study_id, v.objective, max(v.value), min(v.value) FROM trial_values v "
        "JOIN trials t ON t.trial_id = v.trial_id WHERE t.state = 'COMPLETE' "
        "GROUP BY t.study_id, v.objective",
    ):
        best.setdefault(sid, {})[objective] = (hi, lo)

    rows = []
    for sid, meta in sorted(metas.items()):
        c = counts[sid]
        spec = meta.spec
        trained = record.trained(c)
        # every grid point is enqueued when the study is created: the trained ones plus those waiting
        budget = record.trial_budget(spec, grid_points=trained + c["waiting"])
        hours = (spec.get("budget") or {}).get("hours")
        elapsed = float(meta.attrs.get(record.ELAPSED) or 0.0)
        status = _study_status(c, budget, hours, elapsed, last.get(sid), now)
        b = {}
        for i, (m, d) in enumerate(zip(meta.metrics, meta.directions, strict=False)):
            if i in best.get(sid, {}) and best[sid][i][0] is not None:
                b[m] = best[sid][i][0] if d == "maximize" else best[sid][i][1]
        finished = record.finished(c)
        eta = None
        if status == "running" and finished:
            left = [elapsed / finished * max(0, budget - finished)] if budget is not None else []
            if hours:
                left.append(max(0.0, hours * 3600 - elapsed))
            eta = min(left) if left else None
        queued = max(c["waiting"], (budget - trained) if budget is not None and status != "done" else 0, 0)
        rows.append(
            {
                "name": meta.name,
                "kind": meta.kind,
                "status": status,
                **c,
                "queued": queued,
                "budget": budget,
                "finished": finished,
                "best": b,
                "elapsed": elapsed,
                "eta": eta,
                "created": meta.attrs.get(record.CREATED),
                "last_activity": last.get(sid),
                "metrics": meta.metrics,
                "directions": meta.directions,
                "description": spec.get("description", ""),
                "waiting_for": waiting.get(sid) if status == "running" else None,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def study_version(url: str, name: str) -> tuple:
    """A cheap key that changes whenever a trial is added, changes state or gets a new attribute.

    Progress reports of running trials overwrite an attribute in place and do not change it; read
    them with `running_trials`.
    """
    if not _has_tables(url):
        return ()
    rows = _query(
        url,
        "SELECT count(*), max(t.datetime_start), max(t.datetime_complete), "
        "sum(CASE WHEN t.state = 'RUNNING' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN t.state = 'WAITING' THEN 1 ELSE 0 END), "
        "(SELECT max(a.trial_user_attribute_id) FROM trial_user_attributes a "
        " WHERE a.trial_id IN (SELECT trial_id FROM trials WHERE study_id = s.study_id)) "
        "FROM studies s LEFT JOIN trials t ON t.study_id = s.study_id WHERE s.study_name = :name "
        "GROUP BY s.study_id",
        name=name,
    )
    return tuple(str(x) for x in rows[0]) if rows else ()


# ----- trials -------------------------------------------------------------------------------------
def _param_columns(url: str, sid: int, index) -> dict[str, np.ndarray]:
    """`p.<name>` -> the values of that parameter per trial (categorical indices become their choices).

    The distributions are read once per parameter name, not once per row; a name whose distribution
    changed within the study falls back to decoding row by row.
    """
    import pandas as pd
    from optuna.distributions import CategoricalDistribution, json_to_distribution

    dists: dict[str, list[str]] = {}
    for pname, dist_json in _query(
        url,
        "SELECT DISTINCT p.param_name, p.distribution_json FROM trial_params p "
        "JOIN trials t ON t.trial_id = p.trial_id WHERE t.study_id = :sid",
        sid=sid,
    ):
        dists.setdefault(pname, []).append(dist_json)
    rows = _query(
        url,
        "SELECT p.trial_id, p.param_name, p.param_value FROM trial_params p "
        "JOIN trials t ON t.trial_id = p.trial_id WHERE t.study_id = :sid",
        sid=sid,
    )
    out: dict[str, np.ndarray] = {}
    if not rows:
        return out
    frame = pd.DataFrame(rows, columns=["trial_id", "name", "value"])
    n = len(index)
    for pname, group in frame.groupby("name", sort=True):
        pos = index.get_indexer(group["trial_id"].to_numpy())
        raw = group["value"].to_numpy(dtype=float)
        col = np.full(n, None, dtype=object)
        if len(dists[pname]) == 1:
            dist = json_to_distribution(dists[pname][0])
            if isinstance(dist, CategoricalDistribution):
                col[pos] = np.array((*dist.choices, None), dtype=object)[raw.astype(np.int64)]
            else:
                col[pos] = [dist.to_external_repr(v) for v in raw]
        else:  # the distribution changed within the study: decode each row with its own
            for tid_pos, (tid, value) in zip(pos, zip(group["trial_id"], raw, strict=False), strict=False):
                dist_json = _query(
                    url,
                    "SELECT distribution_json FROM trial_params WHERE trial_id = :tid AND param_name = :name",
                    tid=int(tid),
                    name=pname,
                )[0][0]
                col[tid_pos] = json_to_distribution(dist_json).to_external_repr(value)
        out[f"p.{pname}"] = col
    return out


def param_distributions(url: str, name: str) -> dict[str, Any]:
    """Each search parameter's Optuna distribution (the newest trial's, if it ever changed)."""
    from optuna.distributions import json_to_distribution

    meta = study_meta(url, name)
    if meta is None:
        return {}
    rows = _query(
        url,
        "SELECT p.param_name, p.distribution_json, max(p.trial_id) FROM trial_params p "
        "JOIN trials t ON t.trial_id = p.trial_id WHERE t.study_id = :sid "
        "GROUP BY p.param_name, p.distribution_json ORDER BY 3",
        sid=meta.study_id,
    )
    return {pname: json_to_distribution(dist_json) for pname, dist_json, _ in rows}


def study_frame(url: str, name: str) -> tuple[StudyMeta, pd.DataFrame]:
    """A study and one row per trial, in trial order.

    Columns: number, state (COMPLETE, RUNNING, FAIL, PRUNED, WAITING), status (complete, running, paused,
    failed, infeasible, pruned, waiting), pattern, family (`ssm_family`), attn_ratio, sublayers, one
    column per objective named by its metric (NaN unless complete), `pareto` (on the front of the
    complete trials), `p.<param>` per search dimension, `m.<metric>` per recorded metric, `sd.<metric>`
    its standard deviation over seeds (where trials ran two seeds or more),
    failure_kind, failure_reason, mlflow_run_id, rung, waiting_for (why a job in flight has not started),
    started, completed (epoch seconds),
    duration (seconds), trial_id.
    """
    import pandas as pd

    meta = _meta_or_error(url, name)
    sid = meta.study_id
    trials = pd.DataFrame(
        _query(
            url,
            "SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
            "WHERE study_id = :sid ORDER BY number",
            sid=sid,
        ),
        columns=["trial_id", "number", "state", "started", "completed"],
    )
    index = pd.Index(trials["trial_id"].to_numpy(dtype=np.int64))
    n, k = len(trials), len(meta.metrics)
    states = np.array([_state(x) for x in trials["state"]], dtype=object)

    vals = np.full((n, k), np.nan)
    vrows = [
        r
        for r in _query(
            url,
            "SELECT v.trial_id, v.objective, v.value, v.value_type FROM trial_values v "
            "JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = :sid",
            sid=sid,
        )
        if r[1] < k
    ]
    if vrows:
        v = pd.DataFrame(vrows, columns=["trial_id", "objective", "value", "type"])
        vt = v["type"].astype(str).str.rsplit(".", n=1).str[-1]
        x = v["value"].to_numpy(dtype=float)
        x = np.where(vt == "INF_POS", np.inf, np.where(vt == "INF_NEG", -np.inf, x))
        vals[index.get_indexer(v["trial_id"].to_numpy()), v["objective"].to_numpy(dtype=np.int64)] = x
    vals[states != "COMPLETE"] = np.nan

    attrs: dict[str, list] = {key: [None] * n for key in TRIAL_ATTRS}
    arows = _query(
        url,
        "SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a "
        f"JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = :sid AND a.key IN "
        f"{_in(TRIAL_ATTRS)}",
        sid=sid,
    )
    if arows:
        pos = index.get_indexer([r[0] for r in arows])
        loads = json.loads
        for p, (_, key, value) in zip(pos, arows, strict=False):
            attrs[key][p] = loads(value)
    failures = [f or {} for f in attrs[record.FAILURE]]
    rung_done = attrs[record.RUNG_DONE]
    status = [
        record.trial_status(state, {k: attrs[k][i] for k in _STATUS_ATTRS if attrs[k][i] is not None})
        if state in ("FAIL", "RUNNING")
        else record.trial_status(state, {})
        for i, state in enumerate(states)
    ]
    patterns = attrs[record.PATTERN]

    def epoch(col: str) -> np.ndarray:
        t = pd.to_datetime(trials[col], utc=True, format="mixed")  # naive UTC in, NaT for None
        return (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float)

    started, completed = epoch("started"), epoch("completed")
    columns: dict[str, Any] = {
        "number": trials["number"].to_numpy(dtype=np.int64),
        "state": states,
        "status": np.array(status, dtype=object),
        "pattern": np.array(patterns, dtype=object),
        "family": np.array([ssm_family(p) for p in patterns], dtype=object),
        "attn_ratio": np.array([attention_ratio(p) for p in patterns], dtype=float),
        "sublayers": np.array([len(p) if p else 0 for p in patterns], dtype=np.int64),
    }
    for j, m in enumerate(meta.metrics):
        columns[m] = vals[:, j]
    pareto = np.zeros(n, dtype=bool)
    complete = ~np.isnan(vals).any(1) if k else np.zeros(n, dtype=bool)
    if complete.any():
        pareto[np.flatnonzero(complete)] = pareto_mask(vals[complete], meta.directions)
    columns["pareto"] = pareto
    columns.update(_param_columns(url, sid, index))
    metric_rows = [m or {} for m in attrs[record.METRICS]]
    recorded = pd.DataFrame.from_records(metric_rows, index=range(n)) if n else pd.DataFrame()
    for mname in sorted(recorded.columns):
        columns[f"m.{mname}"] = recorded[mname].to_numpy(dtype=float)
    spreads = [m or {} for m in attrs[record.METRICS_SD]]
    if any(spreads):
        spread = pd.DataFrame.from_records(spreads, index=range(n))
        for mname in sorted(spread.columns):
            columns[f"sd.{mname}"] = spread[mname].to_numpy(dtype=float)
    columns["failure_kind"] = np.array([f.get("kind") for f in failures], dtype=object)
    columns["failure_reason"] = np.array([f.get("reason") for f in failures], dtype=object)
    columns["mlflow_run_id"] = np.array(attrs[record.MLFLOW_RUN], dtype=object)
    columns["rung"] = np.array([np.nan if r is None else r for r in rung_done], dtype=float)
    columns["waiting_for"] = np.array(
        [w if st == "running" else None for w, st in zip(attrs[record.WAITING_FOR], status, strict=False)],
        dtype=object,
    )
    columns["started"] = started
    columns["completed"] = completed
    columns["duration"] = completed - started
    columns["trial_id"] = index.to_numpy()
    return meta, pd.DataFrame(columns)


def running_trials(url: str, name: str) -> pd.DataFrame:
    """The trials in flight and their latest training progress (task, step, steps, loss, time)."""
    import pandas as pd

    columns = ["number", "pattern", "status", "started", "task", "step", "steps", "loss", "updated", "rung",
               "waiting_for"]
    meta = study_meta(url, name)
    if meta is None:
        return pd.DataFrame(columns=columns)
    trials = _query(
        url,
        "SELECT trial_id, number, datetime_start FROM trials WHERE study_id = :sid "
        "AND state = 'RUNNING' ORDER BY number",
        sid=meta.study_id,
    )
    attrs: dict[int, dict[str, Any]] = {}
    for tid, key, value in _query(
        url,
        "SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a JOIN trials t "
        "ON t.trial_id = a.trial_id WHERE t.study_id = :sid AND t.state = 'RUNNING' "
        f"AND a.key IN {_in((record.PATTERN, record.PROGRESS, *_STATUS_ATTRS, record.WAITING_FOR))}",
        sid=meta.study_id,
    ):
        attrs.setdefault(tid, {})[key] = json.loads(value)
    rows = []
    for tid, number, start in trials:
        a = attrs.get(tid, {})
        p = a.get(record.PROGRESS) or {}
        rows.append(
            {
                "number": number,
                "pattern": a.get(record.PATTERN),
                "status": record.trial_status("RUNNING", a),
                "started": _epoch(start),
                "task": p.get("task"),
                "step": p.get("step"),
                "steps": p.get("steps"),
                "loss": p.get("loss"),
                "updated": p.get("time"),
                "rung": a.get(record.JOB_RUNG),
                "waiting_for": a.get(record.WAITING_FOR),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def trial_attrs(url: str, name: str, number: int, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """One trial's user attributes (all, or those in `keys`), e.g. its `arch` for export or `result`."""
    meta = study_meta(url, name)
    if meta is None:
        return {}
    only = f"AND a.key IN {_in(tuple(k for k in keys if k.isidentifier()))}" if keys else ""
    rows = _query(
        url,
        "SELECT a.key, a.value_json FROM trial_user_attributes a JOIN trials t "
        f"ON t.trial_id = a.trial_id WHERE t.study_id = :sid AND t.number = :number {only}",
        sid=meta.study_id,
        number=int(number),
    )
    return {key: json.loads(value) for key, value in rows}


def trial_curves(url: str, name: str, number: int) -> dict[str, list]:
    """task -> [(step, tokens, loss)] of a complete trial's stored result ("lm" first); {} without one."""
    result = trial_attrs(url, name, number, (record.RESULT,)).get(record.RESULT)
    return TrialResult.model_validate(result).curves() if result else {}


def _attrs_of(url: str, sid: int, keys: tuple[str, ...], numbers: list[int] | None = None) -> dict[int, dict]:
    """trial number -> {key: value} of these attributes, for every trial of the study or those numbered."""
    only = f"AND t.number IN ({', '.join(str(int(n)) for n in numbers)})" if numbers else ""
    if numbers is not None and not numbers:
        return {}
    out: dict[int, dict] = {}
    for number, key, value in _query(
        url,
        "SELECT t.number, a.key, a.value_json FROM trial_user_attributes a JOIN trials t "
        f"ON t.trial_id = a.trial_id WHERE t.study_id = :sid AND a.key IN {_in(keys)} {only}",
        sid=sid,
    ):
        out.setdefault(number, {})[key] = json.loads(value)
    return out


def seed_metrics(url: str, name: str) -> dict[int, dict[int, dict[str, float]]]:
    """trial number -> seed -> that seed's metrics, for the study's complete trials that trained two seeds
    or more themselves (a repeat that took another trial's result is left out: it adds no measurement)."""
    meta = _meta_or_error(url, name)
    attrs = _attrs_of(url, meta.study_id, (record.SEED_METRICS, record.DUPLICATE_OF))
    return {
        n: {int(seed): m for seed, m in a[record.SEED_METRICS].items()}
        for n, a in sorted(attrs.items())
        if a.get(record.SEED_METRICS) and a.get(record.DUPLICATE_OF) is None
    }


# ----- typed reads (the CLI, scripts, tests) ------------------------------------------------------
@dataclass
class StudySummary:
    name: str
    kind: str
    metrics: list[str]
    directions: list[str]
    counts: dict[str, int]  # per `record.STATUSES`
    elapsed_seconds: float
    budget_trials: int | None
    best: dict[str, float] = field(default_factory=dict)
    stop_reason: str | None = None  # set by the run that returns it: budget, hours, pause, cancel, interrupted
    created: float | None = None
    status: str | None = None  # running, interrupted, stopped, done or empty (`list_studies`)
    waiting_for: str | None = None  # why a trial in flight has not started, if one has not

    @property
    def unfinished(self) -> int:
        return record.unfinished(self.counts)

    @property
    def finished(self) -> int:
        return record.finished(self.counts)


def _summary(row: dict[str, Any]) -> StudySummary:
    return StudySummary(
        name=row["name"],
        kind=row["kind"],
        metrics=list(row["metrics"]),
        directions=list(row["directions"]),
        counts={k: int(row[k]) for k in record.STATUSES},
        elapsed_seconds=float(row["elapsed"]),
        budget_trials=None if row["budget"] is None or row["budget"] != row["budget"] else int(row["budget"]),
        best=dict(row["best"]),
        created=row["created"],
        status=row["status"],
        waiting_for=row.get("waiting_for") or None,
    )


def study_summaries(url: str) -> list[StudySummary]:
    """Every hybrid-nas study of the storage, oldest first."""
    return [_summary(r) for r in list_studies(url).to_dict("records")]


def study_summary(url: str, name: str) -> StudySummary:
    _meta_or_error(url, name)
    return next(s for s in study_summaries(url) if s.name == name)


@dataclass
class TrialRow:
    number: int
    state: str  # Optuna's: COMPLETE, RUNNING, FAIL, PRUNED, WAITING
    status: str  # `record.trial_status`
    pattern: str | None
    values: list[float] | None  # the objectives, complete trials only
    params: dict[str, Any]
    arch: dict[str, Any] | None
    metrics: dict[str, float]
    failure: dict[str, Any] | None
    mlflow_run_id: str | None
    pareto: bool = False
    rung: int | None = None
    progress: dict[str, Any] | None = None
    duration: float | None = None
    waiting_for: str | None = None  # why its job has not started (running trials only)
    job_seconds: float | None = None  # wall time of every job it ran, all rungs and seeds (its cost)


def _none(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def study_trials(url: str, name: str) -> list[TrialRow]:
    """Every trial of a study, in order, with its architecture and latest progress report."""
    meta, df = study_frame(url, name)
    extra = _attrs_of(url, meta.study_id,
                      (record.ARCH, record.PROGRESS, record.METRICS, record.FAILURE, record.JOB_SECONDS))
    params = [c for c in df.columns if c.startswith("p.")]
    rows = []
    for t in df.to_dict("records"):
        a = extra.get(t["number"], {})
        values = [t[m] for m in meta.metrics] if t["state"] == "COMPLETE" else None
        rows.append(
            TrialRow(
                number=int(t["number"]),
                state=t["state"],
                status=t["status"],
                pattern=_none(t["pattern"]),  # NaN for a trial that never started
                values=values,
                params={c[2:]: t[c] for c in params if _none(t[c]) is not None},
                arch=a.get(record.ARCH),
                metrics=a.get(record.METRICS) or {},
                failure=a.get(record.FAILURE),
                mlflow_run_id=t["mlflow_run_id"],
                pareto=bool(t["pareto"]),
                rung=None if _none(t["rung"]) is None else int(t["rung"]),
                progress=a.get(record.PROGRESS),
                duration=_none(t["duration"]),
                waiting_for=_none(t["waiting_for"]),
                job_seconds=a.get(record.JOB_SECONDS),
            )
        )
    return rows


def pareto_trials(url: str, name: str) -> list[dict[str, Any]]:
    """The Pareto set of the complete trials, best first on the first objective: trial, pattern, each
    objective's value, params, arch, mlflow_run_id and `spread` (each objective's standard deviation
    over the trial's seeds; empty for one seed)."""
    meta, df = study_frame(url, name)
    front = df[df["pareto"]]
    if not len(front) or not meta.metrics:
        return []
    front = front.sort_values(meta.metrics[0], ascending=meta.directions[0] != "maximize", kind="stable")
    archs = _attrs_of(url, meta.study_id, (record.ARCH,), [int(n) for n in front["number"]])
    return [
        {
            "trial": int(t["number"]),
            "pattern": t["pattern"],
            **{m: float(t[m]) for m in meta.metrics},
            "params": _none(t.get("m.params")),
            "arch": archs.get(int(t["number"]), {}).get(record.ARCH),
            "mlflow_run_id": t["mlflow_run_id"],
            "spread": {m: float(t[f"sd.{m}"]) for m in meta.metrics if _none(t.get(f"sd.{m}")) is not None},
        }
        for t in front.to_dict("records")
    ]


def trial_archs(
    url: str, name: str, *, pareto: bool = False, trial: int | None = None
) -> list[tuple[int, ArchConfig]]:
    """Architectures of a study's trials: one trial by number, the Pareto set, or every trial that has one."""
    meta, df = study_frame(url, name)
    archs = {n: a[record.ARCH] for n, a in _attrs_of(url, meta.study_id, (record.ARCH,)).items()}
    if trial is not None:
        if trial not in archs:
            raise ConfigError(
                f"study {name!r} has no trial {trial} with an architecture; trials with one: {_ranges(sorted(archs))}"
            )
        return [(trial, ArchConfig.from_dict(archs[trial]))]
    if pareto:
        front = [int(n) for n in df.loc[df["pareto"], "number"]]
        if not front:
            raise ConfigError(f"study {name!r} has no complete trial yet, so no Pareto set")
        return [(n, ArchConfig.from_dict(archs[n])) for n in front]
    return [(n, ArchConfig.from_dict(a)) for n, a in sorted(archs.items())]


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    return f"{min(numbers)}–{max(numbers)}" if len(numbers) > 3 else ", ".join(map(str, numbers))
