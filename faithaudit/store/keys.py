"""API keys: create (the secret is returned once, only its hash is stored), list, revoke, authenticate."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from faithaudit.errors import ConflictError, InvalidRequestError
from faithaudit.store.base import StoreBase, _utcnow
from faithaudit.store.schema import KEY_PREFIX_CHARS, api_keys


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key without its secret."""

    id: str
    tenant: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _to_key(row: sa.Row) -> ApiKeyInfo:
    m = row._mapping
    return ApiKeyInfo(
        id=m["id"], tenant=m["tenant"], prefix=m["prefix"], created_at=m["created_at"], revoked_at=m["revoked_at"]
    )


class KeysStore(StoreBase):
    """The ``api_keys`` table."""

    def create_api_key(self, tenant: str) -> tuple[str, ApiKeyInfo]:
        """A new key for ``tenant``; the key itself is returned only here, only its hash is stored."""
        if not tenant:
            raise InvalidRequestError.for_field("tenant", "must not be empty")
        key = "fa_" + secrets.token_urlsafe(32)
        info = ApiKeyInfo(
            id=str(uuid.uuid4()), tenant=tenant, prefix=key[:KEY_PREFIX_CHARS], created_at=_utcnow(), revoked_at=None
        )
        with self._write() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=info.id, tenant=tenant, prefix=info.prefix, key_hash=hash_key(key), created_at=info.created_at
                )
            )
        return key, info

    def list_api_keys(self, tenant: str | None = None) -> list[ApiKeyInfo]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        with self._read() as conn:
            return [_to_key(r) for r in conn.execute(query)]

    def revoke_api_key(self, key_id_or_prefix: str) -> bool:
        """Revoke by id or by listed prefix; False when no unrevoked key matches, ConflictError if ambiguous."""
        match = sa.or_(api_keys.c.id == key_id_or_prefix, api_keys.c.prefix == key_id_or_prefix)
        with self._write() as conn:
            ids = conn.execute(sa.select(api_keys.c.id).where(match, api_keys.c.revoked_at.is_(None))).scalars().all()
            if len(ids) > 1:
                raise ConflictError(f"{key_id_or_prefix!r} matches {len(ids)} keys; revoke by id")
            if not ids:
                return False
            conn.execute(api_keys.update().where(api_keys.c.id == ids[0]).values(revoked_at=_utcnow()))
        return True

    def authenticate(self, key: str) -> str | None:
        """The tenant of a valid, unrevoked key, else None."""
        if not key:
            return None
        valid = sa.and_(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
        query = sa.select(api_keys.c.tenant).where(valid)
        with self._read() as conn:
            return conn.execute(query).scalar_one_or_none()
