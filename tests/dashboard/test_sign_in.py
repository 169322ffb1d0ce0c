"""The dashboard is read-only until someone signs in (service mode, a queue in memory with the API the
dashboard calls): no action buttons, the Submit page refused, a wrong password refused; once signed in,
every action carries the user's name to the queue."""

from __future__ import annotations

import sys

import pytest
from dashutil import APP, PASSWORD, USER, Queued, fake_queue, page, sign_in, texts, users_file


@pytest.fixture
def service(monkeypatch, tmp_path):
    q = fake_queue(f"sqlite:///{tmp_path / 'studies.db'}", f"sqlite:///{tmp_path / 'ml.db'}",
                   [Queued(6, "next-up", "queued", optuna_study_name="next-up", kind="search", budget_trials=4)],
                   database_url="postgresql+psycopg://nas:planted-pw@db.example/nas")
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
