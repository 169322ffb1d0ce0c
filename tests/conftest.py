"""Shared test helpers live in tests/ (archgen.py, profiles.py, studyutil.py, dashutil.py, kernel_inputs.py);
pyproject's pythonpath puts them on sys.path for every test folder.

The tests run in two pytest-xdist workers (`-n 2` in pyproject's addopts). Ports are free ones and
databases have unique names already; what is left to keep apart is the host's temporary directory (the
trials' speed-measurement locks, workers/turns.py, and local Ray instances' session folders live there), and
Ray's token is written once, before the workers start their clusters. A test that times itself against a
bound is marked `alone`: no other test runs while it does."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest


def _ray_token() -> None:
    """~/.ray/auth_token, as the first Ray instance would write it: two workers starting their first instance at
    once would each write one, and a cluster's processes would then read the other's."""
    path = Path.home() / ".ray" / "auth_token"
    if importlib.util.find_spec("ray") is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        if getattr(config.option, "numprocesses", None):
            _ray_token()
        return
    # short: Ray's socket paths under it have a length limit
    tmp = tempfile.mkdtemp(prefix=f"nas-{worker}-", dir="/tmp")
    config.stash[_TMPDIR] = (os.environ.get("TMPDIR"), tmp)
    os.environ["TMPDIR"] = tempfile.tempdir = tmp


def pytest_unconfigure(config: pytest.Config) -> None:
    if _TMPDIR not in config.stash:
        return
    before, tmp = config.stash[_TMPDIR]
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before
    tempfile.tempdir = None
    shutil.rmtree(tmp, ignore_errors=True)


_TMPDIR = pytest.StashKey[tuple]()


@pytest.fixture(scope="session")
def _turn_locks(tmp_path_factory):
    """Two advisory locks the workers share (in the parent of their temporary folders, the run's own): `intent`,
    which an `alone` test takes exclusively first, so the other worker starts no test meanwhile, and `busy`,
    held shared by every running test and exclusively by an `alone` one."""
    root = tmp_path_factory.getbasetemp().parent
    fds = [os.open(root / f"tests.{name}", os.O_RDWR | os.O_CREAT, 0o600) for name in ("intent", "busy")]
    yield fds
    for fd in fds:
        os.close(fd)


@pytest.fixture(autouse=True)
def _one_at_a_time_when_alone(request):
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        yield
        return
    intent, busy = request.getfixturevalue("_turn_locks")
    if request.node.get_closest_marker("alone"):
        fcntl.flock(intent, fcntl.LOCK_EX)
        fcntl.flock(busy, fcntl.LOCK_EX)  # once the other worker's test is done
    else:
        fcntl.flock(intent, fcntl.LOCK_SH)  # waits while an `alone` test waits or runs
        fcntl.flock(intent, fcntl.LOCK_UN)
        fcntl.flock(busy, fcntl.LOCK_SH)
    try:
        yield
    finally:
        fcntl.flock(busy, fcntl.LOCK_UN)
        fcntl.flock(intent, fcntl.LOCK_UN)
