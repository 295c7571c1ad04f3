"""Corpora: a tenant's named document collections (pending until their first build job ran, then ready)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from faithaudit.errors import ConflictError
from faithaudit.store.base import StoreBase, _utcnow
from faithaudit.store.schema import corpora


@dataclass(frozen=True)
class CorpusRow:
    tenant: str
    name: str
    status: str  # pending (its first build job has not run) or ready
    num_documents: int
    created_at: datetime
    updated_at: datetime


def _to_corpus(row: sa.Row) -> CorpusRow:
    return CorpusRow(**dict(row._mapping))


class CorporaStore(StoreBase):
    """The ``corpora`` table."""

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
