"""Request dependencies: settings, store and queue from app state, and the tenant behind the API key."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from faithaudit.config import Settings
from faithaudit.errors import FaithauditError
from faithaudit.queue import Enqueuer
from faithaudit.store import Store


class UnauthorizedError(FaithauditError):
    code = "unauthorized"
    http_status = 401


# Dependencies that only read app state are async, so they cost no trip through the thread pool.
async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_enqueuer(request: Request) -> Enqueuer:
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


class KeyCache:
    """Valid keys seen in the last ``ttl`` seconds (a revoked key stops working within ``ttl``)."""

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self._entries: dict[str, tuple[str, float]] = {}

    def get(self, key: str) -> str | None:
        hit = self._entries.get(key)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, key: str, tenant: str) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (tenant, time.monotonic() + self.ttl)


async def tenant_for_key(request: Request, store: Store, key: str) -> str | None:
    """The tenant of a valid key (cached for a few seconds), else None. The API and the UI both ask here."""
    state = request.app.state
    tenant = state.key_cache.get(key)
    if tenant is None:
        tenant = await run_in_threadpool(store.authenticate, key)
        if tenant is not None:
            state.key_cache.put(key, tenant)
    return tenant


async def current_tenant(request: Request, store: StoreDep) -> str:
    if not request.app.state.auth_enabled:
        return LOCAL_TENANT
    key = api_key_from(request)
    if key is None:
        raise UnauthorizedError("missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    tenant = await tenant_for_key(request, store, key)
    if tenant is None:
        raise UnauthorizedError("invalid or revoked API key")
    return tenant


CurrentTenant = Annotated[str, Depends(current_tenant)]
