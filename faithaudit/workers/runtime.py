"""Per-process worker runtime: the store, the model cache, and one audit run under a renewed lease.

``execute_audit(audit_id)``: claim a lease (or skip: finished, leased elsewhere, deleted), load the request,
run the engine with progress written to the store, and store the report once. A heartbeat thread renews the lease
while the engine works; if the lease is lost (the audit was deleted or reaped) the run stops.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from functools import lru_cache

from faithaudit.api_schemas import AuditRequest
from faithaudit.config import get_settings
from faithaudit.errors import InvalidRequestError

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@lru_cache(maxsize=1)
def get_store():
    from faithaudit.service.store import Store

    store = Store.from_settings(get_settings())
    store.upgrade()
    return store


def get_model(name: str):
    """Each model is loaded once per worker process (``load_adapter`` caches it)."""
    from faithaudit.audits.model_registry import load_adapter

    settings = get_settings()
    return load_adapter(name, cache_dir=settings.cache_dir, threads=settings.torch_threads)


class LeaseLost(Exception):
    """The audit was deleted, cancelled or taken over: stop working on it."""


class _Lease:
    """Renews the lease on a timer and writes progress at most once a second."""

    def __init__(self, store, audit_id: str, *, lease_seconds: float) -> None:
        self.store, self.audit_id, self.lease_seconds = store, audit_id, lease_seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._last_write = 0.0
        self._thread = threading.Thread(target=self._beat, name=f"lease-{audit_id}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            self._renew(progress=None, stage=None)

    def _renew(self, *, progress: float | None, stage: str | None) -> None:
        try:
            ok = self.store.heartbeat(
                self.audit_id, WORKER_ID, lease_seconds=self.lease_seconds, progress=progress, stage=stage
            )
        except Exception:  # a database blip: try again on the next beat; the lease has slack
            log.exception("heartbeat failed for %s", self.audit_id)
            return
        if not ok:
            self.lost.set()

    def progress(self, fraction: float, stage: str) -> None:
        if self.lost.is_set():
            raise LeaseLost(self.audit_id)
        now = time.monotonic()
        if now - self._last_write >= 1.0 or fraction >= 1.0:
            self._last_write = now
            self._renew(progress=fraction, stage=stage)
            if self.lost.is_set():
                raise LeaseLost(self.audit_id)


def execute_audit(audit_id: str) -> str:
    """Run one stored audit; returns what happened (for logs): succeeded, failed, skipped:<reason>, lease_lost."""
    from faithaudit.audits.engine import run_audit
    from faithaudit.tools import registry_for

    settings = get_settings()
    store = get_store()
    claim = store.claim(audit_id, WORKER_ID, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts)
    if not claim.claimed:
        log.info("audit %s not run: %s", audit_id, claim.reason)
        return f"skipped:{claim.reason}"
    with _Lease(store, audit_id, lease_seconds=settings.lease_seconds) as lease:
        try:
            request = AuditRequest.model_validate(claim.audit.request)
            model = get_model(request.model.name or settings.default_model)
            lease.progress(0.0, "model loaded")
            report = run_audit(
                request,
                model,
                progress=lease.progress,
                max_sources=settings.max_sources,
                max_source_chars=settings.max_source_chars,
                tools=registry_for,
            )
        except LeaseLost:
            log.info("audit %s: lease lost (deleted, cancelled or reaped); stopping", audit_id)
            return "lease_lost"
        except InvalidRequestError as exc:
            store.fail(audit_id, WORKER_ID, error=exc.message)
            return "failed"
        except Exception as exc:
            log.exception("audit %s failed", audit_id)
            store.fail(audit_id, WORKER_ID, error=f"{type(exc).__name__}: {exc}")
            return "failed"
    written = store.finish(audit_id, WORKER_ID, report=report.model_dump(mode="json"), gate_passed=report.gate.passed)
    return "succeeded" if written else "skipped:already_finished"
