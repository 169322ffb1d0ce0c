"""Run a study: Optuna asks, an executor trains, Optuna is told, MLflow records. Resumable.

    spec = load_spec("studies/ratio.yaml")
    summary = run_study(spec)                      # a local Ray instance, SQLite, local MLflow

Everything durable lives in the Optuna storage (`nas.record` names it): the spec, each trial's
architecture, the rungs it finished and the job in flight. A driver that dies loses nothing finished:
running the same spec again resubmits the jobs that were in flight and goes on, with its sampler
seeded anew from the number of trials so far (a seeded sampler started again would propose the first
trials' architectures again). An architecture the study has trained, or is training, is never trained
twice (`record.arch_key`): a proposal that repeats one takes its result (`record.DUPLICATE_OF`). Every
read and write of the storage is retried through a database outage (`store.retry`) while the trials in
flight run on. A trial ends COMPLETE
(trained to the full budget; its values are the objectives, averaged over seeds), FAIL (diverged, out of
memory, broke, its worker died twice, or infeasible: the `failure` attribute says which and why) or
PRUNED (left at a lower rung by early stopping, `nas.asha`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas import asha, record, store
from nas.ablation import ablation_arch, suggest_cell
from nas.display import StudyDisplay
from nas.executor import Executor, Job, JobOutcome, RayExecutor
from nas.fidelity import fidelity_arch, fidelity_grid
from nas.reader import StudySummary, pareto_trials, study_summary
from nas.spec import StudySpec
from nas.tracking import Tracker
from search_spaces import ArchConfig
from search_spaces.config import ConfigError
from search_spaces.cost import cache_bytes, param_counts
from search_spaces.scaling import scale
from workers.profile import ProxyProfile, load_profile
from workers.result import TrialResult, mean_metrics, parts_for, spread_metrics

__all__ = ["STOP_CANCEL", "STOP_PAUSE", "run_study", "sampler"]

log = logging.getLogger(__name__)
MAX_INFEASIBLE_IN_A_ROW = 200
STOP_PAUSE, STOP_CANCEL = "pause", "cancel"


def sampler_seed(seed: int, trials_so_far: int) -> int:
    """The sampler's seed for a run that starts with `trials_so_far` trials stored: the spec's seed for a new
    study, and a seed of its own for each later start (so that a resumed run does not replay the first's)."""
    if trials_so_far == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}:{trials_so_far}".encode()).digest()[:4], "big")


def sampler(spec: StudySpec, trials_so_far: int = 0):
    """The spec's Optuna sampler, seeded with `spec.seed` (re-seeded for a resumed study: `sampler_seed`)."""
    optuna = store.optuna_module()
    name = spec.sampler_name()
    seed = sampler_seed(spec.seed, trials_so_far)
    if name == "grid":  # the points are enqueued when the study is created (`store.open_study`)
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, 2 * spec.concurrency + 2)))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


@dataclass
class _Slot:
    trial: int
    rung: int


