"""``context_ablation``: keep-masks scored against the fixed response, and ContextCite's linear surrogate.

The design follows the budget (``audits.ablation.plan_design``): every mask when 2^n fits ``num_ablations``
(exact Banzhaf values, cross-validated LDS), else that many distinct random masks plus held-out ones; ``None`` is
adaptive (up to the policy's cap, reusing the leave-one-out, no-context and full passes). The math is
``audits.ablation``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from faithaudit.api_schemas import AuditOptions
from faithaudit.audits import ablation
from faithaudit.audits.context import Findings, StageContext, Surrogate
from faithaudit.audits.plan import register_stage
from faithaudit.audits.reliance import LassoSolver
from faithaudit.audits.scoring import logprobs, score_masks


def planned_masks(options: AuditOptions, num_sources: int) -> int:
    return ablation.planned_passes(num_sources, options.num_ablations)


@register_stage("context_ablation", passes=planned_masks, order=30, reads=("leave_one_out", "no_context"))
def context_ablation(ctx: StageContext, found: Findings) -> Findings:
    opts, n = ctx.options, ctx.num_sources
    on_each = ctx.progress.ticker("context_ablation")

    def score(masks: np.ndarray) -> np.ndarray:
        return logprobs(score_masks(ctx.model, ctx.layout, ctx.response_ids, masks, base=ctx.base, on_each=on_each))

    samples = [(np.ones(n, dtype=bool), ctx.base.score), *found.reused]
    result = ablation.run_ablation(
        score,
        n,
        opts.num_ablations,
        keep_probability=opts.keep_probability,
        seed=opts.seed,
        solver=ctx.solver or LassoSolver(opts.lasso_alpha),
        tokens=len(ctx.response_ids),
        reused_masks=np.stack([m for m, _ in samples]),
        reused_logprobs=logprobs([s for _, s in samples]),
    )
    return replace(found, surrogate=Surrogate.of(result))
