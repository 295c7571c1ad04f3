"""Request dependencies: settings, store and queue from app state, and the tenant behind the API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from faithaudit.config import Settings
from faithaudit.errors import FaithauditError
from faithaudit.service.queue import Enqueuer
from faithaudit.service.store import Store


class UnauthorizedError(FaithauditError):
    code = "unauthorized"
    http_status = 401


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_enqueuer(request: Request) -> Enqueuer:
    return request.app.state.enqueuer


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[Store, Depends(get_store)]
EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]

LOCAL_TENANT = "local"


def api_key_from(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    return request.headers.get("x-api-key") or None


def current_tenant(request: Request, store: StoreDep) -> str:
    if not request.app.state.auth_enabled:
        return LOCAL_TENANT
    key = api_key_from(request)
    if key is None:
        raise UnauthorizedError("missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    tenant = store.authenticate(key)
    if tenant is None:
        raise UnauthorizedError("invalid or revoked API key")
    return tenant


CurrentTenant = Annotated[str, Depends(current_tenant)]