class _Runner:
    def __init__(
        self,
        spec: StudySpec,
        handle: store.StudyHandle,
        executor: Executor,
        tracker,
        profile: ProxyProfile,
        console,
        show_progress: bool,
        should_stop: Callable[[], str | None] | None,
        heartbeat: Callable[[], None] | None,
        storage_url: str | None = None,
    ):
        self.spec, self.handle, self.study = spec, handle, handle.study
        self.storage_url = storage_url or spec.storage_url
        self.executor, self.tracker, self.profile = executor, tracker, profile
        self.directions = spec.directions
        self.rungs = spec.early_stopping.rungs if spec.early_stopping.enabled else [1.0]
        self.eta = spec.early_stopping.eta
        self.should_stop, self.heartbeat = should_stop, heartbeat
        self.budget = record.trial_budget(spec, len(spec.grid_points()) if spec.sampler_name() == "grid" else None)
        self.jobs: dict[int, _Slot] = {}
        self.started = time.time()
        self.elapsed_before = float(self.study.user_attrs.get(record.ELAPSED, 0.0))
        self.infeasible_in_a_row = 0
        self._gave_up = False  # too many infeasible proposals in a row: no new trial is asked for
        self.ui = StudyDisplay(console, spec, self.budget) if show_progress else None
        self._last_attr_write: dict[int, float] = {}
        self._waiting: dict[int, str] = {}  # trial -> why its job has not started, as recorded
        self.space = spec.search_space() if spec.kind == "search" else None
        self.profile_json = profile.model_dump(mode="json")
        self.trained: dict[str, int] = {}  # arch_key -> the trial that holds (or is training to) its result
        self.keys: dict[int, str] = {}  # trial -> its arch_key, for the trials this run started
        self.waiting: dict[int, int] = {}  # trial -> the trial in flight whose result it takes
        self.stopping = False
        self.parent_run = None
        if tracker is not None:
            import yaml

            self.parent_run = tracker.parent_run(
                self.study.user_attrs.get(record.MLFLOW_PARENT_RUN),
                yaml.safe_dump(spec.stored(), sort_keys=False),
            )
            self.study.set_user_attr(record.MLFLOW_PARENT_RUN, self.parent_run)
            self.study.set_user_attr(record.MLFLOW_EXPERIMENT, tracker.experiment_id)

    # ----- the loop --------------------------------------------------------------------------------
    def run(self) -> str:
        stop_reason = "budget"
        self._resume()
        try:
            while True:
                if self.heartbeat is not None:
                    self.heartbeat()
                request = self.should_stop() if self.should_stop is not None else None
                if request is not None:
                    stop_reason = request
                    self._stop_jobs(cancel=request == STOP_CANCEL)
                    break
                if self._out_of_time():
                    stop_reason = "hours"
                    self._stop_jobs(cancel=False)
                    break
                while self.executor.in_flight < self.spec.concurrency and self._launch():
                    pass
                if self.executor.in_flight == 0:
                    break  # nothing running and nothing left to launch
                for outcome in self.executor.wait(timeout=0.5):
                    self._finish(outcome)
                self._progress()
        except KeyboardInterrupt:
            stop_reason = "interrupted"
            self._interrupted()
            self._stop_jobs(cancel=False)
            raise
        finally:
            self._save_elapsed()
            if self.ui is not None:
                self.ui.close()
        if stop_reason == "budget":
            self._close_paused()
        if self.tracker is not None and stop_reason in ("budget", "hours", STOP_CANCEL):
            self.tracker.finish(
                self.parent_run,
                store.retry(lambda: pareto_trials(self.storage_url, self.spec.name), "reading the Pareto set"),
                status="FINISHED" if stop_reason != STOP_CANCEL else "KILLED",
            )
        return stop_reason

    def _trials(self, *states: str):
        optuna = store.optuna_module()
        wanted = tuple(getattr(optuna.trial.TrialState, s) for s in states) or None
        return self.study.get_trials(deepcopy=False, states=wanted)

    def _counts(self) -> dict[str, int]:
        return record.count_statuses(record.trial_status(t.state.name, t.user_attrs) for t in self._trials())

    def _budget_left(self) -> bool:
        if self.spec.sampler_name() == "grid" and not self._trials("WAITING"):
            return False  # every grid point has been asked
        return self.budget is None or record.trained(self._counts()) < self.budget

    def _out_of_time(self) -> bool:
        hours = self.spec.budget.hours
        return hours is not None and self._elapsed() >= hours * 3600

    def _elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def _save_elapsed(self) -> None:
        self.study.set_user_attr(record.ELAPSED, self._elapsed())

    # ----- launching ---------------------------------------------------------------------------------
    def _launch(self) -> bool:
        """Start one job (a promotion, else a new trial); False when there is nothing to start."""
        promotion = asha.promotion(
            self._trials(), len(self.rungs), self.eta, self.directions, {s.trial for s in self.jobs.values()},
            self._to_come(),
        )
        if promotion is not None:
            trial, rung = promotion
            self._submit(trial.number, trial.user_attrs[record.ARCH], rung, trial.params)
            return True
        if not self._proposing():
            return False
        if self.executor.in_flight >= self.spec.concurrency:  # taken away while the reads waited out an outage
            return False
        self._start(self.study.ask())
        return True

    def _proposing(self) -> bool:
        """Whether new trials are still to be asked for."""
        if not self._budget_left():
            return False
        if self.infeasible_in_a_row >= MAX_INFEASIBLE_IN_A_ROW:
            if not self._gave_up:
                log.warning("stopping: %d proposals in a row broke the constraints", self.infeasible_in_a_row)
                self._gave_up = True
            return False
        return True

    def _to_come(self) -> int | None:
        """With synchronous promotion, how many more trials may reach the first rung: those the budget has
        yet to start (none once no trial is asked for any more) and those whose first job runs now (None:
        asynchronous promotion)."""
        if self.spec.early_stopping.promotion != "synchronous" or self.budget is None:
            return None
        first = sum(s.rung == 0 for s in self.jobs.values())
        unasked = max(0, self.budget - record.trained(self._counts())) if self._proposing() else 0
        return unasked + first

    def _start(self, trial) -> None:
        """Propose the trial's architecture and submit its first job, or tell it infeasible."""
        try:
            arch, params = self._propose(trial)
        except ConfigError as e:
            self._tell_fail(trial.number, {"kind": "infeasible", "reason": str(e)})
            self.infeasible_in_a_row += 1
            return
        reason = self._violation(arch)
        if reason is not None:
            self.handle.set_trial_attr(trial.number, record.PATTERN, arch.pattern)
            self._tell_fail(trial.number, {"kind": "infeasible", "reason": reason})
            self.infeasible_in_a_row += 1
            if self.ui is not None:
                self.ui.note(f"trial {trial.number} {arch.pattern}: infeasible, {reason}")
            return
        self.infeasible_in_a_row = 0
        arch_dict = arch.to_dict()
        key = self._key(arch_dict, params)
        twin = self.trained.get(key)
        if twin is not None and twin != trial.number:  # trained already, or training: take its result
            self.handle.set_trial_attr(trial.number, record.ARCH, arch_dict)
            self.handle.set_trial_attr(trial.number, record.ARCH_KEY, key)
            self.handle.set_trial_attr(trial.number, record.PATTERN, arch.pattern)
            self.handle.set_trial_attr(trial.number, record.DUPLICATE_OF, twin)
            self._take_result(trial.number, twin)
            return
        self._submit(trial.number, arch_dict, 0, params)

    def _propose(self, trial) -> tuple[ArchConfig, dict[str, Any]]:
        if self.spec.kind == "ablation":
            values = suggest_cell(self.spec, trial)
            return ablation_arch(self.spec, self.profile, values), values
        if self.spec.kind == "fidelity":
            values = {"source": trial.suggest_categorical("source", fidelity_grid(self.spec)["source"])}
            return fidelity_arch(self.spec, self.profile, values), values
        values = self.space.suggest(trial)
        arch = self.space.build(values)
        budget = self.spec.constraints.params
        if budget is not None:
            arch = scale(arch, budget.budget)
        return arch, values

    def _violation(self, arch: ArchConfig) -> str | None:
        c = self.spec.constraints
        if c.params is not None:
            n = param_counts(arch).total
            if abs(n / c.params.budget - 1) > c.params.tolerance:
                return (
                    f"{n:,} parameters, outside the budget {c.params.budget:,.0f} ± {c.params.tolerance:.0%} "
                    "(the nearest width of this layout)"
                )
        if c.memory is not None:
            b = cache_bytes(arch, c.memory.context).total
            if b > c.memory.max_bytes:
                return (
                    f"KV+state of {b:,} bytes at context {c.memory.context}, above the limit {c.memory.max_bytes:,.0f}"
                )
        return None

    def _seeds(self, params: dict[str, Any]) -> tuple[int, ...]:
        base = self.profile.seed
        if self.spec.kind == "ablation":
            return (base + int(params["seed"]),)
        return tuple(base + i for i in range(self.spec.seeds))

    def _key(self, arch: dict, params: dict[str, Any]) -> str:
        return record.arch_key(arch, self.profile_json, self._seeds(params))

    def _submit(self, number: int, arch: dict, rung: int, params: dict[str, Any]) -> None:
        measured = self.handle.trial(number).user_attrs.get(record.THROUGHPUT) if rung else None
        # a lower rung only ranks the trial: it runs what the objectives read (a full rung runs everything)
        parts = parts_for(self.spec.metrics, [t.name for t in self.profile.synthetic.tasks]) \
            if rung < len(self.rungs) - 1 else None
        job = Job(
            trial=number,
            arch=arch,
            profile=self.profile.model_dump(mode="json"),
            seeds=self._seeds(params),
            budget=self.rungs[rung],
            cpus=self.spec.resources.cpus,
            gpus=self.spec.resources.gpus,
            reuse_worker=self.spec.resources.reuse_workers,
            throughput=tuple(measured) if measured else None,
            parts=parts,
        )
        key = self._key(arch, params)
        self.trained.setdefault(key, number)
        self.keys[number] = key
        self.handle.set_trial_attr(number, record.ARCH, arch)
        self.handle.set_trial_attr(number, record.ARCH_KEY, key)
        self.handle.set_trial_attr(number, record.PATTERN, arch["pattern"])
        self.handle.set_trial_attr(number, record.JOB_RUNG, rung)
        job_id = self.executor.submit(job)
        self.jobs[job_id] = _Slot(number, rung)
        if self.ui is not None:
            self.ui.started(number, arch["pattern"], rung, len(self.rungs))

    def _resume(self) -> None:
        """Pick up what a previous driver left: finish what it recorded, resubmit what it had in flight."""
        last = len(self.rungs) - 1
        for t in self._trials():  # the architectures trained so far, and those in flight
            if record.ARCH in t.user_attrs and record.has_result(record.trial_status(t.state.name, t.user_attrs),
                                                                 t.user_attrs):
                key = t.user_attrs.get(record.ARCH_KEY) or self._key(t.user_attrs[record.ARCH], t.params)
                self.trained.setdefault(key, t.number)
        for t in self._trials("RUNNING"):
            try:
                self._resume_trial(t, last)
            except store.optuna_module().exceptions.UpdateFinishedTrialError:
                # finished meanwhile by the driver this one took the study over from (it came back before
                # it saw the takeover): its record stands
                log.warning("trial %d was finished by another driver while this one resumed it", t.number)
        self._settle_waiting()

    def _resume_trial(self, t, last: int) -> None:
        """Resume one trial a previous driver left RUNNING (see `_resume`)."""
        a = t.user_attrs
        for key in (record.INTERRUPTED, record.WAITING_FOR):  # this run takes the trial over
            if a.get(key) is not None:
                self.handle.set_trial_attr(t.number, key, None)
        if record.FAILURE in a:  # stopped between recording a failure and telling it
            self.handle.tell(t.number, state=store.optuna_module().trial.TrialState.FAIL)
        elif a.get(record.DUPLICATE_OF) is not None:  # takes another trial's result
            self.waiting[t.number] = a[record.DUPLICATE_OF]
        elif record.ARCH not in a:  # asked, but the driver stopped before starting it: start it now
            self._start(self.handle.running_trial(t.number))
        elif a.get(record.RUNG_DONE) == last and str(last) in a.get(record.RUNG_RESULTS, {}):
            result = a.get(record.RESULT)
            self._complete(
                t.number,
                a[record.ARCH],
                a.get(record.METRICS, {}),
                [TrialResult.model_validate(result)] if result is not None else [],
                a[record.RUNG_RESULTS][str(last)],
            )
        elif a.get(record.JOB_RUNG) is not None:
            self._submit(t.number, a[record.ARCH], a[record.JOB_RUNG], t.params)
        elif record.RUNG_DONE not in a:
            self._submit(t.number, a[record.ARCH], 0, t.params)
        # else: paused by early stopping at a lower rung, waiting for promotion

    def _take_result(self, number: int, twin: int) -> None:
        """Give trial `number` the result of trial `twin` (the same architecture, profile and seeds) once it
        has one; until then it waits. A twin that ends without a result leaves the trial to train itself."""
        t = self.handle.trial(twin)
        a = t.user_attrs
        status = record.trial_status(t.state.name, a)
        if status in ("running", "paused"):
            self.waiting[number] = twin
            return
        self.waiting.pop(number, None)
        own = self.handle.trial(number)
        arch = own.user_attrs[record.ARCH]
        for k in (record.RUNG_RESULTS, record.RUNG_DONE, record.TOKENS, record.METRICS, record.METRICS_SD,
                  record.SEED_METRICS, record.RESULT):
            if k in a:
                self.handle.set_trial_attr(number, k, a[k])
        if status == "complete":
            result = a.get(record.RESULT)
            results = [TrialResult.model_validate(result)] if result is not None else []
            self._complete(number, arch, a.get(record.METRICS, {}), results, list(t.values))
        elif status == "pruned":
            self.handle.tell(number, state=store.optuna_module().trial.TrialState.PRUNED)
        elif status == "failed" and record.failure_kind(a) in record.RESULT_FAILURES:
            failure = {**a[record.FAILURE], "reason": f"{a[record.FAILURE]['reason']} (as trial {twin}, the same "
                                                      "architecture)"}
            self._tell_fail(number, failure, arch=arch)
        else:  # no result to take (its job broke, or the study was cancelled): train it after all
            self.handle.set_trial_attr(number, record.DUPLICATE_OF, None)
            self.trained[self._key(arch, own.params)] = number
            self._submit(number, arch, 0, own.params)
            return
        if self.ui is not None:
            self.ui.note(f"trial {number} {arch['pattern']}: the architecture of trial {twin}, not trained again")

    def _settle_waiting(self) -> None:
        if self.stopping:
            return
        for number, twin in list(self.waiting.items()):
            if not any(s.trial == twin for s in self.jobs.values()):  # its twin's job is over
                self._take_result(number, twin)

    # ----- results ---------------------------------------------------------------------------------
    def _finish(self, outcome: JobOutcome) -> None:
        try:
            self._record(outcome)
        except store.optuna_module().exceptions.UpdateFinishedTrialError:
            # another driver took the study over (this one was cut off longer than its heartbeat allows) and
            # finished the trial first: its record stands, this result is dropped
            log.warning("trial %d was finished by another driver; this result of it is dropped", outcome.job.trial)

    def _record(self, outcome: JobOutcome) -> None:
        slot = next((s for s in self.jobs.values() if s.trial == outcome.job.trial), None)
        if slot is None:
            return
        self.jobs = {jid: s for jid, s in self.jobs.items() if s is not slot}
        if self._waiting.pop(slot.trial, None) is not None:
            self.handle.set_trial_attr(slot.trial, record.WAITING_FOR, None)
        arch = outcome.job.arch
        if outcome.error is not None:
            if outcome.error == "cancelled":
                return
            kind = "worker_died" if outcome.worker_died else "error"
            why = ("its worker process died twice" if outcome.worker_died else "the job broke") + f": {outcome.error}"
            self._tell_fail(slot.trial, {"kind": kind, "reason": why}, arch=arch)
            return
        results = outcome.results
        failed = next((r for r in results if r.status != "ok"), None)
        if failed is not None:
            self._tell_fail(slot.trial, failed.failure.model_dump(mode="json"), arch=arch, results=results)
            return
        metrics = mean_metrics(results)
        missing = [m for m in self.spec.metrics if m not in metrics]
        if missing:
            failure = {"kind": "error", "reason": f"the result has no {', '.join(missing)}"}
            self._tell_fail(slot.trial, failure, arch=arch, results=results)
            return
        values = [metrics[m] for m in self.spec.metrics]
        # record the rung before saying the job is over: a driver killed in between resubmits the job
        # (the rung runs again) rather than losing it
        attrs = self.handle.trial(slot.trial).user_attrs
        done = attrs.get(record.RUNG_RESULTS, {})
        self.handle.set_trial_attr(slot.trial, record.RUNG_RESULTS, {**done, str(slot.rung): values})
        self.handle.set_trial_attr(slot.trial, record.TOKENS, sum(r.tokens for r in results))
        spent = attrs.get(record.JOB_SECONDS, 0.0) + sum(r.wall_seconds for r in results)
        self.handle.set_trial_attr(slot.trial, record.JOB_SECONDS, spent)
        if slot.rung < len(self.rungs) - 1:
            if record.THROUGHPUT not in attrs and all(r.throughput for r in results):
                measured = [[t.model_dump() for t in r.throughput] for r in results]
                self.handle.set_trial_attr(slot.trial, record.THROUGHPUT, measured)
            self.handle.set_trial_attr(slot.trial, record.RUNG_DONE, slot.rung)
            self.handle.set_trial_attr(slot.trial, record.JOB_RUNG, None)
            if self.ui is not None:
                self.ui.finished(slot.trial, f"rung {slot.rung + 1}/{len(self.rungs)} done")
            return  # paused: promoted later, or pruned when the study ends
        self.handle.set_trial_attr(slot.trial, record.METRICS, metrics)
        if len(results) > 1:
            self.handle.set_trial_attr(slot.trial, record.METRICS_SD, spread_metrics(results))
            self.handle.set_trial_attr(slot.trial, record.SEED_METRICS,
                                       {str(s): r.metrics() for s, r in zip(outcome.job.seeds, results, strict=True)})
        self.handle.set_trial_attr(slot.trial, record.RESULT, results[0].model_dump(mode="json"))
        self.handle.set_trial_attr(slot.trial, record.RUNG_DONE, slot.rung)
        self._complete(slot.trial, arch, metrics, results, values)

    def _complete(
        self, number: int, arch: dict, metrics: dict, results: list[TrialResult], values: list[float]
    ) -> None:
        """Record the trial in MLflow (once) and tell Optuna its values."""
        if record.MLFLOW_RUN not in self.handle.trial(number).user_attrs:
            self._log(number, arch, metrics, results, "COMPLETE")
        self.handle.set_trial_attr(number, record.JOB_RUNG, None)
        self.handle.tell(number, values)
        if self.ui is not None:
            self.ui.finished(number, "done", values)
        if any(twin == number for twin in self.waiting.values()):
            self._settle_waiting()

    def _tell_fail(
        self, number: int, failure: dict[str, Any], arch: dict | None = None, results: list[TrialResult] | None = None
    ) -> None:
        self.handle.set_trial_attr(number, record.FAILURE, failure)
        key = self.keys.get(number)
        if key is not None and self.trained.get(key) == number and failure.get("kind") not in record.RESULT_FAILURES:
            del self.trained[key]  # no result: a later proposal of the architecture may train it
        if failure.get("kind") != "infeasible" and arch is not None:
            self._log(number, arch, {}, results or [], "FAIL", failure)
        self.handle.tell(number, state=store.optuna_module().trial.TrialState.FAIL)
        self._settle_waiting()
        if self.ui is not None and failure.get("kind") != "infeasible":
            self.ui.finished(number, f"failed: {failure['reason']}")

    def _log(
        self, number: int, arch: dict, metrics: dict, results: list[TrialResult], state: str, failure=None
    ) -> str | None:
        if self.tracker is None:
            return None
        try:
            run_id = self.tracker.log_trial(self.parent_run, number, arch, metrics, results, state, failure)
        except Exception as e:  # the study goes on without this record; say so
            log.warning("MLflow could not record trial %d: %s", number, e)
            return None
        self.handle.set_trial_attr(number, record.MLFLOW_RUN, run_id)
        return run_id

    def _close_paused(self) -> None:
        """At the end of a study, trials that early stopping left at a lower rung are pruned (and those that
        wait for their result with them)."""
        for t in self._trials("RUNNING"):
            if record.is_paused(t.user_attrs) and t.number not in self.waiting:
                self.handle.tell(t.number, state=store.optuna_module().trial.TrialState.PRUNED)
        self._settle_waiting()

    # ----- stopping and progress -------------------------------------------------------------------
    def _interrupted(self) -> None:
        """Ctrl-C or SIGTERM: mark the trials in flight interrupted at once, before anything slow (cancelling
        Ray tasks, stopping Ray), so that `nas status` and the dashboard say so; `nas run` resumes them."""
        now = time.time()
        for slot in self.jobs.values():
            try:
                self.handle.set_trial_attr(slot.trial, record.INTERRUPTED, now)
            except Exception as e:  # the storage is away: the trials show as running until a run resumes them
                log.warning("could not mark trial %d interrupted: %s", slot.trial, e)
                return

    def _stop_jobs(self, cancel: bool) -> None:
        self.stopping = True  # nothing new starts, not even a trial whose twin was just cancelled
        for job_id, slot in list(self.jobs.items()):
            self.executor.cancel(job_id)
            if cancel:
                self.handle.set_trial_attr(slot.trial, record.JOB_RUNG, None)
                self._tell_fail(slot.trial, {"kind": "cancelled", "reason": "the study was cancelled"})
        self.jobs.clear()
        if cancel:  # those that waited for a cancelled trial's result
            for number in list(self.waiting):
                self._tell_fail(number, {"kind": "cancelled", "reason": "the study was cancelled"})
            self.waiting.clear()

    def _progress(self) -> None:
        now = time.time()
        latest = {r["trial"]: r for r in self.executor.progress()}
        for number, r in latest.items():
            if self.ui is not None:
                self.ui.update(number, r)
            running = any(s.trial == number for s in self.jobs.values())
            if running and now - self._last_attr_write.get(number, 0) > 5:
                self._set_live(number, record.PROGRESS, {**r, "time": now})
                self._last_attr_write[number] = now
        if now - self._last_attr_write.get(-2, 0) > 2:
            self._record_waiting()
            self._last_attr_write[-2] = now
        if self.ui is not None:
            self.ui.tick(self._counts(), self._elapsed(), self._best())
        if now - self._last_attr_write.get(-1, 0) > 10:
            self._save_elapsed()
            self._last_attr_write[-1] = now

    def _set_live(self, number: int, key: str, value: Any) -> None:
        """A note on a trial in flight (its progress, why it waits); a trial another driver finished
        meanwhile (it took this study over) keeps its record."""
        try:
            self.handle.set_trial_attr(number, key, value)
        except store.optuna_module().exceptions.UpdateFinishedTrialError:
            log.warning("trial %d was finished by another driver; its %s is not recorded here", number, key)

    def _record_waiting(self) -> None:
        """Record (and show) why a job in flight has not started; clear it once it has."""
        waits = {self.jobs[jid].trial: why for jid, why in self.executor.waiting().items() if jid in self.jobs}
        for number in set(self._waiting) | set(waits):
            why = waits.get(number)
            if why == self._waiting.get(number):
                continue
            if any(s.trial == number for s in self.jobs.values()):
                self._set_live(number, record.WAITING_FOR, why)
            if self.ui is not None and why is not None:
                self.ui.waiting(number, why)
            if why is None:
                self._waiting.pop(number, None)
            else:
                self._waiting[number] = why

    def _best(self) -> dict[str, float]:
        done = self._trials("COMPLETE")
        best = {}
        for i, (m, d) in enumerate(zip(self.spec.metrics, self.directions)):
            vals = [t.values[i] for t in done]
            if vals:
                best[m] = max(vals) if d == "maximize" else min(vals)
        return best


