"""Studies against real parts: Optuna on SQLite, a local Ray instance, an MLflow store."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import yaml
from studyutil import SPACE, make_spec, micro_profile

from nas import store
from nas.executor import RayExecutor
from nas.reader import pareto_trials, study_summaries, study_trials, trial_archs
from nas.report import ablation_report
from nas.runner import run_study
from nas.seeds import seed_report
from nas.spec import StudySpec
from search_spaces import ArchConfig, ConfigError

pytestmark = pytest.mark.slow


def trials(spec):
    return optuna.load_study(study_name=spec.name, storage=spec.storage_url).get_trials()


def mlflow_runs(spec):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(spec.tracking_url)
    exp = client.get_experiment_by_name(f"nas/{spec.name}")
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_a_search_study_trains_tells_and_records(ray_cluster, urls):
    spec = make_spec(urls)
    summary = run_study(spec, executor=RayExecutor(), show_progress=False)
    assert summary.counts["complete"] == 4 and summary.stop_reason == "budget"
    ts = trials(spec)
    assert len(ts) == 4 and all(t.state.name == "COMPLETE" for t in ts)
    for t in ts:
        arch = ArchConfig.from_dict(t.user_attrs["arch"])
        assert t.values == [t.user_attrs["metrics"]["synthetic_accuracy"], t.user_attrs["metrics"]["decode_tps"]]
        assert arch.pattern == t.user_attrs["pattern"] and t.user_attrs["result"]["status"] == "ok"
    client, runs = mlflow_runs(spec)
    parent = [r for r in runs if r.data.tags.get("nas.kind") == "study"]
    children = {r.data.tags["nas.trial"]: r for r in runs if "nas.trial" in r.data.tags}
    assert len(parent) == 1 and sorted(children) == ["0", "1", "2", "3"]
    pid = parent[0].info.run_id
    assert {a.path for a in client.list_artifacts(pid)} == {"spec.yaml", "pareto.json"}
    for t in ts:
        run = children[str(t.number)]
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id  # both ways
        assert run.data.tags["mlflow.parentRunId"] == pid and run.data.tags["nas.pattern"] == t.user_attrs["pattern"]
        assert run.data.params["pattern"] == t.user_attrs["pattern"] and "d_model" in run.data.params
        assert run.data.metrics["synthetic_accuracy"] == t.values[0] and "lm_loss" in run.data.metrics
        assert len(client.get_metric_history(run.info.run_id, "train_loss.lm")) >= 2
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"arch.yaml", "results.json"}
    front = pareto_trials(spec.storage_url, spec.name)
    assert front and {r["trial"] for r in front} <= {t.number for t in ts}
    assert {n for n, _ in trial_archs(spec.storage_url, spec.name, pareto=True)} == {r["trial"] for r in front}
    (s,) = study_summaries(spec.storage_url)
    assert s.name == "t" and s.counts["complete"] == 4 and s.best


def test_several_seeds_give_each_objective_its_spread(ray_cluster, urls):
    """`seeds: 2`: the objectives are the seeds' mean, and each metric's standard deviation over the seeds
    is recorded and shown by the reader and `nas pareto`."""
    spec = make_spec(urls, name="seeds", budget={"trials": 2}, seeds=2,
                     objectives=[{"metric": "lm_loss"}, {"metric": "decode_tps"}])
    run_study(spec, executor=RayExecutor(), show_progress=False)
    ts = trials(spec)
    assert len(ts) == 2 and all(t.state.name == "COMPLETE" for t in ts)
    for t in ts:
        sd = t.user_attrs["metrics_sd"]
        assert set(sd) == set(t.user_attrs["metrics"]) and sd["lm_loss"] > 0  # two seeds never train alike
        each = t.user_attrs["seed_metrics"]  # every seed's own metrics, kept for `nas seeds`
        assert sorted(each) == ["0", "1"]
        losses = [each[s]["lm_loss"] for s in ("0", "1")]
        assert t.user_attrs["metrics"]["lm_loss"] == pytest.approx(sum(losses) / 2)
        assert sd["lm_loss"] == pytest.approx(abs(losses[0] - losses[1]) / 2**0.5)
    front = pareto_trials(spec.storage_url, spec.name)
    assert front and all(set(r["spread"]) == {"lm_loss", "decode_tps"} for r in front)
    by_number = {t.number: t for t in ts}
    assert all(r["spread"]["lm_loss"] == by_number[r["trial"]].user_attrs["metrics_sd"]["lm_loss"] for r in front)
    _, runs = mlflow_runs(spec)
    for run in (r for r in runs if "nas.trial" in r.data.tags):
        sd = by_number[int(run.data.tags["nas.trial"])].user_attrs["metrics_sd"]
        assert run.data.metrics["sd.lm_loss"] == sd["lm_loss"]
    shown = subprocess.run([sys.executable, "-m", "nas.cli", "pareto", spec.name, "--storage", spec.storage_url],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and " ± " in shown.stdout
    assert "standard deviation over the trial's seeds" in shown.stdout


class CountingExecutor(RayExecutor):
    def __init__(self):
        super().__init__()
        self.submitted = []

    def submit(self, job):
        self.submitted.append(job.trial)
        return super().submit(job)


def test_infeasible_architectures_are_told_with_the_reason_and_never_trained(ray_cluster, urls):
    # attention's KV cache at 64K tokens breaks the memory limit; pure SSMs fit
    spec = make_spec(
        urls, constraints={"memory": {"context": 65536, "max_bytes": 1e6}}, budget={"trials": 3}, sampler="random"
    )
    ex = CountingExecutor()
    run_study(spec, executor=ex, show_progress=False)
    ts = trials(spec)
    infeasible = [t for t in ts if (t.user_attrs.get("failure") or {}).get("kind") == "infeasible"]
    assert infeasible and all(t.state.name == "FAIL" for t in infeasible)
    assert all(
        "*" in t.user_attrs["pattern"] and "above the limit" in t.user_attrs["failure"]["reason"] for t in infeasible
    )
    assert not set(ex.submitted) & {t.number for t in infeasible}
    assert sum(t.state.name == "COMPLETE" for t in ts) == 3


def test_resume_after_the_driver_is_killed(tmp_path, urls):
    spec_data = {
        "name": "resume",
        "space": SPACE,
        "budget": {"trials": 6},
        "concurrency": 1,
        "sampler": "random",
        "profile": micro_profile(tokens=12 * 4 * 32),
        **urls,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_data))
    spec = StudySpec.model_validate(spec_data)
    cmd = [sys.executable, "-m", "nas.cli", "run", str(path)]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    before = []
    t0 = time.time()
    while time.time() - t0 < 240:
        time.sleep(1)
        try:
            before = [t for t in trials(spec) if t.state.name == "COMPLETE"]
        except KeyError:
            continue
        if len(before) >= 2:
            break
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    driver.wait()
    assert len(before) >= 2, "the study did not get going"
    snapshot = {t.number: (t.values, t.datetime_complete) for t in trials(spec) if t.state.name == "COMPLETE"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    after = trials(spec)
    complete = {t.number: (t.values, t.datetime_complete) for t in after if t.state.name == "COMPLETE"}
    assert len(complete) == 6
    for number, kept in snapshot.items():  # nothing finished was lost or run again
        assert complete[number] == kept
    _, runs = mlflow_runs(spec)
    logged = [r.data.tags["nas.trial"] for r in runs if "nas.trial" in r.data.tags]
    assert len(logged) == len(set(logged)) == 6


def test_a_trial_asked_by_a_driver_that_died_before_starting_it_is_started_on_resume(ray_cluster, urls):
    spec = make_spec(urls, name="asked", budget={"trials": 2})
    orphan = store.open_study(spec).study.ask()  # a driver killed between asking for a trial and submitting its job
    assert "arch" not in orphan.user_attrs
    summary = run_study(spec, executor=RayExecutor(), show_progress=False)
    ts = trials(spec)
    assert summary.counts["complete"] == 2 and summary.counts["failed"] == 0
    assert [t.state.name for t in ts] == ["COMPLETE", "COMPLETE"]  # the orphan is trial 0, trained, not failed
    assert ts[0].number == orphan.number and "arch" in ts[0].user_attrs


class KillingExecutor(RayExecutor):
    """Kills the worker process of trial 0 the first `times` times it reports progress."""

    def __init__(self, times):
        super().__init__()
        self.times, self.killed = times, set()

    def progress(self):
        reports = super().progress()
        for r in reports:
            if r["trial"] == 0 and len(self.killed) < self.times and r["pid"] not in self.killed:
                self.killed.add(r["pid"])
                os.kill(r["pid"], signal.SIGKILL)
        return reports


@pytest.mark.parametrize("kills", [1, 2])
def test_a_worker_killed_mid_trial_is_retried_once(ray_cluster, urls, kills):
    spec = make_spec(
        urls, name=f"kill{kills}", budget={"trials": 2}, concurrency=1, profile=micro_profile(tokens=400 * 4 * 32)
    )
    ex = KillingExecutor(kills)
    run_study(spec, executor=ex, show_progress=False)
    t0 = next(t for t in trials(spec) if t.number == 0)
    assert len(ex.killed) == kills
    if kills == 1:
        assert t0.state.name == "COMPLETE"
    else:
        assert t0.state.name == "FAIL" and t0.user_attrs["failure"]["kind"] == "worker_died"
        assert "died twice" in t0.user_attrs["failure"]["reason"]
    assert next(t for t in trials(spec) if t.number == 1).state.name == "COMPLETE"


def test_early_stopping_prunes_by_nondominated_rank(ray_cluster, urls):
    spec = make_spec(
        urls,
        name="asha",
        budget={"trials": 6},
        concurrency=1,
        early_stopping={"enabled": True, "rungs": [0.5, 1.0], "eta": 2},
    )
    jobs = []

    class Recording(RayExecutor):
        def submit(self, job):
            jobs.append(job)
            return super().submit(job)

    run_study(spec, executor=Recording(), show_progress=False)
    # the first rung ranks by the objectives (recall, decode speed): it trains the task and times the
    # model, and leaves the LM run to the full budget
    assert {j.parts for j in jobs if j.budget == 0.5} == {("mqar", "throughput")}  # the profile's one task
    assert {j.parts for j in jobs if j.budget == 1.0} == {None}
    ts = trials(spec)
    complete = [t for t in ts if t.state.name == "COMPLETE"]
    pruned = [t for t in ts if t.state.name == "PRUNED"]
    assert complete and pruned and len(complete) + len(pruned) == 6
    for t in complete:
        assert set(t.user_attrs["rung_results"]) == {"0", "1"} and t.user_attrs["rung_done"] == 1
    for t in pruned:
        assert set(t.user_attrs["rung_results"]) == {"0"}
    # a promoted trial cost more tokens than a pruned one
    assert min(t.user_attrs["tokens"] for t in complete) > max(t.user_attrs["tokens"] for t in pruned)
    # every job's time is the trial's cost (a duplicate of an earlier trial ran none)
    ran = [t for t in complete + pruned if "duplicate_of" not in t.user_attrs]
    assert ran and all(t.user_attrs["job_seconds"] > 0 for t in ran)
    assert all("job_seconds" not in t.user_attrs for t in complete + pruned if t not in ran)
    # a trial's speed was measured once, at the first rung, and carried to its full-budget result
    for t in (t for t in complete if t in ran):
        assert [t.user_attrs["result"]["throughput"]] == t.user_attrs["throughput"]  # one seed
        assert t.values[1] == t.user_attrs["throughput"][0][-1]["decode_tokens_per_s"]


def test_synchronous_promotion_sends_up_only_the_final_top_of_the_first_rung(urls):
    """`promotion: synchronous`: no full-budget job starts while the trials still to come could outrank it,
    and the trials promoted are the top n // eta of every trial that reached the first rung, no more."""
    from nas.executor import InlineExecutor

    class Recording(InlineExecutor):
        def __init__(self):
            super().__init__()
            self.jobs = []

        def submit(self, job):
            self.jobs.append(job)
            return super().submit(job)

    space = {**SPACE, "dimensions": {**SPACE["dimensions"], "layers": [2, 4]}}  # 10 architectures
    spec = make_spec(urls, name="sync", space=space, budget={"trials": 8}, concurrency=1, seed=3,
                     early_stopping={"enabled": True, "rungs": [0.5, 1.0], "eta": 2, "promotion": "synchronous"})
    ex = Recording()
    run_study(spec, executor=ex, show_progress=False)
    ts = trials(spec)
    first = [t for t in ts if "0" in t.user_attrs.get("rung_results", {}) and "duplicate_of" not in t.user_attrs]
    promoted = [t for t in first if "1" in t.user_attrs["rung_results"]]
    assert len(first) >= 6 and len(promoted) == len(first) // 2
    budgets = [j.budget for j in ex.jobs]
    # the first full-budget job came once the places it took were sure: after most of the first rung
    assert budgets.index(1.0) >= len(first) // 2 + 1
    assert len(budgets) == len(first) + len(promoted)


