"""Audits: the API side (create, idempotency, list with cursors, cancel), the worker side (lease, heartbeat,
finish, reap) and their history and metrics (``audit_events``, status counts, durations).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from faithaudit.errors import ConflictError, InvalidRequestError
from faithaudit.store.base import StoreBase, _utcnow
from faithaudit.store.schema import (
    ACTIVE,
    FINISHED,
    STATUSES,
    _as_utc,
    audit_events,
    audit_shards,
    audit_tags,
    audits,
    usage_events,
)
from faithaudit.store.sweep import Sweep, requeue_expired, sweep_queued
from faithaudit.store.usage import Usage, read_usage, record_usage


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
    queue: str | None = None  # routed to a per-model queue (Settings.model_queues); None: the default queue
    phase: str | None = None  # None: one worker; shards | assemble: split over workers (``store.shards``)
    prepared: dict | None = None  # what a sharded audit settled once (its response)


@dataclass(frozen=True)
class Claim:
    """The outcome of ``Store.claim``; reason is claimed, not_found, finished, leased or exhausted."""

    claimed: bool
    audit: AuditRow | None
    reason: str


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
        queue=m["queue"],
        phase=m["phase"],
        prepared=json.loads(m["prepared"]) if m["prepared"] is not None else None,
    )


def encode_cursor(created_at: datetime, audit_id: str) -> str:
    raw = f"{_as_utc(created_at).isoformat()}|{audit_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


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


class AuditsStore(StoreBase):
    """The ``audits`` and ``audit_events`` tables."""

    # -- audits: the API side ----------------------------------------------------------------------------------

    def create_audit(
        self,
        *,
        tenant: str,
        request: dict,
        request_hash: str,
        idempotency_key: str | None,
        planned_passes: int | None = None,
        planned_tokens: int | None = None,
        queue: str | None = None,
        admit: Callable[[Usage], None] | None = None,
        now: datetime | None = None,
    ) -> tuple[AuditRow, bool]:
        """(row, created). A repeated Idempotency-Key returns the first audit, or ConflictError for another body.
        ``admit`` sees the tenant's usage in the inserting transaction and may refuse (``quotas.admit``)."""
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
            "planned_passes": planned_passes,
            "planned_tokens": planned_tokens,
            "queue": queue,
            "created_at": now,
            "updated_at": now,
        }
        tags = list(dict.fromkeys(request.get("tags") or []))
        try:
            if admit is None and not tags and self.dialect == "postgresql":
                return self._insert_in_one_statement(values, planned_tokens), True
            with self._write() as conn:
                if admit is not None:
                    admit(read_usage(conn, tenant, now=now))
                row = _to_audit(conn.execute(_INSERT_AUDIT, values).one())
                record_usage(conn, tenant, planned_tokens, now=now)
                if tags:
                    conn.execute(
                        audit_tags.insert(), [{"audit_id": audit_id, "tag": t, "tenant": tenant} for t in tags]
                    )
                self._event(conn, audit_id, "queued", now)
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = self._by_idempotency_key(tenant, idempotency_key)
            if existing is None:
                raise
            return self._replay(existing, request_hash, idempotency_key), False
        return row, True

    def _insert_in_one_statement(self, values: dict[str, Any], planned_tokens: int | None) -> AuditRow:
        """PostgreSQL, no quota to check and no tags: the audit row, its usage entry and its ``queued`` event in
        one statement (``_SUBMIT_PG``), in autocommit: one round trip instead of BEGIN, three INSERTs and COMMIT,
        and as atomic (a statement's data-modifying CTEs all run to completion, or none does)."""
        statement = _SUBMIT_PG[planned_tokens is not None]
        with self._one_statement() as conn:
            return _to_audit(conn.execute(statement, _submit_params(values, planned_tokens)).one())

    def _warm_writes(self, conn: Connection) -> None:
        """The submit's statement and the relay's mark, on a made-up audit (``warm`` rolls it back)."""
        now = _utcnow()
        values = dict.fromkeys(_SUBMIT_COLUMNS) | {"id": uuid.uuid4().hex, "tenant": "-", "status": "queued"}
        values |= {"request": "{}", "request_hash": "-", "progress_fraction": 0.0, "attempts": 0}
        values |= {"created_at": now, "updated_at": now}
        conn.execute(_SUBMIT_PG[True], _submit_params(values, 0)).one()
        conn.execute(_mark_enqueued([values["id"]], now))

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
        self.mark_enqueued_many([audit_id], now=now)

    def mark_enqueued_many(self, audit_ids: list[str], *, now: datetime | None = None) -> None:
        """Sent to the broker (in one statement): the reaper's unsent rule skips them from now on."""
        with self._one_statement() as conn:
            conn.execute(_mark_enqueued(audit_ids, now or _utcnow()))

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
        tag: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
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
        if tag is not None:
            tagged = sa.select(audit_tags.c.audit_id).where(audit_tags.c.tenant == tenant, audit_tags.c.tag == tag)
            query = query.where(audits.c.id.in_(tagged))
        if created_after is not None:
            query = query.where(audits.c.created_at >= created_after)
        if created_before is not None:
            query = query.where(audits.c.created_at < created_before)
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

    def list_tags(self, tenant: str, *, limit: int = 200) -> list[tuple[str, int]]:
        """The tenant's tags and how many audits carry each, most used first."""
        count = sa.func.count(audit_tags.c.audit_id)
        query = (
            sa.select(audit_tags.c.tag, count)
            .where(audit_tags.c.tenant == tenant)
            .group_by(audit_tags.c.tag)
            .order_by(count.desc(), audit_tags.c.tag)
            .limit(limit)
        )
        with self._read() as conn:
            return [(tag, int(n)) for tag, n in conn.execute(query)]

    def delete_audit(self, audit_id: str, *, tenant: str) -> bool:
        """Delete the audit (request and report) and its events; a worker holding it loses its lease."""
        with self._write() as conn:
            deleted = conn.execute(audits.delete().where(audits.c.id == audit_id, audits.c.tenant == tenant))
            if deleted.rowcount == 0:
                return False
            conn.execute(audit_events.delete().where(audit_events.c.audit_id == audit_id))
            conn.execute(audit_tags.delete().where(audit_tags.c.audit_id == audit_id))
            conn.execute(audit_shards.delete().where(audit_shards.c.audit_id == audit_id))
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

    def reap(self, *, stale_enqueue_seconds: float, now: datetime | None = None) -> Sweep:
        """Expired leases go back to queued; queued audits never enqueued, or enqueued before the cutoff."""
        now = now or _utcnow()
        with self._write() as conn:
            sharding = sa.and_(audits.c.phase.is_not(None), audits.c.phase == "shards")
            requeued = requeue_expired(conn, audits, _NO_LEASE, now=now, keep=sharding)
            for audit_id in requeued:
                self._event(conn, audit_id, "requeued", now)
        with self._read() as conn:
            found = sweep_queued(conn, audits, requeued, stale_enqueue_seconds=stale_enqueue_seconds, now=now)
            return replace(found, queues=_queues(conn, found.ids))

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
        conn.execute(_INSERT_EVENT, {"audit_id": audit_id, "status": status, "at": at, "detail": detail})


