"""The dashboard says what `nas status` says: an interrupted study is `interrupted` (not `running`) with
how to resume it, and a trial waiting for resources shows why, on the Studies page and the Study page."""

from __future__ import annotations

import time

import optuna
import pytest
from dashutil import APP, page, texts
from optuna.distributions import CategoricalDistribution
from streamlit.testing.v1 import AppTest
from studyutil import make_spec

from nas import record, store

WHY = "waiting for 0.25 GPU; the cluster has none (Ray: the request {'CPU': 1.0, 'GPU': 0.25} cannot be scheduled)"


def add(spec, rows: list[dict]) -> None:
    """RUNNING trials with these attributes (what the runner records), beside one complete trial."""
    study = store.open_study(spec).study
    dist = {"layers": CategoricalDistribution([2])}
    trials = [optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, params={"layers": 2},
                                        distributions=dist, values=[0.2, 100.0],
                                        user_attrs={record.PATTERN: "M-*-"})]
    trials += [optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params={"layers": 2},
                                         distributions=dist, user_attrs={record.PATTERN: "M-*-", **attrs})
               for attrs in rows]
    study.add_trials(trials)


@pytest.fixture
def app(tmp_path, monkeypatch):
    urls = {"storage": f"sqlite:///{tmp_path / 'studies.db'}", "tracking": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    monkeypatch.setenv("NAS_STORAGE", urls["storage"])
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    now = time.time()
    running = {record.JOB_RUNG: 0, record.PROGRESS: {"task": "lm", "step": 1, "steps": 9, "loss": 3.0, "time": now}}
    add(make_spec(urls, name="stopped-by-ctrl-c"), [{record.JOB_RUNG: 0, record.INTERRUPTED: now}] * 2)
    add(make_spec(urls, name="short-of-gpus"), [running, {**running, record.WAITING_FOR: WHY}])
    return AppTest.from_file(str(APP), default_timeout=60)


def test_the_studies_page_shows_interrupted_and_waiting(app):
    at = page(app, "views/studies.py")
    (table,) = [d.value for d in at.dataframe if "study" in d.value.columns]
    table = table.set_index("study")
    assert table.loc["stopped-by-ctrl-c", "status"] == "interrupted"
    assert "`nas run` with its spec resumes it" in table.loc["stopped-by-ctrl-c", "note"]
    assert table.loc["short-of-gpus", "status"] == "running"
    assert table.loc["short-of-gpus", "note"] == WHY


def test_the_study_page_says_why(app):
    at = page(app, "views/study.py", study="stopped-by-ctrl-c")
    assert "status **interrupted**" in texts(at) and "goes on from where they were" in texts(at)
    at = page(AppTest.from_file(str(APP), default_timeout=60), "views/study.py", study="short-of-gpus")
    assert WHY in [w.value for w in at.warning]
