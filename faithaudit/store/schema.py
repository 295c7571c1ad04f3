"""The store's tables (mirroring the alembic migrations), its UTC datetime type and shared constants."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
KEY_PREFIX_CHARS = 10
NEVER_ENQUEUED_GRACE_SECONDS = 2.0


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC text; naive input means UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = _as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else _as_utc(value)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Mirrors migrations/versions; used for queries only (never ``create_all``).
metadata = sa.MetaData()
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(), nullable=False, index=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
)
audits = sa.Table(
    "audits",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("request", sa.Text(), nullable=False),
    sa.Column("request_hash", sa.String(128), nullable=False),
    sa.Column("idempotency_key", sa.String(), nullable=True),
    sa.Column("report", sa.Text(), nullable=True),
    sa.Column("gate_passed", sa.Boolean(), nullable=True),
    sa.Column("progress_fraction", sa.Float(), nullable=False),
    sa.Column("progress_stage", sa.String(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("planned_passes", sa.Integer(), nullable=True),
    sa.Column("planned_tokens", sa.BigInteger(), nullable=True),
    sa.Column("queue", sa.String(128), nullable=True),  # null: the default queue (Settings.queue_name)
    sa.Column("phase", sa.String(16), nullable=True),  # null: one worker; shards | assemble (store.shards)
    sa.Column("prepared", sa.Text(), nullable=True),  # JSON: the response a sharded audit settled once
    sa.Column("lease_owner", sa.String(), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("enqueued_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("tenant", "idempotency_key", name="uq_audits_tenant_idempotency_key"),
    sa.Index("ix_audits_tenant_created_at", "tenant", "created_at"),
    sa.Index("ix_audits_status", "status"),
)
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("audit_id", sa.String(32), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("detail", sa.Text(), nullable=True),
)

audit_tags = sa.Table(
    "audit_tags",
    metadata,
    sa.Column("audit_id", sa.String(32), primary_key=True),
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(), nullable=False),
    sa.Index("ix_audit_tags_tenant_tag", "tenant", "tag"),
)


audit_shards = sa.Table(  # the units of a sharded audit (audits.shards), each leased like an audit
    "audit_shards",
    metadata,
    sa.Column("audit_id", sa.String(32), primary_key=True),
    sa.Column("idx", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("stages", sa.Text(), nullable=False),  # JSON list of stage names
    sa.Column("status", sa.String(16), nullable=False),  # queued | running | succeeded
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("lease_owner", sa.String(), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("worker", sa.String(), nullable=True),  # who scored it (report.cost.workers)
    sa.Column("result", sa.LargeBinary(), nullable=True),  # audits.shards.encode(UnitResult)
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("enqueued_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_audit_shards_status", "status"),
)


corpora = sa.Table(
    "corpora",
    metadata,
    sa.Column("tenant", sa.String(), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("num_documents", sa.Integer(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("max_document_chars", sa.Integer(), nullable=True),  # the longest document (planned cost)
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)
usage_events = sa.Table(  # append-only: what each tenant submitted (quotas); deleting an audit does not undo it
    "usage_events",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("planned_tokens", sa.BigInteger(), nullable=False),
    sa.Index("ix_usage_events_tenant_at", "tenant", "at"),
)
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("result", sa.Text(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("worker", sa.String(), nullable=True),  # the lease holder
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("subject", sa.String(64), nullable=True),  # the corpus a corpus job works on
    sa.Column("planned_tokens", sa.BigInteger(), nullable=True),
    sa.Column("enqueued_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_jobs_tenant_created_at", "tenant", "created_at"),
    sa.Index("ix_jobs_tenant_subject", "tenant", "subject"),
    sa.Index("ix_jobs_status", "status"),
)