def test_synchronous_promotion_stops_waiting_once_no_trial_is_asked_for(urls, monkeypatch):
    """A study that gives up proposing (too many infeasible proposals in a row) before its budget is spent
    still promotes the top of its first rung: no trial is to come any more."""
    import nas.runner
    from nas.executor import InlineExecutor

    monkeypatch.setattr(nas.runner, "MAX_INFEASIBLE_IN_A_ROW", 3)  # three infeasible proposals in a row end asking
    space = {**SPACE, "dimensions": {**SPACE["dimensions"], "layers": [2, 4]}}
    spec = make_spec(urls, name="giveup", space=space, budget={"trials": 8}, concurrency=1, seed=0,
                     constraints={"memory": {"context": 65536, "max_bytes": 1e6}},  # attention cannot fit
                     early_stopping={"enabled": True, "rungs": [0.5, 1.0], "eta": 2, "promotion": "synchronous"})
    run_study(spec, executor=InlineExecutor(), show_progress=False)  # seed 0: some feasible proposals first
    ts = trials(spec)
    first = [t for t in ts if "0" in t.user_attrs.get("rung_results", {}) and "duplicate_of" not in t.user_attrs]
    assert any((t.user_attrs.get("failure") or {}).get("kind") == "infeasible" for t in ts)
    assert 2 <= len(first) < 8  # it gave up before its budget
    assert sum("1" in t.user_attrs["rung_results"] for t in first) == len(first) // 2


