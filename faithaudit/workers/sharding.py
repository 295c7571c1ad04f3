"""One audit over several workers: the worker side of ``faithaudit.audits.shards`` and ``faithaudit.store.shards``.

    coordinate   the worker that claims the audit prepares it (the response, settled once); when its planned
                 passes exceed FAITHAUDIT_SHARD_PASSES and it has two units or more, the units are stored as
                 shards and sent as one Celery group on the audit's queue; otherwise it runs here as always
    execute_shard  any worker of that queue claims a shard (its own lease), runs its unit and stores the result;
                 the worker that stores the last one assembles the audit: the units' findings merged, the
                 assembled stages run, the report stored once
A worker killed mid-shard loses its lease; the reaper puts the shard back and sends it again. A shard whose stages
raise fails the audit at once, naming the shard; one out of attempts fails it too. Each process keeps the last
audit it prepared, so a second shard of the same audit on the same worker skips its full-context pass.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from faithaudit.api_schemas import AuditReport, AuditRequest, MethodCost
from faithaudit.config import get_settings
from faithaudit.workers.runtime import (
    WORKER_ID,
    LeaseLost,
    _callback_later,
    _enqueuer,
    _Lease,
    get_model,
    get_store,
    run_held,
)

if TYPE_CHECKING:
    from faithaudit.audits.meter import Progress
    from faithaudit.audits.run import Prepared

log = logging.getLogger(__name__)

_PREPARED: dict[str, Prepared] = {}  # the last audit this process prepared (one slot)


def splits(audit, request: AuditRequest) -> bool:
    """Does this audit go through ``coordinate``: it is sharded already, or sharding is on and it is not a
    retriever audit (those resolve their corpus first and run on one worker)."""
    return audit.phase is not None or (get_settings().shard_passes > 0 and request.pipeline.kind != "retriever")


def coordinate(store, audit, request: AuditRequest, model, lease: _Lease) -> AuditReport | None:
    """The audit's report when it runs (or is assembled) here; None once its shards are sent."""
    from faithaudit.audits.run import report_of, run_stages

    settings = get_settings()
    if audit.phase == "shards":  # re-claimed (a duplicate message): send again what no worker holds
        resumed = store.resume_shards(audit.id, WORKER_ID, lease_seconds=settings.lease_seconds)
        if resumed is None:
            raise LeaseLost(audit.id)
        state, resend = resumed
        if state == "shards":
            if resend:
                _send(store, audit, resend)
            return None
    if audit.phase is not None:
        return assemble(store, audit, request, model, lease.progress)
    prepared = _prepare(request, model, lease.progress, settled=None)
    units = prepared.plan.units
    if prepared.plan.total_passes <= settings.shard_passes or len(units) < 2:
        return report_of(prepared, run_stages(prepared, prepared.plan.stages, prepared.start()))
    settled = {
        "response": prepared.response,
        "origin": prepared.origin,
        "cost": {k: v.model_dump(mode="json") for k, v in prepared.meter.stages.items()},
    }
    units_json = [list(u) for u in units]
    lease_seconds = settings.lease_seconds
    if not store.begin_shards(audit.id, WORKER_ID, units=units_json, prepared=settled, lease_seconds=lease_seconds):
        raise LeaseLost(audit.id)
    _remember(audit.id, prepared)
    _send(store, audit, list(range(len(units))))
    log.info("audit %s: %d planned passes, sent as %d shards", audit.id, prepared.plan.total_passes, len(units))
    return None


