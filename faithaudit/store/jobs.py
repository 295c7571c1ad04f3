"""Jobs (corpus builds and deletions, gate suites): create, claim under a lease, heartbeat, finish or fail once,
and the reaper's view. A job lives as an audit does: a worker holds it through a lease it renews; a lease that
expires (the worker died) puts the job back in the queue; a job out of attempts fails for good, saying why."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faithaudit.store.base import StoreBase, _utcnow
from faithaudit.store.schema import ACTIVE, FINISHED, corpora, jobs
from faithaudit.store.sweep import Sweep, requeue_expired, sweep_queued
from faithaudit.store.usage import Usage, read_usage, record_usage

CORPUS_KINDS = ("corpus_create", "corpus_add", "corpus_delete")


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
    subject: str | None = None
    planned_tokens: int | None = None


@dataclass(frozen=True)
class JobClaim:
    """The outcome of ``claim_job``: reason is claimed, not_found, finished, leased or exhausted."""

    job: JobRow | None
    reason: str

    @property
    def claimed(self) -> bool:
        return self.reason == "claimed"


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
        subject=m["subject"],
        planned_tokens=m["planned_tokens"],
    )


def job_values(
    *, tenant: str, kind: str, payload: dict, now: datetime, subject: str | None = None, planned_tokens: int | None
) -> dict[str, Any]:
    """The row of a new queued job (``insert_job`` writes it inside a caller's transaction)."""
    return {
        "id": uuid.uuid4().hex,
        "tenant": tenant,
        "kind": kind,
        "status": "queued",
        "payload": json.dumps(payload),
        "attempts": 0,
        "subject": subject,
        "planned_tokens": planned_tokens,
        "created_at": now,
        "updated_at": now,
    }


_NO_LEASE: dict[str, Any] = {"worker": None, "lease_expires_at": None}


def _fail_corpus(conn: Connection, job: JobRow, error: str, *, now: datetime) -> None:
    """A corpus build that failed for good leaves its corpus ``failed`` with the reason (it can be rebuilt)."""
    if job.kind == "corpus_create":
        conn.execute(
            corpora.update()
            .where(corpora.c.tenant == job.tenant, corpora.c.name == job.subject, corpora.c.status == "pending")
            .values(status="failed", error=error[:2000], updated_at=now)
        )


def _held_by(job_id: str, worker_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(jobs.c.id == job_id, jobs.c.status == "running", jobs.c.worker == worker_id)


class JobsStore(StoreBase):
    """The ``jobs`` table."""

    def create_job(
        self,
        *,
        tenant: str,
        kind: str,
        payload: dict,
        subject: str | None = None,
        planned_tokens: int | None = None,
        admit: Callable[[Usage], None] | None = None,
        now: datetime | None = None,
    ) -> JobRow:
        """A queued job; ``admit`` sees the tenant's usage in the inserting transaction (``quotas.admit``)."""
        now = now or _utcnow()
        values = job_values(
            tenant=tenant, kind=kind, payload=payload, subject=subject, planned_tokens=planned_tokens, now=now
        )
        with self._write() as conn:
            if admit is not None:
                admit(read_usage(conn, tenant, now=now))
            record_usage(conn, tenant, planned_tokens, now=now)
            return self._insert_job(conn, values)

    @staticmethod
    def _insert_job(conn: Connection, values: dict[str, Any]) -> JobRow:
        conn.execute(jobs.insert().values(**values))
        return _to_job(conn.execute(sa.select(jobs).where(jobs.c.id == values["id"])).one())

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

    def active_corpus_job(self, tenant: str, name: str) -> JobRow | None:
        """A queued or running job that builds, extends or deletes this corpus, if any."""
        with self._read() as conn:
            return self._active_corpus_job(conn, tenant, name)

    @staticmethod
    def _active_corpus_job(conn: Connection, tenant: str, name: str) -> JobRow | None:
        query = sa.select(jobs).where(
            jobs.c.tenant == tenant,
            jobs.c.subject == name,
            jobs.c.kind.in_(CORPUS_KINDS),
            jobs.c.status.in_(ACTIVE),
        )
        row = conn.execute(query.order_by(jobs.c.created_at)).first()
        return None if row is None else _to_job(row)

    # -- the worker side: lease, heartbeat, end ------------------------------------------------------------------

    def claim_job(
        self, job_id: str, worker_id: str, *, lease_seconds: float, max_attempts: int, now: datetime | None = None
    ) -> JobClaim:
        """Take the lease on a queued job, or a running one whose lease expired (a redelivered message)."""
        now = now or _utcnow()
        claimable = sa.and_(
            jobs.c.id == job_id,
            jobs.c.status.in_(ACTIVE),
            sa.or_(jobs.c.worker.is_(None), jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at < now),
        )
        with self._write() as conn:
            taken = conn.execute(
                jobs.update()
                .where(claimable, jobs.c.attempts < max_attempts)
                .values(
                    status="running",
                    worker=worker_id,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    attempts=jobs.c.attempts + 1,
                    started_at=sa.func.coalesce(jobs.c.started_at, now),
                    updated_at=now,
                )
            )
            if taken.rowcount:
                return JobClaim(_to_job(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()), "claimed")
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
            if row is None:
                return JobClaim(None, "not_found")
            job = _to_job(row)
            if job.status in FINISHED:
                return JobClaim(job, "finished")
            error = f"gave up after {job.attempts} attempts (the worker died or lost its lease each time)"
            failed = conn.execute(
                jobs.update()
                .where(claimable, jobs.c.attempts >= max_attempts)
                .values(status="failed", error=error, finished_at=now, updated_at=now, **_NO_LEASE)
            )
            if not failed.rowcount:
                return JobClaim(job, "leased")
            _fail_corpus(conn, job, error, now=now)
            return JobClaim(_to_job(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()), "exhausted")

    def heartbeat_job(self, job_id: str, worker_id: str, *, lease_seconds: float, now: datetime | None = None) -> bool:
        """Renew the lease; False once this worker no longer holds the job."""
        now = now or _utcnow()
        with self._write() as conn:
            result = conn.execute(
                jobs.update()
                .where(_held_by(job_id, worker_id))
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
            )
        return result.rowcount == 1

    def finish_job(self, job_id: str, worker_id: str, *, result: dict) -> bool:
        """Store the result if this worker still holds the job; whether it wrote."""
        return self._end_job(job_id, worker_id, status="succeeded", result=json.dumps(result))

    def fail_job(self, job_id: str, worker_id: str, *, error: str) -> bool:
        """Record the failure if this worker holds the job; a corpus it was building is failed in the same
        transaction (never left pending without a job)."""
        return self._end_job(job_id, worker_id, status="failed", error=error)

    def _end_job(self, job_id: str, worker_id: str, **values: Any) -> bool:
        now = _utcnow()
        with self._write() as conn:
            result = conn.execute(
                jobs.update()
                .where(_held_by(job_id, worker_id))
                .values(finished_at=now, updated_at=now, **_NO_LEASE, **values)
            )
            if result.rowcount == 1 and values.get("status") == "failed":
                _fail_corpus(conn, _to_job(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()),
                             values["error"], now=now)  # fmt: skip
        return result.rowcount == 1

    def register_corpus_for_job(
        self, job_id: str, worker_id: str, *, num_documents: int, max_document_chars: int
    ) -> str:
        """Mark the job's corpus ready, only while this worker holds the job: registered, lease_lost or deleted."""
        now = _utcnow()
        with self._write() as conn:
            row = conn.execute(sa.select(jobs).where(_held_by(job_id, worker_id))).first()
            if row is None:
                return "lease_lost"
            job = _to_job(row)
            where = sa.and_(corpora.c.tenant == job.tenant, corpora.c.name == job.subject)
            before = conn.execute(sa.select(corpora.c.max_document_chars).where(where)).first()
            if before is None:
                return "deleted"
            longest = max(max_document_chars, before[0] or 0) if job.kind == "corpus_add" else max_document_chars
            conn.execute(
                corpora.update().where(where).values(status="ready", num_documents=num_documents, error=None,
                                                     max_document_chars=longest, updated_at=now)
            )  # fmt: skip
        return "registered"

    # -- the reaper ------------------------------------------------------------------------------------------------

    def reap_jobs(self, *, stale_enqueue_seconds: float, now: datetime | None = None) -> Sweep:
        """Expired leases go back to queued; queued jobs never enqueued, or enqueued before the cutoff."""
        now = now or _utcnow()
        with self._write() as conn:
            requeued = requeue_expired(conn, jobs, _NO_LEASE, now=now)
        with self._read() as conn:
            return sweep_queued(conn, jobs, requeued, stale_enqueue_seconds=stale_enqueue_seconds, now=now)
