"""Per-tenant quotas: how much work a tenant may have queued, and how many planned tokens it may submit an hour.

``admit(quota, usage, planned_tokens=, now=)`` is a pure decision over the tenant's usage (``store.usage``): it
returns nothing or raises ``QuotaExceededError`` (HTTP 429) with the seconds after which the same submit fits.
A submit that could never fit (more planned tokens than the hourly limit) is a 422 naming ``audit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from faithaudit.errors import InvalidRequestError, QuotaExceededError
from faithaudit.store.usage import Usage

ACTIVE_RETRY_SECONDS = 30  # a slot frees when an audit ends; a typical small audit runs this long


@dataclass(frozen=True)
class Quota:
    max_active_audits: int | None = None
    planned_tokens_per_hour: int | None = None

    @classmethod
    def from_settings(cls, settings) -> Quota:
        return cls(settings.quota_max_active_audits, settings.quota_tokens_per_hour)

    @property
    def enabled(self) -> bool:
        return self.max_active_audits is not None or self.planned_tokens_per_hour is not None


def admit(quota: Quota, usage: Usage, *, planned_tokens: int, now: datetime, field: str = "audit") -> None:
    limit = quota.planned_tokens_per_hour
    if limit is not None and planned_tokens > limit:  # never fits: a 422 before any 429
        raise InvalidRequestError.for_field(
            field,
            f"plans {planned_tokens} tokens, more than this tenant may submit in an hour ({limit}); "
            "lower audit.num_ablations, audit.placebos or audit.orders, or send fewer sources",
        )
    if quota.max_active_audits is not None and usage.active >= quota.max_active_audits:
        raise QuotaExceededError(
            f"this tenant has {usage.active} audits and gate runs queued or running, the most allowed "
            f"(FAITHAUDIT_QUOTA_MAX_ACTIVE_AUDITS={quota.max_active_audits}); retry when one has ended",
            retry_after=ACTIVE_RETRY_SECONDS,
        )
    if limit is None:
        return
    if usage.planned_tokens + planned_tokens > limit:
        wait = tokens_retry_after(usage, planned_tokens=planned_tokens, limit=limit, now=now)
        raise QuotaExceededError(
            f"this tenant submitted {usage.planned_tokens} planned tokens in the last hour; this one plans "
            f"{planned_tokens}, over the limit of {limit} (FAITHAUDIT_QUOTA_TOKENS_PER_HOUR)",
            retry_after=wait,
        )


def tokens_retry_after(usage: Usage, *, planned_tokens: int, limit: int, now: datetime) -> int:
    """Seconds until enough of the window's submits have aged out for ``planned_tokens`` to fit."""
    remaining = usage.planned_tokens
    for created_at, tokens in usage.window:  # oldest first
        remaining -= tokens
        if remaining + planned_tokens <= limit:
            leaves = created_at + timedelta(seconds=usage.window_seconds)
            return max(1, math.ceil((leaves - now).total_seconds()))
    return usage.window_seconds
