"""The OpenAPI contract as the service really answers it, for people and for fuzzers.

FastAPI's generated document is completed here: each POST declares its JSON body (the routes read raw bytes so
that one edge validates them, ``service.validation``), the two ways to send a key are security schemes, every
status a route can answer is documented with the real error envelope (FastAPI's ``HTTPValidationError`` shape is
replaced), and ``/docs`` and ``/redoc`` load their assets from this server (``fastapi_offline``'s files), never
from a CDN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from starlette.staticfiles import StaticFiles

from faithaudit.api_schemas import AuditRequest, CorpusCreate, CorpusDocumentsIn, OtlpTracesIn
from faithaudit.api_schemas.suite import GateSuite

DOCS_ASSETS = "/docs-assets"
BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("/v1/audits", "post"): AuditRequest,
    ("/v1/corpora", "post"): CorpusCreate,
    ("/v1/corpora/{name}/documents", "post"): CorpusDocumentsIn,
    ("/v1/gates", "post"): GateSuite,
    ("/v1/imports/otlp", "post"): OtlpTracesIn,
}
PUBLIC = {"/healthz", "/readyz"}
DESCRIPTIONS = {
    "401": "No API key, or a wrong or revoked one.",
    "403": "An invalid or expired signed link.",
    "404": "No such resource for this tenant.",
    "405": "Method not allowed (see the Allow header).",
    "408": "The request body stopped arriving.",
    "409": "Conflict: an Idempotency-Key reused with another body, a report that does not exist yet, a corpus name "
    "taken, or a corpus that a job is building, extending or deleting.",
    "413": "The body is over FAITHAUDIT_MAX_BODY_BYTES.",
    "415": "The body is not JSON, or has a Content-Encoding.",
    "422": "Invalid request; `fields` names each field.",
    "429": "A quota of this tenant is used up (GET /v1/usage); the Retry-After header says when the same request fits.",
    "500": "Internal error (Connection: close); an accepted audit is kept.",
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["path", "msg"],
                        "properties": {"path": {"type": "string"}, "msg": {"type": "string"}},
                    },
                },
            },
        }
    },
}


QUOTA_PATHS = ("/v1/audits", "/v1/gates")
CONFLICTS = {  # an Idempotency-Key reused with another body; a corpus name taken, busy or not ready
    ("post", "/v1/audits"),
    ("post", "/v1/gates"),
    ("post", "/v1/corpora"),
    ("post", "/v1/corpora/{name}/documents"),
    ("delete", "/v1/corpora/{name}"),
}


def statuses_for(path: str, method: str) -> list[str]:
    """Every error status the route can answer."""
    if path in PUBLIC:
        return ["405", "500"]
    out = ["401", "405", "422", "500"] if path != "/metrics" else ["401", "403", "405", "500"]
    if method in ("post", "put", "patch"):
        out += ["408", "413", "415"]
    if "{" in path or method == "post" and path != "/v1/audits":
        out.append("404")
    if method == "post" and path in QUOTA_PATHS:
        out.append("429")
    if (method, path) in CONFLICTS or path.endswith("report.html"):
        out.append("409")
    if path.endswith("report.html"):
        out.append("403")
    return sorted(set(out))


def build_openapi(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            _complete(path, method, op, schemas)
    return spec


def _complete(path: str, method: str, op: dict, schemas: dict) -> None:
    model = BODIES.get((path, method))
    if model is not None:
        for name, schema in _schemas(model).items():
            schemas.setdefault(name, schema)
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    if path not in PUBLIC:
        op["security"] = [{"bearer": []}, {"apiKey": []}]
        if path.endswith("report.html"):
            op["security"].append({})  # a signed link needs no key
        if path == "/metrics":
            op["security"] = [{"bearer": []}, {}]  # the operator token; open in development
    responses = op.setdefault("responses", {})
    for status in statuses_for(path, method):
        responses[status] = {
            "description": DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if status == "429":
            responses[status]["headers"] = {
                "Retry-After": {"description": "Seconds until the request fits.", "schema": {"type": "integer"}}
            }


def _schemas(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
    defs = schema.pop("$defs", {})
    return {model.__name__: schema, **defs}


def install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI, with a working Authorize button) and ``/redoc`` from assets served here."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
