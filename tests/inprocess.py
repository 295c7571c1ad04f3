"""The API in-process (FastAPI TestClient) over a real store and a private queue on the real Redis broker, for the
service tests that need no worker. ``service_app`` builds the app; ``service_client`` also opens a client and
cleans up (queue purged, store disposed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from faithaudit.config import Settings
from faithaudit.queue import Enqueuer
from faithaudit.service.app import create_app
from faithaudit.store import Store


def service_app(database_url: str, data_dir: Path | None = None, **settings):
    """(app, store, enqueuer) for ``database_url``, migrated, with a private queue; ``settings`` override."""
    extra = {"data_dir": data_dir} if data_dir is not None else {}
    config = Settings(database_url=database_url, queue_name=f"fa-test-{uuid.uuid4().hex[:8]}", **extra, **settings)
    store = Store.from_settings(config)
    store.upgrade()
    enqueuer = Enqueuer.from_settings(config)
    return create_app(config, store=store, enqueuer=enqueuer, run_reaper=False), store, enqueuer


@contextmanager
def service_client(database_url: str, data_dir: Path | None = None, *, raise_server_exceptions: bool = True,
                   **settings) -> Iterator[tuple[TestClient, Store]]:  # fmt: skip
    app, store, enqueuer = service_app(database_url, data_dir, **settings)
    try:
        with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
            yield client, store
    finally:
        enqueuer.purge()
        store.dispose()


def seed_audit(store: Store, tenant: str, report, *, tags: list[str] = (), created_at=None, query: str | None = None,
               request: dict | None = None) -> str:  # fmt: skip
    """Store a finished audit of ``report`` (an ``AuditReport``) for ``tenant``, as a worker would; its id."""
    body = dict(request or {"query": query or report.query, "pipeline": {"kind": "rag", "documents": []}})
    body["tags"] = list(tags)
    row, _ = store.create_audit(tenant=tenant, request=body, request_hash=uuid.uuid4().hex, idempotency_key=None,
                                now=created_at)  # fmt: skip
    store.claim(row.id, "seed-worker", lease_seconds=60, max_attempts=3)
    store.finish(row.id, "seed-worker", report=report.model_dump(mode="json"), gate_passed=report.gate.passed)
    return row.id
