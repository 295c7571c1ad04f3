"""Submitted audits to the broker from one thread per API process, after their 202.

A submit hands its stored audit's id over and returns at once. The relay thread sends whatever has gathered, one
Celery message each, and marks the sent ones enqueued in one statement. A burst of submits thus costs the API
one broker send each and a few database writes in all, not a thread-pool trip and a transaction each.

Nothing here is needed for an audit to survive: it is stored before its 202. An id whose send fails, or that was
still waiting when the process died, stays unmarked, and the reaper sends it (``store.reaper``). One marked
enqueued but never delivered (the broker lost it) is the reaper's stale rule, as before.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_BATCH = 200
_STOP = object()


@dataclass(frozen=True)
class Sent:
    """What one round of the relay did: ids sent and marked, ids whose send failed (the reaper's)."""

    marked: list[str]
    failed: list[str]


def relay_batch(batch: list[tuple[str, str | None]], *, store, enqueuer) -> Sent:
    """Send each (audit id, queue) and mark the sent ones enqueued in one statement. After a failed send the
    rest are not tried (the broker is down: each try would wait out its connect timeout); the reaper sends
    them once it answers."""
    sent: list[str] = []
    for audit_id, queue_name in batch:
        if not enqueuer.send(audit_id, queue_name):
            break
        sent.append(audit_id)
    failed = [audit_id for audit_id, _ in batch[len(sent) :]]
    if sent:
        store.mark_enqueued_many(sent)
    return Sent(marked=sent, failed=failed)


class EnqueueRelay:
    """One daemon thread, started on the first ``put``; ``stop`` sends what is waiting, then ends it."""

    def __init__(self, store, enqueuer, *, max_batch: int = MAX_BATCH) -> None:
        self._store, self._enqueuer, self._max_batch = store, enqueuer, max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._state = threading.Condition()  # guards _thread and _pending; notified when _pending drops
        self._pending = 0

    def put(self, audit_id: str, queue_name: str | None = None) -> None:
        """Hand a stored audit over; never blocks on the broker or the database."""
        with self._state:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="faithaudit-enqueue-relay", daemon=True)
                self._thread.start()
        self._queue.put((audit_id, queue_name))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every audit handed over has had its round (sent and marked, or left to the reaper)."""
        with self._state:
            return self._state.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is waiting, then end the thread; a later ``put`` starts another."""
        with self._state:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            if batch:
                try:
                    relay_batch(batch, store=self._store, enqueuer=self._enqueuer)
                except Exception:  # the database blinked after the sends: the reaper resends, the claim dedupes
                    log.exception("enqueue relay: marking %d audits enqueued failed", len(batch))
                with self._state:
                    self._pending -= len(batch)
                    self._state.notify_all()
            if stop:
                return

    def _take(self) -> tuple[list[tuple[str, str | None]], bool]:
        """Wait for one item, then take whatever else is already waiting (up to ``max_batch``)."""
        items = [self._queue.get()]
        while len(items) < self._max_batch:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        stop = any(item is _STOP for item in items)
        return [item for item in items if item is not _STOP], stop
