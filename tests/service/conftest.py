"""Service-mode fixtures: a fresh PostgreSQL database per module, and (for the slow tests) the compose
topology on loopback without Docker: a Ray head started with `ray start --head` and an MLflow server."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import pytest
from serviceutil import (
    BIN,
    create_database,
    drop_database,
    free_port,
    postgres_problem,
    start,
    stop,
    wait_for,
)


@pytest.fixture(scope="session", autouse=True)
def _no_user_config(tmp_path_factory):
    """The tests see no ~/.config/hybrid-nas/config.toml and no service variables of the shell they run in."""
    empty = tmp_path_factory.mktemp("config") / "config.toml"
    empty.write_text("")
    names = ("NAS_DATABASE_URL", "NAS_STORAGE", "NAS_TRACKING", "NAS_RAY_ADDRESS")
    saved = {k: os.environ.pop(k) for k in names if k in os.environ}
    os.environ["NAS_CONFIG"] = str(empty)
    yield empty
    os.environ.pop("NAS_CONFIG", None)
    os.environ.update(saved)


@pytest.fixture(scope="session")
def postgres():
    problem = postgres_problem()
    if problem is not None:
        pytest.skip(problem)
    return True


@pytest.fixture(scope="module")
def db_url(postgres):
    """A database of its own for each test module, dropped afterwards."""
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def env(db_url, tmp_path, _no_user_config):
    """The environment of a `nas` subprocess in service mode (MLflow: a PostgreSQL store unless changed)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("NAS_", "RAY_ADDRESS"))}
    e.update(NAS_CONFIG=str(_no_user_config), NAS_DATABASE_URL=db_url, NAS_HOME=str(tmp_path / "home"),
             PYTHONUNBUFFERED="1", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    root = str(Path(__file__).parents[2])
    e["PYTHONPATH"] = root + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """A Ray head on a free port (not 6379: Redis may hold it), token authentication on, as in compose."""
    port = free_port()
    log = tmp_path_factory.mktemp("ray") / "head.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # its own temp dir (short: socket paths have a length limit): `ray start` records its address in
    # <temp dir>/ray_current_cluster, where a later ray.init() without an address would find it
    temp = tempfile.mkdtemp(prefix="nasray-", dir="/tmp")
    proc = start([str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                  "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"], env, log)
    try:
        wait_for("the Ray head", lambda: proc.poll() is None and "Ray runtime started" in log.read_text(), 90,
                 logs=(log,))
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc, grace=20)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(postgres, tmp_path_factory):
    """`mlflow server` on a PostgreSQL backend store and a free port, serving its artifacts."""
    url = create_database("nas_test_mlflow")
    tmp = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = tmp / "server.log"
    proc = start([str(BIN / "mlflow"), "server", "--backend-store-uri", url, "--artifacts-destination",
                  str(tmp / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                 dict(os.environ), log, cwd=tmp)
    base = f"http://127.0.0.1:{port}"

    def healthy():
        assert proc.poll() is None, "mlflow server exited"
        with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
            return r.status == 200

    try:
        wait_for("the MLflow server", healthy, 120, every=0.5, logs=(log,))
        yield base
    finally:
        stop(proc, grace=15)
        drop_database(url)

