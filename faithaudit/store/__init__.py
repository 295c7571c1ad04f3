"""The durable store, system of record for audits and API keys (SQLite by default, PostgreSQL alike).

The schema is created only by the alembic migrations in ``migrations/`` (``Store.upgrade``). Every state change
of an audit is one conditional UPDATE, so an API process, several workers and the reaper can share the database:
a worker holds an audit or a job through a lease (``claim``/``heartbeat``) and only the lease holder may end it.

Modules: ``schema`` (tables, ``UTCDateTime``, constants), ``base`` (engine, transactions, upgrade/ping/dispose),
``audits`` (audits and their events: API side, worker leases, metrics), ``jobs`` (leased like audits),
``shards`` (the leased units of an audit split over workers), ``corpora`` (with the jobs that change them),
``sweep`` (what a reaper sweep found), ``usage`` (for quotas), ``keys`` (API keys), ``retention`` (delete what is
past FAITHAUDIT_RETENTION_DAYS).
Workers and the API both import it from here; it imports nothing of ``faithaudit.service``.
"""

from __future__ import annotations

from faithaudit.store.audits import AuditRow, AuditsStore, Claim, decode_cursor, encode_cursor
from faithaudit.store.base import StoreBase
from faithaudit.store.corpora import CorporaStore, CorpusRow
from faithaudit.store.jobs import JobClaim, JobRow, JobsStore
from faithaudit.store.keys import ApiKeyInfo, KeysStore, hash_key
from faithaudit.store.retention import RetentionStore
from faithaudit.store.schema import (
    ACTIVE,
    FINISHED,
    MIGRATIONS_DIR,
    NEVER_ENQUEUED_GRACE_SECONDS,
    STATUSES,
    UTCDateTime,
    metadata,
)
from faithaudit.store.shards import ShardClaim, ShardRow, ShardsStore
from faithaudit.store.sweep import Sweep
from faithaudit.store.usage import Usage, UsageStore


class Store(AuditsStore, ShardsStore, CorporaStore, JobsStore, KeysStore, UsageStore, RetentionStore, StoreBase):
    """All reads and writes of the service's database."""


__all__ = [
    "ACTIVE",
    "FINISHED",
    "MIGRATIONS_DIR",
    "NEVER_ENQUEUED_GRACE_SECONDS",
    "STATUSES",
    "ApiKeyInfo",
    "AuditRow",
    "Claim",
    "CorpusRow",
    "JobClaim",
    "JobRow",
    "ShardClaim",
    "ShardRow",
    "Store",
    "Sweep",
    "UTCDateTime",
    "Usage",
    "decode_cursor",
    "encode_cursor",
    "hash_key",
    "metadata",
]
