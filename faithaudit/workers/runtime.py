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
from collections.abc import Callable
from functools import lru_cache, partial

from faithaudit import telemetry
from faithaudit.api_schemas import AuditReport, AuditRequest
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
    """Renews a lease on a timer (``renew(progress, stage) -> still held``) and writes progress at most once a
    second; ``lost`` is set once the store says this worker no longer holds the item."""

    def __init__(self, renew: Callable[[float | None, str | None], bool], item_id: str, *, lease_seconds: float):
        self.renew, self.item_id, self.lease_seconds = renew, item_id, lease_seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._last_write = 0.0
        self._thread = threading.Thread(target=self._beat, name=f"lease-{item_id}", daemon=True)

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
            ok = self.renew(progress, stage)
        except Exception:  # a database blip: try again on the next beat; the lease has slack
            log.exception("heartbeat failed for %s", self.item_id)
            return
        if not ok:
            self.lost.set()

    def progress(self, fraction: float, stage: str) -> None:
        if self.lost.is_set():
            raise LeaseLost(self.item_id)
        now = time.monotonic()
        if now - self._last_write >= 1.0 or fraction >= 1.0:
            self._last_write = now
            self._renew(progress=fraction, stage=stage)
            if self.lost.is_set():
                raise LeaseLost(self.item_id)


def _audit_lease(store, audit_id: str, lease_seconds: float) -> _Lease:
    def renew(progress: float | None, stage: str | None) -> bool:
        return store.heartbeat(audit_id, WORKER_ID, lease_seconds=lease_seconds, progress=progress, stage=stage)

    return _Lease(renew, audit_id, lease_seconds=lease_seconds)


def _job_lease(store, job_id: str, lease_seconds: float) -> _Lease:
    return _Lease(
        lambda _p, _s: store.heartbeat_job(job_id, WORKER_ID, lease_seconds=lease_seconds),
        job_id,
        lease_seconds=lease_seconds,
    )


def execute_audit(audit_id: str) -> str:
    """Run one stored audit; returns what happened (for logs): succeeded, failed, sharded, skipped:<reason>,
    lease_lost."""
    settings = get_settings()
    store = get_store()
    claim = store.claim(audit_id, WORKER_ID, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts)
    if not claim.claimed:
        log.info("audit %s not run: %s", audit_id, claim.reason)
        if claim.reason == "exhausted":  # it failed for good just now: its receiver hears of it too
            _callback_later(audit_id, claim.audit.request)
        return f"skipped:{claim.reason}"
    telemetry.ATTEMPTS.inc()
    return run_held(store, claim.audit, partial(_audit_work, store, claim.audit))


def _audit_work(store, audit, request: AuditRequest, model, lease: _Lease) -> AuditReport | None:
    """The audit on this worker, or split over several (``workers.sharding``: None once its shards are sent)."""
    from faithaudit.audits.run import audit_request
    from faithaudit.retrieval.replay import CorpusLibrary
    from faithaudit.tools import registry_for
    from faithaudit.workers import sharding

    if sharding.splits(audit, request):
        return sharding.coordinate(store, audit, request, model, lease)
    settings = get_settings()
    return audit_request(
        request,
        model,
        tenant=audit.tenant,
        corpora=CorpusLibrary(settings.data_dir),
        progress=lease.progress,
        max_sources=settings.max_sources,
        max_source_chars=settings.max_source_chars,
        tools=registry_for,
    )


def run_held(store, audit, work: Callable[[AuditRequest, object, _Lease], AuditReport | None]) -> str:
    """Run ``work(request, model, lease)`` on an audit this worker holds, under a renewed lease, and store the
    report it returns once (None: the audit was handed to its shards). Errors fail the audit, saying why."""
    settings = get_settings()
    started = time.monotonic()
    with _audit_lease(store, audit.id, settings.lease_seconds) as lease:
        try:
            request = AuditRequest.model_validate(audit.request)
            _check_corpus_ready(store, audit.tenant, request)
            model = get_model(request.model.name)
            if audit.phase is None:
                lease.progress(0.0, "model loaded")
            report = work(request, model, lease)
        except LeaseLost:
            log.info("audit %s: lease lost (deleted, cancelled or reaped); stopping", audit.id)
            telemetry.audit_finished("lease_lost")
            return "lease_lost"
        except InvalidRequestError as exc:
            return _failed(store, audit, exc.message)
        except Exception as exc:
            log.exception("audit %s failed", audit.id)
            return _failed(store, audit, f"{type(exc).__name__}: {exc}")
    if report is None:
        return "sharded"
    written = store.finish(audit.id, WORKER_ID, report=report.model_dump(mode="json"), gate_passed=report.gate.passed)
    seconds = time.monotonic() - started
    telemetry.audit_finished("succeeded" if written else "duplicate", seconds=seconds, stages=report.cost.by_stage)
    if written:
        _callback_later(audit.id, audit.request)
    return "succeeded" if written else "skipped:already_finished"