def execute_shard(audit_id: str, idx: int) -> str:
    """Run one shard; returns stored, assembled outcome (succeeded, failed...), lease_lost or skipped:<reason>."""
    from faithaudit.audits.shards import encode, run_unit

    settings = get_settings()
    store = get_store()
    claim = store.claim_shard(
        audit_id, idx, WORKER_ID, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts
    )
    if not claim.claimed:
        log.info("shard %s/%d not run: %s", audit_id, idx, claim.reason)
        audit = store.get_audit(audit_id)
        if claim.reason == "exhausted" and audit is not None:
            _callback_later(audit_id, audit.request)
        return f"skipped:{claim.reason}"
    audit = store.get_audit(audit_id)
    with _shard_lease(store, audit_id, idx, settings.lease_seconds) as lease:
        try:
            request = AuditRequest.model_validate(audit.request)
            model = get_model(request.model.name)
            prepared, fresh = _prepared_for(audit, request, model, lease.progress)
            result = run_unit(prepared, claim.shard.stages)
            if fresh:  # this worker's own full-context pass counts too
                result = replace(result, cost={**prepared.meter.stages, **result.cost})
        except LeaseLost:
            log.info("shard %s/%d: lease lost (cancelled, deleted or taken over); stopping", audit_id, idx)
            return "lease_lost"
        except Exception as exc:
            log.exception("shard %s/%d failed", audit_id, idx)
            error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            if store.fail_shard(audit_id, idx, WORKER_ID, error=error):
                _callback_later(audit_id, audit.request)
            return "failed"
    outcome = store.finish_shard(audit_id, idx, WORKER_ID, result=encode(result), lease_seconds=settings.lease_seconds)
    if outcome != "assemble":
        return outcome
    audit = store.get_audit(audit_id)
    return run_held(store, audit, lambda req, mdl, held: assemble(store, audit, req, mdl, held.progress))


def _shard_lease(store, audit_id: str, idx: int, lease_seconds: float) -> _Lease:
    def renew(_progress: float | None, _stage: str | None) -> bool:
        return store.heartbeat_shard(audit_id, idx, WORKER_ID, lease_seconds=lease_seconds)

    return _Lease(renew, f"{audit_id}/{idx}", lease_seconds=lease_seconds)


def assemble(store, audit, request: AuditRequest, model, progress: Progress) -> AuditReport:
    """Every shard is in: merge their findings, run the assembled stages, build the report with the whole cost."""
    from faithaudit.audits.meter import Meter
    from faithaudit.audits.run import report_of, run_stages
    from faithaudit.audits.shards import decode, merge, total_cost

    rows = store.shards(audit.id)
    if not rows or any(r.status != "succeeded" for r in rows):
        raise RuntimeError(f"audit {audit.id}: assembled before every shard was stored")
    prepared, fresh = _prepared_for(audit, request, model, lambda f, s: progress(0.95 + 0.05 * f, s))
    if [r.stages for r in rows] != [list(u) for u in prepared.plan.units]:  # workers of another version
        raise RuntimeError(f"audit {audit.id}: its shards {[r.stages for r in rows]} are not this worker's plan")
    results = [decode(r.result) for r in rows]
    meter = Meter(model)
    found = run_stages(prepared, prepared.plan.assembled, merge(prepared.start(), results), meter=meter)
    coordinator = {k: MethodCost.model_validate(v) for k, v in (audit.prepared or {}).get("cost", {}).items()}
    parts = [coordinator, *(r.cost for r in results), meter.stages, prepared.meter.stages if fresh else {}]
    workers = len({r.worker for r in rows} | {WORKER_ID})
    report = report_of(prepared, found, cost=total_cost(parts, workers=workers))
    _PREPARED.pop(audit.id, None)
    return report


def _prepare(request: AuditRequest, model, progress: Progress, *, settled: tuple[str, str] | None) -> Prepared:
    from faithaudit.audits.run import prepare_audit
    from faithaudit.tools import registry_for

    settings = get_settings()
    return prepare_audit(
        request, model, progress=progress, tools=registry_for, response=settled,
        max_sources=settings.max_sources, max_source_chars=settings.max_source_chars,
    )  # fmt: skip


def _prepared_for(audit, request: AuditRequest, model, progress: Progress) -> tuple[Prepared, bool]:
    """This audit prepared with its settled response: the one this process kept (False), or a fresh one (True)."""
    kept = _PREPARED.get(audit.id)
    if kept is not None:
        kept.tracker.callback = progress
        return kept, False
    settled = (audit.prepared["response"], audit.prepared["origin"])
    prepared = _prepare(request, model, progress, settled=settled)
    _remember(audit.id, prepared)
    return prepared, True


def _remember(audit_id: str, prepared: Prepared) -> None:
    _PREPARED.clear()  # one audit at a time: its full-context KV cache is the large part
    _PREPARED[audit_id] = prepared


def _send(store, audit, idxs: list[int]) -> None:
    """Send shards; on a broker failure they stay queued, unsent, and the reaper sends them."""
    if _enqueuer().send_shards(audit.id, idxs, audit.queue):
        store.mark_shards_enqueued(audit.id, idxs)
