"""Who may act on the dashboard: its users file, and the hashing of their passwords and tokens.

    add_user(path, "ada", "a long passphrase")     # or add_user(path, "ci-bot", new_token())
    authenticate(path, "ada", "a long passphrase")  # -> "ada"; None for a wrong name or secret

The users file (`settings().dashboard_users`: NAS_DASHBOARD_USERS, else `dashboard-users` beside the
config file) holds one `name:hash` line per user; `nas user add NAME` writes it. A hash is scrypt's
(`scrypt$N$r$p$salt$key`, base64), so the file never holds a password or a token, and reading it tells
nothing that signs anyone in. The dashboard (`dashboard/auth.py`) signs a user in with it, or through
Streamlit's OIDC (`st.login`) where `.streamlit/secrets.toml` has an `[auth]` section.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from search_spaces.config import ConfigError

__all__ = ["NAME", "add_user", "authenticate", "hash_secret", "new_token", "read_users", "remove_user", "verify"]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_N, _R, _P = 2**14, 8, 1  # scrypt's cost: about 50 ms and 16 MB a check
MIN_SECRET = 8


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_secret(secret: str) -> str:
    """A password's or token's scrypt hash, salted: `scrypt$16384$8$1$salt$key`."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def verify(secret: str, hashed: str) -> bool:
    """Whether `secret` is the one `hashed` was made from (compared in constant time)."""
    try:
        scheme, n, r, p, salt, key = hashed.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(key)
        got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def new_token() -> str:
    """A random token to sign in with (for a shared account, or a person who would rather not pick one)."""
    return secrets.token_urlsafe(24)


def read_users(path: Path | None) -> dict[str, str]:
    """name -> hash from the users file; {} when there is none. Lines: `name:hash`; `#` starts a comment."""
    if path is None or not path.is_file():
        return {}
    users = {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, hashed = line.partition(":")
        if not NAME.fullmatch(name) or not hashed.startswith("scrypt$"):
            raise ConfigError(f"line {n} of the users file {path} is not `name:scrypt$...`; "
                              "write it with `nas user add NAME`")
        users[name] = hashed
    return users


def authenticate(path: Path | None, name: str, secret: str) -> str | None:
    """The user's name when `secret` is theirs, else None (the same work either way: no timing hint)."""
    users = read_users(path)
    hashed = users.get(name.strip())
    ok = verify(secret, hashed or _decoy())
    return name.strip() if ok and hashed is not None else None


@functools.cache
def _decoy() -> str:
    return hash_secret(new_token())


def _write(path: Path, users: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# hybrid-nas dashboard users: name:scrypt hash (`nas user add NAME`)\n")
        f.writelines(f"{n}:{h}\n" for n, h in sorted(users.items()))
    tmp.replace(path)


def add_user(path: Path, name: str, secret: str) -> None:
    """Add a user to the users file, or give them a new secret."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"user name {name!r} must be letters, digits, '.', '_', '@', '+' or '-' (at most 64)")
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"a password must have at least {MIN_SECRET} characters; or use --token for a random one")
    users = read_users(path)
    users[name] = hash_secret(secret)
    _write(path, users)


def remove_user(path: Path, name: str) -> None:
    users = read_users(path)
    if name not in users:
        raise ConfigError(f"no user {name!r} in {path}; there are {', '.join(sorted(users)) or 'none'}")
    del users[name]
    _write(path, users)
