"""The service's HMAC secret, kept in ``data_dir`` when not configured: report links (``service.signing``) and
webhook signatures (``webhooks``) use it, in the API and in the workers alike."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

SECRET_FILE = "signing_secret"


def load_or_create_secret(data_dir: Path, name: str = SECRET_FILE) -> str:
    """The secret kept in ``data_dir``; created (64 hex characters, mode 0600) by the first process that needs it.
    Rotate by replacing the file (or setting FAITHAUDIT_SIGNING_SECRET) and restarting: old links stop working."""
    path = Path(data_dir) / name
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
