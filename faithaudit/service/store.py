"""The durable store, system of record for audits and API keys (SQLite by default, PostgreSQL alike).

The schema is created only by the alembic migrations next to this module (``Store.upgrade``). Every state change
of an audit is one conditional UPDATE, so an API process, several workers and the reaper can share the database:
a worker holds an audit through a lease (``claim``/``heartbeat``) and only the lease holder may finish it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from faithaudit.errors import ConflictError, InvalidRequestError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
KEY_PREFIX_CHARS = 10
SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATION_LOCK_ID = 0x0FA17A0D17  # pg advisory lock serialising concurrent upgrades
_WRITE = "faithaudit_write"
UPGRADE_TRIES = 5


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


corpora = sa.Table(
    "corpora",
    metadata,
    sa.Column("tenant", sa.String(), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("num_documents", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
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
    sa.Column("worker", sa.String(), nullable=True),
    sa.Column("enqueued_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_jobs_tenant_created_at", "tenant", "created_at"),
)


@dataclass(frozen=True)
class CorpusRow:
    tenant: str
    name: str
    status: str  # pending (its first build job has not run) or ready
    num_documents: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class JobRow:
    """A corpus build or a gate suite run by a worker."""

    id: str
    tenant: str
    kind: str
    status: str
    payload: dict
    result: dict | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


def _to_corpus(row: sa.Row) -> CorpusRow:
    return CorpusRow(**dict(row._mapping))


def _to_job(row: sa.Row) -> JobRow:
    m = dict(row._mapping)
    return JobRow(
        id=m["id"],
        tenant=m["tenant"],
        kind=m["kind"],
        status=m["status"],
        payload=json.loads(m["payload"]),
        result=json.loads(m["result"]) if m["result"] is not None else None,
        error=m["error"],
        attempts=int(m["attempts"]),
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        updated_at=m["updated_at"],
    )


@dataclass(frozen=True)
class AuditRow:
    """One audit as callers see it."""

    id: str
    tenant: str
    status: str
    request: dict
    report: dict | None
    gate_passed: bool | None
    progress_fraction: float
    progress_stage: str | None
    attempts: int
    error: str | None
    idempotency_key: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key without its secret."""

    id: str
    tenant: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Claim:
    """The outcome of ``Store.claim``; reason is claimed, not_found, finished, leased or exhausted."""

    claimed: bool
    audit: AuditRow | None
    reason: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _to_audit(row: sa.Row) -> AuditRow:
    m = row._mapping
    return AuditRow(
        id=m["id"],
        tenant=m["tenant"],
        status=m["status"],
        request=json.loads(m["request"]),
        report=json.loads(m["report"]) if m["report"] is not None else None,
        gate_passed=m["gate_passed"],
        progress_fraction=float(m["progress_fraction"]),
        progress_stage=m["progress_stage"],
        attempts=int(m["attempts"]),
        error=m["error"],
        idempotency_key=m["idempotency_key"],
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        updated_at=m["updated_at"],
    )


def _to_key(row: sa.Row) -> ApiKeyInfo:
    m = row._mapping
    return ApiKeyInfo(
        id=m["id"], tenant=m["tenant"], prefix=m["prefix"], created_at=m["created_at"], revoked_at=m["revoked_at"]
    )


def encode_cursor(created_at: datetime, audit_id: str) -> str:
    raw = f"{_as_utc(created_at).isoformat()}|{audit_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


NEVER_ENQUEUED_GRACE_SECONDS = 2.0


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of ``encode_cursor``; InvalidRequestError for anything this service did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        when, audit_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(when)
        if created_at.tzinfo is not None:
            created_at.astimezone(UTC)  # out-of-range instants overflow here, not in the query
        if "\x00" in audit_id:
            raise ValueError("NUL in cursor")
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequestError.for_field("cursor", "is not a cursor returned by this service") from exc
    if created_at.tzinfo is None or not audit_id:
        raise InvalidRequestError.for_field("cursor", "is not a cursor returned by this service")
    return created_at, audit_id


