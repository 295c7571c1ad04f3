"""Leases for jobs, corpora that can fail, planned cost of audits and jobs (quotas).

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


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("subject", sa.String(64), nullable=True))
        batch.add_column(sa.Column("planned_tokens", sa.BigInteger(), nullable=True))
    op.create_index("ix_jobs_tenant_subject", "jobs", ["tenant", "subject"])
    op.create_index("ix_jobs_status", "jobs", ["status"])
    with op.batch_alter_table("corpora") as batch:
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("planned_passes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("planned_tokens", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.drop_column("planned_tokens")
        batch.drop_column("planned_passes")
    with op.batch_alter_table("corpora") as batch:
        batch.drop_column("error")
    op.drop_index("ix_jobs_status", table_name="jobs")
    op.drop_index("ix_jobs_tenant_subject", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("planned_tokens")
        batch.drop_column("subject")
        batch.drop_column("lease_expires_at")
