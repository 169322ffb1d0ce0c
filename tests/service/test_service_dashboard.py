"""The dashboard in service mode, against the real queue in PostgreSQL (not a stand-in)."""

from __future__ import annotations

import pytest
from dashutil import APP, page, sign_in, users_file
from serviceutil import spec_text

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
