"""/ui: the reviewers' web UI, server-rendered from ``faithaudit.pages`` templates (no scripts, no CDN).

Sign-in takes an API key and keeps it in a session cookie (HttpOnly, SameSite=Strict, no expiry: it ends with the
browser session); every page asks the same key check as the API, so a tenant sees only its own audits. Errors are
the API's messages on an HTML page with the API's status codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from faithaudit.api_schemas import AuditReport, format_loc
from faithaudit.api_schemas.request import TAG_PATTERN
from faithaudit.errors import FaithauditError, ForbiddenError, InvalidRequestError, NotFoundError
from faithaudit.pages.env import render
from faithaudit.pages.report import render_report_html
from faithaudit.pages.ui_views import compare, list_row, parse_day, trend
from faithaudit.service.deps import LOCAL_TENANT, StoreDep, UnauthorizedError, tenant_for_key
from faithaudit.service.html import PAGE_HEADERS, html_page
from faithaudit.store import AuditRow

PREFIX = "/ui"
COOKIE = "faithaudit_ui_key"
MAX_KEY_CHARS = 200
TREND_LIMIT = 500


class SignInRequired(UnauthorizedError):
    """No UI session: the page redirects to the sign-in form."""


def page(template: str, *, status: int = 200, **context: object) -> HTMLResponse:
    return html_page(render(f"ui/{template}", prefix=PREFIX, **context), status)


def error_page(status: int, message: str, fields: list[tuple[str, str]] | None = None) -> HTMLResponse:
    return page(
        "error.html", status=status, status_code=status, message=message, fields=fields or [], signed_in=status != 401
    )


class UiRoute(APIRoute):
    """Errors of UI routes become HTML pages (same status and message as the API); no session: the sign-in form."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return RedirectResponse(f"{PREFIX}/login", status_code=303, headers=PAGE_HEADERS)
            except RequestValidationError as exc:
                fields = [(format_loc([p for p in e["loc"] if p != "query"]), e["msg"]) for e in exc.errors()]
                return error_page(422, "; ".join(f"{f}: {m}" for f, m in fields[:5]), fields)
            except FaithauditError as exc:
                fields = [(f["path"], f["msg"]) for f in exc.as_dict()["error"].get("fields", [])]
                return error_page(exc.http_status, exc.message, fields)

        return guarded


router = APIRouter(prefix=PREFIX, route_class=UiRoute, include_in_schema=False)


async def ui_tenant(request: Request, store) -> str:
    if not request.app.state.auth_enabled:
        return LOCAL_TENANT
    key = request.cookies.get(COOKIE)
    if not key:
        raise SignInRequired("sign in with an API key")
    tenant = await tenant_for_key(request, store, key)
    if tenant is None:
        raise SignInRequired("the API key was revoked")
    return tenant


def _blank(value: str | None) -> str | None:
    return value if value else None


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/audits", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    if not request.app.state.auth_enabled:
        return RedirectResponse(f"{PREFIX}/audits", status_code=303)
    return page("login.html", error=None, signed_in=False)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, store: StoreDep) -> Response:
    _same_origin(request)
    try:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    except ValueError:
        return page("login.html", status=422, error="body: the sign-in form has one field, api_key", signed_in=False)
    key = (form.get("api_key") or [""])[0].strip()
    if not key or len(key) > MAX_KEY_CHARS:
        return page("login.html", status=422, error="api_key: enter an API key", signed_in=False)
    if await tenant_for_key(request, store, key) is None:
        return page("login.html", status=401, error="api_key: invalid or revoked API key", signed_in=False)
    response = RedirectResponse(f"{PREFIX}/audits", status_code=303, headers=PAGE_HEADERS)
    settings = request.app.state.settings
    secure = (
        settings.is_production or (settings.public_url or "").startswith("https://") or request.url.scheme == "https"
    )
    response.set_cookie(COOKIE, key, httponly=True, samesite="strict", secure=secure, path=PREFIX)
    return response


