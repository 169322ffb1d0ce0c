"""`nas serve` against real services: PostgreSQL (queue and Optuna), a Ray head started with `ray start`
and an MLflow server. Two schedulers share the queue; one is killed with SIGKILL mid-study and another
takes over; pause, resume and cancel reach a running study."""

from __future__ import annotations

import os
import signal
import time

import optuna
import pytest
from serviceutil import alive, serve, spec_text, stop, wait_for

from nas import store
from nas.service import queue

pytestmark = pytest.mark.slow


@pytest.fixture
def service(env, db_url, ray_head, mlflow_server, tmp_path):
    """The environment of a scheduler in the loopback topology, and its logs."""
    env = {**env, "NAS_TRACKING": mlflow_server}
    return env, tmp_path


def trials(db_url, name):
    return optuna.load_study(study_name=name, storage=store.storage(db_url)).get_trials()  # one pool, not one a poll


def complete(db_url, name):
    return {t.number: (t.values, t.datetime_complete) for t in trials(db_url, name)
            if t.state.name == "COMPLETE"}


def logged_trials(mlflow_server, name):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(f"nas/{name}")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return exp.experiment_id, [r.data.tags["nas.trial"] for r in runs if "nas.trial" in r.data.tags]


def kinds(db_url, i):
    return [e.kind for e in queue.events(i, url=db_url)]


def test_two_schedulers_share_the_queue_and_never_run_a_study_twice(service, db_url, ray_head, mlflow_server):
    env, tmp = service
    names = {"two-a": 0, "two-b": 2, "two-c": 1}
    ids = {n: queue.submit(spec_text(n, trials=2), priority=p, url=db_url) for n, p in names.items()}
    logs = (tmp / "s1.log", tmp / "s2.log")
    procs = [serve(env, log, "--ray-address", ray_head, "--exit-when-idle", cwd=tmp) for log in logs]
    try:
        wait_for("both schedulers to drain the queue", lambda: all(p.poll() is not None for p in procs), 240,
                 every=1, logs=logs)
    finally:
        codes = [stop(p) for p in procs]
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
    claimed_at = {}
    for name, i in ids.items():
        s = queue.get_study(i, url=db_url)
        assert s.status == "done" and s.attempts == 1, (name, s.status, s.error)
        events = queue.events(i, url=db_url)
        claims = [e for e in events if e.kind in ("claimed", "taken-over")]
        assert len(claims) == 1, [e.kind for e in events]
        claimed_at[name] = claims[0].time
        assert [e.kind for e in events][-1] == "done" and "urls" in [e.kind for e in events]
        done = complete(db_url, name)
        assert sorted(done) == [0, 1] and len(trials(db_url, name)) == 2
        experiment, logged = logged_trials(mlflow_server, name)
        assert sorted(logged) == ["0", "1"] and s.mlflow_experiment_id == experiment
    assert claimed_at["two-a"] >= max(claimed_at["two-b"], claimed_at["two-c"])  # the lowest priority last


def test_a_scheduler_killed_mid_study_is_taken_over_with_no_trial_lost_or_repeated(service, db_url, ray_head,
                                                                                     mlflow_server):
    env, tmp = service
    name = "takeover"
    i = queue.submit(spec_text(name, trials=4, steps=60), url=db_url)
    # the first runs on a Ray instance of its own, which its process group's SIGKILL takes down with it;
    # the second joins the cluster
    first = serve(env, tmp / "first.log", "--heartbeat", "0.5", "--stale-after", "4", cwd=tmp)
    second = None
    try:
        wait_for("a trial to complete under the first scheduler",
                 lambda: len(complete(db_url, name)) >= 1, 120, logs=(tmp / "first.log",))
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        before = complete(db_url, name)
        assert queue.get_study(i, url=db_url).status == "running"  # as the dead scheduler left it
        second = serve(env, tmp / "second.log", "--ray-address", ray_head, "--stale-after", "4", cwd=tmp)
        wait_for("the second scheduler to finish the study",
                 lambda: queue.get_study(i, url=db_url).status in ("done", "failed"), 180, every=1,
                 logs=(tmp / "second.log",))
    finally:
        stop(first)
        if second is not None:
            assert stop(second) == 0
    s = queue.get_study(i, url=db_url)
    assert s.status == "done" and s.attempts == 2, s.error
    assert kinds(db_url, i)[:3] == ["submitted", "claimed", "urls"] and "taken-over" in kinds(db_url, i)
    after = complete(db_url, name)
    assert len(after) == 4 and len(trials(db_url, name)) == 4
    for number, kept in before.items():  # values and completion times unchanged: nothing ran twice
        assert after[number] == kept
    _, logged = logged_trials(mlflow_server, name)
    assert sorted(logged) == ["0", "1", "2", "3"]  # each trial recorded once


