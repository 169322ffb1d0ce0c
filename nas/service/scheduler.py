"""The scheduler (`nas serve`): claims queued studies by priority and runs them on the Ray cluster.

    Scheduler(url, ray_address="ray-head:6380").serve()

One scheduler runs one study at a time; start several (on one host or many, against one database) for
several at once. A claim is one transaction: `SELECT ... FOR UPDATE SKIP LOCKED` picks the queued study
with the highest priority (then the oldest), or a running one whose scheduler stopped sending heartbeats
for `stale_after` seconds, and marks it running under this scheduler's id. While the study runs, a
thread writes the heartbeat every `heartbeat_every` seconds. Once it finds the row owned by another
scheduler (which took it over: this one was frozen, or cut off, for longer than `stale_after`), results
that still arrive are dropped and the runner stops as on a pause: the trials are the new owner's.

The runner (`nas.runner.run_study`) asks `should_stop()` every half second; it reads the row's request at
most once a second: "cancel" cancels the Ray tasks of the trials in flight and fails them (the row ends
`cancelled`), "pause" cancels the tasks but leaves the trials to the resumed run (`paused`). A study that
finishes is `done`, one that raises is `failed` with the error; every transition goes to the event log.
A resumed or taken-over study continues its Optuna study: no finished trial is lost or run twice.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from nas import store
from nas.executor import Executor, Job, JobOutcome, RayExecutor, start_local_ray, token_auth_for
from nas.runner import run_study
from nas.service.db import EventRow, QueueError, StudyRow, db_now, seconds_ago, session, upgrade
from nas.service.queue import DEFAULT_STALE_AFTER, QueuedStudy, service_urls
from nas.settings import mask_url, normalize_url
from nas.spec import StudySpec, validate
from nas.tracking import Tracker
from search_spaces.config import ConfigError

__all__ = ["Claim", "Scheduler", "claim", "finish", "scheduler_id"]

log = logging.getLogger(__name__)


def scheduler_id() -> str:
    """host:pid:random — unique per process, readable in `nas list`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def claim(url: str, me: str, stale_after: float = DEFAULT_STALE_AFTER) -> QueuedStudy | None:
    """Take the next study for scheduler `me`: the highest priority queued one, or a running one whose
    scheduler is presumed dead. None when there is none. Safe with any number of schedulers."""
    with session(url) as s:
        cutoff = seconds_ago(s, stale_after)
        row = s.scalar(
            sa.select(StudyRow)
            .where(sa.or_(StudyRow.status == "queued",
                          sa.and_(StudyRow.status == "running", StudyRow.heartbeat_at < cutoff)))
            .order_by(StudyRow.priority.desc(), StudyRow.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if row is None:
            return None
        now = db_now(s)
        if row.status == "running":
            kind, message = "taken-over", (f"from scheduler {row.scheduler}, silent since "
                                           f"{row.heartbeat_at:%H:%M:%S} (more than {stale_after:g} s)")
        else:
            kind, message = "claimed", f"attempt {row.attempts + 1}"
        row.status, row.scheduler, row.heartbeat_at = "running", me, now
        row.started_at = row.started_at or now
        row.attempts += 1
        s.add(EventRow(study_id=row.id, time=now, kind=kind, message=message, scheduler=me))
        s.commit()
        return QueuedStudy.from_row(row)


def finish(url: str, study_id: int, me: str, status: str, message: str = "",
           error: str | None = None) -> bool:
    """Move a study this scheduler owns to its next status; False (and nothing written but an event) if
    another scheduler owns it by now. Retried through a database outage (`store.retry`)."""
    return store.retry(lambda: _finish(url, study_id, me, status, message, error), f"recording study {study_id}")


def _finish(url: str, study_id: int, me: str, status: str, message: str, error: str | None) -> bool:
    with session(url) as s:
        row = s.scalar(sa.select(StudyRow).where(StudyRow.id == study_id).with_for_update())
        now = db_now(s)
        if row is None or row.status != "running" or row.scheduler != me:
            owner = row.scheduler if row is not None else None
            s.add(EventRow(study_id=study_id, time=now, kind="lost", scheduler=me,
                           message=f"this scheduler no longer owns the study (now {owner}); it stopped "
                                   f"without recording {status}"))
            s.commit()
            return False
        row.status, row.requested = status, None
        if status == "queued":  # handed back: another scheduler may claim it at once
            row.scheduler, row.heartbeat_at = None, None
        else:
            row.finished_at = now if status in ("done", "failed", "cancelled") else None
        row.error = error
        s.add(EventRow(study_id=study_id, time=now, kind=status, message=message, scheduler=me))
        s.commit()
        return True


def _event(url: str, study_id: int, kind: str, message: str, me: str | None) -> None:
    def write() -> None:
        with session(url) as s:
            s.add(EventRow(study_id=study_id, time=db_now(s), kind=kind, message=message, scheduler=me))
            s.commit()

    store.retry(write, f"recording an event of study {study_id}")


class Claim:
    """A study this scheduler runs: its heartbeat (a thread, and the runner's loop) and its stop requests."""

    def __init__(self, url: str, study_id: int, me: str, heartbeat_every: float, check_every: float = 1.0):
        self.url, self.study_id, self.me = url, study_id, me
        self.heartbeat_every, self.check_every = heartbeat_every, check_every
        self.lost_to: str | None = None  # the scheduler that took the study over
        self.requested: str | None = None
        self._last_beat = self._last_check = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_forever, name=f"heartbeat-{study_id}", daemon=True)

    @property
    def lost(self) -> bool:
        return self.lost_to is not None

    def silent_for(self) -> float:
        """Seconds since the last heartbeat that got through."""
        return time.monotonic() - self._last_beat if self._last_beat else 0.0

    def __enter__(self) -> Claim:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat_forever(self) -> None:
        while not self._stop.wait(min(1.0, self.heartbeat_every / 2)):
            self.beat()

    def beat(self, force: bool = False) -> None:
        """Write the heartbeat (at most every `heartbeat_every` s); notice a takeover."""
        with self._lock:
            if self.lost or (not force and time.monotonic() - self._last_beat < self.heartbeat_every):
                return
            try:
                with session(self.url) as s:
                    got = s.execute(
                        sa.update(StudyRow)
                        .where(StudyRow.id == self.study_id, StudyRow.scheduler == self.me,
                               StudyRow.status == "running")
                        .values(heartbeat_at=db_now(s))
                        .returning(StudyRow.requested)
                    ).first()
                    if got is None:
                        owner = s.scalar(sa.select(StudyRow.scheduler).where(StudyRow.id == self.study_id))
                        self.lost_to = owner or "nobody"
                    else:
                        self.requested = got[0]
                    s.commit()
                self._last_beat = time.monotonic()
            except sa.exc.DBAPIError as e:  # the database is away for a moment: try again next beat
                log.warning("heartbeat of study %d failed: %s", self.study_id, str(e).splitlines()[0])

    def should_stop(self) -> str | None:
        """For the runner: "pause" once the study was taken over or a pause was asked, "cancel" if asked."""
        if time.monotonic() - self._last_check >= self.check_every and not self.lost:
            self._last_check = time.monotonic()
            try:
                with session(self.url) as s:
                    row = s.execute(sa.select(StudyRow.requested, StudyRow.scheduler, StudyRow.status)
                                    .where(StudyRow.id == self.study_id)).first()
                if row is None or row.scheduler != self.me or row.status != "running":
                    self.lost_to = (row.scheduler if row is not None else None) or "nobody"
                else:
                    self.requested = row.requested
            except sa.exc.DBAPIError as e:
                log.warning("could not read the requests of study %d: %s", self.study_id,
                            str(e).splitlines()[0])
        if self.lost:
            return "pause"
        return self.requested


class _Guarded(Executor):
    """The executor as the runner sees it: once the study is taken over (this scheduler was frozen longer
    than the stale timeout, say), results that arrive are dropped, since the new owner runs those trials
    again, and nothing new is launched; the runner's next `should_stop()` then stops it."""

    def __init__(self, inner: Executor, claim: Claim):
        self.inner, self.claim = inner, claim

    def submit(self, job: Job) -> int:
        if self.claim.lost:  # the new owner runs the study's trials
            return -1
        return self.inner.submit(job)

    def wait(self, timeout: float) -> list[JobOutcome]:
        outcomes = self.inner.wait(timeout)
        if outcomes and not self.claim.lost:
            self.claim.beat(force=True)  # still ours? (and fresh for the time it takes to record them)
        return [] if self.claim.lost else outcomes

    def progress(self) -> list[dict[str, Any]]:
        return self.inner.progress()

    def cancel(self, job_id: int) -> None:
        self.inner.cancel(job_id)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def check_fits(self, cpus: float, gpus: float) -> None:
        self.inner.check_fits(cpus, gpus)

    def waiting(self) -> dict[int, str]:
        return self.inner.waiting()

    @property
    def in_flight(self) -> int:
        if not self.claim.lost and self.claim.silent_for() > self.claim.heartbeat_every:
            self.claim.beat(force=True)  # no heartbeat got through lately (an outage): still ours?
        return 1 << 30 if self.claim.lost else self.inner.in_flight  # "full": launch nothing more


class Scheduler:
    """Runs the queue of one database, one study at a time (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        *,
        ray_address: str | None = None,
        stale_after: float = DEFAULT_STALE_AFTER,
        heartbeat_every: float | None = None,
        poll_every: float = 2.0,
        console=None,
        show_progress: bool = False,
    ):
        self.url = normalize_url(url)
        self.ray_address = ray_address
        self.stale_after = stale_after
        self.heartbeat_every = heartbeat_every or max(0.5, min(5.0, stale_after / 4))
        if self.heartbeat_every >= stale_after:
            raise QueueError(f"the heartbeat ({self.heartbeat_every:g} s) must come more often than a "
                             f"scheduler is presumed dead ({stale_after:g} s)")
        self.poll_every = poll_every
        self.me = scheduler_id()
        self.console = console
        self.show_progress = show_progress
        self._ray_ready = False

    # ----- the loop ------------------------------------------------------------------------------------
    def serve(self, *, exit_when_idle: bool = False, max_studies: int | None = None,
              stop: Callable[[], bool] | None = None) -> int:
        """Claim and run studies until interrupted (SIGINT / SIGTERM), or until the queue is empty with
        `exit_when_idle`, or after `max_studies`. Returns how many studies it ran."""
        upgrade(self.url)
        self._connect_ray()
        self._say(f"scheduler {self.me} serving {mask_url(self.url)}"
                  + (f" on Ray at {self.ray_address}" if self.ray_address else " on a local Ray instance")
                  + f" (presumes a silent scheduler dead after {self.stale_after:g} s)")
        previous = _sigterm_as_interrupt()
        ran = 0
        try:
            while max_studies is None or ran < max_studies:
                if stop is not None and stop():
                    break
                try:
                    if self.run_one():
                        ran += 1
                        continue
                except sa.exc.OperationalError as e:  # the database is away: the study's heartbeat stops,
                    # and whoever claims it next (this scheduler, maybe) resumes it
                    self._say(f"the queue database is unreachable ({str(e.orig or e).splitlines()[0]}); "
                              "trying again")
                    time.sleep(max(self.poll_every, 5.0))
                    continue
                if exit_when_idle:
                    break
                time.sleep(self.poll_every)
        except KeyboardInterrupt:
            self._say(f"scheduler {self.me} stopping")
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
            self._shutdown_ray()
        return ran

    def run_one(self) -> bool:
        """Claim one study and run it to its end (or its pause, cancel or takeover); False if none waits."""
        study = claim(self.url, self.me, self.stale_after)
        if study is None:
            return False
        self._say(f"study {study.id} ({study.name}, priority {study.priority}): running")
        with Claim(self.url, study.id, self.me, self.heartbeat_every) as c:
            try:
                status, message, error = self._run(study, c)
            except KeyboardInterrupt:
                # stopped by its operator: hand the study back so that another scheduler goes on at once
                if not c.lost:
                    finish(self.url, study.id, self.me, "queued",
                           f"scheduler {self.me} was stopped; the study is back in the queue")
                raise
        if c.lost:
            _event(self.url, study.id, "lost",
                   f"taken over by {c.lost_to}; this scheduler stopped its runner and left the trials to it",
                   self.me)
            self._say(f"study {study.id}: taken over by {c.lost_to}")
            return True
        finish(self.url, study.id, self.me, status, message, error)
        self._say(f"study {study.id} ({study.name}): {status}" + (f" — {message}" if message else ""))
        return True

    def _run(self, study: QueuedStudy, c: Claim) -> tuple[str, str, str | None]:
        try:
            spec = validate(StudySpec.model_validate(study.spec))
            # the service's URLs, from this scheduler's settings: given to the runner, never to the spec
            storage, tracking = service_urls(self.url)
            self._record_urls(study, spec, storage, tracking)
            self._experiment(study, spec, tracking)
            executor = _Guarded(self._executor(), c)
            try:
                c.beat(force=True)
                if c.lost:
                    return "running", "", None
                summary = run_study(spec, executor=executor, console=self.console,
                                    show_progress=self.show_progress, should_stop=c.should_stop,
                                    heartbeat=c.beat, storage=storage, tracking=tracking)
            finally:
                executor.shutdown()  # cancels what is left; the Ray connection stays for the next study
        except KeyboardInterrupt:
            raise
        except ConfigError as e:
            return "failed", str(e), str(e)
        except Exception as e:
            tb = traceback.format_exc(limit=-4)
            log.error("study %d failed:\n%s", study.id, tb)
            first = (str(e).strip().splitlines() or [""])[0]
            return "failed", f"{type(e).__name__}: {first}\n{tb}", f"{type(e).__name__}: {first}"
        counts = summary.counts
        what = (f"{counts['complete']} complete, {counts['failed']} failed, {counts['infeasible']} infeasible"
                + "".join(f", {counts[k]} {k}" for k in ("cancelled", "pruned") if counts[k])
                + f", {summary.elapsed_seconds / 60:.1f} min")
        reason = summary.stop_reason
        if reason == "cancel":
            return "cancelled", f"its trials in flight were stopped and failed; {what}", None
        if reason == "pause":
            return "paused", (f"its trials in flight were stopped and wait for `nas resume {study.id}`; "
                              f"{what}"), None
        if reason == "hours":
            return "done", f"its budget of hours is spent; {what}", None
        return "done", what, None

    def _record_urls(self, study: QueuedStudy, spec, storage: str, tracking: str) -> None:
        pairs = (("storage", spec.storage, storage), ("tracking", spec.tracking, tracking))
        overridden = [f"{what} {mask_url(asked)}" for what, asked, used in pairs
                      if asked and normalize_url(asked) != used]
        note = f" (the service's; the spec named {' and '.join(overridden)})" if overridden else ""
        _event(self.url, study.id, "urls",
               f"Optuna storage {mask_url(storage)}, MLflow tracking {mask_url(tracking)}{note}", self.me)

    def _experiment(self, study: QueuedStudy, spec, tracking: str) -> None:
        """The study's MLflow experiment, recorded on its row for links (the runner logs its runs there)."""
        experiment = Tracker(tracking, spec.name).experiment_id

        def write() -> None:
            with session(self.url) as s:
                s.execute(sa.update(StudyRow).where(StudyRow.id == study.id, StudyRow.scheduler == self.me)
                          .values(mlflow_experiment_id=str(experiment)))
                s.commit()

        store.retry(write, f"recording study {study.id}'s experiment")

    # ----- Ray ---------------------------------------------------------------------------------------------
    def _connect_ray(self) -> None:
        """One Ray connection (or local instance) for the scheduler's life, shared by its studies."""
        if self._ray_ready:
            return
        if self.ray_address:
            token_auth_for(self.ray_address)  # before Ray reads its settings
        import ray

        if self.ray_address:
            try:
                ray.init(address=self.ray_address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except ConnectionError as e:
                raise QueueError(f"cannot join the Ray cluster at {self.ray_address}: {e}") from None
        elif not ray.is_initialized():
            # a new instance even where `ray start` left its address in /tmp/ray (a cluster that may be gone,
            # which ray.init() would try to join), on loopback only
            start_local_ray()
        self._ray_ready = True

    def _executor(self):
        self._connect_ray()
        return RayExecutor(self.ray_address)

    def _shutdown_ray(self) -> None:
        if self._ray_ready:
            import ray

            ray.shutdown()
            self._ray_ready = False

    def _say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self.console is not None:
            self.console.print(f"[dim]{stamp}[/] {text}", soft_wrap=True)
        else:
            log.info(text)


def _sigterm_as_interrupt():
    """`docker stop` sends SIGTERM: stop as on Ctrl-C (the study in hand goes back to the queue)."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests drive serve() from a thread)
        return signal.getsignal(signal.SIGTERM)
