"""Jobs (corpus builds, gate suites): create, claim once, finish or fail, and the reaper's view."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from faithaudit.store.base import StoreBase, _utcnow
from faithaudit.store.schema import NEVER_ENQUEUED_GRACE_SECONDS, jobs


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


class JobsStore(StoreBase):
    """The ``jobs`` table."""

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
