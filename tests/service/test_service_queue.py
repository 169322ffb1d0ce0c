"""The queue on a real PostgreSQL: submit, claim by priority, concurrent claims, takeover, requests,
refused submissions, migrations, settings and the CLI's errors. No Ray: these take seconds."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from serviceutil import create_database, drop_database, nas, spec_data, spec_text

from nas import store
from nas.service import db, queue
from nas.service.db import EventRow, StudyRow
from nas.service.scheduler import Claim, claim, finish
from nas.settings import mask_url, settings
from search_spaces.config import ConfigError


@pytest.fixture
def url(db_url):
    """The module's database, emptied of queue rows before each test."""
    db.upgrade(db_url)
    with db.session(db_url) as s:
        s.execute(sa.delete(EventRow))
        s.execute(sa.delete(StudyRow))
        s.commit()
    return db_url


def rows(url) -> int:
    with db.session(url) as s:
        return s.scalar(sa.select(sa.func.count()).select_from(StudyRow)) + \
            s.scalar(sa.select(sa.func.count()).select_from(EventRow))


def age_heartbeat(url, study_id: int, seconds: float) -> None:
    with db.session(url) as s:
        s.execute(sa.update(StudyRow).where(StudyRow.id == study_id)
                  .values(heartbeat_at=sa.func.now() - sa.text(f"interval '{seconds} seconds'")))
        s.commit()


def test_submit_list_show_and_events(url):
    i = queue.submit(spec_text("alpha"), priority=3, submitted_by="ada", url=url)
    s = queue.get_study(i, url=url)
    assert (s.name, s.status, s.priority, s.submitted_by) == ("alpha", "queued", 3, "ada")
    assert s.optuna_study_name == "alpha"
    assert s.spec["name"] == "alpha" and list(s.spec)[:2] == ["name", "kind"]  # the spec, in its own order
    assert s.submitted_at.tzinfo is not None and s.started_at is None and s.scheduler is None
    assert queue.get_study("alpha", url=url).id == i  # by name: the newest submission
    assert [x.id for x in queue.list_studies(url=url)] == [i]
    (e,) = queue.events(i, url=url)
    assert e.kind == "submitted" and "ada" in e.message and "priority 3" in e.message


def test_claims_go_by_priority_then_age(url):
    ids = {name: queue.submit(spec_text(name), priority=p, url=url)
           for name, p in [("low", 0), ("high", 5), ("mid", 1), ("mid2", 1)]}
    order = [claim(url, "s1").name for _ in range(4)]
    assert order == ["high", "mid", "mid2", "low"]
    assert claim(url, "s1") is None
    s = queue.get_study(ids["high"], url=url)
    assert s.status == "running" and s.scheduler == "s1" and s.attempts == 1
    assert s.heartbeat_at and s.started_at
    assert [e.kind for e in queue.events(ids["high"], url=url)] == ["submitted", "claimed"]


def test_concurrent_schedulers_never_claim_one_study_twice(url):
    n = 24
    for k in range(n):
        queue.submit(spec_text(f"c{k}"), priority=k % 3, url=url)
    start = threading.Barrier(6)

    def scheduler(me: str) -> list[int]:
        start.wait()
        got = []
        while (s := claim(url, me)) is not None:
            got.append(s.id)
        return got

    with ThreadPoolExecutor(6) as pool:
        claimed = list(pool.map(scheduler, [f"s{k}" for k in range(6)]))
    every = [i for got in claimed for i in got]
    assert len(every) == len(set(every)) == n
    assert sum(1 for got in claimed if got) >= 2  # they did run side by side
    with db.session(url) as s:
        claims = s.scalars(sa.select(EventRow.study_id).where(EventRow.kind == "claimed")).all()
    assert sorted(claims) == sorted(every)


