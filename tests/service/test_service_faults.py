"""Fault injection on the real service: PostgreSQL behind a loopback proxy the test controls (outages,
hangs), Ray, MLflow and `nas serve` processes. What a skeptical operator tried (issue 17), each checked
for what a user would notice: an error in one sentence within seconds, no finished trial lost, no
architecture trained twice, running trials alive through a database outage, no password anywhere, Ray
on loopback only.

Each test adds its row to test-artifacts/service-faults.md (the fault, the trials, trials lost,
architectures trained twice, what else was seen), with the machine and the command: the table that
docs/service.md shows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from faultproxy import FaultProxy
from serviceutil import alive, free_port, nas, serve, spec_data, spec_text, start, stop, wait_for

from nas import record, store
from nas.service import db, queue

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
TABLE = ROOT / "test-artifacts" / "service-faults.json"
MARKDOWN = TABLE.with_suffix(".md")


def one_sentence(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    return r.stderr


def report(fault: str, trials: int | None, lost: int | None, repeated: int | None, note: str = "") -> None:
    """One row of the fault table (test-artifacts/service-faults.{json,md}; docs/service.md shows it)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _report import machine
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(TABLE.read_text()) if TABLE.exists() else {}
    rows[fault] = {"trials": trials, "lost": lost, "repeated": repeated, "note": note, "time": time.time()}
    TABLE.write_text(json.dumps(rows, indent=1))
    cell = lambda v: "–" if v is None else str(v)  # noqa: E731
    lines = [f"`pytest tests/service/test_service_faults.py -m slow` on {machine()}, PostgreSQL "
             f"{_server_version()} behind the tests' loopback proxy; {time.strftime('%Y-%m-%d')}", "",
             "| fault | trials | trials lost | architectures trained twice | also seen |", "|---|---|---|---|---|"]
    lines += [f"| {f} | {cell(r['trials'])} | {cell(r['lost'])} | {cell(r['repeated'])} | {r['note']} |"
              for f, r in rows.items()]
    MARKDOWN.write_text("\n".join(lines) + "\n")


def _server_version() -> str:
    import psycopg
    from serviceutil import ADMIN_URL

    with psycopg.connect(ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5) as c:
        return c.execute("SHOW server_version").fetchone()[0].split()[0]


@pytest.fixture
def proxy(db_url):
    port = int(db_url.rsplit(":", 1)[1].split("/")[0])
    with FaultProxy(port) as p:
        yield p


# ----- a database that does not answer ---------------------------------------------------------------------
def test_a_black_hole_database_fails_in_seconds_with_one_sentence(env, db_url, proxy):
    proxy.hang()  # accepts TCP, never answers
    e = {**env, "NAS_DATABASE_URL": proxy.url(db_url), "NAS_DB_CONNECT_TIMEOUT": "2"}
    took = {}
    for args in (("list",), ("show", "1"), ("serve", "--exit-when-idle"), ("db", "upgrade")):
        t0 = time.monotonic()
        r = nas(*args, env=e, timeout=60)
        took[" ".join(args)] = time.monotonic() - t0
        said = one_sentence(r)
        assert "cannot reach the queue database" in said and "connection timeout expired" in said, said
        assert f"127.0.0.1:{proxy.port}" in said and took[" ".join(args)] < 20, (args, took)
    report("database port that accepts TCP and never answers (`nas list`, `show`, `serve`, `db upgrade`)", None,
           None, None, "exit 2 and one sentence in " + ", ".join(f"{t:.1f}" for t in took.values())
           + " s (NAS_DB_CONNECT_TIMEOUT=2, Python's start included)")


def test_a_statement_that_runs_past_its_timeout_is_stopped(db_url, monkeypatch):
    monkeypatch.setenv("NAS_DB_STATEMENT_TIMEOUT", "1")
    url = db_url + "?application_name=statement-timeout"  # an engine of its own, made with this setting
    t0 = time.monotonic()
    with pytest.raises(sa.exc.OperationalError, match="statement timeout"), store.engine(url).connect() as c:
        c.execute(sa.text("SELECT pg_sleep(30)"))
    took = time.monotonic() - t0
    assert took < 10
    assert store.transient(sa.exc.OperationalError("x", {}, Exception()))
    store.close("statement-timeout")
    report("a statement that runs for 30 s (NAS_DB_STATEMENT_TIMEOUT=1)", None, None, None,
           f"cancelled by the server after {took:.1f} s; a transient error, so a study's call is retried")


