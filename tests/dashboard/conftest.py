"""Studies for the dashboard's tests, made by the real runner (InlineExecutor, in-process) in a temporary
SQLite storage, plus a study still running (trials in flight written through Optuna, as a driver would)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def hermetic(tmp_path_factory):
    """No user config, no service variables: embedded mode, unless a test gives the app a queue. The app is
    served on loopback, as `nas dashboard` serves it by default (an embedded dashboard there acts as the
    local user; a test of service mode signs in: `dashutil.sign_in`)."""
    from streamlit import config

    empty = tmp_path_factory.mktemp("config") / "config.toml"
    empty.write_text("")
    keys = ("NAS_DATABASE_URL", "NAS_STORAGE", "NAS_TRACKING", "NAS_HOME", "NAS_CONFIG", "NAS_DASHBOARD_USERS")
    saved = {k: os.environ.pop(k) for k in keys if k in os.environ}
    os.environ["NAS_CONFIG"] = str(empty)
    config.set_option("server.address", "127.0.0.1")
    yield
    for k in keys:
        os.environ.pop(k, None)
    os.environ.update(saved)


def _urls(folder: Path) -> dict[str, str]:
    return {"storage": f"sqlite:///{folder / 'studies.db'}", "tracking": f"sqlite:///{folder / 'mlflow.db'}"}


def _add_failed(spec, reason: str) -> None:
    """A trial that trained and diverged, recorded the way the runner records one."""
    import optuna

    from nas import store

    h = store.open_study(spec)
    trial = h.study.ask()
    arch = {"pattern": "*-*-", "d_model": 32, "attention": {"heads": 2}}
    h.set_trial_attr(trial.number, "arch", arch)
    h.set_trial_attr(trial.number, "pattern", "*-*-")
    h.set_trial_attr(trial.number, "failure", {"kind": "diverged", "reason": reason, "step": 3, "task": "lm"})
    h.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _add_running(spec, n: int) -> None:
    """Trials in flight: asked, given an architecture and a recent progress report, never told."""
    from nas import store

    h = store.open_study(spec)
    for i in range(n):
        trial = h.study.ask()
        spec.search_space().suggest(trial)
        pattern = ["M-*-", "X-X-"][i % 2]
        attrs = {
            "arch": {"pattern": pattern, "d_model": 32},
            "pattern": pattern,
            "job_rung": 0,
            "progress": {
                "trial": trial.number,
                "task": "lm",
                "step": 2 + i,
                "steps": 8,
                "loss": 5.1 - i,
                "time": time.time(),
            },
        }
        for k, v in attrs.items():
            h.set_trial_attr(trial.number, k, v)


@pytest.fixture(scope="session")
def studies(tmp_path_factory):
    """One storage with: `search` (4 complete, tracked in MLflow), `failing` (complete, infeasible and
    diverged trials), `diverging` (every trial failed), `live` (2 complete, 2 running) and `abl` (an
    ablation of two positional encodings, 2 seeds). Returns the storage and tracking URLs."""
    from studyutil import ablation_fields, make_spec, micro_profile

    from nas import store
    from nas.executor import InlineExecutor
    from nas.runner import run_study

    folder = tmp_path_factory.mktemp("studies")
    urls = _urls(folder)
    run_study(make_spec(urls, name="search"), executor=InlineExecutor(), show_progress=False, track=True)
    failing = make_spec(
        urls,
        name="failing",
        budget={"trials": 3},
        constraints={"memory": {"context": 65536, "max_bytes": 1e6}},
    )
    run_study(failing, executor=InlineExecutor(), show_progress=False, track=False)
    _add_failed(
        failing,
        "the lm loss became nan at step 3 of 4; lower the learning rate (now 0.003) or the clip threshold",
    )
    diverging = make_spec(
        urls,
        name="diverging",
        budget={"trials": 2},
        profile=micro_profile(optim={"lr": 1e5, "warmup_fraction": 0.0}),
    )
    run_study(diverging, executor=InlineExecutor(), show_progress=False, track=False)
    live = make_spec(urls, name="live", budget={"trials": 6})
    run_study(
        make_spec(urls, name="live", budget={"trials": 2}),
        executor=InlineExecutor(),
        show_progress=False,
        track=False,
    )
    # its driver runs it with a budget of 6
    store.open_study(live).study.set_user_attr("spec", live.model_dump(mode="json"))
    _add_running(live, 2)
    abl = make_spec(
        urls,
        name="abl",
        **ablation_fields(),
        sampler="auto",
    )
    run_study(abl, executor=InlineExecutor(), show_progress=False, track=False)
    return urls


@pytest.fixture
def app(studies, monkeypatch, tmp_path):
    """An AppTest of the dashboard on the `studies` storage; NAS_HOME (local runs) in a fresh folder."""
    from dashutil import APP
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("NAS_STORAGE", studies["storage"])
    monkeypatch.setenv("NAS_TRACKING", studies["tracking"])
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    return AppTest.from_file(str(APP), default_timeout=60)


def pytest_collection_modifyitems(items):
    """Tests on the trained studies are slow (the fixture trains a dozen micro proxies); the rest are not."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents and (
            "studies" in getattr(item, "fixturenames", ()) or Path(item.fspath).name == "test_browser.py"
        ):
            item.add_marker(pytest.mark.slow)
