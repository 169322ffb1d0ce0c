"""The dashboard in service mode, against the real queue in PostgreSQL (not a stand-in)."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest
from dashutil import APP, PASSWORD, USER, page, sign_in, users_file
from serviceutil import free_port, spec_text, start, stop, wait_for

pytestmark = pytest.mark.slow


def test_submit_list_and_pause_through_the_dashboard(db_url, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    from nas.service import queue

    monkeypatch.setenv("NAS_DATABASE_URL", db_url)
    monkeypatch.setenv("NAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NAS_DASHBOARD_USERS", str(users_file(tmp_path)))  # actions need a sign-in
    first = queue.submit(spec_text("dash-first"), priority=4, submitted_by="ada")

    at = sign_in(page(AppTest.from_file(str(APP), default_timeout=60), "views/submit.py"))
    at.text_area[0].set_value(spec_text("dash-second"))
    next(b for b in at.button if b.label == "Submit to the queue").click().run()
    assert not at.exception and "dash-second" in at.success[0].value
    rows = {s.name: s for s in queue.list_studies()}
    assert rows["dash-second"].status == "queued" and rows["dash-first"].priority == 4

    bad = sign_in(page(AppTest.from_file(str(APP), default_timeout=60), "views/submit.py"))
    bad.text_area[0].set_value(spec_text("dash-bad").replace("space:", "spaze:"))
    next(b for b in bad.button if b.label == "Submit to the queue").click().run()
    assert "unknown key 'spaze'" in bad.error[0].value
    assert "dash-bad" not in {s.name for s in queue.list_studies()}  # refused: no row

    at = sign_in(page(AppTest.from_file(str(APP), default_timeout=60), "views/studies.py"))
    table = next(d.value for d in at.dataframe if "study" in d.value.columns).set_index("study")
    assert table.loc["dash-first", "status"] == "queued" and table.loc["dash-first", "priority"] == 4
    assert table.loc["dash-first", "submitted by"] == "ada"
    rows = list(table.index)
    at.session_state["studies_table"] = {"selection": {"rows": [rows.index("dash-first")], "columns": [],
                                                       "cells": []}}
    at.run()
    next(b for b in at.button if b.label == "Pause").click().run()
    assert queue.get_study(first).status == "paused"


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def dashboard(env, db_url, tmp_path):
    """`nas dashboard` in service mode on a free port, with one user who may sign in."""
    port = free_port()
    e = {**env, "NAS_DASHBOARD_USERS": str(users_file(tmp_path))}
    log = tmp_path / "dashboard.log"
    proc = start([sys.executable, "-m", "nas.cli", "dashboard", "--port", str(port)], e, log, cwd=tmp_path)

    def healthy():
        assert proc.poll() is None, log.read_text()[-2000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200

    try:
        wait_for("the dashboard", healthy, 90, logs=(log,))
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc, grace=10)


@pytest.mark.timeout(300)
def test_in_a_browser_an_anonymous_user_cannot_act_and_a_signed_in_one_can(dashboard, db_url):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    from playwright.sync_api import expect, sync_playwright

    from nas.service import queue

    i = queue.submit(spec_text("browser-queued"), url=db_url)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)  # assertions too (their own default is 5 s: a
            # Streamlit page's first render on a busy 2-core machine can take longer)

            def select_the_study(reload: bool = True):
                if reload:
                    page.goto(f"{dashboard}/")
                else:  # through the navigation: the same session (a reload is a new one, signed out)
                    page.get_by_role("link", name="Studies").first.click()
                grid = page.locator("[data-testid=stDataFrame]").first
                expect(grid).to_be_visible()
                box = grid.bounding_box()
                page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection box
                expect(page.get_by_role("heading", name="browser-queued")).to_be_visible()

            select_the_study()
            expect(page.get_by_text("sign in to pause, resume or cancel")).to_be_visible()
            for name in ("Pause", "Resume", "Cancel"):
                expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
            page.goto(f"{dashboard}/submit")  # straight to the action
            expect(page.get_by_text("Sign in (in the sidebar) to validate and submit studies")).to_be_visible()
            expect(page.get_by_role("button", name="Submit to the queue")).to_have_count(0)
            expect(page.get_by_role("textbox", name="Spec")).to_have_count(0)

            page.get_by_label("User").fill(USER)
            page.get_by_label("Password or token").fill("not the password")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("are not recognised")).to_be_visible()
            assert queue.get_study(i, url=db_url).status == "queued"

            page.get_by_label("User").fill(USER)
            page.get_by_label("Password or token").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text(f"signed in as {USER}")).to_be_visible()
            expect(page.get_by_role("button", name="Submit to the queue")).to_be_visible()
            select_the_study(reload=False)
            page.get_by_role("button", name="Pause", exact=True).click()
            wait_for("the pause", lambda: queue.get_study(i, url=db_url).status == "paused", 30)
        finally:
            browser.close()
    paused = queue.events(i, url=db_url)[-1]
    assert paused.kind == "paused" and paused.message == f"by {USER} while queued"
