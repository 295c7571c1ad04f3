"""Corpora: a tenant's named document collections.

A corpus is ``pending`` until its first build job ran, then ``ready``, or ``failed`` with the reason (the worker
died too often or the documents could not be embedded); a failed corpus is rebuilt by creating it again. Deleting
a corpus removes its row at once and queues a job that removes its files on a worker. While a job builds, extends
or deletes a corpus, creating or deleting that name again is a conflict (409): one job per corpus at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from faithaudit.errors import ConflictError, NotFoundError
from faithaudit.store.base import StoreBase, _utcnow
from faithaudit.store.jobs import JobRow, JobsStore, job_values
from faithaudit.store.schema import corpora


@dataclass(frozen=True)
class CorpusRow:
    tenant: str
    name: str
    status: str  # pending, ready or failed
    num_documents: int
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    max_document_chars: int | None = None  # the longest document: what a retrieved one may cost (planned cost)


def _to_corpus(row: sa.Row) -> CorpusRow:
    return CorpusRow(**dict(row._mapping))


def _busy(job: JobRow, name: str) -> ConflictError:
    what = {"corpus_delete": "being deleted", "corpus_add": "being extended"}.get(job.kind, "being built")
    return ConflictError(f"corpus {name!r} is {what} (job {job.id}, {job.status}); retry once that job has ended")


class CorporaStore(JobsStore, StoreBase):
    """The ``corpora`` table, and the jobs that change a corpus (created with it in one transaction)."""

    def create_corpus_job(self, tenant: str, name: str, payload: dict, *, now: datetime | None = None) -> JobRow:
        """Register a corpus as pending with its build job; a failed corpus is rebuilt (``payload['rebuild']``).
        ConflictError when the name is taken by a pending or ready corpus, or a job is working on it."""
        now = now or _utcnow()
        where = sa.and_(corpora.c.tenant == tenant, corpora.c.name == name)
        try:
            with self._write() as conn:
                busy = self._active_corpus_job(conn, tenant, name)
                if busy is not None:
                    raise _busy(busy, name)
                existing = conn.execute(sa.select(corpora.c.status).where(where)).scalar()
                if existing is not None and existing != "failed":
                    raise ConflictError(f"corpus {name!r} already exists")
                if existing == "failed":
                    rebuilt = conn.execute(
                        corpora.update().where(where, corpora.c.status == "failed")
                        .values(status="pending", num_documents=0, error=None, updated_at=now)
                    )  # fmt: skip
                    if not rebuilt.rowcount:  # a concurrent rebuild took it first
                        raise ConflictError(f"corpus {name!r} is being built; retry once that job has ended")
                else:
                    conn.execute(
                        corpora.insert().values(tenant=tenant, name=name, status="pending", num_documents=0,
                                                created_at=now, updated_at=now)
                    )  # fmt: skip
                payload = {**payload, "rebuild": existing == "failed"}
                values = job_values(
                    tenant=tenant, kind="corpus_create", payload=payload, subject=name, planned_tokens=None, now=now
                )
                return self._insert_job(conn, values)
        except IntegrityError:  # a concurrent create of the same name won the insert
            raise ConflictError(f"corpus {name!r} already exists") from None

    def add_corpus_job(self, tenant: str, name: str, payload: dict, *, now: datetime | None = None) -> JobRow:
        """Queue documents for a ready corpus that no job is working on (NotFoundError, ConflictError), in one
        transaction with those checks."""
        now = now or _utcnow()
        where = sa.and_(corpora.c.tenant == tenant, corpora.c.name == name)
        with self._write() as conn:
            row = conn.execute(sa.select(corpora).where(where)).first()
            if row is None:
                raise NotFoundError(f"no corpus {name!r}")
            busy = self._active_corpus_job(conn, tenant, name)
            if busy is not None:
                raise _busy(busy, name)
            if row.status != "ready":
                raise ConflictError(f"corpus {name!r} failed to build ({row.error}); documents can be added once "
                                    "it is rebuilt")  # fmt: skip
            values = job_values(
                tenant=tenant, kind="corpus_add", payload=payload, subject=name, planned_tokens=None, now=now
            )
            return self._insert_job(conn, values)

    def delete_corpus_job(self, tenant: str, name: str, *, now: datetime | None = None) -> JobRow:
        """Delete the corpus row now and queue the job that removes its files (NotFoundError, ConflictError)."""
        now = now or _utcnow()
        where = sa.and_(corpora.c.tenant == tenant, corpora.c.name == name)
        with self._write() as conn:
            if conn.execute(sa.select(corpora.c.name).where(where)).first() is None:
                raise NotFoundError(f"no corpus {name!r}")
            busy = self._active_corpus_job(conn, tenant, name)
            if busy is not None:
                raise _busy(busy, name)
            conn.execute(corpora.delete().where(where))
            values = job_values(
                tenant=tenant, kind="corpus_delete", payload={"corpus": name}, subject=name, planned_tokens=None,
                now=now,
            )  # fmt: skip
            return self._insert_job(conn, values)

    def register_corpus(self, tenant: str, name: str, *, num_documents: int) -> None:
        """Record a corpus the CLI built in process as ready (insert or update); workers use
        ``register_corpus_for_job``, which writes only while they hold the job."""
        now = _utcnow()
        with self._write() as conn:
            done = conn.execute(
                corpora.update()
                .where(corpora.c.tenant == tenant, corpora.c.name == name)
                .values(status="ready", num_documents=num_documents, error=None, updated_at=now)
            )
            if not done.rowcount:
                conn.execute(
                    corpora.insert().values(
                        tenant=tenant, name=name, status="ready", num_documents=num_documents, created_at=now,
                        updated_at=now,
                    )
                )  # fmt: skip

    def get_corpus(self, tenant: str, name: str) -> CorpusRow | None:
        query = sa.select(corpora).where(corpora.c.tenant == tenant, corpora.c.name == name)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _to_corpus(row)

    def list_corpora(self, tenant: str) -> list[CorpusRow]:
        query = sa.select(corpora).where(corpora.c.tenant == tenant).order_by(corpora.c.name)
        with self._read() as conn:
            return [_to_corpus(r) for r in conn.execute(query)]
