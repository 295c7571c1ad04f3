"""``stability`` (opt-in): does each source keep its rank and its label when the response or the query changes?

``audit.sampled_responses`` responses are sampled under the full context (``audit.sampling_temperature``, seeds
``seed``, ``seed + 1``, ...), and each ``audit.paraphrases`` query is rendered with the audited response kept. Every
variant is scored under the full context with attention and re-scored with each source left out. The report
compares each variant's ranks and labels with the audited ones (``report.stability``).
"""

from __future__ import annotations

from dataclasses import replace

from faithaudit.audits import interventions
from faithaudit.audits.context import Findings, StageContext, Variant
from faithaudit.audits.plan import register_stage
from faithaudit.audits.prompt.layout import SourceLayout, request_layout
from faithaudit.audits.scoring import logprobs, score_full_context, score_masks


def planned_variants(options, num_sources: int) -> int:
    """One sample per sampled response, then per variant the full pass with attention and leave-one-out."""
    variants = options.sampled_responses + len(options.paraphrases)
    return options.sampled_responses + variants * (num_sources + 1)


@register_stage(
    "stability",
    passes=planned_variants,
    order=45,
    selects=lambda options: options.sampled_responses > 0 or bool(options.paraphrases),
)
def stability(ctx: StageContext, found: Findings) -> Findings:
    opts, tick = ctx.options, ctx.progress.ticker("stability")
    variants = []
    for k in range(opts.sampled_responses):
        ids = ctx.model.generate(
            ctx.base.prompt.ids,
            max_new_tokens=ctx.request.model.max_new_tokens,
            reuse=ctx.base.cache,
            temperature=opts.sampling_temperature,
            seed=opts.seed + k,
        )
        tick()
        text = ctx.model.decode(ids).strip()
        if text:  # an empty sample has nothing to score: it is left out, and the count says so
            variants.append(_measure(ctx, ctx.layout, ids, "sampled", text, tick))
        else:
            _skip(ctx, tick)
    for paraphrase in opts.paraphrases:
        layout, _, _ = request_layout(ctx.request.model_copy(update={"query": paraphrase}), ctx.model)
        variants.append(_measure(ctx, layout, ctx.response_ids, "paraphrase", paraphrase, tick))
    return replace(found, variants=tuple(variants))


def _measure(ctx: StageContext, layout: SourceLayout, response_ids, kind: str, text: str, tick) -> Variant:
    base = score_full_context(ctx.model, layout, response_ids, with_attention=True)
    tick()
    masks = interventions.leave_one_out_masks(layout.num_sources)
    loo = logprobs(score_masks(ctx.model, layout, response_ids, masks, base=base, on_each=tick))
    assert base.attention is not None  # with_attention=True
    return Variant(kind=kind, text=text, reliance=base.score.logprob - loo, attention=base.attention.share)


def _skip(ctx: StageContext, tick) -> None:
    for _ in range(ctx.num_sources + 1):  # keep the progress total honest
        tick()
