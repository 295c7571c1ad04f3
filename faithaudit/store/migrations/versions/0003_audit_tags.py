"""Audit tags (``AuditRequest.tags``), one row per tag, for ``GET /v1/audits?tag=``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_tags",
        sa.Column("audit_id", sa.String(32), primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
    )
    op.create_index("ix_audit_tags_tenant_tag", "audit_tags", ["tenant", "tag"])


def downgrade() -> None:
    op.drop_index("ix_audit_tags_tenant_tag", table_name="audit_tags")
    op.drop_table("audit_tags")
