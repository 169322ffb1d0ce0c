"""Run a study: Optuna asks, an executor trains, Optuna is told, MLflow records. Resumable.

    spec = load_spec("studies/ratio.yaml")
    summary = run_study(spec)                      # a local Ray instance, SQLite, local MLflow

Everything durable lives in the Optuna storage (`nas.record` names it): the spec, each trial's
architecture, the rungs it finished and the job in flight. A driver that dies loses nothing finished:
running the same spec again resubmits the jobs that were in flight and goes on. A trial ends COMPLETE
(trained to the full budget; its values are the objectives, averaged over seeds), FAIL (diverged, out of
memory, broke, its worker died twice, or infeasible: the `failure` attribute says which and why) or
PRUNED (left at a lower rung by early stopping, `nas.asha`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas import asha, record, store
from nas.ablation import ablation_arch, suggest_cell
from nas.display import StudyDisplay
from nas.executor import Executor, Job, JobOutcome, RayExecutor
from nas.reader import StudySummary, pareto_trials, study_summary
from nas.spec import StudySpec
from nas.tracking import Tracker
from search_spaces import ArchConfig
from search_spaces.config import ConfigError
from search_spaces.cost import cache_bytes, param_counts
from search_spaces.scaling import scale
from workers.profile import ProxyProfile, load_profile
from workers.result import TrialResult, mean_metrics

__all__ = ["STOP_CANCEL", "STOP_PAUSE", "run_study", "sampler"]

log = logging.getLogger(__name__)
MAX_INFEASIBLE_IN_A_ROW = 200
STOP_PAUSE, STOP_CANCEL = "pause", "cancel"


def sampler(spec: StudySpec):
    """The spec's Optuna sampler, seeded with `spec.seed`."""
    optuna = store.optuna_module()
    name = spec.sampler_name()
    if name == "grid":  # the points are enqueued when the study is created (`store.open_study`)
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=spec.seed, population_size=max(4, min(50, 2 * spec.concurrency + 2)))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed, multivariate=True, constant_liar=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=spec.seed)
    return optuna.samplers.RandomSampler(seed=spec.seed)


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
    ):
        self.spec, self.handle, self.study = spec, handle, handle.study
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
        self.ui = StudyDisplay(console, spec, self.budget) if show_progress else None
        self._last_attr_write: dict[int, float] = {}
        self._waiting: dict[int, str] = {}  # trial -> why its job has not started, as recorded
        self.space = spec.search_space() if spec.kind == "search" else None
        self.parent_run = None
        if tracker is not None:
            import yaml

            self.parent_run = tracker.parent_run(
                self.study.user_attrs.get(record.MLFLOW_PARENT_RUN),
                yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False),
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
                pareto_trials(self.spec.storage_url, self.spec.name),
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
            self._trials(), len(self.rungs), self.eta, self.directions, {s.trial for s in self.jobs.values()}
        )
        if promotion is not None:
            trial, rung = promotion
            self._submit(trial.number, trial.user_attrs[record.ARCH], rung, trial.params)
            return True
        if not self._budget_left():
            return False
        if self.infeasible_in_a_row >= MAX_INFEASIBLE_IN_A_ROW:
            log.warning("stopping: %d proposals in a row broke the constraints", self.infeasible_in_a_row)
            return False
        self._start(self.study.ask())
        return True

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
        self._submit(trial.number, arch.to_dict(), 0, params)

    def _propose(self, trial) -> tuple[ArchConfig, dict[str, Any]]:
        if self.spec.kind == "ablation":
            values = suggest_cell(self.spec, trial)
            return ablation_arch(self.spec, self.profile, values), values
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

    def _submit(self, number: int, arch: dict, rung: int, params: dict[str, Any]) -> None:
        job = Job(
            trial=number,
            arch=arch,
            profile=self.profile.model_dump(mode="json"),
            seeds=self._seeds(params),
            budget=self.rungs[rung],
            cpus=self.spec.resources.cpus,
            gpus=self.spec.resources.gpus,
        )
        self.handle.set_trial_attr(number, record.ARCH, arch)
        self.handle.set_trial_attr(number, record.PATTERN, arch["pattern"])
        self.handle.set_trial_attr(number, record.JOB_RUNG, rung)
        job_id = self.executor.submit(job)
        self.jobs[job_id] = _Slot(number, rung)
        if self.ui is not None:
            self.ui.started(number, arch["pattern"], rung, len(self.rungs))

    def _resume(self) -> None:
        """Pick up what a previous driver left: finish what it recorded, resubmit what it had in flight."""
        last = len(self.rungs) - 1
        for t in self._trials("RUNNING"):
            a = t.user_attrs
            for key in (record.INTERRUPTED, record.WAITING_FOR):  # this run takes the trial over
                if a.get(key) is not None:
                    self.handle.set_trial_attr(t.number, key, None)
            if record.FAILURE in a:  # stopped between recording a failure and telling it
                self.study.tell(t.number, state=store.optuna_module().trial.TrialState.FAIL)
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

    # ----- results ---------------------------------------------------------------------------------
    def _finish(self, outcome: JobOutcome) -> None:
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
        done = self.handle.trial(slot.trial).user_attrs.get(record.RUNG_RESULTS, {})
        self.handle.set_trial_attr(slot.trial, record.RUNG_RESULTS, {**done, str(slot.rung): values})
        self.handle.set_trial_attr(slot.trial, record.TOKENS, sum(r.tokens for r in results))
        if slot.rung < len(self.rungs) - 1:
            self.handle.set_trial_attr(slot.trial, record.RUNG_DONE, slot.rung)
            self.handle.set_trial_attr(slot.trial, record.JOB_RUNG, None)
            if self.ui is not None:
                self.ui.finished(slot.trial, f"rung {slot.rung + 1}/{len(self.rungs)} done")
            return  # paused: promoted later, or pruned when the study ends
        self.handle.set_trial_attr(slot.trial, record.METRICS, metrics)
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
        self.study.tell(number, values)
        if self.ui is not None:
            self.ui.finished(number, "done", values)

    def _tell_fail(
        self, number: int, failure: dict[str, Any], arch: dict | None = None, results: list[TrialResult] | None = None
    ) -> None:
        self.handle.set_trial_attr(number, record.FAILURE, failure)
        if failure.get("kind") != "infeasible" and arch is not None:
            self._log(number, arch, {}, results or [], "FAIL", failure)
        self.study.tell(number, state=store.optuna_module().trial.TrialState.FAIL)
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
        """At the end of a study, trials that early stopping left at a lower rung are pruned."""
        for t in self._trials("RUNNING"):
            if record.is_paused(t.user_attrs):
                self.study.tell(t.number, state=store.optuna_module().trial.TrialState.PRUNED)

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
        for job_id, slot in list(self.jobs.items()):
            self.executor.cancel(job_id)
            if cancel:
                self.handle.set_trial_attr(slot.trial, record.JOB_RUNG, None)
                self._tell_fail(slot.trial, {"kind": "error", "reason": "the study was cancelled"})
        self.jobs.clear()

    def _progress(self) -> None:
        now = time.time()
        latest = {r["trial"]: r for r in self.executor.progress()}
        for number, r in latest.items():
            if self.ui is not None:
                self.ui.update(number, r)
            running = any(s.trial == number for s in self.jobs.values())
            if running and now - self._last_attr_write.get(number, 0) > 5:
                self.handle.set_trial_attr(number, record.PROGRESS, {**r, "time": now})
                self._last_attr_write[number] = now
        if now - self._last_attr_write.get(-2, 0) > 2:
            self._record_waiting()
            self._last_attr_write[-2] = now
        if self.ui is not None:
            self.ui.tick(self._counts(), self._elapsed(), self._best())
        if now - self._last_attr_write.get(-1, 0) > 10:
            self._save_elapsed()
            self._last_attr_write[-1] = now

    def _record_waiting(self) -> None:
        """Record (and show) why a job in flight has not started; clear it once it has."""
        waits = {self.jobs[jid].trial: why for jid, why in self.executor.waiting().items() if jid in self.jobs}
        for number in set(self._waiting) | set(waits):
            why = waits.get(number)
            if why == self._waiting.get(number):
                continue
            if any(s.trial == number for s in self.jobs.values()):
                self.handle.set_trial_attr(number, record.WAITING_FOR, why)
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
) -> StudySummary:
    """Run (or resume) the study of `spec` until its budget is spent or `should_stop()` says pause/cancel."""
    profile = load_profile(spec.profile)
    own = executor is None
    if executor is None:
        executor = RayExecutor(ray_address)
    try:
        # a trial no machine can hold is refused before the study or its MLflow record exists
        executor.check_fits(spec.resources.cpus, spec.resources.gpus)
        handle = store.open_study(spec, sampler(spec))
        tracker = Tracker(spec.tracking_url, spec.name) if track else None
        runner = _Runner(spec, handle, executor, tracker, profile, console, show_progress, should_stop, heartbeat)
        reason = runner.run()
    finally:
        if own:
            executor.shutdown()
    summary = study_summary(spec.storage_url, spec.name)
    summary.stop_reason = reason
    return summary
