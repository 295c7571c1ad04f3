"""``context_ablation``: random keep-masks scored against the fixed response, and ContextCite's linear surrogate.

An explicit ``num_ablations`` is honoured exactly (plus held-out masks for the LDS); ``None`` is adaptive (up to
the policy's cap, reusing the leave-one-out, no-context and full passes). The math is ``audits.ablation``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from faithaudit.api_schemas import AuditOptions
from faithaudit.audits import ablation, interventions
from faithaudit.audits.context import Findings, StageContext, Surrogate
from faithaudit.audits.plan import register_stage
from faithaudit.audits.reliance import LassoSolver
from faithaudit.audits.scoring import logit_probs, score_masks


def planned_masks(options: AuditOptions, num_sources: int) -> int:
    if options.num_ablations is None:  # adaptive: at most the policy's cap, no extra held-out masks
        return ablation.AdaptivePolicy().max_masks
    return options.num_ablations + interventions.held_out_count(options.num_ablations)


@register_stage("context_ablation", passes=planned_masks, order=30)
def context_ablation(ctx: StageContext, found: Findings) -> Findings:
    opts, n = ctx.options, ctx.num_sources
    on_each = ctx.progress.ticker("context_ablation")

    def score(masks: np.ndarray) -> np.ndarray:
        return logit_probs(score_masks(ctx.model, ctx.layout, ctx.response_ids, masks, base=ctx.base, on_each=on_each))

    common = dict(
        keep_probability=opts.keep_probability, seed=opts.seed, solver=ctx.solver or LassoSolver(opts.lasso_alpha)
    )
    if opts.num_ablations is not None:
        result = ablation.fixed_ablation(score, n, opts.num_ablations, **common)
    else:
        samples = [(np.ones(n, dtype=bool), ctx.base.score), *found.reused]
        result = ablation.adaptive_ablation(
            score,
            n,
            reused_masks=np.stack([m for m, _ in samples]),
            reused_targets=logit_probs([s for _, s in samples]),
            **common,
        )
    fit = Surrogate(weights=result.surrogate.weights, bias=result.surrogate.bias, lds=result.lds)
    return replace(found, surrogate=fit)
