"""The study queue: nas_studies and nas_events.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ACTIVE = "status IN ('queued', 'running', 'paused')"


def upgrade() -> None:
    op.create_table(
        "nas_studies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),  # not JSONB: keeps the key order
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested", sa.String(16), nullable=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("submitted_by", sa.String(200), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scheduler", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("optuna_study_name", sa.String(100), nullable=False),
        sa.Column("mlflow_experiment_id", sa.String(64), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'paused', 'done', 'failed', 'cancelled')",
                           name="ck_nas_studies_status"),
        sa.CheckConstraint("requested IS NULL OR requested IN ('pause', 'cancel')",
                           name="ck_nas_studies_requested"),
    )
    op.create_index("ix_nas_studies_claim", "nas_studies", ["status", "priority", "id"])
    op.create_index("uq_nas_studies_active_name", "nas_studies", ["name"], unique=True,
                    postgresql_where=sa.text(_ACTIVE), sqlite_where=sa.text(_ACTIVE))
    op.create_table(
        "nas_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("nas_studies.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("scheduler", sa.String(200), nullable=True),
    )
    op.create_index("ix_nas_events_study_id", "nas_events", ["study_id"])


def downgrade() -> None:
    op.drop_table("nas_events")
    op.drop_table("nas_studies")
