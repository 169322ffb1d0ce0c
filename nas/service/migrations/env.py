"""Alembic environment of the queue's tables (`nas_studies`, `nas_events`).

`nas.service.db.upgrade` passes its connection in `config.attributes["connection"]`; the Alembic CLI
(`alembic -x url=... upgrade head` with a script_location of nas/service/migrations) works too. The version
table is `nas_alembic_version`, so Optuna's and MLflow's own `alembic_version` can share the database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from nas.service.db import VERSION_TABLE, Base
from nas.settings import normalize_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    return normalize_url(url)


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.begin() as connection:
        _run(connection)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
