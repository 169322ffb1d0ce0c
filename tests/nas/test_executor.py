"""The executor contract, run against each executor."""

import time

import pytest
from profiles import MICRO

from nas.executor import InlineExecutor, Job, RayExecutor
from workers.result import TrialResult

ARCH = {"pattern": "M-*-", "d_model": 32, "attention": {"heads": 2}, "mamba2": {"d_state": 8, "head_dim": 16}}


@pytest.fixture(params=["inline", "ray"])
def executor(request):
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
        ex = RayExecutor()
    else:
        ex = InlineExecutor()
    yield ex
    ex.shutdown()


def wait_all(ex, n, timeout=180):
    out, t0 = [], time.time()
    while len(out) < n and time.time() - t0 < timeout:
        out += ex.wait(timeout=1.0)
    return out


def test_jobs_run_and_report_progress(executor):
    jobs = [Job(trial=i, arch=ARCH, profile=MICRO, seeds=(0, 1) if i else (0,), budget=0.5) for i in range(2)]
    ids = [executor.submit(j) for j in jobs]
    assert len(set(ids)) == 2 and executor.in_flight == 2
    outcomes = wait_all(executor, 2)
    assert sorted(o.job.trial for o in outcomes) == [0, 1] and executor.in_flight == 0
    for o in outcomes:
        assert o.error is None
        results = o.results
        assert all(isinstance(r, TrialResult) for r in results)
        assert len(results) == len(o.job.seeds) and all(r.status == "ok" and r.budget == 0.5 for r in results)
        assert [r.seeds["model"] for r in results] == list(o.job.seeds)
    reports = executor.progress()
    assert {r["trial"] for r in reports} == {0, 1}
    assert {"task", "step", "steps", "loss", "pid", "seed"} <= set(reports[0])
    assert executor.progress() == []  # drained


def test_a_broken_job_is_an_outcome_not_an_exception(executor):
    executor.submit(Job(trial=7, arch={"pattern": "M-?", "d_model": 32}, profile=MICRO))
    (outcome,) = wait_all(executor, 1)
    assert outcome.job.trial == 7 and not outcome.results
    assert "unknown layer symbol '?'" in outcome.error and not outcome.worker_died


def test_cancel(executor):
    slow = {**MICRO, "lm": {**MICRO["lm"], "tokens": 10_000 * 4 * 32}}
    job_id = executor.submit(Job(trial=3, arch=ARCH, profile=slow))
    time.sleep(0.5)
    executor.cancel(job_id)
    outcomes, t0 = [], time.time()
    while executor.in_flight and time.time() - t0 < 30:  # Ray reports the cancelled job; inline drops it at once
        outcomes += executor.wait(timeout=1.0)
    assert executor.in_flight == 0
    assert len(outcomes) == (1 if isinstance(executor, RayExecutor) else 0)
    assert all(o.error == "cancelled" for o in outcomes)
