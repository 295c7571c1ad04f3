"""/v1/audits: submit, read, list, delete audits, and their HTML report pages."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from faithaudit import telemetry
from faithaudit.api_schemas import (
    AuditAccepted,
    AuditList,
    AuditReport,
    AuditStatus,
    AuditSummary,
    Links,
    Progress,
)
from faithaudit.api_schemas.request import TAG_PATTERN
from faithaudit.errors import ConflictError, ForbiddenError, NotFoundError
from faithaudit.pages.report import render_report_html
from faithaudit.service import signing
from faithaudit.service.deps import (
    CurrentTenant,
    SettingsDep,
    StoreDep,
    api_key_from,
    current_tenant,
)
from faithaudit.service.html import html_page
from faithaudit.service.validation import admission, check_corpus, planned, request_hash, validate_audit_request
from faithaudit.store import AuditRow

router = APIRouter(prefix="/v1/audits", tags=["audits"])

_AUDIT_ID = re.compile(r"[0-9a-f]{32}")  # ids are uuid4 hex; anything else is unknown (and never reaches SQL)
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _links(audit_id: str) -> Links:
    return Links(self=f"/v1/audits/{audit_id}", report_html=f"/v1/audits/{audit_id}/report.html")


def _summary(row: AuditRow) -> dict:
    return {
        "id": row.id,
        "status": row.status,
        "progress": Progress(fraction=min(max(row.progress_fraction, 0.0), 1.0), stage=row.progress_stage),
        "attempts": row.attempts,
        "gate_passed": row.gate_passed,
        "error": row.error,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "updated_at": row.updated_at,
        "tags": list(row.request.get("tags") or []),
    }


@router.post("", status_code=202, response_model=AuditAccepted)
async def submit_audit(
    request: Request,
    tenant: CurrentTenant,
    settings: SettingsDep,
    store: StoreDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    """Validate, store, enqueue; 202 at once. A broker outage delays the audit, never loses it."""
    row, created, cost = await run_in_threadpool(
        _store_audit,
        await request.body(),
        tenant=tenant,
        settings=settings,
        store=store,
        idempotency_key=idempotency_key,
    )
    if created:  # sent by the relay thread: the audit is already stored, and the reaper retries a failed send
        telemetry.SUBMITTED.inc()
        request.app.state.relay.put(row.id, row.queue)
    body = AuditAccepted(id=row.id, status=row.status, links=_links(row.id), planned=cost)
    headers = {"Location": body.links.self}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers=headers)


def _store_audit(body: bytes, *, tenant: str, settings, store, idempotency_key: str | None):
    """A submit's blocking work before the answer, in one trip to the thread pool: validate fully, plan its cost,
    then store it in one transaction that checks the tenant's quotas (429)."""
    audit_request, fitted = validate_audit_request(body, settings)
    corpus = check_corpus(audit_request, store, tenant)
    cost = planned(audit_request, settings, corpus, fitted)
    row, created = store.create_audit(
        tenant=tenant,
        request=audit_request.model_dump(mode="json", exclude_unset=True),
        request_hash=request_hash(audit_request),
        idempotency_key=idempotency_key,
        planned_passes=cost.forward_passes,
        planned_tokens=cost.tokens,
        queue=_routed_queue(audit_request, settings),
        admit=admission(settings, cost.tokens),
    )
    return row, created, cost


def _routed_queue(audit_request, settings) -> str | None:
    """The audit's model's queue when FAITHAUDIT_MODEL_QUEUES routes it elsewhere; None: the default queue."""
    queue = settings.queue_for(audit_request.model.name)
    return None if queue == settings.queue_name else queue


@router.get("", response_model=AuditList)
def list_audits(
    tenant: CurrentTenant,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
    status: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled)$")] = None,
    gate_passed: bool | None = None,
    tag: Annotated[str | None, Query(pattern=TAG_PATTERN)] = None,
) -> AuditList:
    rows, next_cursor = store.list_audits(
        tenant, limit=limit, cursor=cursor or None, status=status, gate_passed=gate_passed, tag=tag
    )  # an empty cursor is the first page
    return AuditList(items=[AuditSummary(**_summary(r)) for r in rows], next_cursor=next_cursor)


@router.get("/{audit_id}", response_model=AuditStatus)
async def get_audit(audit_id: str, request: Request, tenant: CurrentTenant, store: StoreDep, settings: SettingsDep):
    row = await run_in_threadpool(_owned, store, audit_id, tenant)
    report_url = None
    if row.status == "succeeded":
        secret = request.app.state.signing_secret
        query = signing.signed_query(secret, row.id, row.tenant, ttl=settings.report_link_seconds)
        path = request.app.url_path_for("report_html", audit_id=row.id)
        report_url = f"{(settings.public_url or '').rstrip('/')}{path}?{query}"
    report = AuditReport.model_validate(row.report) if row.report is not None else None
    return AuditStatus(**_summary(row), report=report, report_url=report_url)


@router.delete("/{audit_id}", status_code=204)
def delete_audit(audit_id: str, tenant: CurrentTenant, store: StoreDep) -> Response:
    """Cancel (a worker holding it loses its lease) and delete the stored request and report."""
    if not _AUDIT_ID.fullmatch(audit_id) or not store.delete_audit(audit_id, tenant=tenant):
        raise NotFoundError(f"no audit {audit_id}")
    return Response(status_code=204)


@router.get("/{audit_id}/report.html", response_class=HTMLResponse, name="report_html")
async def report_html(
    audit_id: str,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    expires: int | None = None,
    sig: str | None = None,
) -> HTMLResponse:
    """The report page: with an API key, or with a signed link (``expires`` + ``sig``) and no header."""
    if sig is not None and expires is not None and api_key_from(request) is None:
        row = await run_in_threadpool(store.get_audit, audit_id) if _AUDIT_ID.fullmatch(audit_id) else None
        secret = request.app.state.signing_secret
        if row is None or not signing.verify(secret, row.id, row.tenant, expires=expires, sig=sig):
            raise ForbiddenError("this report link is invalid or has expired; ask the API for a new report_url")
    else:
        tenant = await current_tenant(request, store)
        row = await run_in_threadpool(_owned, store, audit_id, tenant)
    if row.status != "succeeded" or row.report is None:
        raise ConflictError(f"audit {audit_id} is {row.status}; its report exists once it has succeeded")
    report = AuditReport.model_validate(row.report)
    return html_page(render_report_html(report, title=f"faithaudit report {row.id}"))


def _owned(store, audit_id: str, tenant: str) -> AuditRow:
    row = store.get_audit(audit_id, tenant=tenant) if _AUDIT_ID.fullmatch(audit_id) else None
    if row is None:
        raise NotFoundError(f"no audit {audit_id}")
    return row
