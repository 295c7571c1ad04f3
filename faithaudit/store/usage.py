"""A tenant's usage, read in the transaction that admits new work (``quotas.admit`` decides from it).

Active work: audits queued or running, and gate runs queued or running (one each). Planned tokens: the planned
cost of the audits and gate runs the tenant submitted in the last ``window_seconds``, whatever became of them:
they are read from ``usage_events``, an append-only ledger written in the admitting transaction, so deleting an
audit does not give its tokens back.
On PostgreSQL the admitting transaction holds a per-tenant advisory lock, so two submits cannot both take the
last slot; SQLite's write transactions are serial already.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faithaudit.store.base import StoreBase, _utcnow
from faithaudit.store.schema import ACTIVE, audits, jobs, usage_events

WINDOW_SECONDS = 3600


@dataclass(frozen=True)
class Usage:
    active_audits: int
    active_gates: int
    window: list[tuple[datetime, int]]  # (submitted at, planned tokens) in the last window, oldest first
    window_seconds: int = WINDOW_SECONDS

    @property
    def planned_tokens(self) -> int:
        return sum(tokens for _, tokens in self.window)

    @property
    def active(self) -> int:
        return self.active_audits + self.active_gates


def read_usage(conn: Connection, tenant: str, *, now: datetime, window_seconds: int = WINDOW_SECONDS) -> Usage:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": f"faithaudit-quota:{tenant}"})
    count = sa.select(sa.func.count())
    active_audits = conn.execute(
        count.select_from(audits).where(audits.c.tenant == tenant, audits.c.status.in_(ACTIVE))
    ).scalar_one()
    active_gates = conn.execute(
        count.select_from(jobs).where(jobs.c.tenant == tenant, jobs.c.kind == "gate", jobs.c.status.in_(ACTIVE))
    ).scalar_one()
    since = now - timedelta(seconds=window_seconds)
    query = sa.select(usage_events.c.at, usage_events.c.planned_tokens).where(
        usage_events.c.tenant == tenant, usage_events.c.at >= since
    )
    window = sorted((r.at, int(r.planned_tokens)) for r in conn.execute(query))
    return Usage(int(active_audits), int(active_gates), window, window_seconds)


def record_usage(conn: Connection, tenant: str, planned_tokens: int | None, *, now: datetime) -> None:
    """Add a submit to the ledger (in the transaction that stored it)."""
    if planned_tokens is not None:
        conn.execute(usage_events.insert(), {"tenant": tenant, "at": now, "planned_tokens": int(planned_tokens)})


class UsageStore(StoreBase):
    def usage(self, tenant: str, *, now: datetime | None = None) -> Usage:
        with self._read() as conn:
            return read_usage(conn, tenant, now=now or _utcnow())
