"""Every importer's output passes the same check as a submitted request: the hostile edge, then the schema."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from faithaudit.api_schemas import AuditRequest
from faithaudit.api_schemas.edge import EdgeError, check_edge
from faithaudit.importers.errors import ImportFormatError


def checked_request(body: dict[str, Any], *, where: str) -> AuditRequest:
    """``body`` as an AuditRequest; a 422 / exit 2 naming ``where`` (the span, line or case) and the field."""
    try:
        check_edge(body)
        return AuditRequest.model_validate(body)
    except EdgeError as exc:
        raise ImportFormatError.at(f"{where}: {exc.path}", exc.msg) from None
    except ValidationError as exc:
        raise ImportFormatError.from_validation(exc, "imported request", context=f"{where}: ") from None
