"""Executors run trial jobs: `RayExecutor` on a local or remote Ray cluster, `InlineExecutor` in-process.

A job evaluates one architecture at one budget for one or more seeds and returns their TrialResults.
Both executors keep to one contract (tests/nas/test_executor.py runs it against each):
`submit` returns a job id at once; `wait` returns the jobs that finished (a `JobOutcome` each, never an
exception for a failed job); `progress` drains the reports the jobs' training loops sent since the
last call; `cancel` stops a job; `shutdown` releases everything.
"""

from __future__ import annotations

import abc
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces import ArchConfig
from workers.result import TrialResult

__all__ = ["Executor", "InlineExecutor", "Job", "JobOutcome", "RayExecutor", "run_job", "start_local_ray",
           "token_auth_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    trial: int  # Optuna trial number
    arch: dict[str, Any]
    profile: dict[str, Any]
    seeds: tuple[int, ...] = (0,)
    budget: float = 1.0
    cpus: float = 1.0
    gpus: float = 0.0


@dataclass
class JobOutcome:
    job: Job
    results: list[TrialResult] = field(default_factory=list)  # one per seed
    error: str | None = None  # the job itself broke (not a diverged trial, which is a result)
    worker_died: bool = False


def run_job(job: Job, report=None) -> list[TrialResult]:
    """Evaluate a job's architecture for each of its seeds (what a worker runs)."""
    from workers.evaluate import evaluate  # torch: loaded in the worker, not the driver

    arch = ArchConfig.from_dict(job.arch)
    results = []
    for seed in job.seeds:
        def progress(p, seed=seed):
            if report is not None:
                report({"trial": job.trial, "seed": seed, "budget": job.budget, "pid": os.getpid(), **p.__dict__})

        results.append(evaluate(arch, job.profile, seed=seed, budget=job.budget, progress=progress))
    return results


class Executor(abc.ABC):
    @abc.abstractmethod
    def submit(self, job: Job) -> int: ...

    @abc.abstractmethod
    def wait(self, timeout: float) -> list[JobOutcome]:
        """Jobs finished within `timeout` seconds (at least one if any finishes in time)."""

    @abc.abstractmethod
    def progress(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def cancel(self, job_id: int) -> None: ...

    @abc.abstractmethod
    def shutdown(self) -> None: ...

    @property
    @abc.abstractmethod
    def in_flight(self) -> int: ...

    def slots(self) -> int | None:
        """How many jobs the executor can run at once, if it knows (None: ask the study's concurrency)."""
        return None


class InlineExecutor(Executor):
    """Runs each job in the calling process when `wait` is called: for debugging and contract tests."""

    def __init__(self) -> None:
        self._queue: dict[int, Job] = {}
        self._reports: list[dict[str, Any]] = []
        self._next = 0

    def submit(self, job: Job) -> int:
        self._next += 1
        self._queue[self._next] = job
        return self._next

    def wait(self, timeout: float) -> list[JobOutcome]:
        if not self._queue:
            time.sleep(min(timeout, 0.05))
            return []
        job_id = next(iter(self._queue))
        job = self._queue.pop(job_id)
        try:
            return [JobOutcome(job, run_job(job, self._reports.append))]
        except Exception:
            return [JobOutcome(job, error=traceback.format_exc(limit=3))]

    def progress(self) -> list[dict[str, Any]]:
        out, self._reports = self._reports, []
        return out

    def cancel(self, job_id: int) -> None:
        self._queue.pop(job_id, None)

    def shutdown(self) -> None:
        self._queue.clear()

    @property
    def in_flight(self) -> int:
        return len(self._queue)


class RayExecutor(Executor):
    """Each job is a Ray task with the job's CPUs and (fractional) GPUs; a task whose worker process
    dies is retried once by Ray, then reported as `worker_died`.

    With no address, a local Ray instance is started for the run (`start_local_ray`: token authentication
    on, free ports, loopback only) and stopped at `shutdown`.
    """

    def __init__(self, address: str | None = None, *, num_cpus: float | None = None, num_gpus: float | None = None):
        import ray

        self._ray = ray
        self._own = address is None and not ray.is_initialized()
        if not ray.is_initialized():
            if address is None:
                start_local_ray(num_cpus=num_cpus, num_gpus=num_gpus)
            else:
                token_auth_for(address)
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self._sink = _progress_sink(ray).remote()
        self._remote = ray.remote(max_retries=1)(_ray_job)
        self._refs: dict[Any, tuple[int, Job]] = {}
        self._next = 0

    def submit(self, job: Job) -> int:
        self._next += 1
        opts: dict[str, Any] = {"num_cpus": job.cpus}
        if job.gpus:
            opts["num_gpus"] = job.gpus
        ref = self._remote.options(**opts).remote(job, self._sink)
        self._refs[ref] = (self._next, job)
        return self._next

    def wait(self, timeout: float) -> list[JobOutcome]:
        ray = self._ray
        if not self._refs:
            time.sleep(min(timeout, 0.05))
            return []
        done, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if done:  # collect whatever else is already finished
            done, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        out = []
        for ref in done:
            _, job = self._refs.pop(ref)
            try:
                out.append(JobOutcome(job, ray.get(ref)))
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.OutOfMemoryError) as e:
                out.append(JobOutcome(job, error=f"{type(e).__name__}: {e}".splitlines()[0], worker_died=True))
            except ray.exceptions.TaskCancelledError:
                out.append(JobOutcome(job, error="cancelled"))
            except ray.exceptions.RayError as e:
                out.append(JobOutcome(job, error=_last_line(e)))
        return out

    def progress(self) -> list[dict[str, Any]]:
        return self._ray.get(self._sink.drain.remote())

    def cancel(self, job_id: int) -> None:
        for ref, (jid, _) in list(self._refs.items()):
            if jid == job_id:
                self._ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        for ref in list(self._refs):
            self._ray.cancel(ref, force=True)
        self._refs.clear()
        if self._own:
            self._ray.shutdown()

    @property
    def in_flight(self) -> int:
        return len(self._refs)

    def slots(self) -> int | None:
        return None


def start_local_ray(**kwargs: Any) -> None:
    """A new Ray instance for this process ("local": never whatever `ray start` left running on the machine),
    with token authentication on and every one of its processes (GCS, raylet, workers, the metrics and
    runtime-env agents) listening on 127.0.0.1 only: nothing of it is reachable from another host.

    Ray binds a node's servers to all interfaces unless the node's address is the loopback one, and resolves
    127.0.0.1 to the host's address unless its single-machine mode (`ENABLE_RAY_CLUSTER` off, meant for
    laptops) is on while the node starts; it is switched on for `ray.init` only, so that a later `ray.init`
    in this process may still join a cluster on other hosts."""
    import ray
    from ray._private import ray_constants

    var = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # the same switch, for the processes the node starts
    saved_env, saved = os.environ.get(var), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[var], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
                 configure_logging=False, **{k: v for k, v in kwargs.items() if v is not None})
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = saved_env


def token_auth_for(address: str) -> None:
    """Ray enables token authentication by itself only for the local cluster it finds; joining a cluster by
    its address needs RAY_AUTH_MODE=token when a token is at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token, which `ray start` writes and shares with the same user's processes)."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
            (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray" in sys.modules:  # Ray caches its settings at import: have it read them again
            try:
                from ray._private.authentication.authentication_token_setup import _enable_token_auth

                _enable_token_auth()
            except ImportError:
                log.warning("this Ray has no token-auth refresh; set RAY_AUTH_MODE=token before starting")


def _ray_job(job: Job, sink) -> list[TrialResult]:
    def report(p: dict[str, Any]) -> None:
        sink.report.remote(p)

    return run_job(job, report)


def _progress_sink(ray):
    @ray.remote(num_cpus=0)
    class ProgressSink:
        """Collects the training loops' progress reports until the driver drains them."""

        def __init__(self) -> None:
            self.reports: list[dict[str, Any]] = []

        def report(self, p: dict[str, Any]) -> None:
            self.reports.append(p)

        def drain(self) -> list[dict[str, Any]]:
            out, self.reports = self.reports, []
            return out

    return ProgressSink


def _last_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__
