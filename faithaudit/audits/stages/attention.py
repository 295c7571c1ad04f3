"""Attention provenance (``audits.provenance``).

``attention``: the full-context pass reads the response rows' attention over the sources.
``attention_baseline``: one more pass with every source's tokens replaced by as many tokens of neutral text
(``placebos.neutral_token_fill``); the share each position then gets is what position alone earns, and each
source's attention is reported against it (``attention_position_ratio``). That pass reuses the full context's KV
cache up to the first source (most of an agent trace, where only the last tool outputs are audited).
"""

from __future__ import annotations

from dataclasses import replace

from faithaudit.audits.context import Findings, StageContext
from faithaudit.audits.placebos import neutral_token_fill
from faithaudit.audits.plan import register_stage
from faithaudit.audits.scoring import score_prompt


@register_stage("attention", passes=lambda options, n: 0, order=0, needs_attention=True, metered=False, shardable=False)
def attention(ctx: StageContext, found: Findings) -> Findings:
    return replace(found, attention=ctx.base.attention)


@register_stage(
    "attention_baseline",
    passes=lambda options, n: 1,
    order=1,
    selects=lambda options: "attention" in options.methods,
    needs_attention=True,
)
def attention_baseline(ctx: StageContext, found: Findings) -> Findings:
    spans = ctx.base.prompt.spans
    lengths = [spans[i][1] - spans[i][0] for i in range(ctx.num_sources)]
    fills = neutral_token_fill(ctx.request.query, lengths, seed=ctx.options.seed, encode=ctx.model.encode)
    prompt = ctx.layout.build(replace=dict(enumerate(fills)))
    _, _, reading = score_prompt(
        ctx.model, prompt, ctx.response_ids, ctx.num_sources, with_attention=True, reuse=ctx.base.cache
    )  # the prompt up to the first source is the full context's: its cache is not fed again
    ctx.progress.step("attention_baseline")
    return replace(found, attention_baseline=reading)
