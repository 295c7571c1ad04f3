"""``answer_flip``: regenerate greedily without each of the ``answer_flip_top_k`` most relied-on sources (ranked
by leave-one-out reliance, else by surrogate weight) and ask whether the answer changed. The layout says what
"changed" means (``answers_differ``: documents compare normalised text, agents the numbers the answer adds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from faithaudit.audits.context import Findings, Flip, StageContext
from faithaudit.audits.model.adapter import CachedContext, ModelAdapter
from faithaudit.audits.plan import register_stage


def planned_flips(options, num_sources: int) -> int:
    return min(options.answer_flip_top_k, num_sources)


@register_stage(
    "answer_flip",
    passes=planned_flips,
    order=40,
    selects=lambda options: options.answer_flip_top_k > 0,
    needs_any=("leave_one_out", "context_ablation"),
)
def answer_flip(ctx: StageContext, found: Findings) -> Findings:
    ranking = found.reliance if found.reliance is not None else found.surrogate.weights
    max_new = ctx.request.model.max_new_tokens
    answer_full = found.answer_full
    if answer_full is None:
        answer_full = generate_text(ctx.model, ctx.base.prompt.ids, max_new, ctx.base.cache)
    n = ctx.num_sources
    flips: dict[int, Flip] = {}
    for i in sorted(range(n), key=lambda i: (-ranking[i], i))[: planned_flips(ctx.options, n)]:
        text = generate_text(ctx.model, ctx.layout.without(i).ids, max_new, ctx.base.cache)
        changed = ctx.layout.answers_differ(
            response=ctx.response_text, query=ctx.request.query, regenerated=text, reference=answer_full
        )
        flips[i] = Flip(without=text, changed=changed)
        ctx.progress.step("answer_flip")
    return replace(found, answer_full=answer_full, flips=flips)


def generate_text(
    model: ModelAdapter, prompt_ids: Sequence[int], max_new_tokens: int, reuse: CachedContext | None = None
) -> str:
    """The greedy continuation of ``prompt_ids``, decoded and stripped."""
    return model.decode(model.generate(prompt_ids, max_new_tokens=max_new_tokens, reuse=reuse)).strip()
