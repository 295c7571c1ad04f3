"""/healthz (process up), /readyz (database and broker reachable), /metrics (Prometheus text)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from faithaudit.service.deps import EnqueuerDep, StoreDep
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
def metrics(store: StoreDep, enqueuer: EnqueuerDep) -> PlainTextResponse:
    body, content_type = render_metrics(store, enqueuer)
    return PlainTextResponse(body, media_type=content_type)