# Built once, values passed as parameters: ``insert().values(**row)`` builds and keys a new statement per call, a
# third of a submit's CPU in the API.
_INSERT_AUDIT = audits.insert().returning(*audits.c)
_INSERT_EVENT = audit_events.insert()


_SUBMIT_COLUMNS = (  # what ``create_audit`` sets; the others start NULL
    "id",
    "tenant",
    "status",
    "request",
    "request_hash",
    "idempotency_key",
    "progress_fraction",
    "attempts",
    "planned_passes",
    "planned_tokens",
    "queue",
    "created_at",
    "updated_at",
)


def _submit_statement(with_usage: bool) -> sa.Select:
    """``WITH new_audit AS (INSERT INTO audits ... RETURNING *), new_event AS (INSERT INTO audit_events ...)
    [, new_usage AS (INSERT INTO usage_events ...)] SELECT * FROM new_audit``; binds: ``p_`` + the audit's
    columns, and ``p_usage_tokens``."""
    columns = [audits.c[name] for name in _SUBMIT_COLUMNS]
    new_audit = (
        audits.insert()
        .values({c.name: sa.bindparam(f"p_{c.name}", type_=c.type) for c in columns})
        .returning(*audits.c)
        .cte("new_audit")
    )
    event = audit_events.insert().values(
        audit_id=sa.bindparam("p_id"), status=sa.bindparam("p_status"), at=sa.bindparam("p_created_at"), detail=None
    )
    statement = sa.select(new_audit).add_cte(event.cte("new_event"))
    if with_usage:
        usage = usage_events.insert().values(
            tenant=sa.bindparam("p_tenant"),
            at=sa.bindparam("p_created_at"),
            planned_tokens=sa.bindparam("p_usage_tokens"),
        )
        statement = statement.add_cte(usage.cte("new_usage"))
    return statement


_SUBMIT_PG = {with_usage: _submit_statement(with_usage) for with_usage in (False, True)}


def _submit_params(values: dict[str, Any], planned_tokens: int | None) -> dict[str, Any]:
    """``_SUBMIT_PG``'s binds from ``create_audit``'s row values."""
    if tuple(values) != _SUBMIT_COLUMNS:  # a column added to the submit must be added to its statement too
        raise ValueError(f"the submit statement sets {_SUBMIT_COLUMNS}, not {tuple(values)}")
    return {f"p_{k}": v for k, v in values.items()} | {"p_usage_tokens": planned_tokens}


def _mark_enqueued(audit_ids: list[str], now: datetime) -> sa.Update:
    return audits.update().where(audits.c.id.in_(audit_ids)).values(enqueued_at=now)


_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


def _queues(conn: Connection, ids: list[str]) -> dict[str, str]:
    """The queue of each of ``ids`` routed to one other than the default (``Settings.model_queues``)."""
    if not ids:
        return {}
    query = sa.select(audits.c.id, audits.c.queue).where(audits.c.id.in_(ids), audits.c.queue.is_not(None))
    return {r.id: r.queue for r in conn.execute(query)}


def _held_by(audit_id: str, worker_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(audits.c.id == audit_id, audits.c.status == "running", audits.c.lease_owner == worker_id)