def _failed(store, audit, error: str) -> str:
    if store.fail(audit.id, WORKER_ID, error=error):
        _callback_later(audit.id, audit.request)
    telemetry.audit_finished("failed")
    return "failed"


def _check_corpus_ready(store, tenant: str, request: AuditRequest) -> None:
    """A retriever audit queued before its corpus was deleted (or failed) fails saying so, not with a crash."""
    if request.pipeline.kind != "retriever":
        return
    corpus = store.get_corpus(tenant, request.pipeline.corpus)
    if corpus is None or corpus.status != "ready":
        why = "was deleted" if corpus is None else f"is {corpus.status}"
        raise InvalidRequestError.for_field("pipeline.corpus", f"corpus {request.pipeline.corpus!r} {why}")


@lru_cache(maxsize=1)
def _enqueuer():
    from faithaudit.queue import Enqueuer

    settings = get_settings()
    return Enqueuer.from_settings(settings)


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
    """Run one stored job under a renewed lease (a corpus build or deletion, a gate suite); returns succeeded,
    failed, lease_lost or skipped:<reason>. A job out of attempts fails for good; a corpus it built says why."""
    settings = get_settings()
    store = get_store()
    claim = store.claim_job(job_id, WORKER_ID, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts)
    if not claim.claimed:  # out of attempts: the claim failed it (and its corpus) already
        log.info("job %s not run: %s", job_id, claim.reason)
        return f"skipped:{claim.reason}"
    job = claim.job
    with _job_lease(store, job_id, settings.lease_seconds) as lease:
        try:
            result = _JOBS[job.kind](job, settings, store)
        except LeaseLost:
            log.warning("job %s: lease lost (another worker runs it); stopping", job_id)
            return "lease_lost"
        except Exception as exc:
            error = exc.message if isinstance(exc, FaithauditError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, FaithauditError):
                log.exception("job %s failed", job_id)
            store.fail_job(job_id, WORKER_ID, error=error)  # fails its corpus too, in one transaction
            return "failed"
    if lease.lost.is_set() or not store.finish_job(job_id, WORKER_ID, result=result):
        log.warning("job %s: lease lost before its result was stored (another worker runs it)", job_id)
        return "lease_lost"
    return "succeeded"


def _corpus_job(job, settings, store) -> dict:
    from faithaudit.api_schemas import CorpusDocumentIn
    from faithaudit.retrieval.corpus import add_documents, remove_corpus

    name = job.payload["corpus"]
    docs = [CorpusDocumentIn.model_validate(d) for d in job.payload["documents"]]
    if job.kind == "corpus_create" and (job.payload.get("rebuild") or job.attempts > 1):
        remove_corpus(settings.data_dir, job.tenant, name)  # a failed build's files, or a killed try's half
    # the job id makes an add idempotent: a retry after the files were written adds nothing twice
    count = add_documents(
        settings.data_dir, job.tenant, name, docs, create=job.kind == "corpus_create", applied_by=job.id
    )
    longest = max((len(d.text) for d in docs), default=0)
    outcome = store.register_corpus_for_job(job.id, WORKER_ID, num_documents=count, max_document_chars=longest)
    if outcome == "lease_lost":
        raise LeaseLost(job.id)
    if outcome == "deleted":
        remove_corpus(settings.data_dir, job.tenant, name)
        raise CorpusDeleted(f"corpus {name!r} was deleted while this job built it")
    return {"corpus": name, "added": len(docs), "num_documents": count}


def _delete_corpus_job(job, settings, store) -> dict:
    from faithaudit.retrieval.corpus import remove_corpus

    if not store.heartbeat_job(job.id, WORKER_ID, lease_seconds=settings.lease_seconds):
        raise LeaseLost(job.id)  # a stalled worker whose job was taken over must not delete a newer corpus
    removed = remove_corpus(settings.data_dir, job.tenant, job.payload["corpus"])
    return {"corpus": job.payload["corpus"], "files_removed": removed}


class CorpusDeleted(FaithauditError):
    """The corpus row went away while its job ran (DELETE /v1/corpora/{name})."""


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


_JOBS = {
    "corpus_create": _corpus_job,
    "corpus_add": _corpus_job,
    "corpus_delete": _delete_corpus_job,
    "gate": _gate_job,
}