# ----- nas list reads what it shows --------------------------------------------------------------------------
def test_listing_the_queue_never_reads_the_specs(db_url):
    db.upgrade(db_url)
    i = queue.submit(spec_text("listed"), url=db_url)
    big = {**spec_data("listed"), "description": "x" * 8_000_000}  # a row as an old version could store
    with store.engine(db_url).begin() as c:
        c.execute(sa.update(db.StudyRow).where(db.StudyRow.id == i).values(spec=big))
    seen: list[str] = []

    def record_sql(conn, cursor, statement, *args):
        seen.append(statement)

    eng = store.engine(db_url)
    sa.event.listen(eng, "before_cursor_execute", record_sql)
    try:
        t0 = time.monotonic()
        (s,) = [s for s in queue.list_studies(url=db_url) if s.id == i]
        took = time.monotonic() - t0
    finally:
        sa.event.remove(eng, "before_cursor_execute", record_sql)
    selects = [q for q in seen if "FROM nas_studies" in q]
    assert selects and not any(re.search(r"nas_studies\.spec(?!\s*(->|#>))", q) for q in selects), selects
    assert s.kind == "search" and s.budget_trials == 2 and s.spec == {} and took < 1.0
    assert len(queue.get_study(i, url=db_url).spec["description"]) == 8_000_000  # one study: all of it


