"""The dashboard is read-only until someone signs in (service mode, a queue in memory with the API the
dashboard calls): no action buttons, the Submit page refused, a wrong password refused; once signed in,
every action carries the user's name to the queue."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest
from dashutil import APP, PASSWORD, USER, page, sign_in, texts, users_file


@dataclass
class Queued:
    id: int
    name: str
    status: str
    priority: int = 0
    submitted_by: str | None = "ada"
    submitted_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    scheduler: str | None = None
    error: str | None = None
    optuna_study_name: str = ""
    mlflow_experiment_id: str | None = None
    spec: dict = field(default_factory=dict)
    requested: str | None = None
    attempts: int = 0
    kind: str = "search"
    budget_trials: int | None = 4
    label: str = ""


@pytest.fixture
def service(monkeypatch, tmp_path):
    q = types.ModuleType("nas.service.queue")
    q.calls = []
    q.database_url = lambda: "postgresql+psycopg://nas:planted-pw@db.example/nas"
    q.service_urls = lambda url=None: (f"sqlite:///{tmp_path / 'studies.db'}", f"sqlite:///{tmp_path / 'ml.db'}")
    q.list_studies = lambda url=None: [Queued(6, "next-up", "queued", optuna_study_name="next-up")]

    def submit(spec, *, priority=0, submitted_by=None, url=None, files=True):
        q.calls.append(("submit", spec.name, submitted_by))
        return 7

    q.submit = submit
    for verb in ("pause", "resume", "cancel"):
        setattr(q, verb, lambda qid, url=None, by=None, verb=verb: q.calls.append((verb, qid, by)))
    monkeypatch.setitem(sys.modules, "nas.service.queue", q)
    import nas.service

    monkeypatch.setattr(nas.service, "queue", q, raising=False)
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NAS_DASHBOARD_USERS", str(users_file(tmp_path)))
    return q


def app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP), default_timeout=60)


def select_first_row(at):
    at.session_state["studies_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    return at


def test_an_anonymous_user_gets_no_action_and_the_submit_page_refuses(service):
    at = select_first_row(page(app(), "views/studies.py"))
    labels = {b.label for b in at.button}
    assert not labels & {"Pause", "Resume", "Cancel", "Stop"}, labels
    assert "sign in to pause, resume or cancel" in "\n".join(c.value for c in at.caption)
    assert "planted-pw" not in texts(at) + "\n".join(c.value for c in at.sidebar.caption)
    at = page(app(), "views/submit.py")  # straight to the page
    assert "Sign in (in the sidebar) to validate and submit studies" in texts(at)
    assert not at.text_area and not {"Validate", "Submit to the queue"} & {b.label for b in at.button}
    assert service.calls == []


def test_a_wrong_password_is_refused(service):
    at = page(app(), "views/submit.py")
    sign_in(at, USER, PASSWORD + "!")
    assert "not recognised" in at.error[0].value and not at.text_area
    sign_in(at, "eve", PASSWORD)
    assert "not recognised" in at.error[0].value and not at.text_area


def test_a_signed_in_user_acts_under_their_name(service):
    at = sign_in(page(app(), "views/studies.py"))
    assert f"signed in as **{USER}**" in "\n".join(c.value for c in at.sidebar.caption)
    select_first_row(at)
    next(b for b in at.button if b.label == "Pause").click().run()
    assert ("pause", 6, USER) in service.calls
    at.switch_page("views/submit.py").run()
    assert f"submitted by **{USER}**" in texts(at)
    assert not [w for w in at.text_input if w.label == "submitted by"]  # no longer free text
    next(b for b in at.button if b.label == "Sign out").click().run()
    assert "Sign in (in the sidebar)" in texts(at)
