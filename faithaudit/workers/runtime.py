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

from faithaudit import telemetry
from faithaudit.api_schemas import AuditRequest
from faithaudit.config import get_settings
from faithaudit.errors import FaithauditError, InvalidRequestError

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@lru_cache(maxsize=1)
def get_store():
    from faithaudit.store import Store

    store = Store.from_settings(get_settings())
    store.upgrade()
    return store


def get_model(name: str | None):
    """Each model is loaded once per worker process (``load_model`` caches it)."""
    from faithaudit.audits.model.registry import load_model

    return load_model(name, get_settings())


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
    from faithaudit.audits.run import audit_request
    from faithaudit.retrieval.replay import CorpusLibrary
    from faithaudit.tools import registry_for

    settings = get_settings()
    store = get_store()
    claim = store.claim(audit_id, WORKER_ID, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts)
    if not claim.claimed:
        log.info("audit %s not run: %s", audit_id, claim.reason)
        if claim.reason == "exhausted":  # it failed for good just now: its receiver hears of it too
            _callback_later(audit_id, claim.audit.request)
        return f"skipped:{claim.reason}"
    telemetry.ATTEMPTS.inc()
    started = time.monotonic()
    with _Lease(store, audit_id, lease_seconds=settings.lease_seconds) as lease:
        try:
            request = AuditRequest.model_validate(claim.audit.request)
            model = get_model(request.model.name)
            lease.progress(0.0, "model loaded")
            report = audit_request(
                request,
                model,
                tenant=claim.audit.tenant,
                corpora=CorpusLibrary(settings.data_dir),
                progress=lease.progress,
                max_sources=settings.max_sources,
                max_source_chars=settings.max_source_chars,
                tools=registry_for,
            )
        except LeaseLost:
            log.info("audit %s: lease lost (deleted, cancelled or reaped); stopping", audit_id)
            telemetry.audit_finished("lease_lost")
            return "lease_lost"
        except InvalidRequestError as exc:
            if store.fail(audit_id, WORKER_ID, error=exc.message):
                _callback_later(audit_id, claim.audit.request)
            telemetry.audit_finished("failed")
            return "failed"
        except Exception as exc:
            log.exception("audit %s failed", audit_id)
            if store.fail(audit_id, WORKER_ID, error=f"{type(exc).__name__}: {exc}"):
                _callback_later(audit_id, claim.audit.request)
            telemetry.audit_finished("failed")
            return "failed"
    written = store.finish(audit_id, WORKER_ID, report=report.model_dump(mode="json"), gate_passed=report.gate.passed)
    seconds = time.monotonic() - started
    telemetry.audit_finished("succeeded" if written else "duplicate", seconds=seconds, stages=report.cost.by_stage)
    if written:
        _callback_later(audit_id, claim.audit.request)
    return "succeeded" if written else "skipped:already_finished"


@lru_cache(maxsize=1)
def _enqueuer():
    from faithaudit.queue import Enqueuer

    settings = get_settings()
    return Enqueuer(settings.broker_url, settings.queue_name)


def _callback_later(audit_id: str, request: dict) -> None:
    """An ended audit with a callback_url: its webhook goes out as its own task (this worker moves on)."""
    if request.get("callback_url"):
        if not _enqueuer().send_callback(audit_id):
            log.warning("audit %s: webhook not enqueued (broker down); it is not sent", audit_id)


def deliver_callback(audit_id: str, *, attempt: int) -> tuple[str, float | None]:
    """One webhook attempt for an ended audit: (outcome, seconds before the next try or None when done)."""
    from faithaudit import webhooks

    settings = get_settings()
    row = get_store().get_audit(audit_id)
    url = None if row is None else (row.request or {}).get("callback_url")
    if row is None or not url or row.status not in ("succeeded", "failed", "cancelled"):
        return "skipped", None
    if not webhooks.host_allowed(url, settings.callback_hosts):  # the allow-list may have shrunk since submit
        log.warning("audit %s: webhook host no longer allowed: %s", audit_id, url)
        return "refused", None
    secret = webhooks.tenant_secret(webhooks.service_secret(settings), row.tenant)
    payload = webhooks.encode(webhooks.callback_body(row))
    status = webhooks.post(url, payload, secret=secret, timeout=settings.callback_timeout_seconds, attempt=attempt)
    telemetry.WEBHOOKS.labels(outcome="delivered" if status is not None and status < 300 else "error").inc()
    if webhooks.should_retry(status) and attempt <= settings.callback_max_retries:
        return f"retry:{status}", webhooks.retry_delay(attempt - 1, settings.callback_retry_seconds)
    return ("delivered" if status is not None and status < 300 else f"gave_up:{status}"), None


def execute_job(job_id: str) -> str:
    """Run one stored job (a corpus build or a gate suite); returns succeeded, failed or skipped."""
    settings = get_settings()
    store = get_store()
    job = store.claim_job(job_id, WORKER_ID, max_attempts=settings.max_attempts)
    if job is None:
        log.info("job %s not run: not queued", job_id)
        return "skipped"
    try:
        result = _JOBS[job.kind](job, settings, store)
    except FaithauditError as exc:
        _job_failed(job, store, settings)
        store.fail_job(job_id, error=exc.message)
        return "failed"
    except Exception as exc:
        log.exception("job %s failed", job_id)
        _job_failed(job, store, settings)
        store.fail_job(job_id, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    store.finish_job(job_id, result=result)
    return "succeeded"


def _corpus_job(job, settings, store) -> dict:
    from faithaudit.api_schemas import CorpusDocumentIn
    from faithaudit.retrieval.corpus import add_documents

    name = job.payload["corpus"]
    docs = [CorpusDocumentIn.model_validate(d) for d in job.payload["documents"]]
    create = None if job.kind == "corpus_create" else False
    count = add_documents(settings.data_dir, job.tenant, name, docs, create=create)
    store.register_corpus(job.tenant, name, num_documents=count)
    return {"corpus": name, "added": len(docs), "num_documents": count}


def _gate_job(job, settings, store) -> dict:
    from faithaudit.gating.run import run_cases
    from faithaudit.gating.suite import ResolvedCase

    cases = [
        ResolvedCase(index=i, name=c["name"], request=AuditRequest.model_validate(c["request"]))
        for i, c in enumerate(job.payload["cases"])
    ]
    verdict = run_cases(
        cases,
        load_model=get_model,
        default_model=settings.default_model,
        data_dir=settings.data_dir,
        tenant=job.tenant,
        suite=job.payload.get("suite"),
        max_sources=settings.max_sources,
        max_source_chars=settings.max_source_chars,
    )
    telemetry.GATE_RESULTS.labels(suite=job.payload.get("suite") or "", result=verdict.status).inc()
    return verdict.model_dump(mode="json")


def _job_failed(job, store, settings) -> None:
    """A corpus whose first build failed is forgotten (its name can be used again)."""
    if job.kind == "corpus_create":
        from faithaudit.retrieval.corpus import corpus_exists

        if not corpus_exists(settings.data_dir, job.tenant, job.payload["corpus"]):
            store.drop_corpus(job.tenant, job.payload["corpus"])


_JOBS = {"corpus_create": _corpus_job, "corpus_add": _corpus_job, "gate": _gate_job}
