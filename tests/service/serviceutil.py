"""Helpers for the service-mode tests: PostgreSQL databases, tiny specs, `nas` subprocesses, polling."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from studyutil import SPACE, micro_profile

ADMIN_URL = os.environ.get("NAS_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).parent



def spec_data(name: str, trials: int = 2, steps: int = 4, concurrency: int = 1, **kw: Any) -> dict[str, Any]:
    """A micro study; `steps` language-model steps per trial (4: about a second, 300: about fifteen)."""
    profile = micro_profile(tokens=steps * 4 * 32)
    return {"name": name, "space": SPACE, "budget": {"trials": trials}, "profile": profile,
            "sampler": "random", "concurrency": concurrency,
            "objectives": [{"metric": "synthetic_accuracy"}, {"metric": "decode_tps"}], **kw}


def spec_text(name: str, **kw: Any) -> str:
    return yaml.safe_dump(spec_data(name, **kw), sort_keys=False)


# ----- PostgreSQL ------------------------------------------------------------------------------------------
def postgres_problem() -> str | None:
    """None when the test PostgreSQL answers, else why not."""
    import psycopg

    try:
        with psycopg.connect(_libpq(ADMIN_URL), connect_timeout=3):
            return None
    except psycopg.Error as e:
        return f"no PostgreSQL at {ADMIN_URL} ({str(e).strip().splitlines()[0]}); `.ci/run` starts one"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_database(prefix: str = "nas_test") -> str:
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(ADMIN_URL), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    import psycopg

    from nas import store

    name = url.rsplit("/", 1)[1]
    store.close("/" + name)  # this process's pooled connections
    with psycopg.connect(_libpq(ADMIN_URL), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ----- processes --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nas(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """A background process in its own process group (so that killpg ends it and what it started)."""
    f = open(log, "ab")  # noqa: SIM115 - the child writes to it until it ends
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)


def serve(env: dict[str, str], log: Path, *args: str, cwd: Path | None = None) -> subprocess.Popen:
    return start([sys.executable, "-m", "nas.cli", "serve", "--poll", "0.5", *args], env, log, cwd)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 30) -> int | None:
    """Signal a process started by `start`, wait, and kill its group if it lingers."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    with contextlib.suppress(ProcessLookupError):  # children that outlived it (a local Ray)
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.3,
             logs: tuple[Path, ...] = ()) -> Any:
    """Poll `check` until it returns something truthy; fail saying `what` (with the logs' tails) otherwise."""
    t0 = time.monotonic()
    last_error = None
    while time.monotonic() - t0 < timeout:
        try:
            got = check()
            if got:
                return got
        except Exception as e:  # not there yet (a table not created, a server starting)
            last_error = e
        time.sleep(every)
    tails = "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}" for p in logs
                      if p.exists())
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last_error})\n"
                         f"{tails}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
