"""Signed, expiring links to a report page, which a browser can open without an API key. The secret is the one
``faithaudit.secret_file`` keeps (or FAITHAUDIT_SIGNING_SECRET)."""

from __future__ import annotations

import hashlib
import hmac
import time

from faithaudit.secret_file import SECRET_FILE, load_or_create_secret

__all__ = ["SECRET_FILE", "load_or_create_secret", "sign", "signed_query", "verify"]


def sign(secret: str, audit_id: str, tenant: str, expires: int) -> str:
    message = f"{audit_id}:{tenant}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_query(secret: str, audit_id: str, tenant: str, *, ttl: int, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + ttl)
    return f"expires={expires}&sig={sign(secret, audit_id, tenant, expires)}"


def verify(secret: str, audit_id: str, tenant: str, *, expires: int, sig: str, now: float | None = None) -> bool:
    if expires < (now if now is not None else time.time()):
        return False
    expected = sign(secret, audit_id, tenant, expires).encode()
    return hmac.compare_digest(expected, sig.encode("utf-8", "replace"))
