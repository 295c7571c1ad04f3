"""The Celery application of the workers, built from settings (nothing connects at import time)."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from faithaudit.config import get_settings


@lru_cache(maxsize=1)
def get_celery() -> Celery:
    settings = get_settings()
    app = Celery("faithaudit", broker=settings.broker_url, include=["faithaudit.workers.tasks"])
    app.conf.update(
        task_default_queue=settings.queue_name,
        task_acks_late=True,  # a message is acknowledged after the audit, so a crash does not drop it
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # the store, not a result backend, is the system of record
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options={"visibility_timeout": 3600},
    )
    return app


_reaper = None


@worker_ready.connect
def _start_reaper(**_: object) -> None:
    """Every worker also sweeps for expired leases and never-enqueued audits."""
    global _reaper
    from faithaudit.queue import Enqueuer
    from faithaudit.store.reaper import ReaperThread
    from faithaudit.workers.runtime import get_store

    settings = get_settings()
    enqueuer = Enqueuer.from_settings(settings)
    _reaper = ReaperThread(
        get_store(),
        enqueuer,
        interval=settings.reaper_interval_seconds,
        stale_enqueue_seconds=settings.requeue_after,
    )
    _reaper.start()


@worker_shutdown.connect
def _stop_reaper(**_: object) -> None:
    if _reaper is not None:
        _reaper.stop()


app = get_celery()