def _same_origin(request: Request) -> None:
    """A form post from another site (login CSRF: signing a victim in with the attacker's key) is refused; the
    browser sends Origin on every POST."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        from urllib.parse import urlsplit

        if urlsplit(origin).netloc != request.headers.get("host", ""):
            raise ForbiddenError("cross-site form post refused")


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request) -> Response:
    _same_origin(request)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303, headers=PAGE_HEADERS)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


@router.get("/audits", response_class=HTMLResponse)
async def audits_page(
    request: Request,
    store: StoreDep,
    status: str | None = None,
    gate: str | None = None,
    tag: str | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> HTMLResponse:
    tenant = await ui_tenant(request, store)
    status, gate, tag, since, until, cursor = map(_blank, (status, gate, tag, since, until, cursor))
    filters = {"status": status, "gate": gate, "tag": tag, "since": since, "until": until}
    gate_passed = _gate_filter(gate)
    _check_tag(tag)
    after, before = _day(since, "since"), _day(until, "until")
    if before is not None:
        from datetime import timedelta

        try:
            before += timedelta(days=1)  # until is inclusive
        except OverflowError:  # 9999-12-31: no upper bound
            before = None
    rows, next_cursor = await run_in_threadpool(
        store.list_audits,
        tenant,
        limit=limit,
        cursor=cursor,
        status=status,
        gate_passed=gate_passed,
        tag=tag,
        created_after=after,
        created_before=before,
    )
    kept = {k: v for k, v in {**filters, "limit": limit if limit != 20 else None}.items() if v is not None}
    next_url = None if next_cursor is None else f"{PREFIX}/audits?" + urlencode({**kept, "cursor": next_cursor})
    tags = await run_in_threadpool(store.list_tags, tenant)
    return page(
        "audits.html",
        rows=[list_row(r) for r in rows],
        filters=filters,
        tags=tags,
        next_url=next_url,
        first_url=f"{PREFIX}/audits?" + urlencode(kept) if cursor else None,
        signed_in=True,
        auth=request.app.state.auth_enabled,
        tenant=tenant,
    )


def _gate_filter(gate: str | None) -> bool | None:
    if gate is None:
        return None
    if gate not in ("passed", "failed"):
        raise InvalidRequestError.for_field("gate", "must be passed or failed")
    return gate == "passed"


def _check_tag(tag: str | None) -> None:
    import re

    if tag is not None and not re.fullmatch(TAG_PATTERN, tag):
        raise InvalidRequestError.for_field("tag", "must be a tag: letters, digits and _.:/=@+- (at most 64)")


def _day(value: str | None, name: str):
    try:
        return parse_day(value, name)
    except ValueError:
        raise InvalidRequestError.for_field(name, "must be a date as YYYY-MM-DD") from None


async def _owned(request: Request, store, audit_id: str) -> AuditRow:
    tenant = await ui_tenant(request, store)
    row = await run_in_threadpool(store.get_audit, audit_id, tenant=tenant) if _is_id(audit_id) else None
    if row is None:
        raise NotFoundError(f"audit {audit_id} not found")
    return row


def _is_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


@router.get("/audits/{audit_id}", response_class=HTMLResponse)
async def audit_page(audit_id: str, request: Request, store: StoreDep) -> HTMLResponse:
    row = await _owned(request, store, audit_id)
    if row.report is None:
        return page("status.html", row=list_row(row), error=row.error, signed_in=True)
    report = AuditReport.model_validate(row.report)
    trends = [(f"trend of {t}", f"{PREFIX}/trends?" + urlencode({"tag": t})) for t in list_row(row).tags]
    nav = [("← audits", f"{PREFIX}/audits"), *trends]
    html = render_report_html(report, title=f"faithaudit report {row.id}", nav=nav)
    return html_page(html)


@router.get("/compare", response_class=HTMLResponse)
async def compare_page(request: Request, store: StoreDep, id: Annotated[list[str], Query()] = []) -> HTMLResponse:  # noqa: A002, B006
    await ui_tenant(request, store)  # sign-in first, then the form's errors
    ids = [i for i in id if i]
    if len(ids) != 2 or ids[0] == ids[1]:
        raise InvalidRequestError.for_field("id", "select exactly two different audits to compare")
    rows = [await _owned(request, store, i) for i in ids]
    unfinished = [r.id for r in rows if r.report is None]
    if unfinished:
        raise InvalidRequestError.for_field("id", f"audit {unfinished[0]} has no report yet")
    a, b = rows
    return page("compare.html", a=list_row(a), b=list_row(b), cmp=compare(a.report, b.report), signed_in=True)


@router.get("/trends", response_class=HTMLResponse)
async def trends_page(request: Request, store: StoreDep, tag: str | None = None) -> HTMLResponse:
    tenant = await ui_tenant(request, store)
    tag = _blank(tag)
    _check_tag(tag)
    tags = await run_in_threadpool(store.list_tags, tenant)
    chart = None
    if tag is not None:
        rows, _ = await run_in_threadpool(store.list_audits, tenant, limit=TREND_LIMIT, status="succeeded", tag=tag)
        chart = trend(tag, rows)
    return page("trends.html", tags=tags, tag=tag, chart=chart, limit=TREND_LIMIT, signed_in=True)
