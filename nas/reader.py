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

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ACTIVE_WINDOW",
    "TRIAL_ATTRS",
    "StudyMeta",
    "attention_ratio",
    "finish_times",
    "list_studies",
    "param_distributions",
    "pareto_front",
    "running_trials",
    "ssm_family",
    "storage_exists",
    "study_frame",
    "study_meta",
    "study_names",
    "study_version",
    "trial_attrs",
]

# the trial attributes a page shows; `result` (every curve of every task) and `arch` stay in the database
TRIAL_ATTRS = ("pattern", "metrics", "failure", "mlflow_run_id", "rung_done", "job_rung", "progress")
# a study whose newest trial event (start, end, progress report) is older than this is not running
ACTIVE_WINDOW = 15 * 60.0
_FAMILY_NAMES = {"M": "Mamba-2", "m": "Mamba-1", "X": "mLSTM"}
_engines: dict[str, Any] = {}


# ----- connections --------------------------------------------------------------------------------
def storage_exists(url: str) -> bool:
    """False for an SQLite file that is not there yet (reading must not create it)."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        return path in ("", ":memory:") or Path(path).is_file()
    return True


def _engine(url: str):
    eng = _engines.get(url)
    if eng is None:
        import sqlalchemy

        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {
                "timeout": 30
            }  # a study writing at the same moment holds the lock briefly
        eng = _engines[url] = sqlalchemy.create_engine(url, **kwargs)
    return eng


def _query(url: str, sql: str, **params: Any) -> list:
    from sqlalchemy import text

    with _engine(url).connect() as conn:
        result = conn.execute(text(sql), params)
        # the DBAPI cursor's plain tuples: a text() query has no result processing to skip, and pandas
        # probing SQLAlchemy's Row objects for attributes costs more than the read itself
        return result.cursor.fetchall() if result.cursor is not None else []


def _has_tables(url: str) -> bool:
    if not storage_exists(url):
        return False
    from sqlalchemy import inspect

    return inspect(_engine(url)).has_table("trials")


def _epoch(dt: Any) -> float | None:
    """Optuna's naive-UTC datetime (SQLite hands back a string) as seconds since the epoch."""
    if dt is None:
        return None
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt)
    return dt.replace(tzinfo=timezone.utc).timestamp()


def _in(names: tuple[str, ...]) -> str:
    """A literal `IN (...)` list for our own constant keys (no user input reaches it)."""
    return "(" + ", ".join(f"'{n}'" for n in names) + ")"


# ----- patterns -----------------------------------------------------------------------------------
def ssm_family(pattern: str | None) -> str:
    """The recurrent family of a pattern: Mamba-2, Mamba-1, mLSTM, 'mixed' or 'none' (attention only)."""
    if not pattern:
        return "unknown"
    found = [name for sym, name in _FAMILY_NAMES.items() if sym in pattern]
    return found[0] if len(found) == 1 else "mixed" if found else "none"


def attention_ratio(pattern: str | None) -> float:
    """Attention's share of the mixers (`*` among `*MmX`): 0 for a pure SSM, 1 for a Transformer."""
    if not pattern:
        return math.nan
    mixers = sum(pattern.count(s) for s in "*MmX")
    return pattern.count("*") / mixers if mixers else math.nan


