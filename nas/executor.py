"""Executors run trial jobs: `RayExecutor` on a local or remote Ray cluster, `InlineExecutor` in-process.

A job evaluates one architecture at one budget for one or more seeds and returns their TrialResults.
Both executors keep to one contract (tests/nas/test_executor.py runs it against each):
`submit` returns a job id at once; `wait` returns the jobs that finished (a `JobOutcome` each, never an
exception for a failed job); `progress` drains the reports the jobs' training loops sent since the
last call; `cancel` stops a job; `shutdown` releases everything. `check_fits` refuses, before anything
runs, a request that no machine of the executor can ever hold; `waiting` says why a submitted job has
not started.
"""

from __future__ import annotations

import abc
import logging
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces import ArchConfig
from search_spaces.config import ConfigError
from workers.result import Throughput, TrialResult

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
    # each seed's throughput rows, measured by the trial's first rung: not measured again
    throughput: tuple[list[dict[str, Any]], ...] | None = None
    # the parts of the evaluation to run ("lm", "throughput", task names; workers.result.parts_for): a
    # lower rung runs what the study's objectives read; None runs everything
    parts: tuple[str, ...] | None = None
    # a GPU job may run in a worker process that outlives it (kernels compiled and tuned once per worker)
    reuse_worker: bool = True


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
    if job.gpus:
        use_assigned_gpu()
    hold_to_share(job.gpus)
    # a later rung's job takes the speed its first rung measured (per seed)
    known = [[Throughput(**t) for t in seed] for seed in job.throughput] if job.throughput else None
    results = []
    for i, seed in enumerate(job.seeds):
        def progress(p, seed=seed):
            if report is not None:
                report({"trial": job.trial, "seed": seed, "budget": job.budget, "pid": os.getpid(), **p.__dict__})

        results.append(evaluate(arch, job.profile, seed=seed, budget=job.budget, progress=progress,
                                throughput_of=known[i] if known and i < len(known) else None, parts=job.parts))
    if job.gpus:
        _release_gpu_memory()  # the worker may serve another job next
    return results


def hold_to_share(gpus: float) -> None:
    """A job that asked for a fraction of a GPU allocates at most that fraction of its memory, so that one
    trial running out of memory fails alone (and its out-of-memory retries start at its own share)
    instead of taking the memory that the trials beside it are counting on. (A whole GPU or more: no cap,
    also in a worker whose previous job had one.)"""
    if gpus <= 0:
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(min(gpus, 1.0))


# Ray sets CUDA_VISIBLE_DEVICES to a GPU job's GPUs when the job starts, but CUDA reads it once per process:
# a worker kept for later jobs would stay on its first job's GPU. Reused GPU workers are started with Ray
# told to leave the variable alone, and each job selects the GPU Ray gave it (`use_assigned_gpu`).
_NOSET_VISIBLE = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"
KEEP_VISIBLE_DEVICES = {_NOSET_VISIBLE: "1"}


def gpu_index(ray_id: str | int, visible: str | None) -> int:
    """The CUDA index of the GPU that Ray calls `ray_id` in a process that sees `visible` (the node's
    CUDA_VISIBLE_DEVICES, None when unset): Ray's ids are the entries of that list, or indices without one."""
    if not visible:
        return int(ray_id)
    entries = [v.strip() for v in visible.split(",")]
    try:
        return entries.index(str(ray_id))
    except ValueError:
        raise RuntimeError(f"Ray assigned GPU {ray_id}, which is not among this worker's visible devices "
                           f"{visible!r}") from None


def use_assigned_gpu() -> None:
    """In a Ray worker that sees the node's GPUs (KEEP_VISIBLE_DEVICES), make the GPU this job was given the
    current CUDA device; elsewhere (Ray set CUDA_VISIBLE_DEVICES, or no Ray) nothing to do."""
    if os.environ.get(_NOSET_VISIBLE) != "1":
        return
    import ray
    import torch

    ids = ray.get_gpu_ids() if ray.is_initialized() else []
    if ids and torch.cuda.is_available():
        torch.cuda.set_device(gpu_index(ids[0], os.environ.get("CUDA_VISIBLE_DEVICES")))


