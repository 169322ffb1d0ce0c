"""The service's database: where it is (settings), its tables (SQLAlchemy models), and their migrations.

Settings come from the environment, else from a TOML file (`NAS_CONFIG`, else
`~/.config/hybrid-nas/config.toml`), never from the repository:

    database_url = "postgresql+psycopg://nas:SECRET@db.example:5432/nas"   # the queue; NAS_DATABASE_URL
    storage_url  = "postgresql+psycopg://nas:SECRET@db.example:5432/nas"   # Optuna; NAS_STORAGE
    tracking_url = "http://mlflow.example:5000"                            # MLflow; NAS_TRACKING
    ray_address  = "ray-head.example:6380"                                  # NAS_RAY_ADDRESS

No database URL means the embedded mode: studies run with `nas run`, and there is no queue.

Two tables, created only by the Alembic migrations in `nas/migrations/` (`nas db upgrade`; `submit`
and `nas serve` upgrade on first use): `nas_studies` (one row per submission) and `nas_events` (what
happened to it). Their names, and Alembic's version table `nas_alembic_version`, leave Optuna's own
tables alone, so the queue and the Optuna storage can share one database.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from search_spaces.arch import ConfigError

__all__ = [
    "ACTIVE",
    "STATUSES",
    "VERSION_TABLE",
    "Base",
    "EventRow",
    "QueueError",
    "ServiceConfig",
    "StudyRow",
    "config_path",
    "db_now",
    "engine",
    "mask_url",
    "normalize_url",
    "service_config",
    "session",
    "upgrade",
]

STATUSES = ("queued", "running", "paused", "done", "failed", "cancelled")
ACTIVE = ("queued", "running", "paused")  # at most one row per study name in these
REQUESTS = ("pause", "cancel")
VERSION_TABLE = "nas_alembic_version"
CONFIG_KEYS = {"database_url": "NAS_DATABASE_URL", "storage_url": "NAS_STORAGE",
               "tracking_url": "NAS_TRACKING", "ray_address": "NAS_RAY_ADDRESS"}
# pg_advisory_xact_lock key: schedulers starting together migrate one after the other
_MIGRATION_LOCK = 0x6E61735F71  # "nas_q"


class QueueError(ConfigError):
    """A queue request that cannot be done (no such study, wrong state, no database): one sentence, exit 2."""


# ----- settings ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServiceConfig:
    database_url: str | None = None
    storage_url: str | None = None
    tracking_url: str | None = None
    ray_address: str | None = None
    source: str | None = None  # the config file read, if any

    @property
    def study_storage(self) -> str | None:
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
        raise ConfigError(f"the config file {path} has unknown key {unknown[0]!r}; "
                          f"use {', '.join(CONFIG_KEYS)}")
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise ConfigError(f"{bad[0]} in the config file {path} must be a string (a URL in quotes)")
    return data


def service_config() -> ServiceConfig:
    """The service's URLs: each environment variable wins over the config file's key."""
    path = config_path()
    data = _read_config_file(path, required=bool(os.environ.get("NAS_CONFIG")))
    values = {key: os.environ.get(env) or data.get(key) or None for key, env in CONFIG_KEYS.items()}
    return ServiceConfig(**values, source=str(path) if data else None)


def normalize_url(url: str) -> str:
    """`postgres://` and `postgresql://` mean psycopg 3 here (psycopg2 is not installed)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def mask_url(url: str | None) -> str:
    """A URL fit for logs and the event log: its password replaced by ***."""
    if not url:
        return str(url)
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (http://, a Ray address)
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
        return url


# ----- models ------------------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class StudyRow(Base):
    """One submitted study. `requested` is what a user asked of a running study (pause / cancel); the
    scheduler that owns it (`scheduler`, alive while `heartbeat_at` is fresh) carries it out."""

    __tablename__ = "nas_studies"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # JSON, not JSONB: it keeps the spec's key order
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")
    requested: Mapped[str | None] = mapped_column(sa.String(16))
    priority: Mapped[int] = mapped_column(sa.Integer, default=0)
    submitted_by: Mapped[str | None] = mapped_column(sa.String(200))
    submitted_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    scheduler: Mapped[str | None] = mapped_column(sa.String(200))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    optuna_study_name: Mapped[str] = mapped_column(sa.String(100))
    mlflow_experiment_id: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (
        sa.CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})",
                           name="ck_nas_studies_status"),
        sa.CheckConstraint(f"requested IS NULL OR requested IN ({', '.join(repr(r) for r in REQUESTS)})",
                           name="ck_nas_studies_requested"),
        # the claim query: queued (or stale running) rows by priority
        sa.Index("ix_nas_studies_claim", "status", "priority", "id"),
        # two live submissions of one name would share one Optuna study and run its trials twice
        sa.Index("uq_nas_studies_active_name", "name", unique=True,
                 postgresql_where=sa.text("status IN ('queued', 'running', 'paused')"),
                 sqlite_where=sa.text("status IN ('queued', 'running', 'paused')")),
    )


class EventRow(Base):
    __tablename__ = "nas_events"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("nas_studies.id", ondelete="CASCADE"), index=True)
    time: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(sa.String(32))
    message: Mapped[str] = mapped_column(sa.Text, default="")
    scheduler: Mapped[str | None] = mapped_column(sa.String(200))


# ----- connections and migrations ------------------------------------------------------------------------
_engines: dict[str, sa.Engine] = {}
_upgraded: set[str] = set()
_lock = threading.Lock()


def engine(url: str) -> sa.Engine:
    url = normalize_url(url)
    with _lock:
        if url not in _engines:
            try:
                _engines[url] = sa.create_engine(url, pool_pre_ping=True, pool_size=3, max_overflow=5)
            except TypeError:  # SQLite's pool takes no size
                _engines[url] = sa.create_engine(url)
            except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as e:
                raise QueueError(f"the queue database URL {mask_url(url)} is not one SQLAlchemy can use: "
                                 f"{e}; write it as postgresql+psycopg://USER:PASSWORD@HOST:5432/DB"
                                 ) from None
        return _engines[url]


def session(url: str) -> Session:
    """A session on the queue database, migrated to the newest schema on first use in this process."""
    upgrade(url)
    return sessionmaker(engine(url), expire_on_commit=False)()


def _alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head", *, force: bool = False) -> None:
    """Migrate the queue database to `revision`; concurrent callers take turns (an advisory lock)."""
    url = normalize_url(url)
    if url in _upgraded and revision == "head" and not force:
        return
    from alembic import command

    cfg = _alembic_config(url)
    try:
        with engine(url).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except sa.exc.OperationalError as e:
        raise unreachable(url, e) from None
    if revision == "head":
        _upgraded.add(url)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine(url).connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()


def unreachable(url: str, e: Exception) -> QueueError:
    text = str(getattr(e, "orig", e)).strip()
    reason = text.splitlines()[0] if text else type(e).__name__
    return QueueError(f"cannot reach the queue database {mask_url(url)}: {reason}")


def db_now(s: Session) -> datetime:
    """The database's clock (PostgreSQL): schedulers on hosts with skewed clocks agree on staleness."""
    if s.get_bind().dialect.name == "postgresql":
        return s.scalar(sa.select(sa.func.now()))
    return datetime.now(timezone.utc)


def aware(t: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=timezone.utc)
    return t


def seconds_ago(s: Session, seconds: float) -> datetime:
    return db_now(s) - timedelta(seconds=seconds)
