"""Leases for jobs, corpora that can fail, planned cost of audits and jobs, and the usage ledger (quotas).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


CORPUS_KINDS = ("corpus_create", "corpus_add", "corpus_delete")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("subject", sa.String(64), nullable=True))
        batch.add_column(sa.Column("planned_tokens", sa.BigInteger(), nullable=True))
    op.create_index("ix_jobs_tenant_subject", "jobs", ["tenant", "subject"])
    op.create_index("ix_jobs_status", "jobs", ["status"])
    with op.batch_alter_table("corpora") as batch:
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("max_document_chars", sa.Integer(), nullable=True))
    op.create_table(
        "usage_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planned_tokens", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_usage_events_tenant_at", "usage_events", ["tenant", "at"])
    _backfill_jobs()
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("planned_passes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("planned_tokens", sa.BigInteger(), nullable=True))


def _backfill_jobs() -> None:
    """Jobs running at the upgrade get an expired lease (the reaper re-sends them); corpus jobs get their subject."""
    import json

    conn = op.get_bind()
    jobs = sa.table(
        "jobs", sa.column("id", sa.String), sa.column("kind", sa.String), sa.column("status", sa.String),
        sa.column("payload", sa.Text), sa.column("subject", sa.String),
        sa.column("lease_expires_at", sa.DateTime(timezone=True)), sa.column("updated_at", sa.DateTime(timezone=True)),
    )  # fmt: skip
    conn.execute(jobs.update().where(jobs.c.status == "running").values(lease_expires_at=jobs.c.updated_at))
    rows = conn.execute(sa.select(jobs.c.id, jobs.c.payload).where(jobs.c.kind.in_(CORPUS_KINDS))).all()
    for job_id, payload in rows:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(subject=json.loads(payload).get("corpus")))


def downgrade() -> None:
    op.drop_index("ix_usage_events_tenant_at", table_name="usage_events")
    op.drop_table("usage_events")
    with op.batch_alter_table("audits") as batch:
        batch.drop_column("planned_tokens")
        batch.drop_column("planned_passes")
    with op.batch_alter_table("corpora") as batch:
        batch.drop_column("max_document_chars")
        batch.drop_column("error")
    op.drop_index("ix_jobs_status", table_name="jobs")
    op.drop_index("ix_jobs_tenant_subject", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("planned_tokens")
        batch.drop_column("subject")
        batch.drop_column("lease_expires_at")