def _release_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()  # models, optimisers and captured decode graphs of the finished job
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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

    def check_fits(self, cpus: float, gpus: float) -> None:
        """Raise ConfigError (one sentence, with the fix) when no machine can ever run a job of this size."""
        return None

    def waiting(self) -> dict[int, str]:
        """job id -> why that submitted job has not started ("waiting for 0.25 GPU; the cluster has none")."""
        return {}


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
    dies is retried once by Ray, then reported as `worker_died`. GPU jobs run in workers kept for later
    jobs (unless `Job.reuse_worker` is off), each job on the GPU Ray assigned it (`use_assigned_gpu`).

    With no address, a local Ray instance is started for the run (`start_local_ray`: token authentication
    on, free ports, loopback only) and stopped at `shutdown`.
    """

    # a job not started this many seconds after its submission is reported by `waiting`
    WAIT_GRACE = 3.0

    def __init__(self, address: str | None = None, *, num_cpus: float | None = None, num_gpus: float | None = None):
        import ray

        self._ray = ray
        self._own = address is None and not ray.is_initialized()
        self._where = "the local Ray instance" if address is None else f"the Ray cluster at {address}"
        if not ray.is_initialized():
            if address is None:
                start_local_ray(num_cpus=num_cpus, num_gpus=num_gpus)
            else:
                token_auth_for(address)
                _init_keeping_sigterm(ray, {"address": address, "include_dashboard": False, "log_to_driver": False,
                                            "configure_logging": False})
        self._sink = _progress_sink(ray).remote()
        # workers are kept for later jobs, so that a job finds the kernels its predecessors compiled and
        # tuned; a job that asks for a fresh process runs in one that ends with it
        self._remote = ray.remote(max_retries=1, max_calls=0)(_ray_job)
        self._remote_fresh = ray.remote(max_retries=1, max_calls=1)(_ray_job_fresh)
        self._refs: dict[Any, tuple[int, Job]] = {}
        self._submitted: dict[int, float] = {}
        self._started: set[tuple[int, float]] = set()  # (trial, budget) of the jobs whose worker reported in
        self._next = 0

    def submit(self, job: Job) -> int:
        self._next += 1
        ref = self._remote_for(job).options(**job_options(job)).remote(job, self._sink)
        self._refs[ref] = (self._next, job)
        self._submitted[self._next] = time.time()
        self._started.discard((job.trial, job.budget))
        return self._next

    def _remote_for(self, job: Job):
        return self._remote_fresh if job.gpus and not job.reuse_worker else self._remote

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
            jid, job = self._refs.pop(ref)
            self._submitted.pop(jid, None)
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
        reports, started = self._ray.get(self._sink.drain.remote())
        self._started.update((t, b) for t, b in started)
        return reports

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

    # ----- what the cluster can hold ---------------------------------------------------------------
    def _nodes(self) -> list[dict[str, float]]:
        """The total resources of each live node."""
        return [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]

    def check_fits(self, cpus: float, gpus: float) -> None:
        nodes = self._nodes()
        if not nodes:
            return  # nothing to judge by (a cluster whose nodes are still joining): let Ray hold the jobs
        why = _unfit({"CPU": cpus, "GPU": gpus}, nodes)
        if why is None:
            return
        fix = (
            "set resources: {gpus: 0} in the spec to train on CPUs, or pass --ray-address of a cluster with GPUs"
            if why[0] == "GPU"
            else f"ask for at most {_amount(why[2])} in resources.cpus"
        )
        raise ConfigError(f"each trial asks for {why[1]} (the spec's resources), and {self._where} {why[3]}; {fix}")

    def waiting(self) -> dict[int, str]:
        now = time.time()
        late = [
            (jid, job) for jid, job in self._refs.values()
            if (job.trial, job.budget) not in self._started and now - self._submitted.get(jid, now) > self.WAIT_GRACE
        ]
        if not late:
            return {}
        nodes = self._nodes()
        free = self._ray.available_resources()
        return {jid: _wait_reason({"CPU": job.cpus, "GPU": job.gpus}, nodes, free) for jid, job in late}


def _amount(x: float) -> str:
    return f"{x:g}"


def _unit(res: str, amount: float) -> str:
    return f"{_amount(amount)} {res}" + ("s" if amount > 1 else "")


def _unfit(need: dict[str, float], nodes: list[dict[str, float]]) -> tuple[str, str, float, str] | None:
    """(resource, 'N RES', the most one node has, what the cluster lacks) when no node holds `need`."""
    for res, amount in need.items():
        if amount <= 0:
            continue
        most = max(n.get(res, 0.0) for n in nodes)
        if most == 0:
            return res, _unit(res, amount), 0.0, f"has no {res}"
        if most < amount:
            has = f"has {_unit(res, most)}" if len(nodes) == 1 else f"has at most {_unit(res, most)} on any node"
            return res, _unit(res, amount), most, has
    if len(nodes) > 1 and not any(all(n.get(r, 0.0) >= a for r, a in need.items()) for n in nodes):
        return "CPU", f"{_unit('CPU', need['CPU'])} with {_unit('GPU', need['GPU'])}", 0.0, \
            "has no machine with both"
    return None


def _wait_reason(need: dict[str, float], nodes: list[dict[str, float]], free: dict[str, float]) -> str:
    """Why a job of this size waits, in Ray's terms: infeasible now (no node could hold it) or pending
    (the resources it needs are taken by other jobs)."""
    request = {r: a for r, a in need.items() if a > 0}
    asked = " and ".join(_unit(r, a) for r, a in request.items())
    ray_says = f"Ray: the request {request} cannot be scheduled right now"
    if not nodes:
        return f"waiting for {asked}; the cluster has no node yet ({ray_says})"
    unfit = _unfit(need, nodes)
    if unfit is not None:
        res, _, most, _ = unfit
        have = "none" if most == 0 else f"at most {_unit(res, most)} on a node"
        return f"waiting for {_unit(res, need[res])}; the cluster has {have} ({ray_says})"
    short = [r for r, a in request.items() if free.get(r, 0.0) < a]
    if short:
        total = sum(n.get(short[0], 0.0) for n in nodes)
        verb = "is" if total <= 1 else "are"
        return (f"waiting for {_unit(short[0], need[short[0]])}; the cluster's {_unit(short[0], total)} "
                f"{verb} taken by other trials ({ray_says})")
    return "waiting for Ray to start it"


def _init_keeping_sigterm(ray, kwargs: dict[str, Any]) -> None:
    """ray.init replaces the SIGTERM handler with one that exits at once; a handler the caller installed
    (the CLI's and the scheduler's turn SIGTERM into KeyboardInterrupt, so the runner can mark its trials
    interrupted) is put back."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    ray.init(**kwargs)
    if main and callable(before):
        signal.signal(signal.SIGTERM, before)


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
        _init_keeping_sigterm(ray, {"address": "local", "_node_ip_address": "127.0.0.1", "include_dashboard": False,
                                    "log_to_driver": False, "configure_logging": False,
                                    **{k: v for k, v in kwargs.items() if v is not None}})
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