def test_a_stale_study_is_taken_over_and_its_old_scheduler_notices(url):
    i = queue.submit(spec_text("stale"), url=url)
    assert claim(url, "old").id == i
    assert claim(url, "new", stale_after=30) is None  # its heartbeat is fresh
    with Claim(url, i, "old", heartbeat_every=0.2) as old:
        old.beat(force=True)
        assert not old.lost and old.should_stop() is None
        age_heartbeat(url, i, 60)
        taken = claim(url, "new", stale_after=30)
        assert taken.id == i and taken.scheduler == "new" and taken.attempts == 2
        old.beat(force=True)
        assert old.lost_to == "new" and old.should_stop() == "pause"
    assert not finish(url, i, "old", "done")  # the old owner cannot close it
    s = queue.get_study(i, url=url)
    assert s.status == "running" and s.scheduler == "new"
    kinds = [e.kind for e in queue.events(i, url=url)]
    assert kinds == ["submitted", "claimed", "taken-over", "lost"]
    assert finish(url, i, "new", "done", "2 complete")
    assert queue.get_study(i, url=url).status == "done"


def test_requests_to_a_running_study_reach_its_scheduler(url):
    i = queue.submit(spec_text("req"), url=url)
    claim(url, "me")
    c = Claim(url, i, "me", heartbeat_every=1, check_every=0)
    assert c.should_stop() is None
    assert queue.pause(i, url=url).label == "running (pausing)"
    assert c.should_stop() == "pause"
    assert queue.resume(i, url=url).requested is None  # a pause not yet carried out is withdrawn
    assert c.should_stop() is None
    queue.cancel(i, url=url)
    assert c.should_stop() == "cancel"
    with pytest.raises(ConfigError, match="being cancelled"):
        queue.pause(i, url=url)
    assert finish(url, i, "me", "cancelled")
    s = queue.get_study(i, url=url)
    assert s.status == "cancelled" and s.finished_at and s.requested is None


def test_queued_studies_pause_resume_and_cancel_at_once(url):
    i = queue.submit(spec_text("q"), url=url)
    assert queue.pause(i, url=url).status == "paused"
    assert claim(url, "me") is None  # a paused study is not claimed
    assert queue.resume(i, url=url).status == "queued"
    assert queue.cancel(i, url=url).status == "cancelled"
    with pytest.raises(ConfigError, match=r"study \d+ \(q\) is already cancelled"):
        queue.cancel(i, url=url)
    with pytest.raises(ConfigError, match="only a queued or running study"):
        queue.pause(i, url=url)
    assert queue.resume(i, url=url).status == "queued"  # cancelled studies can be queued again
    kinds = [e.kind for e in queue.events(i, url=url)]
    assert kinds == ["submitted", "paused", "resumed", "cancelled", "resumed"]


def test_a_running_study_whose_scheduler_died_is_cancelled_at_once(url):
    i = queue.submit(spec_text("orphan"), url=url)
    claim(url, "dead")
    age_heartbeat(url, i, 120)
    s = queue.cancel(i, url=url)
    assert s.status == "cancelled" and s.requested is None
    assert "had stopped" in queue.events(i, url=url)[-1].message


def test_one_live_submission_per_name(url):
    i = queue.submit(spec_text("dup"), url=url)
    with pytest.raises(ConfigError, match=rf"study 'dup' is already queued as id {i}"):
        queue.submit(spec_text("dup"), url=url)
    queue.cancel(i, url=url)
    j = queue.submit(spec_text("dup"), url=url)  # a finished one may be submitted again (it resumes)
    with pytest.raises(ConfigError, match="cancel it first"):
        queue.resume(i, url=url)
    assert queue.get_study("dup", url=url).id == j


BAD = [
    ("name: x\nspace: [unclosed\n", "not valid YAML"),
    ("- a list\n", "must be a mapping"),
    (spec_text("ok", budgett={"trials": 2}), "unknown key 'budgett'"),
    (spec_text("ok", space="ratios"), "unknown search space 'ratios'"),
    (spec_text("a b"), "study name 'a b'"),
    (spec_text("ok", objectives=[{"metric": "accuracy"}]), "unknown metric 'accuracy'"),
]


@pytest.mark.parametrize(("text", "words"), BAD, ids=[w.split("'")[0].strip() or w for _, w in BAD])
def test_a_malformed_submission_is_refused_and_leaves_no_row(url, text, words):
    before = rows(url)
    with pytest.raises(ConfigError, match=words):
        queue.submit(text, url=url)
    with pytest.raises(ConfigError):
        queue.submit(text, priority=1, url=url)
    assert rows(url) == before


