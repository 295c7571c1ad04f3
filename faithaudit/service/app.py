"""The FastAPI application factory. The API process never imports torch: audits run on the workers.

``create_app`` takes its settings and store; ``create_app_from_env`` is the factory each process of
``faithaudit serve --workers N`` calls (uvicorn ``factory=True``): the settings from the ``FAITHAUDIT_*``
variables, ``ServeOptions`` from ``SERVE_OPTIONS_ENV`` (what the command decided beyond the settings), and a store
of its own.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from collections.abc import Mapping
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from faithaudit import __version__
from faithaudit.api_schemas import format_loc
from faithaudit.config import Settings, get_settings
from faithaudit.errors import FaithauditError
from faithaudit.queue import Enqueuer
from faithaudit.service import signing
from faithaudit.service.deps import KeyCache
from faithaudit.service.limits import RequestEdge
from faithaudit.service.model_files import ModelFilesWatcher
from faithaudit.service.openapi import build_openapi, install_docs
from faithaudit.service.relay import EnqueueRelay
from faithaudit.service.routes import audits, health, imports, jobs, ui, usage
from faithaudit.service.validation import planned, validate_audit_request
from faithaudit.store import Store
from faithaudit.store.reaper import ReaperThread

log = logging.getLogger(__name__)

SERVE_OPTIONS_ENV = "FAITHAUDIT_SERVE_OPTIONS"  # set by `faithaudit serve` for its API processes; not a setting


class ServeOptions(BaseModel):
    """What ``faithaudit serve`` decided beyond the settings, carried to each API process as JSON in
    ``SERVE_OPTIONS_ENV``: whether keys are required (``--no-auth``) and the public URL it computed from its bind
    address when ``FAITHAUDIT_PUBLIC_URL`` is unset. Absent, keys are required and the settings' URL is kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auth_enabled: bool = True
    public_url: str | None = None

    def to_env(self) -> dict[str, str]:
        return {SERVE_OPTIONS_ENV: self.model_dump_json()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeOptions:
        raw = (os.environ if environ is None else environ).get(SERVE_OPTIONS_ENV)
        return cls() if raw is None else cls.model_validate_json(raw)


def create_app_from_env() -> FastAPI:
    """One API process of ``faithaudit serve --workers N``: its own settings, store and reaper. The parent has
    applied the store's migrations before starting it. A failure here exits with uvicorn's start-up failure code,
    so that its supervisor stops every process rather than restarting this one for ever."""
    from uvicorn.config import STARTUP_FAILURE

    try:
        options = ServeOptions.from_env()
        settings = get_settings()
        if options.public_url is not None:
            settings = settings.model_copy(update={"public_url": options.public_url})
        return create_app(settings, auth_enabled=options.auth_enabled, warm_up=True, freeze_gc=True)
    except Exception:
        log.exception("this API process cannot start")
        raise SystemExit(STARTUP_FAILURE) from None


def _warm_model(settings: Settings, name: str) -> bool:
    """One submit's checks and planning on a small request, nothing stored or sent: loads the model's tokenizer
    and chat template when a worker has cached it. True when it had them to check with."""
    body = {
        "query": "Warm-up.",
        "response": "Warm-up.",
        "pipeline": {"kind": "rag", "documents": [{"id": "d1", "text": "Warm-up."}]},
        "model": {"name": name},
    }
    request, fitted = validate_audit_request(json.dumps(body).encode(), settings)
    planned(request, settings, None, fitted)
    return fitted is not None


def _warm_up(settings: Settings, store: Store, enqueuer: Enqueuer) -> list[str]:
    """Run a submit's first-time work before this process takes requests: each served model's tokenizer and chat
    template loaded, validation and planning run once on a small request (``_warm_model``), the database
    pool's connections opened (``Store.warm``), the broker's client built and its connections opened
    (``Enqueuer.prepare``, ``Enqueuer.connect_pool``). Without it the first submit a process
    answers takes about a second. A failure is logged and skipped: the warm-up never stops the API. Returns the
    served models no worker has cached yet, for ``ModelFilesWatcher`` to load when their files appear."""
    not_cached = []
    for name in settings.served_models:
        try:
            if not _warm_model(settings, name):
                not_cached.append(name)
        except Exception as exc:  # an unusable model is the submit's 422 to give, not a start-up failure
            log.warning("warm-up of model %s skipped: %s", name, exc)
    try:
        store.warm()
    except Exception as exc:  # the database is down: /readyz says so, and each request its own 503
        log.warning("warm-up of the database pool skipped: %r", exc)
    try:
        enqueuer.prepare()
        enqueuer.connect_pool()
    except Exception as exc:  # the broker is down or its URL unusable: each send will say so; the reaper retries
        log.warning("warm-up of the broker client skipped: %s", exc)
    return not_cached


def _freeze_start_up_objects() -> None:
    """Move what start-up built (modules, the app, tokenizers: ~130,000 objects) out of the garbage collector's
    sight. A full collection traverses every tracked object: 70 ms here, a pause for every request in flight,
    several times a minute under load; after the freeze it traverses only what requests made since."""
    gc.collect()
    gc.freeze()


def _error(
    status: int, code: str, message: str, fields: list[dict] | None = None, headers: dict | None = None
) -> JSONResponse:
    headers = dict(headers or {})
    if status >= 500:  # the connection may be in any state: the client should not reuse it
        headers["Connection"] = "close"
    body = {"error": {"code": code, "message": message, "fields": fields or []}}
    return JSONResponse(body, status_code=status, headers=headers)


def _cache_openapi(app: FastAPI) -> dict:
    app.openapi_schema = build_openapi(app)
    return app.openapi_schema


def _allowed_methods(request: Request) -> list[str]:
    """Methods some route answers on this path (matched the way the router matches, included routers too)."""
    from starlette.routing import Match

    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    enqueuer: Enqueuer | None = None,
    auth_enabled: bool = True,
    run_reaper: bool = True,
    warm_up: bool = False,
    freeze_gc: bool = False,
) -> FastAPI:
    """``warm_up``: run ``_warm_up`` at start-up, before the first request is taken; ``freeze_gc``: then freeze
    the process's start-up objects (``_freeze_start_up_objects``). ``faithaudit serve`` does both; an app in a
    test process does neither (a freeze there would outlive the app)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        watcher = None
        if warm_up and (not_cached := _warm_up(settings, app.state.store, app.state.enqueuer)):
            watcher = ModelFilesWatcher(not_cached, partial(_warm_model, settings))
            watcher.start()
        app.state.model_files = watcher
        if freeze_gc:
            _freeze_start_up_objects()
        reaper = None
        if run_reaper:
            reaper = ReaperThread(
                app.state.store,
                app.state.enqueuer,
                interval=settings.reaper_interval_seconds,
                stale_enqueue_seconds=settings.requeue_after,
                retention_days=settings.retention_days,
            )
            reaper.start()
        yield
        app.state.relay.stop()
        if watcher is not None:
            watcher.stop()
        if reaper is not None:
            reaper.stop()

    app = FastAPI(
        title="faithaudit",
        version=__version__,
        description="Audit whether an LLM pipeline relies on the sources it shows.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = store or Store.from_settings(settings)
    app.state.enqueuer = enqueuer or Enqueuer.from_settings(settings)
    app.state.relay = EnqueueRelay(app.state.store, app.state.enqueuer)
    app.state.auth_enabled = auth_enabled
    app.state.signing_secret = settings.signing_secret or signing.load_or_create_secret(settings.data_dir)
    app.state.key_cache = KeyCache(ttl=settings.key_cache_seconds)
    app.add_middleware(
        RequestEdge,
        max_bytes=settings.max_body_bytes,
        read_timeout=settings.body_read_timeout_seconds,
        form_paths=(ui.PREFIX + "/",),
    )
    app.include_router(audits.router)
    app.include_router(jobs.router)
    app.include_router(imports.router)
    app.include_router(usage.router)
    app.include_router(health.router)
    app.include_router(ui.router)
    install_docs(app)
    app.openapi = lambda: app.openapi_schema or _cache_openapi(app)

    @app.exception_handler(FaithauditError)
    async def _faithaudit_error(request: Request, exc: FaithauditError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("internal error on %s: %s", request.url.path, exc.message)
        headers = {**exc.headers, **({"Connection": "close"} if exc.http_status >= 500 else {})}
        return JSONResponse(exc.as_dict(), status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"path": format_loc(list(e["loc"])), "msg": e["msg"]} for e in exc.errors()]
        message = "; ".join(f"{f['path']}: {f['msg']}" for f in fields[:5])
        return _error(422, "invalid_request", message, fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        code = codes.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of every route on this path, not only the first route's
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return _error(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, "internal_error", "internal error; the audit, if accepted, is kept")

    return app
