"""/v1/usage: a tenant's quotas and what counts against them now (``quotas``, ``store.usage``)."""

from __future__ import annotations

from fastapi import APIRouter

from faithaudit.api_schemas import QuotaLimits, Usage
from faithaudit.quotas import Quota
from faithaudit.service.deps import CurrentTenant, SettingsDep, StoreDep

router = APIRouter(tags=["usage"])


@router.get("/v1/usage", response_model=Usage)
def get_usage(tenant: CurrentTenant, settings: SettingsDep, store: StoreDep) -> Usage:
    """This tenant's limits, its audits and gate runs queued or running, and its planned tokens of the last hour."""
    quota = Quota.from_settings(settings)
    used = store.usage(tenant)
    return Usage(
        limits=QuotaLimits(
            max_active_audits=quota.max_active_audits, planned_tokens_per_hour=quota.planned_tokens_per_hour
        ),
        active_audits=used.active_audits,
        active_gates=used.active_gates,
        planned_tokens_last_hour=used.planned_tokens,
        submitted_last_hour=len(used.window),
        window_seconds=used.window_seconds,
    )
