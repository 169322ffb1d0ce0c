"""Where things are: every `NAS_*` setting, read in one place.

    s = settings()
    s.storage          # the Optuna storage of `nas run`: NAS_STORAGE, else sqlite under NAS_HOME
    s.tracking         # the MLflow store: NAS_TRACKING, else sqlite under NAS_HOME
    s.database_url     # the service's queue (NAS_DATABASE_URL); None in the embedded mode

Each setting comes from its environment variable, else from the TOML file (`NAS_CONFIG`, else
`~/.config/hybrid-nas/config.toml`), never from the repository:

    database_url = "postgresql+psycopg://nas:SECRET@db.example:5432/nas"   # the queue; NAS_DATABASE_URL
    storage_url  = "postgresql+psycopg://nas:SECRET@db.example:5432/nas"   # Optuna; NAS_STORAGE
    tracking_url = "http://mlflow.example:5000"                            # MLflow; NAS_TRACKING
    ray_address  = "ray-head.example:6380"                                  # NAS_RAY_ADDRESS

    dashboard_users = "/etc/hybrid-nas/dashboard-users"                    # NAS_DASHBOARD_USERS

(the dashboard's users, `nas.auth`: `nas user add NAME` writes the file; default `dashboard-users` beside
the config file), and three numbers, in seconds, for every database connection (PostgreSQL's; SQLite
waits for its lock):

    db_connect_timeout   = 10    # NAS_DB_CONNECT_TIMEOUT: a server that does not answer fails this soon
    db_statement_timeout = 60    # NAS_DB_STATEMENT_TIMEOUT: the longest one statement may run
    db_retry             = 600   # NAS_DB_RETRY: how long a study's reads and writes are retried (with backoff)
                                 # through an outage before the study fails

Keep passwords out of the URLs where you can: PostgreSQL's client reads `PGPASSWORD` or `~/.pgpass`
(`PGPASSFILE`) for a URL without one. Wherever a URL is shown, logged or stored it goes through
`mask_url`, which hides its password.

`NAS_HOME` (default `.nas` in the working directory) holds the embedded default's files. Nothing is read
at import time; `settings()` reads the environment and the file once, and again only when a `NAS_*`
variable or the file changed.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from search_spaces.config import ConfigError

__all__ = ["CONFIG_KEYS", "SECONDS", "Settings", "config_path", "mask_url", "normalize_url", "settings"]

# config-file key -> environment variable
CONFIG_KEYS = {
    "database_url": "NAS_DATABASE_URL",
    "storage_url": "NAS_STORAGE",
    "tracking_url": "NAS_TRACKING",
    "ray_address": "NAS_RAY_ADDRESS",
    "db_connect_timeout": "NAS_DB_CONNECT_TIMEOUT",
    "db_statement_timeout": "NAS_DB_STATEMENT_TIMEOUT",
    "db_retry": "NAS_DB_RETRY",
    "dashboard_users": "NAS_DASHBOARD_USERS",
}
# the keys that are numbers of seconds, and their defaults
SECONDS = {"db_connect_timeout": 10.0, "db_statement_timeout": 60.0, "db_retry": 600.0}
_ENV = ("NAS_HOME", "NAS_CONFIG", "XDG_CONFIG_HOME", *CONFIG_KEYS.values())


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None = None
    storage_url: str | None = None
    tracking_url: str | None = None
    ray_address: str | None = None
    db_connect_timeout: float = SECONDS["db_connect_timeout"]
    db_statement_timeout: float = SECONDS["db_statement_timeout"]
    db_retry: float = SECONDS["db_retry"]
    dashboard_users: str | None = None
    source: str | None = None  # the config file read, if any

    @property
    def users_file(self) -> Path:
        """The dashboard's users (`nas.auth`): NAS_DASHBOARD_USERS, else `dashboard-users` beside the config
        file."""
        return Path(self.dashboard_users).expanduser() if self.dashboard_users else config_path().parent / \
            "dashboard-users"

    @property
    def storage(self) -> str:
        """The Optuna storage a study uses unless its spec names one."""
        return self.storage_url or f"sqlite:///{self.home / 'studies.db'}"

    @property
    def tracking(self) -> str:
        """The MLflow tracking URL a study uses unless its spec names one."""
        return self.tracking_url or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def service_storage(self) -> str | None:
        """The Optuna storage of service mode: its own setting, else the queue's database."""
        return self.storage_url or self.database_url


def config_path() -> Path:
    if os.environ.get("NAS_CONFIG"):
        return Path(os.environ["NAS_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "hybrid-nas" / "config.toml"


def _read_config_file(path: Path, required: bool) -> dict[str, str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"NAS_CONFIG names {path}, which does not exist") from None
        return {}
    except OSError as e:
        raise ConfigError(f"cannot read the config file {path}: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"the config file {path} is not valid TOML: {e}") from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"the config file {path} has unknown key {unknown[0]!r}; use {', '.join(CONFIG_KEYS)}")
    bad = [k for k, v in data.items() if k not in SECONDS and not isinstance(v, str)]
    if bad:
        raise ConfigError(f"{bad[0]} in the config file {path} must be a string (a URL in quotes)")
    return data


def _seconds(key: str, value: object, where: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 < seconds < 1e6:
        raise ConfigError(f"{where} must be a number of seconds above 0 (default {SECONDS[key]:g}), not {value!r}")
    return seconds


@functools.lru_cache(maxsize=8)
def _load(env: tuple[tuple[str, str | None], ...], path: Path, stamp: tuple[int, int] | None) -> Settings:
    data = _read_config_file(path, required=bool(os.environ.get("NAS_CONFIG")))
    values: dict[str, object] = {}
    for key, var in CONFIG_KEYS.items():
        if key in SECONDS:
            raw, where = (os.environ[var], var) if os.environ.get(var) else (data.get(key), f"{key} in {path}")
            values[key] = SECONDS[key] if raw is None else _seconds(key, raw, where)
        else:
            values[key] = os.environ.get(var) or data.get(key) or None
    home = Path(os.environ.get("NAS_HOME") or ".nas")
    return Settings(home=home, **values, source=str(path) if data else None)  # type: ignore[arg-type]


def settings() -> Settings:
    """The settings as the environment and the config file give them now (each variable wins over its key)."""
    path = config_path()
    try:
        st = path.stat()
        stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    return _load(tuple((var, os.environ.get(var)) for var in _ENV), path, stamp)


# ----- URLs -------------------------------------------------------------------------------------------
def normalize_url(url: str) -> str:
    """`postgres://` and `postgresql://` mean psycopg 3 here (psycopg2 is not installed)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


_SECRET_PARAM = re.compile(r"(?i)\b(password|passwd|pwd|token|secret|api_key|access_key)=[^&;\s]*")


def mask_url(url: str | None) -> str:
    """A URL fit to show or log: its password (and any password= or token= query parameter) replaced by ***."""
    if not url:
        return str(url)
    masked = url
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        netloc, sep, path = rest.partition("/")
        if "@" in netloc:
            creds, host = netloc.rsplit("@", 1)
            if ":" in creds:
                creds = creds.split(":", 1)[0] + ":***"
            masked = f"{scheme}://{creds}@{host}{sep}{path}"
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", masked)