def test_a_spec_that_would_not_resume_its_study_is_refused(url, monkeypatch):
    """A study of that name already in the storage with another search cannot take the name."""
    from nas.spec import StudySpec

    existing = StudySpec.model_validate({**spec_data("taken"), "storage": url})
    store.open_study(existing)
    monkeypatch.setenv("NAS_DATABASE_URL", url)
    with pytest.raises(ConfigError, match=r"already exists in .* with a different"):
        queue.submit(spec_text("taken", objectives=[{"metric": "lm_loss"}]))
    assert rows(url) == 0
    assert queue.submit(spec_text("taken", trials=5)) > 0  # the same search with a larger budget resumes


def test_migrations_are_the_schema_and_run_once_however_many_start_together():
    url = create_database()
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: db.upgrade(url, force=True), range(4)))
        assert db.current_revision(url) == db.head_revision()
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        with db.engine(url).connect() as c:
            ctx = MigrationContext.configure(c, opts={"version_table": db.VERSION_TABLE})
            assert compare_metadata(ctx, db.Base.metadata) == []  # the models are what the migrations made
            tables = set(sa.inspect(c).get_table_names())
        assert tables == {"nas_studies", "nas_events", "nas_alembic_version"}
    finally:
        drop_database(url)


def test_settings_come_from_the_environment_over_the_config_file(tmp_path, monkeypatch):
    cfg = tmp_path / "config.toml"
    cfg.write_text('database_url = "postgresql://u:secret@db:5432/nas"\ntracking_url = "http://mlflow:5000"\n')
    monkeypatch.setenv("NAS_CONFIG", str(cfg))
    c = settings()
    assert (c.database_url, c.tracking_url, c.storage_url, c.service_storage) == (
        "postgresql://u:secret@db:5432/nas", "http://mlflow:5000", None, "postgresql://u:secret@db:5432/nas")
    assert queue.database_url() == "postgresql://u:secret@db:5432/nas"
    monkeypatch.setenv("NAS_DATABASE_URL", "postgresql+psycopg://v@other/nas")
    monkeypatch.setenv("NAS_STORAGE", "postgresql://u:secret@db:5432/optuna")
    assert queue.database_url() == "postgresql+psycopg://v@other/nas"
    assert queue.service_urls() == ("postgresql+psycopg://u:secret@db:5432/optuna", "http://mlflow:5000")
    assert mask_url("postgresql+psycopg://u:secret@db:5432/nas") == "postgresql+psycopg://u:***@db:5432/nas"
    cfg.write_text('database_url = "x"\nray_adress = "h:1"\n')
    with pytest.raises(ConfigError, match="unknown key 'ray_adress'"):
        settings()
    cfg.write_text("database_url = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        settings()
    monkeypatch.setenv("NAS_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        settings()


@pytest.mark.slow
def test_the_cli_refuses_bad_requests_in_one_sentence(url, env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec_text("bad", space="ratios"))
    r = nas("submit", str(bad), env=env)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "unknown search space 'ratios'" in r.stderr
    assert "Traceback" not in r.stderr and rows(url) == 0
    r = nas("show", "999", env=env)
    assert r.returncode == 2 and "no study '999' in the queue" in r.stderr
    r = nas("list", env={**env, "NAS_DATABASE_URL": ""})
    assert r.returncode == 2 and "no queue database is configured" in r.stderr
    r = nas("list", env={**env, "NAS_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/nas"})
    assert r.returncode == 2
    assert "cannot reach the queue database postgresql+psycopg://nobody@127.0.0.1:1/nas" in r.stderr
    good = tmp_path / "good.yaml"
    good.write_text(spec_text("good"))
    r = nas("submit", str(good), "--priority", "4", env=env)
    assert r.returncode == 0 and "submitted study" in r.stdout, r.stderr
    steps = [("list", "good"), ("pause", "paused"), ("resume", "queued"), ("cancel", "cancelled"),
             ("show", "resumed")]
    for command, words in steps:
        r = nas(command, *(() if command == "list" else ("good",)), env=env)
        assert r.returncode == 0 and words in r.stdout, (command, r.stdout, r.stderr)
    r = nas("db", "upgrade", env=env)
    assert r.returncode == 0 and "is at revision 0001" in r.stdout
    r = nas("db", "current", env=env)
    assert r.returncode == 0 and "revision 0001" in r.stdout
