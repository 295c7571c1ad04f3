"""The shards of an audit split over several workers (``faithaudit.audits.shards``), leased like audits.

An audit's ``phase`` says who holds it: null (one worker, as always), ``shards`` (its lease belongs to its shards:
``lease_owner`` is ``SHARDS`` and every shard claim, heartbeat and finish pushes ``lease_expires_at`` on, so the
audit reaper leaves it alone while any shard is alive) or ``assemble`` (the worker that stored the last shard holds
it, or whoever re-claims it). Each shard is claimed, renewed and ended by one conditional UPDATE, like an audit; the
one that stores the last result moves the audit to ``assemble`` in the same transaction, after locking the audit
row, so exactly one worker assembles it. A shard out of attempts fails the audit, saying which shard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faithaudit.store.base import StoreBase, _utcnow
from faithaudit.store.schema import NEVER_ENQUEUED_GRACE_SECONDS, _as_utc, audit_events, audit_shards, audits

SHARDS = "shards"  # audits.lease_owner while the shards hold the audit
PHASES = ("shards", "assemble")


@dataclass(frozen=True)
class ShardRow:
    audit_id: str
    idx: int
    stages: list[str]
    status: str  # queued | running | succeeded
    attempts: int
    worker: str | None  # who stored its result
    result: bytes | None


@dataclass(frozen=True)
class ShardClaim:
    """``reason``: claimed, not_found, finished (stored already), leased, not_sharding (the audit was cancelled,
    deleted, ended or is being assembled) or exhausted (out of attempts: the audit failed just now)."""

    claimed: bool
    reason: str
    shard: ShardRow | None = None


@dataclass(frozen=True)
class ShardSweep:
    """What a reaper sweep found among the shards of split audits, as (audit id, shard) pairs: ``expired`` (their
    worker died; put back to queued), ``unsent`` (never sent: the broker was down), ``stale`` (sent long ago and
    still queued: sent again only when the broker lost messages, as for audits); ``queued`` counts the queued
    shards (the broker's depth is compared with audits, jobs and these)."""

    expired: list[tuple[str, int]] = field(default_factory=list)
    unsent: list[tuple[str, int]] = field(default_factory=list)
    stale: list[tuple[str, int]] = field(default_factory=list)
    queued: int = 0

    def to_send(self, *, resend_stale: bool) -> dict[str, list[int]]:
        """Per audit, its shards to send now."""
        out: dict[str, list[int]] = {}
        for audit_id, idx in self.expired + self.unsent + (self.stale if resend_stale else []):
            if idx not in out.setdefault(audit_id, []):
                out[audit_id].append(idx)
        return out


def _to_shard(row: sa.Row) -> ShardRow:
    m = row._mapping
    return ShardRow(
        audit_id=m["audit_id"],
        idx=int(m["idx"]),
        stages=json.loads(m["stages"]),
        status=m["status"],
        attempts=int(m["attempts"]),
        worker=m["worker"],
        result=m["result"],
    )


def _shard(audit_id: str, idx: int) -> sa.ColumnElement[bool]:
    return sa.and_(audit_shards.c.audit_id == audit_id, audit_shards.c.idx == idx)


def _held_shard(audit_id: str, idx: int, worker_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(_shard(audit_id, idx), audit_shards.c.lease_owner == worker_id, audit_shards.c.status == "running")


def _sharding(audit_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(audits.c.id == audit_id, audits.c.status == "running", audits.c.phase == "shards")


class ShardsStore(StoreBase):
    """The ``audit_shards`` table and the audit's ``phase``."""

    def begin_shards(
        self, audit_id: str, worker_id: str, *, units: list[list[str]], prepared: dict, lease_seconds: float
    ) -> bool:
        """The worker holding the audit hands it to its shards (stored queued); False if it lost the lease."""
        now = _utcnow()
        held = sa.and_(audits.c.id == audit_id, audits.c.status == "running", audits.c.lease_owner == worker_id)
        with self._write() as conn:
            moved = conn.execute(
                audits.update()
                .where(held)
                .values(
                    phase="shards", prepared=json.dumps(prepared), lease_owner=SHARDS,
                    lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now,
                    progress_stage=f"shards 0/{len(units)}",
                )
            )  # fmt: skip
            if moved.rowcount != 1:
                return False
            conn.execute(audit_shards.delete().where(audit_shards.c.audit_id == audit_id))
            rows = [
                {"audit_id": audit_id, "idx": i, "stages": json.dumps(unit), "status": "queued", "attempts": 0,
                 "created_at": now, "updated_at": now}
                for i, unit in enumerate(units)
            ]  # fmt: skip
            conn.execute(audit_shards.insert(), rows)
            conn.execute(audit_events.insert().values(audit_id=audit_id, status="sharded", at=now, detail=worker_id))
        return True

    def resume_shards(self, audit_id: str, worker_id: str, *, lease_seconds: float) -> tuple[str, list[int]] | None:
        """A re-claimed audit in phase ``shards`` (a duplicate message found its lease run out while its shards
        waited): ("assemble", []) when every shard is stored (this worker now assembles it); else ("shards", the
        shards to send again: queued ones and those whose lease expired) and the shards hold the audit again. A
        shard still running under a live lease is left to its worker. None if this worker no longer holds it."""
        now = _utcnow()
        held = sa.and_(audits.c.id == audit_id, audits.c.status == "running", audits.c.lease_owner == worker_id)
        rows = sa.select(audit_shards.c.idx, audit_shards.c.status, audit_shards.c.lease_expires_at).where(
            audit_shards.c.audit_id == audit_id
        )
        with self._write() as conn:
            if conn.execute(audits.update().where(held).values(updated_at=now)).rowcount != 1:
                return None
            shards = conn.execute(rows).all()
            if all(r.status == "succeeded" for r in shards):
                conn.execute(audits.update().where(held).values(phase="assemble"))
                return "assemble", []
            resend = [
                r.idx
                for r in shards
                if r.status == "queued" or (r.status == "running" and _as_utc(r.lease_expires_at) < now)
            ]
            if resend:
                conn.execute(
                    audit_shards.update()
                    .where(audit_shards.c.audit_id == audit_id, audit_shards.c.idx.in_(resend))
                    .values(status="queued", lease_owner=None, lease_expires_at=None, enqueued_at=None, updated_at=now)
                )
            conn.execute(
                audits.update()
                .where(held)
                .values(phase="shards", lease_owner=SHARDS, lease_expires_at=now + timedelta(seconds=lease_seconds))
            )
        return "shards", sorted(resend)

    def claim_shard(
        self, audit_id: str, idx: int, worker_id: str, *, lease_seconds: float, max_attempts: int
    ) -> ShardClaim:
        now = _utcnow()
        lease = now + timedelta(seconds=lease_seconds)
        claimable = sa.and_(
            _shard(audit_id, idx),
            sa.or_(
                audit_shards.c.status == "queued",
                sa.and_(audit_shards.c.status == "running", audit_shards.c.lease_expires_at < now),
            ),
        )
        with self._write() as conn:
            if conn.execute(audits.update().where(_sharding(audit_id)).values(lease_expires_at=lease)).rowcount != 1:
                return ShardClaim(False, "not_sharding")
            taken = conn.execute(
                audit_shards.update()
                .where(claimable, audit_shards.c.attempts < max_attempts)
                .values(
                    status="running", lease_owner=worker_id, lease_expires_at=lease,
                    attempts=audit_shards.c.attempts + 1, updated_at=now,
                )
            )  # fmt: skip
            row = conn.execute(sa.select(audit_shards).where(_shard(audit_id, idx))).first()
            if taken.rowcount:
                return ShardClaim(True, "claimed", _to_shard(row))
            if row is None:
                return ShardClaim(False, "not_found")
            shard = _to_shard(row)
            if shard.status == "succeeded":
                return ShardClaim(False, "finished", shard)
            if conn.execute(sa.select(audit_shards.c.idx).where(claimable)).first() is None:
                return ShardClaim(False, "leased", shard)
            error = f"shard {idx} ({', '.join(shard.stages)}) gave up after {shard.attempts} attempts"
            self._fail_audit(conn, audit_id, error, now)
            return ShardClaim(False, "exhausted", shard)

    def heartbeat_shard(self, audit_id: str, idx: int, worker_id: str, *, lease_seconds: float) -> bool:
        """Renew the shard's lease and the audit's; False once the shard or the audit is no longer this worker's
        to work on (taken over, cancelled, deleted)."""
        now = _utcnow()
        lease = now + timedelta(seconds=lease_seconds)
        with self._write() as conn:
            audit = conn.execute(audits.update().where(_sharding(audit_id)).values(lease_expires_at=lease))
            shard = conn.execute(
                audit_shards.update()
                .where(_held_shard(audit_id, idx, worker_id))
                .values(lease_expires_at=lease, updated_at=now)
            )
        return audit.rowcount == 1 and shard.rowcount == 1

    def finish_shard(self, audit_id: str, idx: int, worker_id: str, *, result: bytes, lease_seconds: float) -> str:
        """Store the shard's result: ``assemble`` (it was the last: this worker now holds the audit, to assemble
        it), ``stored``, or ``lost`` (the shard or the audit is no longer this worker's; nothing written)."""
        now = _utcnow()
        lease = now + timedelta(seconds=lease_seconds)
        with self._write() as conn:
            # the audit row first: it locks it (PostgreSQL), so the last two shards cannot both miss each other
            if conn.execute(audits.update().where(_sharding(audit_id)).values(lease_expires_at=lease)).rowcount != 1:
                return "lost"
            stored = conn.execute(
                audit_shards.update()
                .where(_held_shard(audit_id, idx, worker_id))
                .values(
                    status="succeeded", result=result, worker=worker_id, lease_owner=None, lease_expires_at=None,
                    updated_at=now,
                )
            )  # fmt: skip
            if stored.rowcount != 1:
                return "lost"
            done, total = _counts(conn, audit_id)
            values = {"progress_fraction": 0.05 + 0.9 * done / total, "progress_stage": f"shards {done}/{total}"}
            if done < total:
                conn.execute(audits.update().where(_sharding(audit_id)).values(**values))
                return "stored"
            conn.execute(
                audits.update().where(_sharding(audit_id)).values(phase="assemble", lease_owner=worker_id, **values)
            )
        return "assemble"

    def fail_shard(self, audit_id: str, idx: int, worker_id: str, *, error: str) -> bool:
        """A shard that cannot succeed (its stages raised) fails the audit, if this worker still holds the shard."""
        now = _utcnow()
        with self._write() as conn:
            held = conn.execute(sa.select(audit_shards.c.idx).where(_held_shard(audit_id, idx, worker_id))).first()
            return held is not None and self._fail_audit(conn, audit_id, f"shard {idx}: {error}", now)

    def shards(self, audit_id: str) -> list[ShardRow]:
        query = sa.select(audit_shards).where(audit_shards.c.audit_id == audit_id).order_by(audit_shards.c.idx)
        with self._read() as conn:
            return [_to_shard(r) for r in conn.execute(query)]

    def mark_shards_enqueued(self, audit_id: str, idxs: list[int]) -> None:
        with self._write() as conn:
            conn.execute(
                audit_shards.update()
                .where(audit_shards.c.audit_id == audit_id, audit_shards.c.idx.in_(idxs))
                .values(enqueued_at=_utcnow())
            )

    def reap_shards(self, *, stale_enqueue_seconds: float, now: datetime | None = None) -> ShardSweep:
        """The shards of split audits to send again (``ShardSweep``); those whose worker died go back to queued."""
        now = now or _utcnow()
        live = audit_shards.c.audit_id.in_(
            sa.select(audits.c.id).where(audits.c.status == "running", audits.c.phase == "shards")
        )
        expired = sa.and_(live, audit_shards.c.status == "running", audit_shards.c.lease_expires_at < now)
        queued = sa.and_(live, audit_shards.c.status == "queued")
        grace = now - timedelta(seconds=NEVER_ENQUEUED_GRACE_SECONDS)
        unsent = sa.and_(queued, audit_shards.c.enqueued_at.is_(None), audit_shards.c.updated_at < grace)
        stale = sa.and_(queued, audit_shards.c.enqueued_at < now - timedelta(seconds=stale_enqueue_seconds))
        pick = sa.select(audit_shards.c.audit_id, audit_shards.c.idx)
        with self._write() as conn:
            requeued = []
            for audit_id, idx in conn.execute(pick.where(expired)).all():
                done = conn.execute(
                    audit_shards.update()
                    .where(_shard(audit_id, idx), expired)
                    .values(status="queued", lease_owner=None, lease_expires_at=None, updated_at=now)
                )
                if done.rowcount:
                    requeued.append((audit_id, idx))
            return ShardSweep(
                expired=requeued,
                unsent=[tuple(r) for r in conn.execute(pick.where(unsent))],
                stale=[tuple(r) for r in conn.execute(pick.where(stale))],
                queued=int(conn.execute(sa.select(sa.func.count()).where(queued)).scalar_one()),
            )

    @staticmethod
    def _fail_audit(conn: Connection, audit_id: str, error: str, now: datetime) -> bool:
        failed = conn.execute(
            audits.update()
            .where(audits.c.id == audit_id, audits.c.status == "running")
            .values(status="failed", error=error, finished_at=now, updated_at=now, lease_owner=None,
                    lease_expires_at=None)
        )  # fmt: skip
        if failed.rowcount:
            conn.execute(audit_events.insert().values(audit_id=audit_id, status="failed", at=now, detail=error))
        return failed.rowcount == 1


def _counts(conn: Connection, audit_id: str) -> tuple[int, int]:
    done = sa.func.sum(sa.case((audit_shards.c.status == "succeeded", 1), else_=0))
    query = sa.select(done, sa.func.count()).where(audit_shards.c.audit_id == audit_id)
    d, t = conn.execute(query).one()
    return int(d or 0), int(t)
