"""Helpers for the tests that drive the dashboard: open a page in AppTest, read what it shows."""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, field
from datetime import datetime, timezone
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


@dataclass
class Queued:
    """A queue entry as `nas.service.queue.list_studies` gives it (the fields the dashboard reads)."""

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
    kind: str | None = None
    budget_trials: int | None = None

    @property
    def label(self) -> str:
        return f"{self.status} (pausing)" if self.requested == "pause" else self.status


def fake_queue(storage: str, tracking: str, entries: list[Queued],
               database_url: str = "postgresql+psycopg://nas@db.example/nas") -> types.ModuleType:
    """`nas.service.queue`'s API in memory: what the dashboard calls, recorded in `.calls` as
    ("submit", name, priority, submitted_by) and (verb, queue id, by)."""
    q = types.ModuleType("nas.service.queue")
    q.calls = []
    q.database_url = lambda: database_url
    q.service_urls = lambda url=None: (storage, tracking)
    q.list_studies = lambda url=None: list(entries)

    def submit(spec, *, priority=0, submitted_by=None, url=None, files=True):
        q.calls.append(("submit", spec.name, priority, submitted_by))
        return 7

    q.submit = submit
    for verb in ("pause", "resume", "cancel"):
        setattr(q, verb, lambda qid, url=None, by=None, verb=verb: q.calls.append((verb, qid, by)))
    return q
