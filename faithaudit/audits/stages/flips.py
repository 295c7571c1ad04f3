"""``answer_flip``: regenerate greedily without each source above the noise floor (most relied on first, up to
``answer_flip_top_k``) and ask whether the answer still contains the audited response's answer span
(``audits.answers``).

A flip is evidence only when the greedy answer is stable: the margin of the top-1 over the top-2 token across the
answer span (teacher-forced under the full context) must be at least ``labels.min_greedy_margin`` nats, and at
most ``labels.max_placebo_flip_rate`` of the placebo insertions may flip it. Otherwise flips are reported but set
no label. Regenerations stop at the response's tokens through the answer span, plus 8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from faithaudit.audits.answers import answer_span, keeps_answer, span_positions
from faithaudit.audits.context import Findings, Flip, FlipCheck, StageContext
from faithaudit.audits.model.adapter import CachedContext, ModelAdapter
from faithaudit.audits.plan import register_stage

EXTRA_TOKENS = 8


def planned_flips(options, num_sources: int) -> int:
    """The full-context answer, at most ``answer_flip_top_k`` sources, and one regeneration per placebo."""
    return 1 + min(options.answer_flip_top_k, num_sources) + options.placebos


@register_stage(
    "answer_flip",
    passes=planned_flips,
    order=40,
    selects=lambda options: options.answer_flip_top_k > 0,
    needs_any=("leave_one_out", "context_ablation"),
)
def answer_flip(ctx: StageContext, found: Findings) -> Findings:
    check = _stability(ctx, found)
    answer_full = found.answer_full
    if answer_full is None:
        answer_full = generate_text(ctx.model, ctx.base.prompt.ids, check.max_new_tokens, ctx.base.cache)
    ctx.progress.step("answer_flip")
    flips: dict[int, Flip] = {}
    for i in _candidates(ctx, found):
        text = generate_text(ctx.model, ctx.layout.without(i).ids, check.max_new_tokens, ctx.base.cache)
        flips[i] = Flip(without=text, changed=not keeps_answer(text, check.answer_span))
        ctx.progress.step("answer_flip")
    return replace(found, answer_full=answer_full, flips=flips, flip_check=check)


def _candidates(ctx: StageContext, found: Findings) -> list[int]:
    """Sources whose reliance (else surrogate weight) is above the noise floor, most relied on first, capped."""
    ranking = found.reliance if found.reliance is not None else found.surrogate.weights
    floor = found.placebos.noise.floor if found.placebos is not None else 0.0
    above = [i for i in sorted(range(ctx.num_sources), key=lambda i: (-ranking[i], i)) if ranking[i] > floor]
    return above[: ctx.options.answer_flip_top_k]


def _stability(ctx: StageContext, found: Findings) -> FlipCheck:
    """The answer span, the greedy margin over it, and (when the margin holds) the placebos' flip rate."""
    rules = ctx.options.labels
    span = answer_span(ctx.response_text, ctx.request.query)
    positions = span_positions(ctx.response_ids, span, ctx.model.decode)
    margins = ctx.base.score.margins
    margin = float(np.min(margins[positions])) if positions and margins is not None else None
    through = positions[-1] + 1 if positions else len(ctx.response_ids)
    budget = min(ctx.request.model.max_new_tokens, through + EXTRA_TOKENS)
    counted = bool(span) and margin is not None and margin >= rules.min_greedy_margin
    rate = None
    if counted and found.placebos is not None:
        flipped = []
        for prompt in found.placebos.prompts:
            text = generate_text(ctx.model, prompt, budget, ctx.base.cache)
            flipped.append(not keeps_answer(text, span))
            ctx.progress.step("answer_flip")
        rate = float(np.mean(flipped))
        counted = rate <= rules.max_placebo_flip_rate
    return FlipCheck(
        answer_span=tuple(span), margin=margin, placebo_flip_rate=rate, counted=counted, max_new_tokens=budget
    )


def generate_text(
    model: ModelAdapter, prompt_ids: Sequence[int], max_new_tokens: int, reuse: CachedContext | None = None
) -> str:
    """The greedy continuation of ``prompt_ids``, decoded and stripped."""
    return model.decode(model.generate(prompt_ids, max_new_tokens=max_new_tokens, reuse=reuse)).strip()