def test_pause_resume_and_cancel_reach_a_running_study(service, db_url, ray_head):
    env, tmp = service
    name = "ctl"
    i = queue.submit(spec_text(name, trials=2, steps=400), url=db_url)
    log = tmp / "serve.log"
    proc = serve(env, log, "--ray-address", ray_head, "--heartbeat", "0.5", "--stale-after", "5", cwd=tmp)

    def worker_of_running_trial(since: float = 0.0):
        for t in trials(db_url, name):
            p = t.user_attrs.get("progress")
            if t.state.name == "RUNNING" and p and p["time"] > since:
                return t.number, p["pid"]
        return None

    try:
        number, pid = wait_for("a trial to report progress", worker_of_running_trial, 120, logs=(log,))
        queue.pause(i, url=db_url)
        wait_for("the pause", lambda: queue.get_study(i, url=db_url).status == "paused", 15, logs=(log,))
        wait_for("the paused trial's worker to stop", lambda: not alive(pid), 15)
        state = {t.number: t.state.name for t in trials(db_url, name)}
        assert state[number] == "RUNNING"  # left in flight for the resumed run

        paused_at = time.time()
        queue.resume(i, url=db_url)
        number2, pid2 = wait_for("the resumed study's trial to report progress",
                                 lambda: worker_of_running_trial(paused_at), 60, logs=(log,))
        assert number2 == number  # the same trial goes on
        t0 = time.monotonic()
        queue.cancel(i, url=db_url)
        wait_for("the cancel", lambda: queue.get_study(i, url=db_url).status == "cancelled", 15, logs=(log,))
        wait_for("the cancelled trial's worker to stop", lambda: not alive(pid2), 15)
        took = time.monotonic() - t0
    finally:
        assert stop(proc) == 0
    assert took < 15
    t = next(t for t in trials(db_url, name) if t.number == number)
    assert t.state.name == "FAIL" and t.user_attrs["failure"]["reason"] == "the study was cancelled"
    assert not any(t.state.name == "RUNNING" for t in trials(db_url, name))
    assert kinds(db_url, i) == ["submitted", "claimed", "urls", "pause-requested", "paused", "resumed",
                                "claimed", "urls", "cancel-requested", "cancelled"]


def test_a_stopped_scheduler_hands_its_study_back_and_a_cancel_fails_what_it_left(service, db_url, ray_head):
    env, tmp = service
    name = "handback"
    i = queue.submit(spec_text(name, trials=2, steps=400), url=db_url)
    log = tmp / "serve.log"
    proc = serve(env, log, "--ray-address", ray_head, cwd=tmp)
    try:
        wait_for("a trial to report progress",
                 lambda: any(t.user_attrs.get("progress") for t in trials(db_url, name)), 120, logs=(log,))
        t0 = time.monotonic()
        assert stop(proc, signal.SIGTERM) == 0  # what `docker stop` sends
        assert time.monotonic() - t0 < 20
    finally:
        stop(proc)
    s = queue.get_study(i, url=db_url)
    assert s.status == "queued" and s.scheduler is None  # back in the queue for any scheduler
    assert "was stopped" in queue.events(i, url=db_url)[-1].message
    assert [t.state.name for t in trials(db_url, name)] == ["RUNNING"]  # left for whoever resumes it
    s = queue.cancel(i, url=db_url)
    assert s.status == "cancelled" and "1 unfinished trial failed" in queue.events(i, url=db_url)[-1].message
    (t,) = trials(db_url, name)
    assert t.state.name == "FAIL" and t.user_attrs["failure"]["reason"] == "the study was cancelled"


def test_a_frozen_scheduler_taken_over_stops_without_touching_its_trials(service, db_url, ray_head,
                                                                         mlflow_server):
    env, tmp = service
    name = "frozen"
    i = queue.submit(spec_text(name, trials=3, steps=120), url=db_url)
    logs = (tmp / "frozen.log", tmp / "second.log")
    first = serve(env, logs[0], "--ray-address", ray_head, "--heartbeat", "0.5", "--stale-after", "3",
                  cwd=tmp)
    second = None
    try:
        wait_for("a trial to run under the first scheduler",
                 lambda: any(t.user_attrs.get("progress") for t in trials(db_url, name)), 120, logs=logs[:1])
        os.kill(first.pid, signal.SIGSTOP)  # frozen, not dead: its Ray task goes on
        second = serve(env, logs[1], "--ray-address", ray_head, "--stale-after", "3", cwd=tmp)
        wait_for("the takeover", lambda: "taken-over" in kinds(db_url, i), 60, logs=logs)
        os.kill(first.pid, signal.SIGCONT)
        wait_for("the frozen scheduler to notice", lambda: "lost" in kinds(db_url, i), 30, logs=logs)
        wait_for("the study to finish",
                 lambda: queue.get_study(i, url=db_url).status in ("done", "failed"), 180, every=1, logs=logs)
        assert first.poll() is None  # it goes on serving the queue
    finally:
        os.kill(first.pid, signal.SIGCONT)
        assert stop(first) == 0
        if second is not None:
            assert stop(second) == 0
    s = queue.get_study(i, url=db_url)
    assert s.status == "done" and s.scheduler != queue.events(i, url=db_url)[1].scheduler, s.error
    assert sorted(complete(db_url, name)) == [0, 1, 2] and len(trials(db_url, name)) == 3
    _, logged = logged_trials(mlflow_server, name)
    assert sorted(logged) == ["0", "1", "2"]  # the frozen scheduler recorded nothing after it lost the study