# ----- the Pareto front ---------------------------------------------------------------------------
def pareto_front(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of `values` [n, m]; the same set as `nas.pareto.pareto_mask`.

    Rows are visited in lexicographic order of the minimised objectives: a row's dominators all come
    before it, so each row is checked against the front found so far only (O(n·front) instead of
    the O(n²) dominance matrix, which does not fit in memory at 10,000 trials).
    """
    p = np.asarray(values, dtype=float).reshape(len(values), len(directions))
    p = p * np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    n = len(p)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    order = np.lexsort(p.T[::-1])
    front = np.empty((0, p.shape[1]))
    keep: list[int] = []
    for i in order:
        row = p[i]
        if len(front) and bool(((front <= row).all(1) & (front < row).any(1)).any()):
            continue
        keep.append(i)
        front = np.vstack([front, row])
    mask[keep] = True
    return mask


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
        return self.attrs.get("mlflow_experiment_id")


_STUDY_ATTRS = ("spec", "created", "elapsed_seconds", "mlflow_experiment_id", "mlflow_parent_run_id")


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
            directions[sid][objective] = str(direction).rsplit(".", 1)[-1].lower()
    out = {}
    for sid, n in ids.items():
        spec = attrs[sid].pop("spec", None)
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


def _budget(spec: dict[str, Any], trained: int, waiting: int) -> int | None:
    trials = (spec.get("budget") or {}).get("trials")
    sampler = spec.get("sampler", "auto")
    if spec.get("kind") == "ablation" or sampler == "grid":
        # every grid point is enqueued when the study is created: trained ones plus those still waiting
        grid = trained + waiting
        return grid if spec.get("kind") == "ablation" or trials is None else min(grid, trials)
    return trials


def _status(
    c: dict[str, int], budget: int | None, hours: float | None, elapsed: float, last: float | None, now: float
) -> str:
    unfinished = c["running"] + c["paused"]
    if c["running"] and last is not None and now - last < ACTIVE_WINDOW:
        return "running"
    if unfinished:
        return "stopped"  # a driver left trials in flight: `nas run` resumes them
    total = c["complete"] + c["failed"] + c["infeasible"] + c["pruned"] + c["waiting"]
    if total == 0:
        return "empty"
    trained = c["complete"] + c["failed"] + c["pruned"]
    if (budget is not None and trained >= budget and not c["waiting"]) or (hours and elapsed >= hours * 3600):
        return "done"
    return "stopped"


def list_studies(url: str, now: float | None = None) -> pd.DataFrame:
    """One row per hybrid-nas study: status, trial counts, budget, best objective values, elapsed, ETA.

    status is `running` (trials in flight and something happened in the last ACTIVE_WINDOW seconds),
    `stopped` (unfinished: `nas run` resumes it), `done` (budget spent) or `empty` (no trial yet).
    """
    import pandas as pd

    columns = [
        "name",
        "kind",
        "status",
        "complete",
        "running",
        "paused",
        "failed",
        "infeasible",
        "pruned",
        "waiting",
        "queued",
        "budget",
        "finished",
        "best",
        "elapsed",
        "eta",
        "created",
        "last_activity",
        "metrics",
        "directions",
        "description",
    ]
    if not _has_tables(url):
        return pd.DataFrame(columns=columns)
    now = time.time() if now is None else now
    metas = _studies(url)
    if not metas:
        return pd.DataFrame(columns=columns)
    counts = {
        sid: dict.fromkeys(("complete", "running", "paused", "failed", "infeasible", "pruned", "waiting"), 0)
        for sid in metas
    }
    last: dict[int, float] = {}

    def touch(sid: int, t: float | None) -> None:
        if t is not None and t > last.get(sid, 0):
            last[sid] = t

    for sid, state, n, start, end in _query(
        url,
        "SELECT study_id, state, count(*), max(datetime_start), max(datetime_complete) FROM trials "
        "GROUP BY study_id, state",
    ):
        if sid not in counts:
            continue
        state = str(state).rsplit(".", 1)[-1]
        key = {
            "COMPLETE": "complete",
            "RUNNING": "running",
            "FAIL": "failed",
            "PRUNED": "pruned",
            "WAITING": "waiting",
        }[state]
        counts[sid][key] += n
        touch(sid, _epoch(start))
        touch(sid, _epoch(end))
    for sid, value in _query(
        url,
        "SELECT t.study_id, a.value_json FROM trials t "
        "JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
        "WHERE t.state = 'FAIL' AND a.key = 'failure'",
    ):
        if sid in counts and (json.loads(value) or {}).get("kind") == "infeasible":
            counts[sid]["failed"] -= 1
            counts[sid]["infeasible"] += 1
    running: dict[int, dict[int, dict[str, Any]]] = {}
    for sid, tid, key, value in _query(
        url,
        "SELECT t.study_id, t.trial_id, a.key, a.value_json FROM trials t "
        "JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
        "WHERE t.state = 'RUNNING' AND a.key IN ('job_rung', 'rung_done', 'progress')",
    ):
        running.setdefault(sid, {}).setdefault(tid, {})[key] = json.loads(value)
    for sid, trials in running.items():
        if sid not in counts:
            continue
        for a in trials.values():
            if a.get("job_rung") is None and "rung_done" in a:
                counts[sid]["running"] -= 1
                counts[sid]["paused"] += 1
            touch(sid, (a.get("progress") or {}).get("time"))
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
        trained = c["complete"] + c["failed"] + c["pruned"] + c["running"] + c["paused"]
        budget = _budget(spec, trained, c["waiting"])
        hours = (spec.get("budget") or {}).get("hours")
        elapsed = float(meta.attrs.get("elapsed_seconds") or 0.0)
        status = _status(c, budget, hours, elapsed, last.get(sid), now)
        b = {}
        for i, (m, d) in enumerate(zip(meta.metrics, meta.directions, strict=False)):
            if i in best.get(sid, {}) and best[sid][i][0] is not None:
                b[m] = best[sid][i][0] if d == "maximize" else best[sid][i][1]
        finished = c["complete"] + c["failed"] + c["pruned"]
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
                "created": meta.attrs.get("created"),
                "last_activity": last.get(sid),
                "metrics": meta.metrics,
                "directions": meta.directions,
                "description": spec.get("description", ""),
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
    complete trials), `p.<param>` per search dimension, `m.<metric>` per recorded metric,
    failure_kind, failure_reason, mlflow_run_id, rung, started, completed (epoch seconds),
    duration (seconds), trial_id.
    """
    import pandas as pd

    meta = study_meta(url, name)
    if meta is None:
        from search_spaces.arch import ConfigError

        raise ConfigError(f"no study named {name!r} in {url}")
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
    states = trials["state"].astype(str).str.rsplit(".", n=1).str[-1].to_numpy(dtype=object)

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
    failures = [f or {} for f in attrs["failure"]]
    has_job = [j is not None for j in attrs["job_rung"]]
    rung_done = attrs["rung_done"]
    status = []
    for state, f, job, done in zip(states, failures, has_job, rung_done, strict=False):
        if state == "FAIL":
            status.append("infeasible" if f.get("kind") == "infeasible" else "failed")
        elif state == "RUNNING":
            status.append("paused" if not job and done is not None else "running")
        else:
            status.append(state.lower())
    patterns = attrs["pattern"]

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
        pareto[np.flatnonzero(complete)] = pareto_front(vals[complete], meta.directions)
    columns["pareto"] = pareto
    columns.update(_param_columns(url, sid, index))
    metric_rows = [m or {} for m in attrs["metrics"]]
    recorded = pd.DataFrame.from_records(metric_rows, index=range(n)) if n else pd.DataFrame()
    for mname in sorted(recorded.columns):
        columns[f"m.{mname}"] = recorded[mname].to_numpy(dtype=float)
    columns["failure_kind"] = np.array([f.get("kind") for f in failures], dtype=object)
    columns["failure_reason"] = np.array([f.get("reason") for f in failures], dtype=object)
    columns["mlflow_run_id"] = np.array(attrs["mlflow_run_id"], dtype=object)
    columns["rung"] = np.array([np.nan if r is None else r for r in rung_done], dtype=float)
    columns["started"] = started
    columns["completed"] = completed
    columns["duration"] = completed - started
    columns["trial_id"] = index.to_numpy()
    return meta, pd.DataFrame(columns)


def running_trials(url: str, name: str) -> pd.DataFrame:
    """The trials in flight and their latest training progress (task, step, steps, loss, time)."""
    import pandas as pd

    columns = ["number", "pattern", "status", "started", "task", "step", "steps", "loss", "updated", "rung"]
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
        "AND a.key IN ('pattern', 'progress', 'job_rung', 'rung_done')",
        sid=meta.study_id,
    ):
        attrs.setdefault(tid, {})[key] = json.loads(value)
    rows = []
    for tid, number, start in trials:
        a = attrs.get(tid, {})
        p = a.get("progress") or {}
        paused = a.get("job_rung") is None and "rung_done" in a
        rows.append(
            {
                "number": number,
                "pattern": a.get("pattern"),
                "status": "paused" if paused else "running",
                "started": _epoch(start),
                "task": p.get("task"),
                "step": p.get("step"),
                "steps": p.get("steps"),
                "loss": p.get("loss"),
                "updated": p.get("time"),
                "rung": a.get("job_rung"),
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
