"""Run a study: Optuna asks, an executor trains, Optuna is told, MLflow records. Resumable.

    spec = load_spec("studies/ratio.yaml")
    summary = run_study(spec)                      # a local Ray instance, SQLite, local MLflow
    pareto = pareto_trials(spec.name)

Everything durable lives in the Optuna storage: the spec (study user attributes), each trial's
architecture, the rungs it finished and the job in flight (trial user attributes). A driver that dies
loses nothing finished: running the same spec again resubmits the jobs that were in flight and goes on.

Trial states: COMPLETE (trained to the full budget; its values are the objectives, averaged over
seeds), FAIL (diverged, out of memory, broke, its worker died twice, or infeasible — the `failure`
attribute says which and why), PRUNED (stopped at a lower rung by early stopping).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nas.executor import Executor, Job, JobOutcome
from nas.pareto import crowding_distance, nondominated_ranks, pareto_mask
from nas.spec import StudySpec
from search_spaces import ArchConfig
from search_spaces.arch import ConfigError

__all__ = [
    "StudySummary",
    "TrialRow",
    "delete_study",
    "load_study",
    "pareto_trials",
    "run_study",
    "study_summaries",
    "study_trials",
    "trial_archs",
]

log = logging.getLogger(__name__)
MAX_INFEASIBLE_IN_A_ROW = 200
STOP_PAUSE, STOP_CANCEL = "pause", "cancel"


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


_storages: dict[str, Any] = {}
_storages_lock = threading.Lock()


def _storage(url: str):
    """Optuna's RDB storage for `url`. A database server's storage is made once per process and shared, so
    that polling a study does not open a new pool of connections each time; a SQLite file's is made anew
    (a file has no connection limit, and a study file removed and made again must not be held open)."""
    optuna = _optuna()
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # heartbeats are ours (the queue's); Optuna's RDB storage is used as a plain database
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    with _storages_lock:
        if url not in _storages:
            _storages[url] = optuna.storages.RDBStorage(
                url, engine_kwargs={"pool_pre_ping": True, "pool_size": 2, "max_overflow": 6})
        return _storages[url]


def close_storages(url_suffix: str = "") -> None:
    """Close the pooled connections of this process's shared storages (those whose URL ends with
    `url_suffix`; all by default), e.g. before dropping their database."""
    with _storages_lock:
        for url in [u for u in _storages if u.endswith(url_suffix)]:
            _storages.pop(url).engine.dispose()


def _grid(spec: StudySpec) -> dict[str, list]:
    if spec.kind == "ablation":
        from nas.ablation import ablation_grid

        return ablation_grid(spec)
    return spec.search_space().grid()


def grid_points(spec: StudySpec) -> list[dict[str, Any]]:
    """Every point of a grid study (an ablation's cells × seeds), in order."""
    import itertools

    grid = _grid(spec)
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def _sampler(spec: StudySpec):
    optuna = _optuna()
    name = spec.sampler_name()
    if name == "grid":  # the points are enqueued when the study is created; see load_study
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=spec.seed, population_size=max(4, min(50, 2 * spec.concurrency + 2)))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed, multivariate=True, constant_liar=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=spec.seed)
    return optuna.samplers.RandomSampler(seed=spec.seed)


def _spec_key(spec: StudySpec) -> dict[str, Any]:
    """What must not change when a study is resumed: what is searched and how it is scored."""
    d = spec.model_dump(mode="json")
    return {
        k: d[k]
        for k in ("kind", "space", "ablation", "objectives", "constraints", "profile", "seeds", "early_stopping")
    }


def load_study(spec: StudySpec, *, create: bool = True):
    """The spec's Optuna study: created with the spec stored, or loaded after checking the spec matches."""
    optuna = _optuna()
    storage = _storage(spec.storage_url)
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=_sampler(spec))
    except KeyError:
        if not create:
            raise ConfigError(f"no study named {spec.name!r} in {spec.storage_url}") from None
        study = optuna.create_study(
            study_name=spec.name, storage=storage, directions=spec.directions, sampler=_sampler(spec)
        )
        study.set_user_attr("spec", spec.model_dump(mode="json"))
        study.set_user_attr("created", time.time())
        if spec.sampler_name() == "grid":
            # Optuna's GridSampler stops the study from inside tell, which ask-and-tell cannot take:
            # the grid goes in as enqueued trials instead, each asked once
            for point in grid_points(spec):
                study.enqueue_trial(point, skip_if_exists=False)
        return study
    stored = study.user_attrs.get("spec")
    if stored is not None and _spec_key(StudySpec.model_validate(stored)) != _spec_key(spec):
        raise ConfigError(
            f"a study named {spec.name!r} already exists with a different space, objectives, constraints or "
            "profile; give this spec another name (or delete the old study with `nas delete`)"
        )
    return study


