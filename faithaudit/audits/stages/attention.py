"""``attention``: the full-context pass reads the response rows' attention over the sources (``provenance``)."""

from __future__ import annotations

from dataclasses import replace

from faithaudit.audits.context import Findings, StageContext
from faithaudit.audits.plan import register_stage


@register_stage("attention", passes=lambda options, n: 0, order=0, needs_attention=True, metered=False)
def attention(ctx: StageContext, found: Findings) -> Findings:
    return replace(found, attention=ctx.base.attention)
