"""/v1/imports: traces from other tools as audit requests (parsing only; nothing is submitted or run)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from faithaudit.api_schemas import ImportedRequest
from faithaudit.importers.trace_request import otlp_request
from faithaudit.importers.validate import checked_request
from faithaudit.service.deps import CurrentTenant
from faithaudit.service.validation import load_json

router = APIRouter(prefix="/v1/imports", tags=["imports"])


@router.post("/otlp", response_model=ImportedRequest)
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