@dataclass
class _Slot:
    trial: int
    trial_id: int
    rung: int


class _Runner:
    def __init__(
        self,
        spec: StudySpec,
        study,
        executor: Executor,
        tracker,
        profile,
        console,
        show_progress: bool,
        should_stop: Callable[[], str | None] | None,
        heartbeat: Callable[[], None] | None,
    ):
        self.spec, self.study, self.executor, self.tracker = spec, study, executor, tracker
        self.profile = profile
        self.storage = study._storage
        self.directions = spec.directions
        self.rungs = spec.early_stopping.rungs if spec.early_stopping.enabled else [1.0]
        self.eta = spec.early_stopping.eta
        self.should_stop, self.heartbeat = should_stop, heartbeat
        self.jobs: dict[int, _Slot] = {}
        self.started = time.time()
        self.elapsed_before = float(study.user_attrs.get("elapsed_seconds", 0.0))
        self.infeasible_in_a_row = 0
        self.ui = _Display(console, spec, self.directions) if show_progress else None
        self._last_attr_write: dict[int, float] = {}
        if spec.kind == "search":
            self.space = spec.search_space()
        else:
            from nas.ablation import ablation_arch

            self.ablation_arch = ablation_arch
        self.parent_run = None
        if tracker is not None:
            import yaml

            self.parent_run = tracker.parent_run(
                study.user_attrs.get("mlflow_parent_run_id"),
                yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False),
            )
            study.set_user_attr("mlflow_parent_run_id", self.parent_run)
            study.set_user_attr("mlflow_experiment_id", tracker.experiment_id)

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
                pareto_trials(self.study),
                status="FINISHED" if stop_reason != STOP_CANCEL else "KILLED",
            )
        return stop_reason

    def _trials(self, states=None):
        return self.study.get_trials(deepcopy=False, states=states)

    def _counts(self) -> dict[str, int]:
        c = {"complete": 0, "running": 0, "failed": 0, "pruned": 0, "infeasible": 0, "paused": 0}
        for t in self._trials():
            s = t.state.name
            if s == "COMPLETE":
                c["complete"] += 1
            elif s == "PRUNED":
                c["pruned"] += 1
            elif s == "FAIL":
                kind = (t.user_attrs.get("failure") or {}).get("kind")
                c["infeasible" if kind == "infeasible" else "failed"] += 1
            elif s == "RUNNING":
                c["paused" if t.user_attrs.get("job_rung") is None and "rung_done" in t.user_attrs else "running"] += 1
        return c

    def _trained(self) -> int:
        """Trials that count against the budget: every one that got (or is getting) a job."""
        return sum(
            1
            for t in self._trials()
            if "arch" in t.user_attrs and (t.user_attrs.get("failure") or {}).get("kind") != "infeasible"
        )

    def _budget_left(self) -> bool:
        trials = _trial_budget(self.spec)
        if self.spec.sampler_name() == "grid" and not self._trials(states=(self._state("WAITING"),)):
            return False  # every grid point has been asked
        return trials is None or self._trained() < trials

    def _out_of_time(self) -> bool:
        hours = self.spec.budget.hours
        return hours is not None and self._elapsed() >= hours * 3600

    def _elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def _save_elapsed(self) -> None:
        self.study.set_user_attr("elapsed_seconds", self._elapsed())

    # ----- launching ---------------------------------------------------------------------------------
    def _launch(self) -> bool:
        """Start one job (a promotion, else a new trial); False when there is nothing to start."""
        promotion = self._promotable()
        if promotion is not None:
            trial, rung = promotion
            self._submit(trial.number, trial._trial_id, trial.user_attrs["arch"], rung, trial.params)
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
            self.storage.set_trial_user_attr(trial._trial_id, "pattern", arch.pattern)
            self._tell_fail(trial.number, {"kind": "infeasible", "reason": reason})
            self.infeasible_in_a_row += 1
            if self.ui is not None:
                self.ui.note(f"trial {trial.number} {arch.pattern}: infeasible, {reason}")
            return
        self.infeasible_in_a_row = 0
        self._submit(trial.number, trial._trial_id, arch.to_dict(), 0, params)

    def _propose(self, trial) -> tuple[ArchConfig, dict[str, Any]]:
        if self.spec.kind == "ablation":
            from nas.ablation import suggest_cell

            values = suggest_cell(self.spec, trial)
            return self.ablation_arch(self.spec, self.profile, values), values
        from search_spaces.scaling import scale

        values = self.space.suggest(trial)
        arch = self.space.build(values)
        budget = self.spec.constraints.params
        if budget is not None:
            arch = scale(arch, budget.budget)
        return arch, values

    def _violation(self, arch: ArchConfig) -> str | None:
        from search_spaces.cost import cache_bytes, param_counts

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
        from workers.profile import load_profile

        base = load_profile(self.spec.profile).seed
        if self.spec.kind == "ablation":
            return (base + int(params["seed"]),)
        return tuple(base + i for i in range(self.spec.seeds))

    def _submit(self, number: int, trial_id: int, arch: dict, rung: int, params: dict[str, Any]) -> None:
        job = Job(
            trial=number,
            arch=arch,
            profile=self.profile.model_dump(mode="json"),
            seeds=self._seeds(params),
            budget=self.rungs[rung],
            cpus=self.spec.resources.cpus,
            gpus=self.spec.resources.gpus,
        )
        self.storage.set_trial_user_attr(trial_id, "arch", arch)
        self.storage.set_trial_user_attr(trial_id, "pattern", arch["pattern"])
        self.storage.set_trial_user_attr(trial_id, "job_rung", rung)
        job_id = self.executor.submit(job)
        self.jobs[job_id] = _Slot(number, trial_id, rung)
        if self.ui is not None:
            self.ui.started(number, arch["pattern"], rung, len(self.rungs))

    def _resume(self) -> None:
        """Pick up what a previous driver left: finish what it recorded, resubmit what it had in flight."""
        last = len(self.rungs) - 1
        for t in self._trials(states=(self._state("RUNNING"),)):
            a = t.user_attrs
            if "failure" in a:  # stopped between recording a failure and telling it
                self.study.tell(t.number, state=self._state("FAIL"))
            elif "arch" not in a:  # asked, but the driver stopped before starting it: start it now
                self._start(_optuna().trial.Trial(self.study, t._trial_id))
            elif a.get("rung_done") == last and str(last) in a.get("rung_results", {}):
                self._complete(
                    t.number,
                    t._trial_id,
                    a["arch"],
                    a.get("metrics", {}),
                    a.get("result"),
                    a["rung_results"][str(last)],
                )
            elif a.get("job_rung") is not None:
                self._submit(t.number, t._trial_id, a["arch"], a["job_rung"], t.params)
            elif "rung_done" not in a:
                self._submit(t.number, t._trial_id, a["arch"], 0, t.params)
            # else: paused by early stopping at a lower rung, waiting for promotion

    # ----- results ---------------------------------------------------------------------------------
    def _finish(self, outcome: JobOutcome) -> None:
        slot = next((s for jid, s in self.jobs.items() if s.trial == outcome.job.trial), None)
        if slot is None:
            return
        self.jobs = {jid: s for jid, s in self.jobs.items() if s is not slot}
        if outcome.error is not None:
            if outcome.error == "cancelled":
                return
            kind = "worker_died" if outcome.worker_died else "error"
            why = ("its worker process died twice" if outcome.worker_died else "the job broke") + f": {outcome.error}"
            self._tell_fail(slot.trial, {"kind": kind, "reason": why}, arch=outcome.job.arch)
            return
        results = [json.loads(r) for r in outcome.results]
        failed = next((r for r in results if r["status"] != "ok"), None)
        if failed is not None:
            self._tell_fail(slot.trial, failed["failure"], arch=outcome.job.arch, results=results)
            return
        from workers.result import TrialResult

        metrics = _mean([TrialResult.model_validate(r).metrics() for r in results])
        missing = [m for m in self.spec.metrics if m not in metrics]
        if missing:
            self._tell_fail(
                slot.trial,
                {"kind": "error", "reason": f"the result has no {', '.join(missing)}"},
                arch=outcome.job.arch,
                results=results,
            )
            return
        values = [metrics[m] for m in self.spec.metrics]
        # record the rung before saying the job is over: a driver killed in between resubmits the job
        # (the rung runs again) rather than losing it
        rung_results = {**self._trial(slot.trial).user_attrs.get("rung_results", {}), str(slot.rung): values}
        self.storage.set_trial_user_attr(slot.trial_id, "rung_results", rung_results)
        self.storage.set_trial_user_attr(slot.trial_id, "tokens", _tokens(results))
        if slot.rung < len(self.rungs) - 1:
            self.storage.set_trial_user_attr(slot.trial_id, "rung_done", slot.rung)
            self.storage.set_trial_user_attr(slot.trial_id, "job_rung", None)
            if self.ui is not None:
                self.ui.finished(slot.trial, f"rung {slot.rung + 1}/{len(self.rungs)} done")
            return  # paused: promoted later, or pruned when the study ends
        self.storage.set_trial_user_attr(slot.trial_id, "metrics", metrics)
        self.storage.set_trial_user_attr(slot.trial_id, "result", results[0])
        self.storage.set_trial_user_attr(slot.trial_id, "rung_done", slot.rung)
        self._complete(slot.trial, slot.trial_id, outcome.job.arch, metrics, results, values)

    def _complete(self, number: int, trial_id: int, arch: dict, metrics: dict, results, values: list[float]) -> None:
        """Record the trial in MLflow (once) and tell Optuna its values."""
        if "mlflow_run_id" not in self._trial(number).user_attrs:
            if results is not None and not isinstance(results, list):
                results = [results]
            self._log(number, arch, metrics, results or [], "COMPLETE")
        self.storage.set_trial_user_attr(trial_id, "job_rung", None)
        self.study.tell(number, values)
        if self.ui is not None:
            self.ui.finished(number, "done", values)

    def _tell_fail(
        self, number: int, failure: dict[str, Any], arch: dict | None = None, results: list | None = None
    ) -> None:
        t = self._trial(number)
        self.storage.set_trial_user_attr(t._trial_id, "failure", failure)
        if failure.get("kind") != "infeasible" and arch is not None:
            self._log(number, arch, {}, results or [], "FAIL", failure)
        self.study.tell(number, state=self._state("FAIL"))
        if self.ui is not None and failure.get("kind") != "infeasible":
            self.ui.finished(number, f"failed: {failure['reason']}")

    def _log(self, number: int, arch: dict, metrics: dict, results: list, state: str, failure=None) -> str | None:
        if self.tracker is None:
            return None
        try:
            run_id = self.tracker.log_trial(self.parent_run, number, arch, metrics, results, state, failure)
        except Exception as e:  # the study goes on without this record; say so
            log.warning("MLflow could not record trial %d: %s", number, e)
            return None
        self.storage.set_trial_user_attr(self._trial(number)._trial_id, "mlflow_run_id", run_id)
        return run_id

    def _trial(self, number: int):
        return self.study._storage.get_trial(
            self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        )

    @staticmethod
    def _state(name: str):
        return getattr(_optuna().trial.TrialState, name)

    # ----- early stopping (MO-ASHA) ----------------------------------------------------------------
    def _promotable(self):
        """The next (trial, rung) to promote: top 1/eta of a rung by non-dominated rank then crowding."""
        if len(self.rungs) == 1:
            return None
        running = [t for t in self._trials(states=(self._state("RUNNING"),)) if "rung_done" in t.user_attrs]
        everyone = [t for t in self._trials() if "rung_results" in t.user_attrs]
        in_flight = {s.trial for s in self.jobs.values()}
        for k in range(len(self.rungs) - 2, -1, -1):
            at_k = [t for t in everyone if str(k) in t.user_attrs["rung_results"]]
            top = len(at_k) // self.eta
            if top == 0:
                continue
            order = _rank(at_k, [t.user_attrs["rung_results"][str(k)] for t in at_k], self.directions)
            for t in order[:top]:
                if (
                    t.number not in in_flight
                    and t.user_attrs.get("rung_done") == k
                    and any(r.number == t.number for r in running)
                ):
                    return t, k + 1
        return None

    def _close_paused(self) -> None:
        """At the end of a study, trials that early stopping left at a lower rung are pruned."""
        for t in self._trials(states=(self._state("RUNNING"),)):
            if t.user_attrs.get("job_rung") is None and "rung_done" in t.user_attrs:
                self.study.tell(t.number, state=self._state("PRUNED"))

    # ----- stopping and progress -------------------------------------------------------------------
    def _stop_jobs(self, cancel: bool) -> None:
        for job_id, slot in list(self.jobs.items()):
            self.executor.cancel(job_id)
            if cancel:
                self.storage.set_trial_user_attr(slot.trial_id, "job_rung", None)
                self._tell_fail(slot.trial, {"kind": "error", "reason": "the study was cancelled"})
        self.jobs.clear()

    def _progress(self) -> None:
        reports = self.executor.progress()
        now = time.time()
        latest: dict[int, dict] = {}
        for r in reports:
            latest[r["trial"]] = r
        for number, r in latest.items():
            if self.ui is not None:
                self.ui.update(number, r)
            slot = next((s for s in self.jobs.values() if s.trial == number), None)
            if slot is not None and now - self._last_attr_write.get(number, 0) > 5:
                self.storage.set_trial_user_attr(slot.trial_id, "progress", {**r, "time": now})
                self._last_attr_write[number] = now
        if self.ui is not None:
            self.ui.tick(self._counts(), self._elapsed(), self._best())
        if now - self._last_attr_write.get(-1, 0) > 10:
            self._save_elapsed()
            self._last_attr_write[-1] = now

    def _best(self) -> dict[str, float]:
        done = self._trials(states=(self._state("COMPLETE"),))
        best = {}
        for i, (m, d) in enumerate(zip(self.spec.metrics, self.directions)):
            vals = [t.values[i] for t in done]
            if vals:
                best[m] = max(vals) if d == "maximize" else min(vals)
        return best