# ----- Ray on loopback ---------------------------------------------------------------------------------------
def listening(pgid: int) -> list[str]:
    """The local addresses that processes of group `pgid` listen on (TCP, `ss -ltnp`)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                pids.add(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines()
            if any(int(p) in pids for p in re.findall(r"pid=(\d+)", line))]


def loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "::1", "::ffff:127.0.0.1") or host.startswith("127.")


def test_ray_started_by_nas_serve_and_nas_run_listens_on_loopback_only(env, db_url, tmp_path):
    log = tmp_path / "serve.log"
    proc = serve(env, log, cwd=tmp_path)  # no --ray-address: a local Ray of its own
    try:
        wait_for("the scheduler to start its Ray", lambda: "serving" in log.read_text(), 120, logs=(log,))
        addresses = wait_for("Ray's processes to listen", lambda: (a := listening(proc.pid)) and len(a) >= 4 and a,
                             60, logs=(log,))
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
    assert all(loopback(a) for a in addresses), addresses

    spec = tmp_path / "run.yaml"
    spec.write_text(spec_text("ray-bind", trials=1, steps=200, storage=f"sqlite:///{tmp_path / 's.db'}",
                              tracking=f"sqlite:///{tmp_path / 'm.db'}"))
    out = tmp_path / "run.log"
    run = start([sys.executable, "-m", "nas.cli", "run", str(spec)], env, out, cwd=tmp_path)
    try:
        run_addresses = wait_for("nas run's Ray to listen",
                                 lambda: (a := listening(run.pid)) and len(a) >= 4 and a, 120, logs=(out,))
    finally:
        stop(run)
    assert all(loopback(a) for a in run_addresses), run_addresses
    report("Ray started by `nas serve` and by `nas run` (`ss -ltnp`)", None, None, None,
           f"{len(addresses)} and {len(run_addresses)} listening sockets, every one on 127.0.0.1")


# ----- studies through faults -------------------------------------------------------------------------------
def trials(db_url, name):
    return optuna.load_study(study_name=name, storage=store.storage(db_url)).get_trials()


def complete(db_url, name):
    return {t.number: (t.values, t.datetime_complete) for t in trials(db_url, name) if t.state.name == "COMPLETE"}


def lost_since(before: dict, after: dict) -> int:
    """Finished trials whose record changed or vanished since `before`."""
    return sum(1 for n, kept in before.items() if after.get(n) != kept)


def repeats(db_url, name) -> int:
    """Architectures trained more than once: trials that trained (not taking a twin's result) sharing a key."""
    keys = [t.user_attrs[record.ARCH_KEY] for t in trials(db_url, name)
            if record.ARCH_KEY in t.user_attrs and t.user_attrs.get(record.DUPLICATE_OF) is None]
    return len(keys) - len(set(keys))


def logged(mlflow_server, name) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(f"nas/{name}")
    return [r.data.tags["nas.trial"] for r in client.search_runs([exp.experiment_id], max_results=1000)
            if "nas.trial" in r.data.tags]


def in_flight(db_url, name, since: float = 0.0) -> dict[int, int]:
    """trial -> the pid of its worker, for trials whose progress was reported after `since`."""
    return {t.number: t.user_attrs["progress"]["pid"] for t in trials(db_url, name)
            if t.state.name == "RUNNING" and (t.user_attrs.get("progress") or {}).get("time", 0) > since}


@pytest.fixture
def service(env, mlflow_server, tmp_path):
    return {**env, "NAS_TRACKING": mlflow_server}, tmp_path


def test_a_database_outage_leaves_the_running_trials_alive(service, db_url, proxy, ray_head, mlflow_server):
    env, tmp = service
    env = {**env, "NAS_DATABASE_URL": proxy.url(db_url)}  # the scheduler reaches the database through the proxy
    name = "outage"
    i = queue.submit(spec_text(name, trials=2, concurrency=2, steps=1500), url=db_url)
    log = tmp / "serve.log"
    proc = serve(env, log, "--ray-address", ray_head, cwd=tmp)  # presumed dead after 30 s: no takeover in 10
    try:
        workers = wait_for("both trials to report progress", lambda: (w := in_flight(db_url, name)) and
                           len(w) == 2 and w, 180, logs=(log,))
        proxy.outage(10)
        back = time.time()
        assert all(alive(pid) for pid in workers.values()), "a worker died in the outage"
        wait_for("the study to finish", lambda: queue.get_study(i, url=db_url).status in ("done", "failed"), 300,
                 every=1, logs=(log,))
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
    s = queue.get_study(i, url=db_url)
    assert s.status == "done" and s.attempts == 1, s.error  # never taken over, never failed
    assert sorted(complete(db_url, name)) == [0, 1] and len(trials(db_url, name)) == 2
    for t in trials(db_url, name):  # finished after the outage by the worker that ran it before: not restarted
        assert t.datetime_complete.timestamp() > back and t.user_attrs["progress"]["pid"] == workers[t.number]
    assert sorted(logged(mlflow_server, name)) == ["0", "1"]
    said = log.read_text()
    assert "the database did not answer" in said or "heartbeat of study" in said  # the outage was felt
    report("database outage of 10 s with two trials running", 2, 0, repeats(db_url, name),
           "both workers alive throughout; the study was never taken over")


def test_an_outage_takeover_a_kill_and_a_pause_never_lose_or_retrain(service, db_url, proxy, ray_head,
                                                                    mlflow_server):
    """A seeded study through three faults in turn: a database outage longer than --stale-after (another
    scheduler takes over), that scheduler killed with SIGKILL (the first takes over again), a pause and a
    resume. No finished trial is lost, and no architecture is trained twice: the sampler continues rather
    than replaying, and a repeat it proposes takes the result the study has."""
    env, tmp = service
    name = "faults"
    budget = 7  # more than the space's five architectures: some proposals must repeat one
    i = queue.submit(spec_text(name, trials=budget, steps=300), url=db_url)
    logs = [tmp / "b.log", tmp / "c.log"]
    fast = ("--ray-address", ray_head, "--heartbeat", "0.5", "--stale-after", "4")
    b = serve({**env, "NAS_DATABASE_URL": proxy.url(db_url)}, logs[0], *fast, cwd=tmp)
    c = None
    lost = 0

    def takeovers() -> int:
        return [e.kind for e in queue.events(i, url=db_url)].count("taken-over")

    try:
        wait_for("a trial done and one in flight", lambda: complete(db_url, name) and in_flight(db_url, name),
                 240, logs=logs[:1])
        before = complete(db_url, name)
        proxy.down()  # b is cut off from its database for longer than --stale-after
        c = serve(env, logs[1], *fast, cwd=tmp)
        wait_for("the takeover after the outage", lambda: takeovers() == 1, 60, logs=logs)
        proxy.up()
        since = time.time()
        wait_for("a trial in flight under the new owner", lambda: in_flight(db_url, name, since), 120, logs=logs)
        lost += lost_since(before, complete(db_url, name))

        before = complete(db_url, name)
        os.killpg(c.pid, signal.SIGKILL)
        c.wait(10)
        wait_for("the takeover after the kill", lambda: takeovers() == 2, 60, logs=logs)
        # paused at once: the trial the killed scheduler had in flight is still to train, so the pause has work
        # to stop (waiting for it in flight first let the study finish before the runner saw the request)
        queue.pause(i, url=db_url)
        wait_for("the pause", lambda: queue.get_study(i, url=db_url).status == "paused", 30, logs=logs)
        queue.resume(i, url=db_url)
        wait_for("the study to finish", lambda: queue.get_study(i, url=db_url).status in ("done", "failed"), 300,
                 every=1, logs=logs)
        lost += lost_since(before, complete(db_url, name))
    finally:
        proxy.up()
        assert stop(b) == 0, logs[0].read_text()[-3000:]
        if c is not None:
            stop(c)
    s = queue.get_study(i, url=db_url)
    kinds = [e.kind for e in queue.events(i, url=db_url)]
    assert s.status == "done", (s.error, kinds)
    assert kinds.count("taken-over") == 2 and "paused" in kinds and "lost" in kinds, kinds
    ts = trials(db_url, name)
    assert len(complete(db_url, name)) == budget == len(ts)
    repeated = repeats(db_url, name)
    copies = [t for t in ts if t.user_attrs.get(record.DUPLICATE_OF) is not None]
    assert copies, "the sampler never repeated an architecture: the test did not test that"
    for t in copies:  # the result taken, not trained again
        twin = next(x for x in ts if x.number == t.user_attrs[record.DUPLICATE_OF])
        assert t.values == twin.values and t.user_attrs["result"] == twin.user_attrs["result"]
    assert sorted(logged(mlflow_server, name), key=int) == [str(n) for n in range(budget)]  # each recorded once
    assert lost == 0 and repeated == 0
    report("database outage past --stale-after (taken over), that scheduler killed with SIGKILL (taken over "
           "again), pause and resume", budget, lost, repeated,
           f"{len(copies)} repeated proposal(s) took the trained result instead of training")


def test_cancelled_trials_do_not_count_against_the_budget_after_a_resume(service, db_url, ray_head):
    env, tmp = service
    name = "cancel-budget"
    i = queue.submit(spec_text(name, trials=3, concurrency=1, steps=400), url=db_url)
    log = tmp / "serve.log"
    proc = serve(env, log, "--ray-address", ray_head, "--heartbeat", "0.5", "--stale-after", "5", cwd=tmp)
    try:
        wait_for("a trial in flight", lambda: in_flight(db_url, name), 120, logs=(log,))
        queue.cancel(i, url=db_url)
        wait_for("the cancel", lambda: queue.get_study(i, url=db_url).status == "cancelled", 30, logs=(log,))
        queue.resume(i, url=db_url)
        wait_for("the study to finish", lambda: queue.get_study(i, url=db_url).status in ("done", "failed"), 300,
                 every=1, logs=(log,))
    finally:
        assert stop(proc) == 0
    states = [record.trial_status(t.state.name, t.user_attrs) for t in trials(db_url, name)]
    assert states.count("complete") == 3 and states.count("cancelled") == 1, states
    done = queue.events(i, url=db_url)[-1]
    assert done.kind == "done" and "3 complete, 0 failed" in done.message and "1 cancelled" in done.message
    report("cancel with a trial running, then resume", 3, 0, repeats(db_url, name),
           "the cancelled trial does not count against the budget: 3 complete of 3, 1 cancelled")


# ----- secrets ----------------------------------------------------------------------------------------------
PLANTED = "Planted-Pw-7c1e9"


def database_text(url: str) -> str:
    """Every row of every table of the database at `url`, as text."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, connect_timeout=5) as c:
        tables = [r[0] for r in c.execute(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'")]
        return "\n".join(str(row[0]) for t in tables for row in c.execute(f"SELECT t::text FROM {t} t"))


def test_no_password_is_stored_logged_or_printed(service, db_url, ray_head, mlflow_server):
    """A full service run with a password planted in the database URL, the MLflow URL and a spec's own
    storage (PostgreSQL here trusts loopback and never checks it): the password is nowhere in the database,
    MLflow's store, the scheduler's log or any output of the command line."""
    from serviceutil import ADMIN_URL

    env, tmp = service
    secret_db = db_url.replace("://postgres@", f"://postgres:{PLANTED}@")
    secret_mlflow = mlflow_server.replace("http://", f"http://nas:{PLANTED}@")
    assert PLANTED in secret_db and PLANTED in secret_mlflow
    env = {**env, "NAS_DATABASE_URL": secret_db, "NAS_TRACKING": secret_mlflow, "NAS_RAY_ADDRESS": ray_head}
    spec = tmp / "secret.yaml"
    spec.write_text(spec_text("secret", trials=2, storage=f"postgresql+psycopg://nas:{PLANTED}@db.elsewhere/nas"))
    other = tmp / "other.yaml"
    other.write_text(spec_text("other", trials=1, steps=2000))
    outputs: dict[str, subprocess.CompletedProcess] = {}

    def run(*args: str) -> None:
        outputs[" ".join(args)] = nas(*args, env=env, cwd=tmp)

    run("db", "upgrade")
    run("db", "current")
    run("submit", str(spec))
    run("submit", str(other), "--priority", "-1")
    run("list")
    log = tmp / "serve.log"
    proc = serve(env, log, "--heartbeat", "0.5", "--stale-after", "5", cwd=tmp)
    try:
        wait_for("the first study", lambda: queue.get_study("secret", url=db_url).status in ("done", "failed"),
                 240, every=1, logs=(log,))
        wait_for("the second study to run", lambda: queue.get_study("other", url=db_url).status == "running", 60,
                 logs=(log,))
        run("show", "secret")
        run("pause", "other")
        wait_for("the pause", lambda: queue.get_study("other", url=db_url).status == "paused", 30, logs=(log,))
        run("resume", "other")
        run("cancel", "other")
        wait_for("the cancel", lambda: queue.get_study("other", url=db_url).status == "cancelled", 60, logs=(log,))
        run("show", "other")
        run("list")
        run("status", "--storage", secret_db)
        run("status", "secret", "--storage", secret_db)
        run("pareto", "secret", "--storage", secret_db)
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
    dash = tmp / "dashboard.log"
    board = start([sys.executable, "-m", "nas.cli", "dashboard", "--port", str(free_port()),
                   "--storage", secret_db, "--tracking", secret_mlflow], env, dash, cwd=tmp)
    try:
        wait_for("the dashboard to start", lambda: "dashboard on" in dash.read_text(), 60, logs=(dash,))
    finally:
        stop(board)
    run("submit", str(tmp / "missing.yaml"))  # errors too
    bad = tmp / "bad.yaml"
    bad.write_text(spec_text("bad", space="no-such-space"))
    run("submit", str(bad))

    assert queue.get_study("secret", url=db_url).status == "done"
    assert all(r.returncode in (0, 2) for r in outputs.values()), {k: r.stderr[-500:] for k, r in outputs.items()}
    said = "\n".join(r.stdout + r.stderr for r in outputs.values())
    assert "submitted study" in said and "***" in log.read_text()  # the URLs were shown, masked
    for where, text in {"command line": said, "scheduler log": log.read_text(),
                        "dashboard log": dash.read_text()}.items():
        assert PLANTED not in text, (where, text[text.find(PLANTED) - 300:text.find(PLANTED) + 100])
    queue_db = database_text(db_url)
    assert "db.elsewhere" in queue_db and "urls" in queue_db  # the spec's storage, masked, and the URLs event
    assert PLANTED not in queue_db, queue_db[queue_db.find(PLANTED) - 300:queue_db.find(PLANTED) + 100]
    import psycopg

    with psycopg.connect(ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        mlflow_dbs = [r[0] for r in c.execute("SELECT datname FROM pg_database WHERE datname LIKE 'nas_test_mlflow%'")]
    assert mlflow_dbs
    for name in mlflow_dbs:
        text = database_text(ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
        assert PLANTED not in text, (name, text[text.find(PLANTED) - 300:text.find(PLANTED) + 100])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("nas/secret")
    parent = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("nas.kind") == "study")
    stored = Path(client.download_artifacts(parent.info.run_id, "spec.yaml", str(tmp))).read_text()
    assert "nas:***@db.elsewhere" in stored and PLANTED not in stored
    report("a password planted in the database URL, the MLflow URL and a spec's own storage", 3, None, None,
           f"found 0 times in the queue and Optuna tables, MLflow's store and the spec it logged, the scheduler's "
           f"log, the dashboard's output and {len(outputs)} command outputs")
