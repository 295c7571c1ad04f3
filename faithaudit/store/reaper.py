"""Nothing submitted is lost: re-enqueue audits whose worker lease expired, and audits never enqueued. Nothing is
kept past its time: with a retention, finished audits and jobs older than it are deleted on each sweep.

``reap_once`` is one sweep; ``ReaperThread`` runs it every ``interval`` seconds in the API and in every worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)


def reap_once(
    store,
    send: Callable[[str], bool],
    *,
    stale_enqueue_seconds: float,
    send_job: Callable[[str], bool] | None = None,
    retention_days: float | None = None,
) -> list[str]:
    """Enqueue every audit (and job, with ``send_job``) the store hands back; returns the audit ids enqueued."""
    if retention_days is not None:
        purged = store.purge_before(datetime.now(UTC) - timedelta(days=retention_days))
        if any(purged.values()):
            log.info("retention (%g days) deleted %s", retention_days, purged)
    if send_job is not None:
        for job_id in store.reap_jobs(stale_enqueue_seconds=stale_enqueue_seconds):
            if send_job(job_id):
                store.mark_job_enqueued(job_id)
    sent: list[str] = []
    for audit_id in store.reap(stale_enqueue_seconds=stale_enqueue_seconds):
        if send(audit_id):
            store.mark_enqueued(audit_id)
            sent.append(audit_id)
    if sent:
        log.info("reaper enqueued %d audit(s): %s", len(sent), ", ".join(sent))
    return sent


class ReaperThread(threading.Thread):
    def __init__(
        self,
        store,
        send: Callable[[str], bool],
        *,
        interval: float,
        stale_enqueue_seconds: float,
        send_job: Callable[[str], bool] | None = None,
        retention_days: float | None = None,
    ) -> None:
        super().__init__(name="faithaudit-reaper", daemon=True)
        self._store, self._send, self._send_job = store, send, send_job
        self._retention = retention_days
        self._interval, self._stale = interval, stale_enqueue_seconds
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            try:
                reap_once(
                    self._store,
                    self._send,
                    stale_enqueue_seconds=self._stale,
                    send_job=self._send_job,
                    retention_days=self._retention,
                )
            except Exception:  # a database blip must not kill the reaper
                log.exception("reaper sweep failed")

    def stop(self) -> None:
        self._stop_event.set()