def _trial_budget(spec: StudySpec) -> int | None:
    if spec.sampler_name() == "grid":
        n = len(grid_points(spec))
        return n if spec.kind == "ablation" or spec.budget.trials is None else min(n, spec.budget.trials)
    return spec.budget.trials


def _rank(trials, values, directions):
    """Trials ordered by non-dominated rank, then by crowding distance (larger first) within a rank."""
    ranks = nondominated_ranks(values, directions)
    crowd = [0.0] * len(trials)
    for r in set(ranks.tolist()):
        idx = [i for i, x in enumerate(ranks) if x == r]
        cd = crowding_distance([values[i] for i in idx], directions)
        for i, c in zip(idx, cd):
            crowd[i] = c
    order = sorted(range(len(trials)), key=lambda i: (ranks[i], -crowd[i], trials[i].number))
    return [trials[i] for i in order]


def _mean(dicts: list[dict[str, float]]) -> dict[str, float]:
    keys = set.intersection(*(set(d) for d in dicts))
    return {k: sum(d[k] for d in dicts) / len(dicts) for k in sorted(keys)}


def _tokens(results: list[dict]) -> int:
    total = 0
    for r in results:
        total += (r.get("lm") or {}).get("tokens", 0)
        total += sum(t["tokens"] for t in r.get("tasks", {}).values())
    return total


