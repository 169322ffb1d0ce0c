"""The study queue of service mode: submit studies, list them, pause, resume or cancel them.

    id = submit(Path("studies/ratio.yaml").read_text(), priority=5)    # validated; a bad spec leaves no row
    for s in list_studies(): print(s.id, s.name, s.status)
    pause(id); resume(id); cancel(id)
    for e in events(id): print(e.time, e.kind, e.message)

A study's status: queued → running (a scheduler claimed it) → done / failed / cancelled, or paused
(and queued again by `resume`). Pausing or cancelling a running study is a request that the scheduler
running it carries out within a second or two: pause leaves its trials in flight for the resumed run,
cancel stops them and fails them. `nas serve` (`nas.service.scheduler`) runs the queue. Every function
takes the database URL, or reads it from the settings (NAS_DATABASE_URL); without one there is no queue.

Who acts is `by` (the dashboard's signed-in user; the command line's is the user running it): it is the
submitter and is named in every event. A spec is stored as `StudySpec.stored()` (no password), at most
`MAX_CONFIG_BYTES` of JSON; `list_studies` reads the columns a list shows, never the specs.
"""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from nas import record, store
from nas.service.db import (
    ACTIVE,
    EventRow,
    QueueError,
    StudyRow,
    aware,
    db_now,
    seconds_ago,
    session,
    unreachable,
)
from nas.settings import normalize_url, settings
from nas.spec import StudySpec, spec_from_text, validate
from search_spaces.config import MAX_CONFIG_BYTES, ConfigError

__all__ = [
    "DEFAULT_STALE_AFTER",
    "QueueError",
    "QueueEvent",
    "QueuedStudy",
    "cancel",
    "database_url",
    "events",
    "get_study",
    "list_studies",
    "pause",
    "resume",
    "service_urls",
    "submit",
]

# seconds without a heartbeat after which a running study's scheduler is presumed dead
DEFAULT_STALE_AFTER = 30.0


@dataclass
class QueuedStudy:
    id: int
    name: str
    status: str
    priority: int
    submitted_by: str | None
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    scheduler: str | None
    error: str | None
    optuna_study_name: str
    mlflow_experiment_id: str | None
    spec: dict[str, Any]  # empty in `list_studies`, which reads only `kind` and `budget_trials` of it
    requested: str | None = None  # "pause" / "cancel" asked of a running study, not yet carried out
    attempts: int = 0  # how many times a scheduler claimed it (more than 1: resumed or taken over)
    kind: str = "search"
    budget_trials: int | None = None

    @classmethod
    def from_row(cls, row: StudyRow) -> QueuedStudy:
        spec = dict(row.spec)
        return cls(row.id, row.name, row.status, row.priority, row.submitted_by, aware(row.submitted_at),
                   aware(row.started_at), aware(row.finished_at), aware(row.heartbeat_at), row.scheduler,
                   row.error, row.optuna_study_name, row.mlflow_experiment_id, spec,
                   row.requested, row.attempts, spec.get("kind", "search"), (spec.get("budget") or {}).get("trials"))

    @property
    def label(self) -> str:
        """The status as a person reads it: `running (cancelling)`."""
        pending = {"pause": "pausing", "cancel": "cancelling"}.get(self.requested or "")
        return f"{self.status} ({pending})" if pending and self.status == "running" else self.status


@dataclass
class QueueEvent:
    time: datetime
    kind: str
    message: str
    scheduler: str | None = None


def database_url() -> str | None:
    """The queue's database: NAS_DATABASE_URL, else the config file's database_url; None in embedded mode."""
    return settings().database_url


def service_urls(url: str | None = None) -> tuple[str, str]:
    """The Optuna storage and MLflow tracking URLs every study runs with in service mode, whatever its spec
    says (a scheduler's host may not even see the paths a spec names): NAS_STORAGE (or storage_url), else
    the queue's own database; NAS_TRACKING (or tracking_url), else the embedded MLflow store."""
    s = settings()
    storage = s.storage_url or url or s.database_url
    if not storage:
        raise QueueError("service mode needs a database: set NAS_DATABASE_URL or database_url in the config "
                         "file")
    return normalize_url(storage), normalize_url(s.tracking)