def job_options(job: Job) -> dict[str, Any]:
    """The Ray task options of a job: its resources, and for a kept GPU worker its CUDA_VISIBLE_DEVICES."""
    opts: dict[str, Any] = {"num_cpus": job.cpus}
    if job.gpus:
        opts["num_gpus"] = job.gpus
        if job.reuse_worker:
            opts["runtime_env"] = {"env_vars": dict(KEEP_VISIBLE_DEVICES)}
    return opts


def _ray_job_fresh(job: Job, sink) -> list[TrialResult]:
    return _ray_job(job, sink)


def _ray_job(job: Job, sink) -> list[TrialResult]:
    def report(p: dict[str, Any]) -> None:
        sink.report.remote(p)

    sink.started.remote(job.trial, job.budget)
    return run_job(job, report)


def _progress_sink(ray):
    @ray.remote(num_cpus=0)
    class ProgressSink:
        """Collects the training loops' progress reports until the driver drains them."""

        def __init__(self) -> None:
            self.reports: list[dict[str, Any]] = []
            self.began: list[tuple[int, float]] = []

        def report(self, p: dict[str, Any]) -> None:
            self.reports.append(p)

        def started(self, trial: int, budget: float) -> None:
            self.began.append((trial, budget))

        def drain(self) -> tuple[list[dict[str, Any]], list[tuple[int, float]]]:
            out, self.reports = self.reports, []
            began, self.began = self.began, []
            return out, began

    return ProgressSink


def _last_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__
