"""Report links that cannot be forged: a random secret kept in the data dir when none is set, a production guard
that refuses published, short or default secrets (whatever the case of the environment's name), and links built
from FAITHAUDIT_PUBLIC_URL, never from the request's Host header."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cases import load_example
from fastapi.testclient import TestClient
from inprocess import service_app
from pydantic import ValidationError

from faithaudit.config import Settings
from faithaudit.service import signing
from faithaudit.store import Store

GOLDEN = json.loads((Path(__file__).parent / "data" / "golden" / "rag.json").read_text())


@pytest.mark.parametrize("environment", ["production", "Production", "PROD", " prod "])
@pytest.mark.parametrize("secret", ["dev-only-insecure-secret", "change-me-to-a-long-random-string", "short", "x" * 31])
def test_production_refuses_weak_secrets(environment, secret):
    with pytest.raises(ValidationError, match="FAITHAUDIT_SIGNING_SECRET"):
        Settings(environment=environment, signing_secret=secret)


def test_production_accepts_a_long_secret_or_a_generated_one():
    assert Settings(environment="Production", signing_secret="k" * 32).is_production
    assert Settings(environment="production").signing_secret is None  # generated in the data dir at start
    assert Settings(environment="production", signing_secret="  ").signing_secret is None  # empty is unset


def _app(tmp_path: Path, **overrides):
    app, store, _ = service_app(f"sqlite:///{tmp_path / 'fa.db'}", tmp_path / "data", **overrides)
    return app, store


def _succeeded(store: Store, tenant: str) -> str:
    row, _ = store.create_audit(
        tenant=tenant, request=load_example("fictional_fact.json"), request_hash="h" * 64, idempotency_key=None
    )
    assert store.claim(row.id, "w", lease_seconds=60, max_attempts=3).claimed
    assert store.finish(row.id, "w", report=GOLDEN, gate_passed=True)
    return row.id


def test_a_generated_secret_is_kept_and_old_default_links_open_nothing(tmp_path):
    app, store = _app(tmp_path)
    secret_file = tmp_path / "data" / signing.SECRET_FILE
    secret = secret_file.read_text()
    assert len(secret) == 64 and secret_file.stat().st_mode & 0o777 == 0o600
    again, store2 = _app(tmp_path)  # a second API process on the same disk signs with the same secret
    assert again.state.signing_secret == secret == app.state.signing_secret
    audit_id = _succeeded(store, "acme")
    with TestClient(app) as client:
        key = store.create_api_key("acme")[0]
        url = client.get(f"/v1/audits/{audit_id}", headers={"X-API-Key": key}).json()["report_url"]
        assert client.get(url).status_code == 200
        forged = signing.signed_query("dev-only-insecure-secret", audit_id, "acme", ttl=600, now=time.time())
        assert client.get(f"/v1/audits/{audit_id}/report.html?{forged}").status_code == 403
    store.dispose()
    store2.dispose()


def test_links_come_from_the_public_url_never_the_host_header(tmp_path):
    app, store = _app(tmp_path, public_url="https://audits.example.com/", signing_secret="s" * 40)
    audit_id = _succeeded(store, "acme")
    with TestClient(app) as client:
        key = store.create_api_key("acme")[0]
        headers = {"X-API-Key": key, "Host": "evil.example"}
        url = client.get(f"/v1/audits/{audit_id}", headers=headers).json()["report_url"]
        assert url.startswith(f"https://audits.example.com/v1/audits/{audit_id}/report.html?expires=")
        assert "evil" not in url
    store.dispose()