def test_synchronous_promotion_needs_a_trial_budget(urls):
    with pytest.raises(ValueError, match="needs a trial budget"):
        make_spec(urls, budget={"hours": 1.0},
                  early_stopping={"enabled": True, "promotion": "synchronous"})


def test_an_ablation_reports_means_and_intervals(ray_cluster, urls):
    spec = make_spec(
        urls,
        name="abl",
        kind="ablation",
        space=None,
        budget={"trials": 1},
        sampler="auto",
        objectives=[{"metric": "lm_loss"}],
        ablation={
            "base": {
                "pattern": "M-*-",
                "d_model": 32,
                "attention": {"heads": 2},
                "mamba2": {"d_state": 8, "head_dim": 16},
            },
            "factors": {"pos": ["rope", "nope"], "ssm": ["mamba2", "mlstm"]},
            "seeds": 2,
        },
    )
    run_study(spec, executor=RayExecutor(), show_progress=False)
    ts = trials(spec)
    assert len(ts) == 8 and all(t.state.name == "COMPLETE" for t in ts)
    cells = {(t.params["pos"], t.params["ssm"], t.params["seed"]) for t in ts}
    assert len(cells) == 8
    mlstm = next(t for t in ts if t.params["ssm"] == "mlstm")
    assert "X" in mlstm.user_attrs["pattern"] and "M" not in mlstm.user_attrs["pattern"]
    rows = ablation_report(spec.storage_url, spec.name)
    assert {(r.factor, r.level) for r in rows} == {
        ("pos", "rope"),
        ("pos", "nope"),
        ("ssm", "mamba2"),
        ("ssm", "mlstm"),
    }
    for r in rows:
        assert r.n == 4 and r.ci > 0
        assert r.is_base == (r.level in ("rope", "mamba2"))
        assert (r.diff is None) == r.is_base
    nope = next(r for r in rows if r.level == "nope")
    rope = next(r for r in rows if r.level == "rope")
    assert nope.diff == pytest.approx(nope.mean - rope.mean)
    (noise,) = seed_report(spec.storage_url, spec.name, ["lm_loss"])  # an ablation's seeds are trials of a cell
    assert (noise.archs, noise.seeds) == (4, 2)
    by_cell = {}
    for t in ts:
        by_cell.setdefault((t.params["pos"], t.params["ssm"]), []).append(t.user_attrs["metrics"]["lm_loss"])
    assert noise.sd == pytest.approx(float(np.median([np.std(v, ddof=1) for v in by_cell.values()])))


def test_a_changed_spec_does_not_resume_the_old_study(ray_cluster, urls):
    spec = make_spec(urls, name="same", budget={"trials": 1})
    run_study(spec, executor=RayExecutor(), show_progress=False, track=False)
    other = make_spec(urls, name="same", objectives=[{"metric": "lm_loss"}])
    with pytest.raises(ConfigError, match="already exists with a different"):
        run_study(other, executor=RayExecutor(), show_progress=False, track=False)
    more = make_spec(urls, name="same", budget={"trials": 2})  # a larger budget resumes
    s = run_study(more, executor=RayExecutor(), show_progress=False, track=False)
    assert s.counts["complete"] == 2
    rows = study_trials(spec.storage_url, "same")
    assert [r.number for r in rows] == [0, 1] and json.dumps(rows[0].arch)