# ----- the public entry points -----------------------------------------------------------------------
@dataclass
class StudySummary:
    name: str
    kind: str
    metrics: list[str]
    directions: list[str]
    counts: dict[str, int]
    elapsed_seconds: float
    budget_trials: int | None
    best: dict[str, float] = field(default_factory=dict)
    stop_reason: str | None = None
    created: float | None = None

    @property
    def finished(self) -> int:
        return self.counts["complete"] + self.counts["failed"] + self.counts["pruned"]


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
    from workers.profile import load_profile

    profile = load_profile(spec.profile)
    study = load_study(spec)
    tracker = None
    if track:
        from nas.tracking import Tracker

        tracker = Tracker(spec.tracking_url, spec.name)
    own = executor is None
    if executor is None:
        from nas.executor import RayExecutor

        executor = RayExecutor(ray_address)
    try:
        runner = _Runner(spec, study, executor, tracker, profile, console, show_progress, should_stop, heartbeat)
        reason = runner.run()
    finally:
        if own:
            executor.shutdown()
    summary = _summary(study)
    summary.stop_reason = reason
    return summary


def _summary(study) -> StudySummary:
    spec = StudySpec.model_validate(study.user_attrs["spec"])
    counts = {"complete": 0, "running": 0, "failed": 0, "pruned": 0, "infeasible": 0, "paused": 0}
    best: dict[str, float] = {}
    done = []
    for t in study.get_trials(deepcopy=False):
        s = t.state.name
        if s == "COMPLETE":
            counts["complete"] += 1
            done.append(t)
        elif s == "PRUNED":
            counts["pruned"] += 1
        elif s == "FAIL":
            kind = (t.user_attrs.get("failure") or {}).get("kind")
            counts["infeasible" if kind == "infeasible" else "failed"] += 1
        elif s == "RUNNING":
            paused = t.user_attrs.get("job_rung") is None and "rung_done" in t.user_attrs
            counts["paused" if paused else "running"] += 1
    for i, (m, d) in enumerate(zip(spec.metrics, spec.directions)):
        vals = [t.values[i] for t in done]
        if vals:
            best[m] = max(vals) if d == "maximize" else min(vals)
    budget = _trial_budget(spec)
    return StudySummary(
        spec.name,
        spec.kind,
        spec.metrics,
        spec.directions,
        counts,
        float(study.user_attrs.get("elapsed_seconds", 0.0)),
        budget,
        best,
        created=study.user_attrs.get("created"),
    )


