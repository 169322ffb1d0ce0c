"""The queue's database: its tables (SQLAlchemy models), sessions, and their Alembic migrations.

Two tables, created only by the migrations in `nas/service/migrations/` (`nas db upgrade`; `submit` and
`nas serve` upgrade on first use): `nas_studies` (one row per submission) and `nas_events` (what happened
to it). Their names, and Alembic's version table `nas_alembic_version`, leave Optuna's own tables alone,
so the queue and the Optuna storage can share one database. Where the database is comes from
`nas.settings` (NAS_DATABASE_URL).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from nas import store
from nas.settings import mask_url, normalize_url
from search_spaces.config import ConfigError

__all__ = [
    "ACTIVE",
    "STATUSES",
    "VERSION_TABLE",
    "Base",
    "EventRow",
    "QueueError",
    "StudyRow",
    "aware",
    "current_revision",
    "db_now",
    "engine",
    "head_revision",
    "seconds_ago",
    "session",
    "unreachable",
    "upgrade",
    "upgrade_sql",
]

STATUSES = ("queued", "running", "paused", "done", "failed", "cancelled")
ACTIVE = ("queued", "running", "paused")  # at most one row per study name in these
REQUESTS = ("pause", "cancel")
VERSION_TABLE = "nas_alembic_version"
# pg_advisory_xact_lock key: schedulers starting together migrate one after the other
_MIGRATION_LOCK = 0x6E61735F71  # "nas_q"


class QueueError(ConfigError):
    """A queue request that cannot be done (no such study, wrong state, no database): one sentence, exit 2."""


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
_upgraded: set[str] = set()


def engine(url: str) -> sa.Engine:
    """The store's engine for the queue's database; a URL SQLAlchemy cannot use is a QueueError."""
    try:
        return store.engine(url)
    except ConfigError as e:
        raise QueueError(str(e).replace("the database URL", "the queue database URL")) from None


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


def upgrade_sql(url: str, revision: str = "head") -> None:
    """Print the SQL of the migrations to `revision` instead of running them."""
    from alembic import command

    command.upgrade(_alembic_config(url), revision, sql=True)


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
