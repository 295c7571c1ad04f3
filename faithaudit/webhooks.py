"""Completion webhooks: when an audit ends, its ``callback_url`` gets a POST with the audit's id, status, gate and
summary, signed ``X-Faithaudit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``. A worker task
delivers it (``workers.tasks``), retrying 5xx, 429 and network errors with doubling delays; the audit itself is
never held up. Receivers check the header with ``verify_signature``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Faithaudit-Signature"
MAX_DELAY_SECONDS = 900.0


def host_allowed(url: str, allowed: list[str]) -> bool:
    """``url``'s host (or host:port) is in ``allowed``."""
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port out of range or not a number
        return False
    with_port = f"{host}:{port}" if port else host
    return bool(host) and (host in allowed or with_port in allowed)


def callback_body(row: Any) -> dict[str, Any]:
    """What the receiver gets: enough to act without another call (the report stays behind the API)."""
    report = row.report or {}
    return {
        "event": "audit.finished",
        "audit_id": row.id,
        "status": row.status,
        "gate_passed": row.gate_passed,
        "error": row.error,
        "summary": report.get("summary"),
        "gate": report.get("gate"),
        "metadata": (row.request or {}).get("metadata") or {},
        "tags": (row.request or {}).get("tags") or [],
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


def tenant_secret(service_secret: str, tenant: str) -> str:
    """The key a tenant's receivers verify with: derived from the service's webhook secret and the tenant, so one
    tenant's key neither verifies another tenant's webhooks nor signs anything else (report links)."""
    return hmac.new(service_secret.encode(), f"faithaudit-webhook:{tenant}".encode(), hashlib.sha256).hexdigest()


def service_secret(settings: Any) -> str:
    """FAITHAUDIT_CALLBACK_SECRET, else one generated into ``data_dir/callback_secret`` (never the link secret)."""
    from faithaudit.secret_file import load_or_create_secret

    return settings.callback_secret or load_or_create_secret(settings.data_dir, name="callback_secret")


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, payload: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str, payload: bytes, header: str, *, tolerance: float = 300.0, now: float | None = None
) -> bool:
    """The header was made with ``secret`` over exactly ``payload``, less than ``tolerance`` seconds ago."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, payload, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def retry_delay(retries: int, base: float) -> float:
    """Seconds before retry number ``retries + 1``: base, 2 base, 4 base ... at most 15 minutes."""
    return min(base * 2**retries, MAX_DELAY_SECONDS)


def should_retry(status: int | None) -> bool:
    """A network error (None), a 5xx or a 429 is worth another try; any other answer is final."""
    return status is None or status >= 500 or status == 429


def post(url: str, payload: bytes, *, secret: str, timeout: float, attempt: int) -> int | None:
    """One delivery attempt; the HTTP status, or None when the receiver could not be reached."""
    import httpx

    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, payload, int(time.time())),
        "X-Faithaudit-Event": "audit.finished",
        "X-Faithaudit-Delivery": str(uuid.uuid4()),
        "X-Faithaudit-Attempt": str(attempt),
        "User-Agent": "faithaudit-webhook",
    }
    try:
        response = httpx.post(url, content=payload, headers=headers, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError:
        return None
    return response.status_code