def run_study(
    spec: StudySpec,
    *,
    executor: Executor | None = None,
    ray_address: str | None = None,
    console=None,
    show_progress: bool = True,
    should_stop: Callable[[], str | None] | None = None,
    heartbeat: Callable[[], None] | None = None,
    track: bool = True,
    storage: str | None = None,
    tracking: str | None = None,
) -> StudySummary:
    """Run (or resume) the study of `spec` until its budget is spent or `should_stop()` says pause/cancel.
    `storage` and `tracking` (the service's URLs) win over the spec's and are never stored with it."""
    profile = load_profile(spec.profile)
    storage = storage or spec.storage_url
    own = executor is None
    if executor is None:
        executor = RayExecutor(ray_address)
    try:
        # a trial no machine can hold is refused before the study or its MLflow record exists
        executor.check_fits(spec.resources.cpus, spec.resources.gpus)
        handle = store.open_study(spec, lambda n: sampler(spec, n), url=storage)
        tracker = Tracker(tracking or spec.tracking_url, spec.name) if track else None
        runner = _Runner(spec, handle, executor, tracker, profile, console, show_progress, should_stop, heartbeat,
                         storage)
        reason = runner.run()
    finally:
        if own:
            executor.shutdown()
    summary = store.retry(lambda: study_summary(storage, spec.name), "reading the study's summary")
    summary.stop_reason = reason
    return summary
