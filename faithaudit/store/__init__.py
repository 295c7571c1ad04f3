"""The durable store, system of record for audits and API keys (SQLite by default, PostgreSQL alike).

The schema is created only by the alembic migrations in ``migrations/`` (``Store.upgrade``). Every state change
of an audit is one conditional UPDATE, so an API process, several workers and the reaper can share the database:
a worker holds an audit through a lease (``claim``/``heartbeat``) and only the lease holder may finish it.

Modules: ``schema`` (tables, ``UTCDateTime``, constants), ``base`` (engine, transactions, upgrade/ping/dispose),
``audits`` (audits and their events: API side, worker leases, metrics), ``jobs``, ``keys`` (API keys), ``corpora``,
``retention`` (delete what is past FAITHAUDIT_RETENTION_DAYS).
Workers and the API both import it from here; it imports nothing of ``faithaudit.service``.
"""

from __future__ import annotations

from faithaudit.store.audits import AuditRow, AuditsStore, Claim, decode_cursor, encode_cursor
from faithaudit.store.base import StoreBase
from faithaudit.store.corpora import CorporaStore, CorpusRow
from faithaudit.store.jobs import JobRow, JobsStore
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


class Store(AuditsStore, JobsStore, KeysStore, CorporaStore, RetentionStore, StoreBase):
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
    "JobRow",
    "Store",
    "UTCDateTime",
    "decode_cursor",
    "encode_cursor",
    "hash_key",
    "metadata",
]
