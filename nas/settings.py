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

`NAS_HOME` (default `.nas` in the working directory) holds the embedded default's files. Nothing is read
at import time; `settings()` reads the environment and the file once, and again only when a `NAS_*`
variable or the file changed.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from search_spaces.config import ConfigError

__all__ = ["CONFIG_KEYS", "Settings", "config_path", "mask_url", "normalize_url", "settings"]

# config-file key -> environment variable
CONFIG_KEYS = {
    "database_url": "NAS_DATABASE_URL",
    "storage_url": "NAS_STORAGE",
    "tracking_url": "NAS_TRACKING",
    "ray_address": "NAS_RAY_ADDRESS",
}
_ENV = ("NAS_HOME", "NAS_CONFIG", "XDG_CONFIG_HOME", *CONFIG_KEYS.values())


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None = None
    storage_url: str | None = None
    tracking_url: str | None = None
    ray_address: str | None = None
    source: str | None = None  # the config file read, if any

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
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise ConfigError(f"{bad[0]} in the config file {path} must be a string (a URL in quotes)")
    return data


@functools.lru_cache(maxsize=8)
def _load(env: tuple[tuple[str, str | None], ...], path: Path, stamp: tuple[int, int] | None) -> Settings:
    data = _read_config_file(path, required=bool(os.environ.get("NAS_CONFIG")))
    values = {key: os.environ.get(var) or data.get(key) or None for key, var in CONFIG_KEYS.items()}
    home = Path(os.environ.get("NAS_HOME") or ".nas")
    return Settings(home=home, **values, source=str(path) if data else None)


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


def mask_url(url: str | None) -> str:
    """A URL fit to show or log: its password replaced by ***."""
    if not url:
        return str(url)
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (http://, a Ray address), or no SQLAlchemy installed
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
        return url
