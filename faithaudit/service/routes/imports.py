"""/v1/imports: traces from other tools as audit requests (parsing only; nothing is submitted or run), and
/v1/webhooks/secret: the key a tenant's webhook receivers verify signatures with."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from faithaudit.api_schemas import ImportedRequest, WebhookSecret
from faithaudit.importers.trace_request import otlp_request
from faithaudit.importers.validate import checked_request
from faithaudit.service.deps import CurrentTenant, SettingsDep
from faithaudit.service.validation import load_json

router = APIRouter(tags=["imports", "webhooks"])


@router.post("/v1/imports/otlp", response_model=ImportedRequest)
async def import_otlp(
    request: Request,
    tenant: CurrentTenant,
    trace_id: Annotated[str | None, Query(max_length=64, description="The trace to import (hex).")] = None,
) -> ImportedRequest:
    """An OTLP/JSON document (OpenInference or OpenTelemetry GenAI attributes) as an audit request: ``rag`` with
    the retrieved documents, or ``agent`` when tools were called. 422 names the span and the attribute."""
    data = load_json(await request.body())
    return await run_in_threadpool(_convert, data, trace_id)


def _convert(data, trace_id: str | None) -> ImportedRequest:
    body = otlp_request(data, trace_id=trace_id)
    checked = checked_request(body, where=f"trace {body['metadata']['trace_id']}")
    return ImportedRequest(request=checked, notes=list(body["metadata"]["notes"]))


@router.get("/v1/webhooks/secret", response_model=WebhookSecret)
async def webhook_secret(tenant: CurrentTenant, settings: SettingsDep) -> WebhookSecret:
    """This tenant's webhook signing key (derived per tenant: it verifies only this tenant's webhooks)."""
    from faithaudit import webhooks

    service = await run_in_threadpool(webhooks.service_secret, settings)
    return WebhookSecret(secret=webhooks.tenant_secret(service, tenant))