def _open(study_or_name, storage: str | None):
    if not isinstance(study_or_name, str):
        return study_or_name
    optuna = _optuna()
    from nas.spec import DEFAULT_STORAGE

    url = storage or DEFAULT_STORAGE
    try:
        return optuna.load_study(study_name=study_or_name, storage=_storage(url))
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(_storage(url), include_best_trial=False)]
        hint = f"; studies there: {', '.join(names)}" if names else " (it holds no studies yet)"
        raise ConfigError(f"no study named {study_or_name!r} in {url}{hint}") from None


def study_summaries(storage: str | None = None) -> list[StudySummary]:
    optuna = _optuna()
    from nas.spec import DEFAULT_STORAGE

    url = storage or DEFAULT_STORAGE
    out = []
    for s in optuna.get_all_study_summaries(_storage(url), include_best_trial=False):
        study = optuna.load_study(study_name=s.study_name, storage=_storage(url))
        if "spec" in study.user_attrs:
            out.append(_summary(study))
    return out


@dataclass
class TrialRow:
    number: int
    state: str
    pattern: str | None
    values: list[float] | None
    params: dict[str, Any]
    arch: dict[str, Any] | None
    metrics: dict[str, float]
    failure: dict[str, Any] | None
    mlflow_run_id: str | None
    pareto: bool = False
    rung: int | None = None
    progress: dict[str, Any] | None = None
    duration: float | None = None


