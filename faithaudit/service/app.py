"""The FastAPI application factory. The API process never imports torch: audits run on the workers."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from faithaudit import __version__
from faithaudit.api_schemas import format_loc
from faithaudit.config import Settings, get_settings
from faithaudit.errors import FaithauditError
from faithaudit.queue import Enqueuer
from faithaudit.service.deps import KeyCache
from faithaudit.service.limits import BodySizeLimit
from faithaudit.service.routes import audits, health, jobs
from faithaudit.store import Store
from faithaudit.store.reaper import ReaperThread

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str, fields: list[dict] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "fields": fields or []}}, status_code=status)


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    enqueuer: Enqueuer | None = None,
    auth_enabled: bool = True,
    run_reaper: bool = True,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        reaper = None
        if run_reaper:
            reaper = ReaperThread(
                app.state.store,
                app.state.enqueuer.send,
                interval=settings.reaper_interval_seconds,
                stale_enqueue_seconds=max(300.0, 10 * settings.lease_seconds),
                send_job=app.state.enqueuer.send_job,
            )
            reaper.start()
        yield
        if reaper is not None:
            reaper.stop()

    app = FastAPI(
        title="faithaudit",
        version=__version__,
        description="Audit whether an LLM pipeline relies on the sources it shows.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store or Store.from_settings(settings)
    app.state.enqueuer = enqueuer or Enqueuer(settings.broker_url, settings.queue_name)
    app.state.auth_enabled = auth_enabled
    app.state.key_cache = KeyCache(ttl=settings.key_cache_seconds)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(audits.router)
    app.include_router(jobs.router)
    app.include_router(health.router)

    @app.exception_handler(FaithauditError)
    async def _faithaudit_error(request: Request, exc: FaithauditError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("internal error on %s: %s", request.url.path, exc.message)
        return JSONResponse(exc.as_dict(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"path": format_loc(list(e["loc"])), "msg": e["msg"]} for e in exc.errors()]
        message = "; ".join(f"{f['path']}: {f['msg']}" for f in fields[:5])
        return _error(422, "invalid_request", message, fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, "internal_error", "internal error; the audit, if accepted, is kept")

    return app
