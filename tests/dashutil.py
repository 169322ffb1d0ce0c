"""Helpers for the tests that drive the dashboard: open a page in AppTest, read what it shows."""

from __future__ import annotations

import json
from pathlib import Path

APP = Path(__file__).parents[1] / "dashboard" / "app.py"


def page(at, path: str, **query):
    """Run the app on its default page (registering the navigation), then on `path` with ?query."""
    at.query_params.update({k: str(v) for k, v in query.items()})
    at.run()
    if path != "views/studies.py":
        at.switch_page(path)
        at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


USER, PASSWORD = "ada", "correct horse battery"


def users_file(folder: Path) -> Path:
    """A dashboard users file with USER (for NAS_DASHBOARD_USERS)."""
    from nas.auth import add_user

    path = folder / "dashboard-users"
    add_user(path, USER, PASSWORD)
    return path


def sign_in(at, user: str = USER, password: str = PASSWORD):
    """Sign in through the sidebar's form, as a person would."""
    at.text_input(key="nas_user").input(user)
    at.text_input(key="nas_secret").input(password)
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def figures(at) -> list[dict]:
    """Every plotly figure on the page, as plotly JSON."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def texts(at) -> str:
    """Everything written as text on the page (markdown, captions, infos, errors, successes...)."""
    parts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def values(array) -> list:
    """A plotly JSON array as a list: plain, or binary (`{"dtype", "bdata"}`, as plotly sends numpy arrays)."""
    if isinstance(array, dict) and "bdata" in array:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)