def study_trials(study_or_name, storage: str | None = None) -> list[TrialRow]:
    study = _open(study_or_name, storage)
    spec = StudySpec.model_validate(study.user_attrs["spec"])
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    front = set()
    if complete:
        mask = pareto_mask([t.values for t in complete], spec.directions)
        front = {t.number for t, m in zip(complete, mask) if m}
    rows = []
    for t in trials:
        a = t.user_attrs
        dur = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            TrialRow(
                t.number,
                t.state.name,
                a.get("pattern"),
                list(t.values) if t.values else None,
                dict(t.params),
                a.get("arch"),
                a.get("metrics", {}),
                a.get("failure"),
                a.get("mlflow_run_id"),
                t.number in front,
                a.get("rung_done"),
                a.get("progress"),
                dur,
            )
        )
    return rows


def pareto_trials(study_or_name, storage: str | None = None) -> list[dict[str, Any]]:
    """The Pareto set of the complete trials: number, pattern, objective values, params and metrics."""
    study = _open(study_or_name, storage)
    spec = StudySpec.model_validate(study.user_attrs["spec"])
    rows = [r for r in study_trials(study) if r.pareto]
    first = spec.metrics[0]
    d0 = spec.directions[0]
    rows.sort(key=lambda r: r.values[0], reverse=d0 == "maximize")
    return (
        [
            {
                "trial": r.number,
                "pattern": r.pattern,
                **dict(zip(spec.metrics, r.values)),
                "params": r.metrics.get("params"),
                "arch": r.arch,
                "mlflow_run_id": r.mlflow_run_id,
            }
            for r in rows
        ]
        if first
        else []
    )


