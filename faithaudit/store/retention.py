"""Retention: stored requests and reports are production prompts and answers; past ``FAITHAUDIT_RETENTION_DAYS``
the finished ones are deleted (audits with their events, and jobs, whose payloads hold requests and documents).
Audits and jobs still queued or running are kept whatever their age: a worker may hold them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from faithaudit.store.base import StoreBase
from faithaudit.store.schema import ACTIVE, audit_events, audit_shards, audit_tags, audits, jobs, usage_events
from faithaudit.store.usage import WINDOW_SECONDS


class RetentionStore(StoreBase):
    def purge_before(self, cutoff: datetime) -> dict[str, int]:
        """Delete finished audits and jobs created before ``cutoff``; how many of each."""
        old = audits.c.created_at < cutoff
        with self._write() as conn:
            ids = [
                r.id
                for r in conn.execute(
                    audits.select().with_only_columns(audits.c.id).where(old, audits.c.status.not_in(ACTIVE))
                )
            ]
            if ids:
                conn.execute(audit_events.delete().where(audit_events.c.audit_id.in_(ids)))
                conn.execute(audit_tags.delete().where(audit_tags.c.audit_id.in_(ids)))
                conn.execute(audit_shards.delete().where(audit_shards.c.audit_id.in_(ids)))
                conn.execute(audits.delete().where(audits.c.id.in_(ids)))
            done_jobs = conn.execute(
                jobs.delete().where(jobs.c.created_at < cutoff, jobs.c.status.in_(("succeeded", "failed")))
            )
            ledger_cutoff = min(cutoff, datetime.now(UTC) - timedelta(seconds=2 * WINDOW_SECONDS))
            conn.execute(usage_events.delete().where(usage_events.c.at < ledger_cutoff))  # past any quota window
        return {"audits": len(ids), "jobs": done_jobs.rowcount or 0}
