"""What one reaper sweep found in a table of leased work (audits or jobs), as data for ``store.reaper``.

- ``expired``: leases that ran out (the worker died); put back to queued. Their message is gone: always send.
- ``unsent``: queued, never enqueued (the broker was down at submit): always send.
- ``stale``: queued, enqueued before the cutoff and still unclaimed. Their message may sit behind a long queue or
  may have been lost with the broker's memory; the reaper sends them again only when the broker holds fewer
  messages than there are queued items (``reaper.messages_lost``), so a backlog is not flooded with duplicates.
- ``queued``: every queued item of the table (the count the broker's depth is compared with).
- ``queues``: the queue of each found audit routed to a queue other than the default (``Settings.model_queues``),
  so that it is sent again where it was sent first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faithaudit.store.schema import NEVER_ENQUEUED_GRACE_SECONDS


@dataclass(frozen=True)
class Sweep:
    expired: list[str] = field(default_factory=list)
    unsent: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    queued: int = 0
    queues: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        """Every id the sweep found (expired leases first)."""
        return self.expired + self.unsent + self.stale

    def __add__(self, other: Sweep) -> Sweep:
        return Sweep(
            self.expired + other.expired,
            self.unsent + other.unsent,
            self.stale + other.stale,
            self.queued + other.queued,
            self.queues | other.queues,
        )


def requeue_expired(
    conn: Connection, table: sa.Table, no_lease: dict, *, now: datetime, keep: sa.ColumnElement[bool] | None = None
) -> list[str]:
    """Running rows of ``table`` whose lease expired go back to queued (one conditional UPDATE each); their ids.
    Rows matching ``keep`` are left alone (a split audit's liveness is its shards', ``store.shards``)."""
    expired = sa.and_(table.c.status == "running", table.c.lease_expires_at < now)
    if keep is not None:
        expired = sa.and_(expired, sa.not_(keep))
    requeued = []
    for item_id in conn.execute(sa.select(table.c.id).where(expired)).scalars().all():
        done = conn.execute(
            table.update().where(table.c.id == item_id, expired).values(status="queued", updated_at=now, **no_lease)
        )
        if done.rowcount:
            requeued.append(item_id)
    return requeued


def sweep_queued(
    conn: Connection, table: sa.Table, expired: list[str], *, stale_enqueue_seconds: float, now: datetime
) -> Sweep:
    """Classify the queued rows of ``table`` (audits or jobs); ``expired`` were requeued just now."""
    grace = now - timedelta(seconds=NEVER_ENQUEUED_GRACE_SECONDS)  # the API enqueues right after its 202
    cutoff = now - timedelta(seconds=stale_enqueue_seconds)
    queued = table.c.status == "queued"
    seen = set(expired)
    unsent_q = sa.select(table.c.id).where(queued, table.c.enqueued_at.is_(None), table.c.created_at < grace)
    stale_q = sa.select(table.c.id).where(queued, table.c.enqueued_at < cutoff)
    unsent = [i for i in conn.execute(unsent_q.order_by(table.c.created_at)).scalars() if i not in seen]
    stale = [i for i in conn.execute(stale_q.order_by(table.c.created_at)).scalars() if i not in seen]
    count = conn.execute(sa.select(sa.func.count()).select_from(table).where(queued)).scalar_one()
    return Sweep(list(expired), unsent, stale, int(count))