def trial_archs(
    study_name: str, storage: str | None = None, pareto: bool = False, trial: int | None = None
) -> list[tuple[int, ArchConfig]]:
    """Architectures of a study's trials: one trial by number, or the Pareto set."""
    rows = study_trials(study_name, storage)
    if trial is not None:
        match = [r for r in rows if r.number == trial]
        if not match or match[0].arch is None:
            numbers = [r.number for r in rows if r.arch is not None]
            raise ConfigError(
                f"study {study_name!r} has no trial {trial} with an architecture; trials with one: {_ranges(numbers)}"
            )
        return [(trial, ArchConfig.from_dict(match[0].arch))]
    if pareto:
        front = [r for r in rows if r.pareto]
        if not front:
            raise ConfigError(f"study {study_name!r} has no complete trial yet, so no Pareto set")
        return [(r.number, ArchConfig.from_dict(r.arch)) for r in front]
    return [(r.number, ArchConfig.from_dict(r.arch)) for r in rows if r.arch is not None]


def delete_study(name: str, storage: str | None = None) -> None:
    optuna = _optuna()
    from nas.spec import DEFAULT_STORAGE

    _open(name, storage)
    optuna.delete_study(study_name=name, storage=_storage(storage or DEFAULT_STORAGE))


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    return f"{min(numbers)}–{max(numbers)}" if len(numbers) > 3 else ", ".join(map(str, numbers))


# ----- the terminal display ----------------------------------------------------------------------------
class _Display:
    """Rich progress: trials done / running / failed, best so far, ETA; one line per job in flight."""

    def __init__(self, console, spec: StudySpec, directions: list[str]):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.spec, self.directions = spec, directions
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        total = _trial_budget(spec)
        self.overall = self.progress.add_task(f"[bold]{spec.name}", total=total, info="")
        self.rows: dict[int, int] = {}
        self.progress.start()

    def started(self, number: int, pattern: str, rung: int, rungs: int) -> None:
        from search_spaces.pattern import abbreviate

        label = f"  trial {number:<3d} {abbreviate(pattern, 24):24s}" + (f" r{rung + 1}/{rungs}" if rungs > 1 else "")
        if number in self.rows:
            self.progress.remove_task(self.rows.pop(number))
        self.rows[number] = self.progress.add_task(label, total=None, info="starting")

    def update(self, number: int, r: dict) -> None:
        if number in self.rows:
            self.progress.update(
                self.rows[number], total=r["steps"], completed=r["step"], info=f"{r['task']} loss {r['loss']:.3f}"
            )

    def finished(self, number: int, what: str, values=None) -> None:
        if number in self.rows:
            self.progress.remove_task(self.rows.pop(number))
        shown = ""
        if values is not None:
            shown = "  " + "  ".join(f"{m}={v:.4g}" for m, v in zip(self.spec.metrics, values))
        self.progress.console.print(f"trial {number}: {what}{shown}")

    def note(self, text: str) -> None:
        self.progress.console.print(text, style="dim")

    def tick(self, counts: dict[str, int], elapsed: float, best: dict[str, float]) -> None:
        done = counts["complete"] + counts["failed"] + counts["pruned"] + counts["paused"]
        rate = elapsed / done if done else None
        total = self.progress.tasks[self.overall].total
        eta = ""
        if rate and total:
            eta = f"  ETA {_hms(rate * max(0, total - done) / max(1, self.spec.concurrency))}"
        info = (
            f"done {counts['complete']}  running {counts['running']}  failed {counts['failed']}"
            f"  infeasible {counts['infeasible']}"
            + (f"  pruned {counts['pruned']}" if counts["pruned"] else "")
            + "".join(f"  best {m} {v:.4g}" for m, v in best.items())
            + eta
        )
        self.progress.update(self.overall, completed=done, info=info)

    def close(self) -> None:
        self.progress.stop()


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )
