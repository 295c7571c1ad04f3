"""Remove sources and re-score the fixed response: ``leave_one_out`` (each source once) and ``no_context``
(every source). Both reuse the full context's KV cache up to the first removed source."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from faithaudit.audits import interventions
from faithaudit.audits.context import Findings, StageContext
from faithaudit.audits.plan import register_stage
from faithaudit.audits.reliance import leave_one_out_reliance
from faithaudit.audits.scoring import logprobs, score_masks


@register_stage("leave_one_out", passes=lambda options, n: n, order=10)
def leave_one_out(ctx: StageContext, found: Findings) -> Findings:
    masks = interventions.leave_one_out_masks(ctx.num_sources)
    scores = _score(ctx, masks, "leave_one_out")
    loo = logprobs(scores)
    return replace(
        found,
        loo_logprobs=loo,
        loo_token_logprobs=np.stack([s.token_logprobs for s in scores]) if scores else None,
        reliance=leave_one_out_reliance(ctx.base.score.logprob, loo),
        loo_scores=tuple(scores),
        reused=found.reused + tuple(zip(masks, scores, strict=True)),
    )


@register_stage("no_context", passes=lambda options, n: 1, order=20, reads=("leave_one_out",))  # appends to reused
def no_context(ctx: StageContext, found: Findings) -> Findings:
    masks = interventions.no_context_mask(ctx.num_sources)
    (score,) = _score(ctx, masks, "no_context")
    return replace(found, no_context=score, reused=found.reused + ((masks[0], score),))


def _score(ctx: StageContext, masks, stage: str):
    return score_masks(
        ctx.model, ctx.layout, ctx.response_ids, masks, base=ctx.base, on_each=ctx.progress.ticker(stage)
    )
