"""/healthz (process up), /readyz (database and broker reachable), /metrics (Prometheus text, operators only:
``Authorization: Bearer $FAITHAUDIT_METRICS_TOKEN``; without a token configured it is open in development and
refused in production). The metrics carry no tenant or tag labels."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from faithaudit.errors import ForbiddenError
from faithaudit.service.deps import EnqueuerDep, SettingsDep, StoreDep, UnauthorizedError
from faithaudit.service.metrics import render_metrics

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(store: StoreDep, enqueuer: EnqueuerDep) -> JSONResponse:
    checks = {"database": store.ping(), "broker": enqueuer.ping()}
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, store: StoreDep, enqueuer: EnqueuerDep, settings: SettingsDep) -> PlainTextResponse:
    check_metrics_access(request, settings)
    body, content_type = render_metrics(store, enqueuer)
    return PlainTextResponse(body, media_type=content_type)


def check_metrics_access(request: Request, settings) -> None:
    token = settings.metrics_token
    if token is None:
        if settings.is_production:
            raise ForbiddenError("/metrics needs FAITHAUDIT_METRICS_TOKEN in production")
        return
    sent = request.headers.get("authorization", "")
    if not (sent[:7].lower() == "bearer " and hmac.compare_digest(sent[7:].strip().encode(), token.encode())):
        raise UnauthorizedError("/metrics needs 'Authorization: Bearer <FAITHAUDIT_METRICS_TOKEN>'")