def _url(url: str | None) -> str:
    url = url or database_url()
    if not url:
        raise QueueError("no queue database is configured: set NAS_DATABASE_URL (e.g. "
                         "postgresql+psycopg://nas:PASSWORD@127.0.0.1:5432/nas) or database_url in "
                         "~/.config/hybrid-nas/config.toml; `nas run SPEC` runs a study without the service")
    return url


@contextlib.contextmanager
def _open(url: str | None) -> Iterator[Session]:
    """A session on the queue; a database that cannot be reached is one sentence, not a traceback."""
    url = _url(url)
    try:
        with session(url) as s:
            yield s
    except sa.exc.OperationalError as e:
        raise unreachable(url, e) from None


def _event(s, study_id: int, kind: str, message: str = "", scheduler: str | None = None) -> None:
    s.add(EventRow(study_id=study_id, time=db_now(s), kind=kind, message=message, scheduler=scheduler))


def _check_resumable(spec: StudySpec, url: str) -> None:
    """A study of that name already in the service's Optuna storage must be the same search (it resumes)."""
    storage, _ = service_urls(url)
    try:
        existing = store.load(spec.name, storage)
    except ConfigError:  # no such study yet
        return
    except Exception:  # the storage is unreachable from here; the scheduler will say so if it is for it too
        return
    try:
        store.check_resumable(spec, store.stored_spec(existing.study), storage)
    except ConfigError as e:
        raise QueueError(str(e)) from None


def submit(spec: StudySpec | str, *, priority: int = 0, submitted_by: str | None = None,
           url: str | None = None, files: bool = True) -> int:
    """Queue a study (a StudySpec or its YAML text) and return its id. The spec is validated first: a bad
    one raises ConfigError with one sentence and leaves no row. `files=False`: YAML text naming a file (a
    space, a profile) is refused, for text from someone who cannot see this machine's files."""
    url = _url(url)
    spec = spec_from_text(spec, "the submitted spec", files=files) if isinstance(spec, str) else validate(spec)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise QueueError(f"priority must be a whole number (higher runs first), not {priority!r}")
    stored = spec.stored()
    size = len(json.dumps(stored))
    if size > MAX_CONFIG_BYTES:
        raise QueueError(f"the spec of {spec.name!r} is {size / 1024:,.0f} KB as JSON, over the limit of "
                         f"{MAX_CONFIG_BYTES // 1024} KB; name a bundled space or profile instead of writing it out")
    _check_resumable(spec, url)
    by = submitted_by or _user()
    with _open(url) as s:
        try:
            live = s.scalar(sa.select(StudyRow).where(StudyRow.name == spec.name,
                                                      StudyRow.status.in_(ACTIVE)))
            if live is not None:
                raise QueueError(f"study {spec.name!r} is already {live.status} as id {live.id}; wait for "
                                 f"it, cancel it (`nas cancel {live.id}`) or give this spec another name")
            now = db_now(s)
            row = StudyRow(name=spec.name, spec=stored, status="queued",
                           priority=priority, submitted_by=by, submitted_at=now, attempts=0,
                           optuna_study_name=spec.name)
            s.add(row)
            s.flush()
            _event(s, row.id, "submitted", f"by {by} with priority {priority}")
            s.commit()
        except sa.exc.IntegrityError:  # a submission of the same name won the race
            s.rollback()
            raise QueueError(f"study {spec.name!r} was submitted by someone else a moment ago; "
                             "see `nas list`") from None
        return row.id


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container)
        return "unknown"


