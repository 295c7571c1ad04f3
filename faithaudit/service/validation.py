"""Validate a submitted audit fully before it is stored: JSON, schema, served models and size limits."""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from faithaudit.api_schemas import AuditRequest
from faithaudit.api_schemas.edge import EdgeError, check_edge, printable
from faithaudit.audits.source_limits import check_source_limits
from faithaudit.config import Settings
from faithaudit.errors import ConflictError, InvalidRequestError
from faithaudit.service.token_budget import Fitted, check_prompt_fits

M = TypeVar("M", bound=BaseModel)


def load_json(body: bytes) -> Any:
    """A request body as JSON data that passed the hostile edge (``api_schemas.edge``); else a 422 naming where."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, too-deep or too-long numbers
        raise InvalidRequestError.for_field("body", f"not valid JSON: {printable(str(exc))[:200]}") from None
    try:
        check_edge(data)
    except EdgeError as exc:
        raise InvalidRequestError.for_field(exc.path, exc.msg) from None
    return data


def parse_body(model: type[M], body: bytes, what: str) -> M:
    """A request body as ``model``: 422 for JSON that does not parse, fails the edge or does not validate."""
    data = load_json(body)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError.from_validation(exc, what) from None


def parse_audit_request(body: bytes, settings: Settings) -> AuditRequest:
    return validate_audit_request(body, settings)[0]


def validate_audit_request(body: bytes, settings: Settings) -> tuple[AuditRequest, Fitted | None]:
    """The request, validated fully, and the layout its window check built (None: not checked here)."""
    request = parse_body(AuditRequest, body, "audit request")
    check_served(request, settings)
    check_callback(request, settings)
    fitted = None
    if request.pipeline.kind != "retriever":  # a retriever's documents are known only once the worker retrieves
        fitted = check_prompt_fits(
            request, model_name=request.model.name or settings.default_model, cache_dir=settings.cache_dir
        )
    return request, fitted


def check_corpus(request: AuditRequest, store, tenant: str, *, prefix: str = ""):
    """A retriever pipeline must name a ready corpus of this tenant, and k may not exceed its size (422 naming the
    field; 409 while it is built); the corpus row, or None for other pipelines."""
    if request.pipeline.kind != "retriever":
        return None
    corpus = store.get_corpus(tenant, request.pipeline.corpus)
    field = f"{prefix}pipeline.corpus"
    if corpus is None:
        raise InvalidRequestError.for_field(field, f"no corpus {request.pipeline.corpus!r}")
    if corpus.status == "failed":
        raise InvalidRequestError.for_field(
            field, f"corpus {corpus.name!r} failed to build ({corpus.error}); rebuild it with POST /v1/corpora"
        )
    if corpus.status == "pending":
        raise ConflictError(
            f"{field}: corpus {corpus.name!r} is still being built; retry once GET /v1/corpora/{corpus.name} says ready"
        )
    if corpus.status == "ready" and request.pipeline.k > corpus.num_documents:
        raise InvalidRequestError.for_field(
            f"{prefix}pipeline.k",
            f"k={request.pipeline.k} is more than the {corpus.num_documents} documents of corpus {corpus.name!r}",
        )
    return corpus


def check_callback(request: AuditRequest, settings: Settings) -> None:
    """A callback_url may only name a host the operator allowed (no webhooks to arbitrary hosts)."""
    from faithaudit.webhooks import host_allowed

    url = request.callback_url
    if url is not None and not host_allowed(url, settings.callback_hosts):
        allowed = ", ".join(settings.callback_hosts) or "none: webhooks are off"
        raise InvalidRequestError.for_field(
            "callback_url", f"host not allowed here (FAITHAUDIT_CALLBACK_HOSTS: {allowed})"
        )


def check_served(request: AuditRequest, settings: Settings) -> None:
    name = request.model.name or settings.default_model
    if name not in settings.served_models:
        raise InvalidRequestError.for_field(
            "model.name", f"{name!r} is not served here; use one of {sorted(settings.served_models)}"
        )
    check_source_limits(request, max_sources=settings.max_sources, max_source_chars=settings.max_source_chars)


def planned(request: AuditRequest, settings: Settings, corpus=None, fitted: Fitted | None = None):
    """The request's planned cost (``PlannedCost``), counted with the served model's tokenizer when cached (from
    ``fitted``'s layout when given); a retriever's documents at its corpus's longest (``check_corpus``'s row)."""
    from faithaudit.service.token_budget import planned_cost

    return planned_cost(
        request,
        model_name=request.model.name or settings.default_model,
        cache_dir=settings.cache_dir,
        retrieved_doc_chars=getattr(corpus, "max_document_chars", None),
        fitted=fitted,
    )


def admission(settings: Settings, planned_tokens: int, *, field: str = "audit"):
    """The store's admit hook for this submit under the tenant's quotas, or None when no quota is set."""
    from datetime import UTC, datetime

    from faithaudit.quotas import Quota, admit

    quota = Quota.from_settings(settings)
    if not quota.enabled:
        return None
    return lambda usage: admit(quota, usage, planned_tokens=planned_tokens, now=datetime.now(UTC), field=field)


def request_hash(request: AuditRequest) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
