"""The dashboard's users file: scrypt hashes at rest, sign-in by password or token, `nas user`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from nas import auth
from search_spaces.config import ConfigError


def test_hashes_are_salted_and_verify_only_their_secret():
    a, b = auth.hash_secret("correct horse battery"), auth.hash_secret("correct horse battery")
    assert a != b and a.startswith("scrypt$16384$8$1$") and "correct" not in a
    assert auth.verify("correct horse battery", a) and auth.verify("correct horse battery", b)
    assert not auth.verify("correct horse batterY", a) and not auth.verify("", a)
    assert not auth.verify("x", "plain-text") and not auth.verify("x", "scrypt$1$2")


def test_users_file(tmp_path):
    path = tmp_path / "users"
    assert auth.read_users(path) == {} and auth.authenticate(path, "ada", "whatever1") is None
    auth.add_user(path, "ada", "correct horse battery")
    token = auth.new_token()
    auth.add_user(path, "ci-bot", token)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert "correct horse" not in text and token not in text
    assert auth.authenticate(path, "ada", "correct horse battery") == "ada"
    assert auth.authenticate(path, "ci-bot", token) == "ci-bot"
    assert auth.authenticate(path, "ada", token) is None and auth.authenticate(path, "eve", token) is None
    with pytest.raises(ConfigError, match="at least 8 characters"):
        auth.add_user(path, "bob", "short")
    with pytest.raises(ConfigError, match="user name 'no spaces'"):
        auth.add_user(path, "no spaces", "long enough")
    auth.remove_user(path, "ci-bot")
    assert set(auth.read_users(path)) == {"ada"}
    path.write_text("ada:secret-in-clear\n")
    with pytest.raises(ConfigError, match=r"line 1 of the users file .* is not `name:scrypt\$...`"):
        auth.read_users(path)


def test_nas_user_add_with_a_token(tmp_path):
    env = {**os.environ, "NAS_DASHBOARD_USERS": str(tmp_path / "users")}
    r = subprocess.run([sys.executable, "-m", "nas.cli", "user", "add", "ci-bot", "--token"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    token = r.stdout.split("token (shown once): ")[1].split()[0]
    assert auth.authenticate(tmp_path / "users", "ci-bot", token) == "ci-bot"
    assert token not in (tmp_path / "users").read_text()
    r = subprocess.run([sys.executable, "-m", "nas.cli", "user", "list"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0 and "ci-bot" in r.stdout