_LISTED = ("id", "name", "status", "priority", "submitted_by", "submitted_at", "started_at", "finished_at",
           "heartbeat_at", "scheduler", "error", "optuna_study_name", "mlflow_experiment_id", "requested", "attempts")


def list_studies(url: str | None = None) -> list[QueuedStudy]:
    """Every submission, newest first: the columns a list shows, and of each spec only its kind and its
    budget of trials (read in SQL: a queue of large specs lists as fast as one of small ones)."""
    with _open(url) as s:
        rows = s.execute(
            sa.select(*(getattr(StudyRow, c) for c in _LISTED),
                      StudyRow.spec["kind"].as_string().label("kind"),
                      StudyRow.spec[("budget", "trials")].as_integer().label("budget_trials"))
            .order_by(StudyRow.id.desc())
        ).mappings().all()
    out = []
    for r in rows:
        d = {c: r[c] for c in _LISTED}
        for c in ("submitted_at", "started_at", "finished_at", "heartbeat_at"):
            d[c] = aware(d[c])
        out.append(QueuedStudy(**d, spec={}, kind=r["kind"] or "search", budget_trials=r["budget_trials"]))
    return out


def _find(s, id_or_name: int | str, *, lock: bool = False) -> StudyRow:
    q = sa.select(StudyRow)
    key = str(id_or_name)
    if key.isdigit():
        q = q.where(StudyRow.id == int(key))
    else:  # a name: its newest submission
        q = q.where(StudyRow.name == key).order_by(StudyRow.id.desc()).limit(1)
    if lock:
        q = q.with_for_update()
    row = s.scalar(q)
    if row is None:
        ids = s.scalars(sa.select(StudyRow.id).order_by(StudyRow.id.desc()).limit(5)).all()
        hint = (f"; the newest are {', '.join(map(str, ids))} (see `nas list`)" if ids
                else " (the queue is empty)")
        raise QueueError(f"no study {id_or_name!r} in the queue{hint}")
    return row


def get_study(id_or_name: int | str, url: str | None = None) -> QueuedStudy:
    """One submission, by id or by name (a name means its newest submission)."""
    with _open(url) as s:
        return QueuedStudy.from_row(_find(s, id_or_name))


def events(id: int | str, url: str | None = None) -> list[QueueEvent]:
    """What happened to a study, oldest first."""
    with _open(url) as s:
        row = _find(s, id)
        rows = s.scalars(sa.select(EventRow).where(EventRow.study_id == row.id).order_by(EventRow.id))
        return [QueueEvent(aware(e.time), e.kind, e.message, e.scheduler) for e in rows]


def _stale(s, row: StudyRow, stale_after: float) -> bool:
    beat = aware(row.heartbeat_at)
    return row.status == "running" and (beat is None or beat < seconds_ago(s, stale_after))


def cancel(id: int | str, url: str | None = None, *, stale_after: float = DEFAULT_STALE_AFTER,
           by: str | None = None) -> QueuedStudy:
    """Cancel a study. Queued or paused: at once. Running: its scheduler stops and fails its trials in
    flight within seconds. Running but with a dead scheduler (no heartbeat for `stale_after`): at once."""
    by = by or _user()
    with _open(url) as s:
        row = _find(s, id, lock=True)
        if row.status in ("done", "failed", "cancelled"):
            raise QueueError(f"study {row.id} ({row.name}) is already {row.status}")
        if row.status == "running" and not _stale(s, row, stale_after):
            row.requested = "cancel"
            _event(s, row.id, "cancel-requested", f"asked of scheduler {row.scheduler} by {by}")
            s.commit()
            return QueuedStudy.from_row(row)
        was = row.status
        row.status, row.requested, row.finished_at = "cancelled", None, db_now(s)
        note = _fail_unfinished(row, _url(url)) if row.attempts else ""  # it ran before: trials may be left
        dead = f" (its scheduler {row.scheduler} had stopped)" if was == "running" else ""
        _event(s, row.id, "cancelled", f"by {by} while {was}{dead}{note}")
        s.commit()
        return QueuedStudy.from_row(row)