def _is_race(exc: Exception) -> bool:
    """Errors a concurrent first-time upgrade can cause, which a retry resolves."""
    text = str(exc).lower()
    return "already exists" in text or "database is locked" in text


def _normalise_url(url: str) -> sa.URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_engine(url: sa.URL) -> Engine:
    """SQLite in WAL mode with a busy timeout; write transactions start with BEGIN IMMEDIATE."""
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


class Store:
    """All reads and writes of the service's database."""

    def __init__(self, url: str) -> None:
        parsed = _normalise_url(url)
        self.url = parsed
        if parsed.get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(parsed)
        else:
            self.engine = sa.create_engine(parsed, pool_pre_ping=True)
        self._writer = self.engine.execution_options(**{_WRITE: True})
        self._upgrade_lock = threading.Lock()
        self._sqlite_writers = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> Store:
        return cls(settings.resolved_database_url())

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A transaction that will write (BEGIN IMMEDIATE on SQLite, so it never fails upgrading its lock).

        On SQLite, writers of this process also queue on a Python lock: SQLite's own busy wait (sleep and retry)
        is far slower under a burst of concurrent writers than a plain FIFO lock.
        """
        with self._sqlite_writers if self.dialect == "sqlite" else nullcontext(), self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Migrate to the newest schema; safe when several processes do it at once."""
        with self._upgrade_lock:
            for attempt in range(UPGRADE_TRIES):
                try:
                    self._upgrade_once()
                    return
                except SQLAlchemyError as exc:
                    if attempt + 1 == UPGRADE_TRIES or not _is_race(exc):
                        raise
                    time.sleep(0.05 * (attempt + 1))  # another process is migrating (or just did)

    def _upgrade_once(self) -> None:
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.render_as_string(hide_password=False).replace("%", "%%"))
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_ID})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:  # any failure means "not healthy"
            return False

    def dispose(self) -> None:
        self.engine.dispose()

    # -- API keys ----------------------------------------------------------------------------------------------

    def create_api_key(self, tenant: str) -> tuple[str, ApiKeyInfo]:
        """A new key for ``tenant``; the key itself is returned only here, only its hash is stored."""
        if not tenant:
            raise InvalidRequestError.for_field("tenant", "must not be empty")
        key = "fa_" + secrets.token_urlsafe(32)
        info = ApiKeyInfo(
            id=str(uuid.uuid4()), tenant=tenant, prefix=key[:KEY_PREFIX_CHARS], created_at=_utcnow(), revoked_at=None
        )
        with self._write() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=info.id, tenant=tenant, prefix=info.prefix, key_hash=hash_key(key), created_at=info.created_at
                )
            )
        return key, info

    def list_api_keys(self, tenant: str | None = None) -> list[ApiKeyInfo]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        with self._read() as conn:
            return [_to_key(r) for r in conn.execute(query)]

    def revoke_api_key(self, key_id_or_prefix: str) -> bool:
        """Revoke by id or by listed prefix; False when no unrevoked key matches, ConflictError if ambiguous."""
        match = sa.or_(api_keys.c.id == key_id_or_prefix, api_keys.c.prefix == key_id_or_prefix)
        with self._write() as conn:
            ids = conn.execute(sa.select(api_keys.c.id).where(match, api_keys.c.revoked_at.is_(None))).scalars().all()
            if len(ids) > 1:
                raise ConflictError(f"{key_id_or_prefix!r} matches {len(ids)} keys; revoke by id")
            if not ids:
                return False
            conn.execute(api_keys.update().where(api_keys.c.id == ids[0]).values(revoked_at=_utcnow()))
        return True

    def authenticate(self, key: str) -> str | None:
        """The tenant of a valid, unrevoked key, else None."""
        if not key:
            return None
        valid = sa.and_(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
        query = sa.select(api_keys.c.tenant).where(valid)
        with self._read() as conn:
            return conn.execute(query).scalar_one_or_none()

    # -- audits: the API side ----------------------------------------------------------------------------------

    def create_audit(
        self,
        *,
        tenant: str,
        request: dict,
        request_hash: str,
        idempotency_key: str | None,
        now: datetime | None = None,
    ) -> tuple[AuditRow, bool]:
        """(row, created). A repeated Idempotency-Key returns the first audit, or ConflictError for another body."""
        if idempotency_key is not None:
            existing = self._by_idempotency_key(tenant, idempotency_key)
            if existing is not None:
                return self._replay(existing, request_hash, idempotency_key), False
        now = now or _utcnow()
        audit_id = uuid.uuid4().hex
        values = {
            "id": audit_id,
            "tenant": tenant,
            "status": "queued",
            "request": json.dumps(request),
            "request_hash": request_hash,
            "idempotency_key": idempotency_key,
            "progress_fraction": 0.0,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self._write() as conn:
                conn.execute(audits.insert().values(**values))
                self._event(conn, audit_id, "queued", now)
                row = self._fetch(conn, audit_id)
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = self._by_idempotency_key(tenant, idempotency_key)
            if existing is None:
                raise
            return self._replay(existing, request_hash, idempotency_key), False
        return row, True

    def _by_idempotency_key(self, tenant: str, idempotency_key: str) -> tuple[AuditRow, str] | None:
        query = sa.select(audits).where(audits.c.tenant == tenant, audits.c.idempotency_key == idempotency_key)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else (_to_audit(row), row._mapping["request_hash"])

    @staticmethod
    def _replay(existing: tuple[AuditRow, str], request_hash: str, idempotency_key: str) -> AuditRow:
        row, stored_hash = existing
        if stored_hash != request_hash:
            raise ConflictError(f"Idempotency-Key {idempotency_key!r} was used with a different body")
        return row

    def mark_enqueued(self, audit_id: str, *, now: datetime | None = None) -> None:
        with self._write() as conn:
            conn.execute(audits.update().where(audits.c.id == audit_id).values(enqueued_at=now or _utcnow()))

    def get_audit(self, audit_id: str, *, tenant: str | None = None) -> AuditRow | None:
        """The audit, or None; ``tenant=None`` finds it for any tenant (workers)."""
        query = sa.select(audits).where(audits.c.id == audit_id)
        if tenant is not None:
            query = query.where(audits.c.tenant == tenant)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _to_audit(row)

    def list_audits(
        self,
        tenant: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        status: str | None = None,
        gate_passed: bool | None = None,
    ) -> tuple[list[AuditRow], str | None]:
        """One page, newest first, and the cursor of the next page (None at the end)."""
        if limit < 1:
            raise InvalidRequestError.for_field("limit", "must be at least 1")
        if status is not None and status not in STATUSES:
            raise InvalidRequestError.for_field("status", f"must be one of {', '.join(STATUSES)}")
        query = sa.select(audits).where(audits.c.tenant == tenant)
        if status is not None:
            query = query.where(audits.c.status == status)
        if gate_passed is not None:
            query = query.where(audits.c.gate_passed.is_(gate_passed))
        if cursor is not None:
            created_at, after_id = decode_cursor(cursor)
            query = query.where(
                sa.or_(
                    audits.c.created_at < created_at,
                    sa.and_(audits.c.created_at == created_at, audits.c.id < after_id),
                )
            )
        query = query.order_by(audits.c.created_at.desc(), audits.c.id.desc()).limit(limit + 1)
        with self._read() as conn:
            rows = [_to_audit(r) for r in conn.execute(query)]
        if len(rows) <= limit:
            return rows, None
        page = rows[:limit]
        return page, encode_cursor(page[-1].created_at, page[-1].id)

    def delete_audit(self, audit_id: str, *, tenant: str) -> bool:
        """Delete the audit (request and report) and its events; a worker holding it loses its lease."""
        with self._write() as conn:
            deleted = conn.execute(audits.delete().where(audits.c.id == audit_id, audits.c.tenant == tenant))
            if deleted.rowcount == 0:
                return False
            conn.execute(audit_events.delete().where(audit_events.c.audit_id == audit_id))
        return True

    def cancel(self, audit_id: str, *, tenant: str | None = None, now: datetime | None = None) -> AuditRow | None:
        """Cancel a queued or running audit (its worker loses the lease); the row afterwards, None if missing."""
        now = now or _utcnow()
        query = audits.update().where(audits.c.id == audit_id, audits.c.status.in_(ACTIVE))
        if tenant is not None:
            query = query.where(audits.c.tenant == tenant)
        with self._write() as conn:
            done = conn.execute(query.values(status="cancelled", finished_at=now, updated_at=now, **_NO_LEASE))
            if done.rowcount:
                self._event(conn, audit_id, "cancelled", now)
            row = self._fetch(conn, audit_id)
        if row is None or (tenant is not None and row.tenant != tenant):
            return None
        return row

    # -- audits: the worker side -------------------------------------------------------------------------------

    def claim(
        self, audit_id: str, worker_id: str, *, lease_seconds: float, max_attempts: int, now: datetime | None = None
    ) -> Claim:
        """Take the lease on a queued audit (or one whose lease expired); see ``Claim.reason`` when not."""
        now = now or _utcnow()
        claimable = sa.and_(
            audits.c.id == audit_id,
            audits.c.status.in_(ACTIVE),
            sa.or_(audits.c.lease_owner.is_(None), audits.c.lease_expires_at < now),
        )
        with self._write() as conn:
            taken = conn.execute(
                audits.update()
                .where(claimable, audits.c.attempts < max_attempts)
                .values(
                    status="running",
                    lease_owner=worker_id,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    attempts=audits.c.attempts + 1,
                    started_at=sa.func.coalesce(audits.c.started_at, now),
                    updated_at=now,
                )
            )
            if taken.rowcount:
                self._event(conn, audit_id, "running", now, detail=worker_id)
                return Claim(True, self._fetch(conn, audit_id), "claimed")
            return self._not_claimed(conn, audit_id, claimable, max_attempts=max_attempts, now=now)

    def _not_claimed(
        self, conn: Connection, audit_id: str, claimable: sa.ColumnElement[bool], *, max_attempts: int, now: datetime
    ) -> Claim:
        """Why ``claim`` could not take the audit; an audit out of attempts fails here for good."""
        row = self._fetch(conn, audit_id)
        if row is None:
            return Claim(False, None, "not_found")
        if row.status in FINISHED:
            return Claim(False, row, "finished")
        error = f"gave up after {row.attempts} attempts (the worker died or lost its lease each time)"
        failed = conn.execute(
            audits.update()
            .where(claimable, audits.c.attempts >= max_attempts)
            .values(status="failed", error=error, finished_at=now, updated_at=now, **_NO_LEASE)
        )
        if not failed.rowcount:
            return Claim(False, row, "leased")
        self._event(conn, audit_id, "failed", now, detail=error)
        return Claim(False, self._fetch(conn, audit_id), "exhausted")

    def heartbeat(
        self,
        audit_id: str,
        worker_id: str,
        *,
        lease_seconds: float,
        progress: float | None = None,
        stage: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Renew the lease and record progress; False once this worker no longer holds the audit."""
        now = now or _utcnow()
        values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=lease_seconds), "updated_at": now}
        if progress is not None:
            values["progress_fraction"] = min(max(float(progress), 0.0), 1.0)
        if stage is not None:
            values["progress_stage"] = stage
        with self._write() as conn:
            result = conn.execute(audits.update().where(_held_by(audit_id, worker_id)).values(**values))
        return result.rowcount == 1

    def finish(self, audit_id: str, worker_id: str, *, report: dict, gate_passed: bool | None) -> bool:
        """Store the report (status succeeded) if this worker still holds the lease; whether it wrote."""
        values = {"report": json.dumps(report), "gate_passed": gate_passed, "progress_fraction": 1.0}
        return self._end(audit_id, worker_id, "succeeded", values)

    def fail(self, audit_id: str, worker_id: str, *, error: str) -> bool:
        """Record a failure if this worker still holds the lease; whether it wrote."""
        return self._end(audit_id, worker_id, "failed", {"error": error})

    def _end(self, audit_id: str, worker_id: str, status: str, values: dict[str, Any]) -> bool:
        now = _utcnow()
        with self._write() as conn:
            result = conn.execute(
                audits.update()
                .where(_held_by(audit_id, worker_id))
                .values(status=status, finished_at=now, updated_at=now, **_NO_LEASE, **values)
            )
            if result.rowcount != 1:
                return False
            self._event(conn, audit_id, status, now, detail=worker_id)
        return True

    def reap(self, *, stale_enqueue_seconds: float, now: datetime | None = None) -> list[str]:
        """Ids to (re-)enqueue: expired leases (put back to queued) and queued audits never or long ago enqueued."""
        now = now or _utcnow()
        expired = sa.and_(audits.c.status == "running", audits.c.lease_expires_at < now)
        requeued: list[str] = []
        with self._write() as conn:
            for audit_id in conn.execute(sa.select(audits.c.id).where(expired)).scalars().all():
                result = conn.execute(
                    audits.update()
                    .where(audits.c.id == audit_id, expired)
                    .values(status="queued", updated_at=now, **_NO_LEASE)
                )
                if result.rowcount:
                    self._event(conn, audit_id, "requeued", now)
                    requeued.append(audit_id)
        cutoff = now - timedelta(seconds=stale_enqueue_seconds)
        grace = now - timedelta(seconds=NEVER_ENQUEUED_GRACE_SECONDS)  # the API enqueues right after its 202
        lost = sa.select(audits.c.id).where(
            audits.c.status == "queued",
            sa.or_(
                sa.and_(audits.c.enqueued_at.is_(None), audits.c.created_at < grace),
                audits.c.enqueued_at < cutoff,
            ),
        )
        with self._read() as conn:
            stale = conn.execute(lost.order_by(audits.c.created_at)).scalars().all()
        seen = set(requeued)
        return requeued + [i for i in stale if i not in seen]

    # -- corpora ---------------------------------------------------------------------------------------------

    def create_corpus(self, tenant: str, name: str, *, now: datetime | None = None) -> CorpusRow:
        """Register a new (pending) corpus; ConflictError when the tenant already has one by that name."""
        now = now or _utcnow()
        values = {"tenant": tenant, "name": name, "status": "pending", "num_documents": 0}
        try:
            with self._write() as conn:
                conn.execute(corpora.insert().values(**values, created_at=now, updated_at=now))
        except IntegrityError:
            raise ConflictError(f"corpus {name!r} already exists") from None
        return CorpusRow(**values, created_at=now, updated_at=now)

    def register_corpus(self, tenant: str, name: str, *, num_documents: int) -> None:
        """Record a built corpus as ready (insert or update)."""
        now = _utcnow()
        with self._write() as conn:
            done = conn.execute(
                corpora.update()
                .where(corpora.c.tenant == tenant, corpora.c.name == name)
                .values(status="ready", num_documents=num_documents, updated_at=now)
            )
            if not done.rowcount:
                conn.execute(
                    corpora.insert().values(
                        tenant=tenant,
                        name=name,
                        status="ready",
                        num_documents=num_documents,
                        created_at=now,
                        updated_at=now,
                    )
                )

    def drop_corpus(self, tenant: str, name: str) -> None:
        with self._write() as conn:
            conn.execute(corpora.delete().where(corpora.c.tenant == tenant, corpora.c.name == name))

    def get_corpus(self, tenant: str, name: str) -> CorpusRow | None:
        query = sa.select(corpora).where(corpora.c.tenant == tenant, corpora.c.name == name)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _to_corpus(row)

    def list_corpora(self, tenant: str) -> list[CorpusRow]:
        query = sa.select(corpora).where(corpora.c.tenant == tenant).order_by(corpora.c.name)
        with self._read() as conn:
            return [_to_corpus(r) for r in conn.execute(query)]

    # -- jobs (corpus builds, gate suites) -------------------------------------------------------------------

    def create_job(self, *, tenant: str, kind: str, payload: dict, now: datetime | None = None) -> JobRow:
        now = now or _utcnow()
        job_id = uuid.uuid4().hex
        with self._write() as conn:
            conn.execute(
                jobs.insert().values(
                    id=job_id,
                    tenant=tenant,
                    kind=kind,
                    status="queued",
                    payload=json.dumps(payload),
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            )
            return _to_job(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one())

    def mark_job_enqueued(self, job_id: str) -> None:
        with self._write() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(enqueued_at=_utcnow()))

    def get_job(self, job_id: str, *, tenant: str | None = None) -> JobRow | None:
        query = sa.select(jobs).where(jobs.c.id == job_id)
        if tenant is not None:
            query = query.where(jobs.c.tenant == tenant)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _to_job(row)

    def claim_job(self, job_id: str, worker_id: str, *, max_attempts: int) -> JobRow | None:
        """queued -> running for this worker; None when it is not queued (done, taken) or out of attempts."""
        now = _utcnow()
        with self._write() as conn:
            taken = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == "queued", jobs.c.attempts < max_attempts)
                .values(
                    status="running",
                    worker=worker_id,
                    attempts=jobs.c.attempts + 1,
                    started_at=sa.func.coalesce(jobs.c.started_at, now),
                    updated_at=now,
                )
            )
            if not taken.rowcount:
                return None
            return _to_job(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one())

    def reap_jobs(self, *, stale_enqueue_seconds: float, now: datetime | None = None) -> list[str]:
        """Queued jobs never enqueued (the broker was down at submit) or enqueued long ago: send them again."""
        now = now or _utcnow()
        cutoff = now - timedelta(seconds=stale_enqueue_seconds)
        grace = now - timedelta(seconds=NEVER_ENQUEUED_GRACE_SECONDS)
        lost = sa.select(jobs.c.id).where(
            jobs.c.status == "queued",
            sa.or_(sa.and_(jobs.c.enqueued_at.is_(None), jobs.c.created_at < grace), jobs.c.enqueued_at < cutoff),
        )
        with self._read() as conn:
            return list(conn.execute(lost.order_by(jobs.c.created_at)).scalars().all())

    def finish_job(self, job_id: str, *, result: dict) -> None:
        self._end_job(job_id, status="succeeded", result=json.dumps(result))

    def fail_job(self, job_id: str, *, error: str) -> None:
        self._end_job(job_id, status="failed", error=error)

    def _end_job(self, job_id: str, **values: Any) -> None:
        now = _utcnow()
        with self._write() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == "running")
                .values(finished_at=now, updated_at=now, **values)
            )

    # -- history and metrics -----------------------------------------------------------------------------------

    def events(self, audit_id: str) -> list[tuple[str, datetime]]:
        query = sa.select(audit_events.c.status, audit_events.c.at).where(audit_events.c.audit_id == audit_id)
        with self._read() as conn:
            return [(r.status, r.at) for r in conn.execute(query.order_by(audit_events.c.id))]

    def status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        query = sa.select(audits.c.status, sa.func.count()).group_by(audits.c.status)
        with self._read() as conn:
            for status, count in conn.execute(query):
                counts[status] = int(count)
        return counts

    def finished_durations(self, limit: int = 1000) -> list[float]:
        """Seconds from start to finish of the most recent succeeded audits."""
        query = (
            sa.select(audits.c.started_at, audits.c.finished_at)
            .where(audits.c.status == "succeeded", audits.c.started_at.is_not(None), audits.c.finished_at.is_not(None))
            .order_by(audits.c.finished_at.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [(r.finished_at - r.started_at).total_seconds() for r in conn.execute(query)]

    def attempts_total(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(audits.c.attempts), 0))).scalar_one())

    # -- helpers -----------------------------------------------------------------------------------------------

    @staticmethod
    def _fetch(conn: Connection, audit_id: str) -> AuditRow | None:
        row = conn.execute(sa.select(audits).where(audits.c.id == audit_id)).first()
        return None if row is None else _to_audit(row)

    @staticmethod
    def _event(conn: Connection, audit_id: str, status: str, at: datetime, *, detail: str | None = None) -> None:
        conn.execute(audit_events.insert().values(audit_id=audit_id, status=status, at=at, detail=detail))


_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


def _held_by(audit_id: str, worker_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(audits.c.id == audit_id, audits.c.status == "running", audits.c.lease_owner == worker_id)
