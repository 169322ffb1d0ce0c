"""`nas.reader` (plain SQL over Optuna's tables) against Optuna's own view of the same studies."""

from __future__ import annotations

import math
import time
import types

import optuna
import pytest

from nas import reader, record, store
from nas.pareto import pareto_mask
from nas.spec import StudySpec


def optuna_view(url, name):
    """The study's trials as Optuna itself hands them back, with the fields the reader reports."""
    study = optuna.load_study(study_name=name, storage=url)
    spec = StudySpec.model_validate(study.user_attrs["spec"])
    ts = study.get_trials()
    complete = [t for t in ts if t.state.name == "COMPLETE"]
    front = set()
    if complete:
        front = {t.number for t, on in zip(complete, pareto_mask([t.values for t in complete], spec.directions)) if on}
    return spec, {
        t.number: types.SimpleNamespace(
            state=t.state.name,
            status=record.trial_status(t.state.name, t.user_attrs),
            pattern=t.user_attrs.get("pattern"),
            pareto=t.number in front,
            mlflow_run_id=t.user_attrs.get("mlflow_run_id"),
            values=t.values,
            params=t.params,
            metrics=t.user_attrs.get("metrics", {}),
            failure=t.user_attrs.get("failure"),
        )
        for t in ts
    }


def test_trials_read_as_optuna_and_the_study_runner_see_them(studies):
    url = studies["storage"]
    for name in ("search", "failing", "live", "abl"):
        meta, df = reader.study_frame(url, name)
        _, rows = optuna_view(url, name)
        assert df["number"].tolist() == sorted(rows)
        for t in df.to_dict("records"):
            r = rows[t["number"]]
            assert t["state"] == r.state and t["pattern"] == r.pattern and bool(t["pareto"]) == r.pareto
            assert t["mlflow_run_id"] == r.mlflow_run_id
            if r.values:
                assert [t[m] for m in meta.metrics] == pytest.approx(r.values)
            else:
                assert all(math.isnan(t[m]) for m in meta.metrics)
            assert {
                k[2:]: v for k, v in t.items() if k.startswith("p.") and v is not None and v == v
            } == r.params
            for k, v in r.metrics.items():
                assert t[f"m.{k}"] == pytest.approx(v)
            if r.failure:
                assert (t["failure_kind"], t["failure_reason"]) == (r.failure["kind"], r.failure["reason"])


def test_the_study_list_agrees_with_the_runners_summaries(studies):
    url = studies["storage"]
    listed = reader.list_studies(url).set_index("name")
    for name in ("search", "failing", "diverging", "live", "abl"):
        spec, trials = optuna_view(url, name)
        counts = record.count_statuses(t.status for t in trials.values())
        values = [t.values for t in trials.values() if t.state == "COMPLETE"]
        best = {
            m: (max if d == "maximize" else min)(v[i] for v in values)
            for i, (m, d) in enumerate(zip(spec.metrics, spec.directions))
        } if values else {}
        grid = len(spec.grid_points()) if spec.sampler_name() == "grid" else None
        row = listed.loc[name]
        for key in ("complete", "running", "failed", "infeasible", "pruned", "paused"):
            assert row[key] == counts[key], (name, key)
        assert row["best"] == pytest.approx(best)
        assert row["budget"] == record.trial_budget(spec, grid)
        summary = reader.study_summary(url, name)
        assert summary.counts == {k: row[k] for k in record.STATUSES} and summary.budget_trials == row["budget"]
    assert listed.loc["live", "status"] == "running" and listed.loc["live", "eta"] > 0
    assert listed.loc["search", "status"] == "done" and listed.loc["abl", "kind"] == "ablation"


def test_the_version_moves_with_trials_and_not_with_progress_reports(studies, tmp_path):
    import shutil

    path = tmp_path / "copy.db"
    shutil.copy(studies["storage"].removeprefix("sqlite:///"), path)
    url = f"sqlite:///{path}"
    before = reader.study_version(url, "live")
    h = store.load("live", url)
    study = h.study
    running = [t for t in study.get_trials() if t.state.name == "RUNNING"]
    h.set_trial_attr(
        running[0].number,
        "progress",
        {"task": "lm", "step": 7, "steps": 8, "loss": 3.0, "time": time.time()},
    )
    assert reader.study_version(url, "live") == before
    assert reader.running_trials(url, "live").set_index("number").loc[running[0].number, "step"] == 7
    study.tell(running[0].number, [0.5, 1000.0])
    assert reader.study_version(url, "live") != before


def test_one_trials_attributes_and_the_distributions(studies):
    url = studies["storage"]
    arch = reader.trial_attrs(url, "search", 0, ("arch",))
    assert set(arch) == {"arch"} and arch["arch"]["pattern"]
    assert "result" in reader.trial_attrs(url, "search", 0)
    assert set(reader.param_distributions(url, "search")) == {"attn_ratio", "ssm"}


def test_the_large_attributes_are_never_read_for_a_page():
    assert "result" not in reader.TRIAL_ATTRS and "arch" not in reader.TRIAL_ATTRS


def test_a_missing_database_reads_as_empty_and_is_not_created(tmp_path):
    url = f"sqlite:///{tmp_path / 'none' / 'studies.db'}"
    assert (
        reader.list_studies(url).empty
        and reader.study_names(url) == []
        and reader.study_version(url, "x") == ()
    )
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    "pattern,family,ratio",
    [
        ("M-M*-", "Mamba-2", 1 / 3),
        ("m-m-", "Mamba-1", 0.0),
        ("X-*-", "mLSTM", 0.5),
        ("*-*-", "none", 1.0),
        ("M-m-", "mixed", 0.0),
        (None, "unknown", math.nan),
    ],
)
def test_families_and_attention_share(pattern, family, ratio):
    assert reader.ssm_family(pattern) == family
    assert reader.attention_ratio(pattern) == pytest.approx(ratio, nan_ok=True)


@pytest.mark.slow
def test_the_reads_on_postgresql(tmp_path):
    """Service mode keeps the studies in PostgreSQL: the same SQL, its enum types and datetimes."""
    import sys
    from pathlib import Path

    root = Path(__file__).parents[2]
    sys.path[:0] = [str(root / "tests" / "service"), str(root / "benchmarks")]
    try:
        from dashboard_load import make_study
        from serviceutil import create_database, drop_database, postgres_problem
    finally:
        del sys.path[:2]
    problem = postgres_problem()
    if problem is not None:
        pytest.skip(problem)
    url = create_database("nas_dashboard")
    try:
        make_study(url, "pg", 60, running=2)
        meta, df = reader.study_frame(url, "pg")
        ts = optuna.load_study(study_name="pg", storage=url).get_trials()
        assert df["state"].tolist() == [t.state.name for t in ts]
        done = [t for t in ts if t.state.name == "COMPLETE"]
        assert df[df["state"] == "COMPLETE"][meta.metrics].to_numpy().tolist() == [t.values for t in done]
        assert [df.loc[i, "started"] for i in range(3)] == pytest.approx(
            [ts[i].datetime_start.timestamp() for i in range(3)])
        assert df["p.ssm"].tolist() == [t.params["ssm"] for t in ts]
        listed = reader.list_studies(url).set_index("name")
        assert listed.loc["pg", "status"] == "running" and listed.loc["pg", "complete"] == len(done)
        assert len(reader.running_trials(url, "pg")) == 2 and reader.study_version(url, "pg")
        assert reader.trial_attrs(url, "pg", 0, ("pattern",))["pattern"] == ts[0].user_attrs["pattern"]
    finally:
        drop_database(url)  # closes this process's connections to it first