def _fail_unfinished(row: StudyRow, url: str) -> str:
    """A study cancelled while no scheduler runs it (paused, handed back, or its scheduler dead): fail the
    trials its last run left in flight, as a scheduler does on cancel. Returns a note for the event log."""
    try:
        storage_url, _ = service_urls(url)
        try:
            h = store.load(row.optuna_study_name, storage_url)
        except ConfigError:  # it never got as far as creating its study
            return ""
        fail = store.optuna_module().trial.TrialState.FAIL
        failed = 0
        for t in h.study.get_trials(deepcopy=False, states=(store.optuna_module().trial.TrialState.RUNNING,)):
            if record.is_paused(t.user_attrs):
                continue  # early stopping had parked it; a cancelled study keeps it as it was
            h.set_trial_attr(t.number, record.JOB_RUNG, None)
            h.set_trial_attr(t.number, record.FAILURE, {"kind": "cancelled", "reason": "the study was cancelled"})
            try:
                h.tell(t.number, state=fail)
            except store.optuna_module().exceptions.UpdateFinishedTrialError:
                continue  # a scheduler finished it meanwhile: its record stands
            failed += 1
        return f"; {failed} unfinished trial{'s' if failed != 1 else ''} failed" if failed else ""
    except Exception as e:  # the row is cancelled all the same; say what was left
        return f"; its unfinished trials could not be failed ({type(e).__name__}: {e})"


def pause(id: int | str, url: str | None = None, *, by: str | None = None) -> QueuedStudy:
    """Pause a study: a queued one at once, a running one when its scheduler next looks (its trials in
    flight stay as they are, and `resume` picks them up)."""
    by = by or _user()
    with _open(url) as s:
        row = _find(s, id, lock=True)
        if row.status == "queued":
            row.status = "paused"
            _event(s, row.id, "paused", f"by {by} while queued")
        elif row.status == "running":
            if row.requested == "cancel":
                raise QueueError(f"study {row.id} ({row.name}) is being cancelled")
            row.requested = "pause"
            _event(s, row.id, "pause-requested", f"asked of scheduler {row.scheduler} by {by}")
        else:
            raise QueueError(f"study {row.id} ({row.name}) is {row.status}; only a queued or running study "
                             "can be paused")
        s.commit()
        return QueuedStudy.from_row(row)


def resume(id: int | str, url: str | None = None, *, by: str | None = None) -> QueuedStudy:
    """Queue a paused, failed or cancelled study again: it resumes where its trials left off."""
    by = by or _user()
    with _open(url) as s:
        row = _find(s, id, lock=True)
        try:
            _resume(s, row, by)
        except sa.exc.IntegrityError:
            s.rollback()
            live = s.scalar(sa.select(StudyRow).where(StudyRow.name == row.name, StudyRow.status.in_(ACTIVE)))
            raise QueueError(f"another submission of {row.name!r} is {live.status if live else 'active'}"
                             + (f" as id {live.id}" if live else "") + "; cancel it first") from None
        return QueuedStudy.from_row(row)


def _resume(s, row: StudyRow, by: str) -> None:
    if row.status == "running" and row.requested == "pause":
        row.requested = None
        _event(s, row.id, "resumed", f"by {by}: the pause request is withdrawn")
    elif row.status in ("paused", "failed", "cancelled"):
        was = row.status
        row.status, row.requested, row.finished_at, row.error = "queued", None, None, None
        row.scheduler, row.heartbeat_at = None, None
        _event(s, row.id, "resumed", f"by {by} from {was}; queued again")
    elif row.status == "done":
        raise QueueError(f"study {row.id} ({row.name}) is done; to train more trials, submit its spec again "
                         "with a larger budget (it resumes the same Optuna study)")
    else:
        raise QueueError(f"study {row.id} ({row.name}) is already {row.status}")
    s.commit()
