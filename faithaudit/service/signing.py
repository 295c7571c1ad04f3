"""Signed, expiring links to a report page, which a browser can open without an API key."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

SECRET_FILE = "signing_secret"


def load_or_create_secret(data_dir: Path) -> str:
    """The secret kept in ``data_dir``; created (64 hex characters, mode 0600) by the first process that needs it.
    Rotate by replacing the file (or setting FAITHAUDIT_SIGNING_SECRET) and restarting: old links stop working."""
    path = Path(data_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be writing it right now
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty; delete it to have a new secret generated") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    return path.read_text().strip()


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
