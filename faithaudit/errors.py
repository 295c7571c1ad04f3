"""The one exception hierarchy of faithaudit.

    FaithauditError                  (500: a bug or an environment problem, never the client's fault)
    ├── InvalidRequestError          (422: the request is well-formed JSON but cannot be audited)
    │     carries ``fields``: [{"path": "pipeline.documents[0].text", "msg": "..."}]
    ├── UnauthorizedError            (401: no key, or a wrong one; defined in service.deps)
    ├── ForbiddenError               (403: an invalid or expired signed link)
    ├── NotFoundError                (404)
    ├── ConflictError                (409)
    └── ModelUnavailableError        (422 when the client named the model, else 500)

The service maps these to HTTP codes in one handler (``http_status``); the CLI maps InvalidRequestError to exit 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


@dataclass(frozen=True)
class FieldError:
    path: str
    msg: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "msg": self.msg}


class FaithauditError(Exception):
    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, *, fields: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = list(fields or [])

    @property
    def headers(self) -> dict[str, str]:
        """Headers the HTTP answer carries (``Retry-After`` for a quota)."""
        return {}

    def as_dict(self) -> dict:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "fields": [f.as_dict() for f in self.fields],
            }
        }


class InvalidRequestError(FaithauditError):
    code = "invalid_request"
    http_status = 422

    @classmethod
    def for_field(cls, path: str, msg: str) -> InvalidRequestError:
        return cls(f"{path}: {msg}", fields=[FieldError(path, msg)])

    @classmethod
    def from_validation(
        cls, exc: ValidationError, what: str, *, prefix: str = "", context: str = ""
    ) -> InvalidRequestError:
        """A pydantic error as a 422: every field (paths under ``prefix``), the first five in the message."""
        from faithaudit.api_schemas.errors import validation_fields

        pairs = validation_fields(exc)
        summary = "; ".join(f"{path}: {msg}" for path, msg in pairs[:5])
        return cls(f"{context}invalid {what}: {summary}", fields=[FieldError(prefix + p, m) for p, m in pairs])


class ForbiddenError(FaithauditError):
    code = "forbidden"
    http_status = 403


class NotFoundError(FaithauditError):
    code = "not_found"
    http_status = 404


class ConflictError(FaithauditError):
    code = "conflict"
    http_status = 409


class QuotaExceededError(FaithauditError):
    """A tenant's quota is used up for now; ``retry_after`` seconds later the same request fits (429)."""

    code = "quota_exceeded"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = int(retry_after)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ModelUnavailableError(InvalidRequestError):
    code = "model_unavailable"
