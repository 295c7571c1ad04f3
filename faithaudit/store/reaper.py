"""Nothing submitted is lost, nothing stays stuck: one sweep re-sends audits, jobs and the shards of split audits
whose worker lease expired, those never enqueued, and, when the broker lost messages, those no worker claimed in
time. With a retention, finished audits and jobs older than it are deleted on each sweep.

Lost messages are recognised two ways, so queued work comes back within about one lease after a broker restart:
- the broker's instance id changed since the last sweep (``BrokerWatch``: Redis's ``run_id``; a restarted Redis
  that kept nothing has a new one): every queued item is sent again at once;
- items sent ``stale_enqueue_seconds`` ago (default two leases) and still unclaimed are sent again when the
  broker's queue holds fewer messages than there are queued items (``messages_lost``); a long backlog that still
  holds every message is left alone, so it is not flooded with duplicates.
A duplicate message is harmless: the claim takes an item once.

``reap_once`` is one sweep; ``ReaperThread`` runs it every ``interval`` seconds in the API and in every worker
(a worker reconnecting to a restarted broker sees the new instance id on its next sweep).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from faithaudit.store.sweep import Sweep

log = logging.getLogger(__name__)


class Broker(Protocol):
    """What the reaper needs of the queue (``faithaudit.queue.Enqueuer``)."""

    def send(self, audit_id: str, queue: str | None = None) -> bool: ...
    def send_job(self, job_id: str) -> bool: ...
    def send_shards(self, audit_id: str, idxs: list[int], queue: str | None = None) -> bool: ...
    def queue_depth(self) -> int | None: ...
    def instance_id(self) -> str | None: ...


class BrokerWatch:
    """The broker instance that the last complete sweep sent to; ``restarted`` says whether it changed since.
    A sweep that fails or whose sends fail does not ``confirm`` the new instance: the next sweep sees the change
    again, so a restart is never forgotten half-handled."""

    def __init__(self) -> None:
        self.last: str | None = None

    def restarted(self, current: str | None) -> bool:
        if current is None:  # unreachable now: judge on the next sweep that reaches it
            return False
        if self.last is None:
            self.last = current
        return current != self.last

    def confirm(self, current: str | None) -> None:
        if current is not None:
            self.last = current


def messages_lost(found: Sweep, depth: int | None) -> bool:
    """Fewer messages waiting than queued items: some were lost (or the depth is unknown). The depth counts every
    audit queue (the default one and the per-model ones), which hold only audit and job messages: webhooks have
    queues of their own (``Enqueuer.callback_queue``)."""
    return depth is None or depth < found.queued


def _to_send(found: Sweep, *, resend_stale: bool) -> list[str]:
    return found.expired + found.unsent + (found.stale if resend_stale else [])


def reap_once(
    store,
    broker: Broker,
    *,
    stale_enqueue_seconds: float,
    retention_days: float | None = None,
    watch: BrokerWatch | None = None,
) -> list[str]:
    """One sweep; returns the audit ids sent."""
    if retention_days is not None:
        purged = store.purge_before(datetime.now(UTC) - timedelta(days=retention_days))
        if any(purged.values()):
            log.info("retention (%g days) deleted %s", retention_days, purged)
    instance = broker.instance_id() if watch is not None else None
    restarted = watch is not None and watch.restarted(instance)
    if restarted:
        log.warning("the broker restarted (new instance id): sending every queued audit and job again")
    stale_after = 0.0 if restarted else stale_enqueue_seconds
    jobs = store.reap_jobs(stale_enqueue_seconds=stale_after)
    audits = store.reap(stale_enqueue_seconds=stale_after)
    shards = store.reap_shards(stale_enqueue_seconds=stale_after)
    both = jobs + audits + Sweep(queued=shards.queued)
    stale = bool(both.stale) or bool(shards.stale)
    resend_stale = restarted or (stale and messages_lost(both, broker.queue_depth()))
    failed = 0
    for job_id in _to_send(jobs, resend_stale=resend_stale):
        if broker.send_job(job_id):
            store.mark_job_enqueued(job_id)
        else:
            failed += 1
    sent: list[str] = []
    for audit_id in _to_send(audits, resend_stale=resend_stale):
        if broker.send(audit_id, audits.queues.get(audit_id)):
            store.mark_enqueued(audit_id)
            sent.append(audit_id)
        else:
            failed += 1
    failed += _send_shards(store, broker, shards.to_send(resend_stale=resend_stale))
    if watch is not None and not failed:
        watch.confirm(instance)
    if sent:
        log.info("reaper enqueued %d audit(s): %s", len(sent), ", ".join(sent))
    return sent


def _send_shards(store, broker: Broker, found: dict[str, list[int]]) -> int:
    """Shards to send again (``ShardSweep.to_send``), each to its audit's queue; how many sends failed."""
    failed = 0
    for audit_id, idxs in found.items():
        audit = store.get_audit(audit_id)
        if audit is None:
            continue
        if broker.send_shards(audit_id, idxs, audit.queue):
            store.mark_shards_enqueued(audit_id, idxs)
            log.info("reaper sent shards %s of audit %s again", idxs, audit_id)
        else:
            failed += 1
    return failed


class ReaperThread(threading.Thread):
    def __init__(
        self,
        store,
        broker: Broker,
        *,
        interval: float,
        stale_enqueue_seconds: float,
        retention_days: float | None = None,
    ) -> None:
        super().__init__(name="faithaudit-reaper", daemon=True)
        self._store, self._broker, self._watch = store, broker, BrokerWatch()
        self._retention = retention_days
        self._interval, self._stale = interval, stale_enqueue_seconds
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            try:
                reap_once(
                    self._store,
                    self._broker,
                    stale_enqueue_seconds=self._stale,
                    retention_days=self._retention,
                    watch=self._watch,
                )
            except Exception:  # a database or broker blip must not kill the reaper
                log.exception("reaper sweep failed")

    def stop(self) -> None:
        self._stop_event.set()
