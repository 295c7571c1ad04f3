"""The API's enqueue relay on a real store and the real Redis broker: audits handed over after their 202 are sent
and marked enqueued in one round; with the broker down none is marked, and the reaper sends them later."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from faithaudit.queue import Enqueuer
from faithaudit.service.relay import EnqueueRelay, relay_batch
from faithaudit.store import Store


def _store(tmp_path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'fa.db'}")
    store.upgrade()
    return store


def _audits(store: Store, n: int) -> list[str]:
    body = {"query": "q", "pipeline": {"kind": "rag", "documents": []}}
    return [
        store.create_audit(tenant="t", request=body, request_hash=uuid.uuid4().hex, idempotency_key=None)[0].id
        for _ in range(n)
    ]


def _unsent(store: Store, ids: list[str]) -> list[str]:
    """The audits the reaper would send again: never marked enqueued (a grace of a minute passed)."""
    later = datetime.now(UTC) + timedelta(minutes=1)
    return sorted(set(store.reap(stale_enqueue_seconds=3600, now=later).ids) & set(ids))


def test_relay_sends_and_marks_every_audit_handed_over(tmp_path):
    store = _store(tmp_path)
    enqueuer = Enqueuer("redis://127.0.0.1:6379/0", f"fa-test-{uuid.uuid4().hex[:8]}")
    relay = EnqueueRelay(store, enqueuer)
    try:
        ids = _audits(store, 7)
        assert _unsent(store, ids) == sorted(ids)
        for audit_id in ids:
            relay.put(audit_id)
        assert relay.wait_idle(timeout=20)
        assert enqueuer.queue_depth() == 7
        assert _unsent(store, ids) == []
        relay.stop()  # drained and ended; an audit handed over afterwards starts a thread again
        (late,) = _audits(store, 1)
        relay.put(late)
        assert relay.wait_idle(timeout=20) and _unsent(store, [late]) == []
    finally:
        relay.stop()
        enqueuer.purge()
        store.dispose()


class _Counting(Enqueuer):
    tries = 0

    def send(self, audit_id: str, queue: str | None = None) -> bool:
        self.tries += 1
        return super().send(audit_id, queue)


def test_broker_down_leaves_the_batch_to_the_reaper_after_one_failed_send(tmp_path):
    store = _store(tmp_path)
    down = _Counting("redis://127.0.0.1:1/0", "fa-test-down", connect_timeout=0.5)
    ids = _audits(store, 3)
    sent = relay_batch([(i, None) for i in ids], store=store, enqueuer=down)
    assert sent.marked == [] and sent.failed == ids
    assert down.tries == 1  # one connect timeout, not one per audit
    assert _unsent(store, ids) == sorted(ids)
    store.dispose()
