"""``answer_flip``: regenerate greedily without each source above the noise floor (most relied on first, up to
``answer_flip_top_k``) and ask whether the answer still contains the audited response's answer span
(``audits.answers``).

A flip is evidence only when the greedy answer is stable: the margin of the top-1 over the top-2 token across the
answer span (teacher-forced under the full context) must be at least ``labels.min_greedy_margin`` nats, and at
most ``labels.max_placebo_flip_rate`` of the placebo insertions may flip it. Otherwise flips are reported but set
no label. Regenerations stop at the response's tokens through the answer span, plus 8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from faithaudit.audits.answers import answer_span, keeps_answer, known_keeps_answer, span_positions
from faithaudit.audits.context import Findings, Flip, FlipCheck, StageContext
from faithaudit.audits.decoding import DECODE_ROWS, generate_texts
from faithaudit.audits.model.adapter import CachedContext, ModelAdapter, ResponseScore
from faithaudit.audits.plan import register_stage
from faithaudit.audits.scoring import best_reuse

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
    shardable=False,  # reads leave-one-out, the placebos and the surrogate: it runs when the shards are in
)
def answer_flip(ctx: StageContext, found: Findings) -> Findings:
    check = _stability(ctx, found)
    budget = check.max_new_tokens
    candidates = _candidates(ctx, found)
    answer_full = found.answer_full
    if answer_full is None:
        answer_full = known_answer(ctx.model, ctx.base.score, budget)
    known = [known_answer(ctx.model, found.loo_scores[i], budget) if found.loo_scores else None for i in candidates]
    prompts = [] if answer_full is not None else [ctx.base.prompt.ids]
    prompts += [ctx.layout.without(i).ids for i, text in zip(candidates, known, strict=True) if text is None]
    decoded = iter(generate_texts(ctx.model, prompts, budget, [ctx.base.cache] * len(prompts)))
    answer_full = answer_full if answer_full is not None else next(decoded)
    ctx.progress.step("answer_flip")
    flips: dict[int, Flip] = {}
    for i, text in zip(candidates, known, strict=True):
        text = text if text is not None else next(decoded)
        flips[i] = Flip(without=text, changed=not keeps_answer(text, check.answer_span))
        ctx.progress.step("answer_flip")
    return replace(found, answer_full=answer_full, flips=flips, flip_check=check)


def _candidates(ctx: StageContext, found: Findings) -> list[int]:
    """Sources whose reliance (else surrogate weight) is above the noise floor, most relied on first, capped."""
    ranking = found.reliance if found.reliance is not None else found.surrogate.weights
    floor = found.placebos.noise.floor if found.placebos is not None else 0.0
    above = [i for i in sorted(range(ctx.num_sources), key=lambda i: (-ranking[i], i)) if ranking[i] > floor]
    return above[: ctx.options.answer_flip_top_k]


@dataclass(frozen=True)
class AnswerGate:
    """What the flip check needs before any regeneration: the answer span, the greedy margin over it under the
    full context, the regeneration budget, and whether the margin is wide enough for flips to count."""

    span: tuple[str, ...]
    margin: float | None  # smallest top-1 minus top-2 log-prob over the answer span, nats
    budget: int  # max_new_tokens of every regeneration: the response through the answer span, + 8
    margin_holds: bool


def answer_gate(ctx: StageContext) -> AnswerGate:
    """The answer span, its greedy margin and the regeneration budget, from the full-context pass alone (the
    placebos stage asks too: when the margin holds it settles, after each placebo pass, whether the greedy answer
    keeps the answer span, from that pass's argmaxes or its own cache)."""
    span = answer_span(ctx.response_text, ctx.request.query)
    positions = span_positions(ctx.response_ids, span, ctx.model.decode)
    margins = ctx.base.score.margins
    margin = float(np.min(margins[positions])) if positions and margins is not None else None
    through = positions[-1] + 1 if positions else len(ctx.response_ids)
    budget = min(ctx.request.model.max_new_tokens, through + EXTRA_TOKENS)
    holds = bool(span) and margin is not None and margin >= ctx.options.labels.min_greedy_margin
    return AnswerGate(span=tuple(span), margin=margin, budget=budget, margin_holds=holds)


def _stability(ctx: StageContext, found: Findings) -> FlipCheck:
    """The answer gate and (when the margin holds) the placebos' flip rate: the share of placebo insertions whose
    greedy answer drops the answer span. The placebos stage has usually settled each keeps-answer verdict from its
    own pass (``score_then_check``); otherwise each placebo's answer is regenerated here."""
    gate = answer_gate(ctx)
    counted, rate = gate.margin_holds, None
    if counted and found.placebos is not None:
        keeps = found.placebos.keeps_answer
        if keeps is None:
            prompts = found.placebos.prompts
            texts = generate_texts(ctx.model, prompts, gate.budget, [ctx.base.cache] * len(prompts))
            keeps = [keeps_answer(text, gate.span) for text in texts]
            ctx.progress.step("answer_flip", len(prompts))
        rate = float(np.mean([not kept for kept in keeps]))
        counted = rate <= ctx.options.labels.max_placebo_flip_rate
    return FlipCheck(
        answer_span=gate.span, margin=gate.margin, placebo_flip_rate=rate, counted=counted, max_new_tokens=gate.budget
    )


def score_then_check(
    model: ModelAdapter,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],  # (prompt ids, response ids)
    gate: AnswerGate,
    *,
    reuse: CachedContext | None,
    on_each: Callable[[], None] | None = None,
) -> tuple[list[ResponseScore], list[bool]]:
    """Score each pair, and say whether the greedy answer after its prompt keeps the answer span: read off the
    pass itself where its argmaxes decide it (``known_keeps_answer``), else decoded from that pass's own KV
    cache (one token fed, not the prompt's suffix again), ``DECODE_ROWS`` undecided answers at a time. Each
    pass reuses the longest prefix it shares with ``reuse`` or the previous pass; a cache is dropped once its
    answer is known."""
    scores: list[ResponseScore] = []
    keeps: list[bool | None] = []
    pending: list[tuple[int, Sequence[int], CachedContext | None]] = []  # (pair, prompt, its pass's cache)
    previous: CachedContext | None = None
    for prompt, target in pairs:
        (score,), previous = model.score_batch(
            [(prompt, target)], reuse=best_reuse([reuse, previous], [(prompt, target)]), keep_cache=True
        )
        scores.append(score)
        keeps.append(_known(model, score, gate))
        if keeps[-1] is None:
            pending.append((len(keeps) - 1, prompt, previous))
        if len(pending) == DECODE_ROWS or (pending and len(keeps) == len(pairs)):
            _settle(model, pending, gate, keeps)
        if on_each is not None:
            on_each()
    return scores, [bool(kept) for kept in keeps]


def _settle(model: ModelAdapter, pending: list, gate: AnswerGate, keeps: list[bool | None]) -> None:
    """Decode the pending answers as one batch, each from its own pass's cache, and record their verdicts."""
    texts = generate_texts(model, [p for _, p, _ in pending], gate.budget, [c for _, _, c in pending])
    for (index, _, _), text in zip(pending, texts, strict=True):
        keeps[index] = keeps_answer(text, gate.span)
    pending.clear()


def _known(model: ModelAdapter, score: ResponseScore, gate: AnswerGate) -> bool | None:
    """Whether greedy decoding keeps the answer span, from the pass's argmaxes alone (None: undecided)."""
    known = _known_tokens(score, gate.budget)
    if known is None:
        return None
    tokens, complete = known
    return known_keeps_answer(model.decode(tokens).strip(), gate.span, complete=complete)


def known_answer(model: ModelAdapter, score: ResponseScore, max_new_tokens: int) -> str | None:
    """The greedy answer after the pass's prompt, where its argmaxes spell all of it (it stops, or reaches
    ``max_new_tokens``, before departing from the response): what ``generate_text`` would return, no decoding."""
    known = _known_tokens(score, max_new_tokens)
    return model.decode(known[0]).strip() if known is not None and known[1] else None


def _known_tokens(score: ResponseScore, max_new_tokens: int) -> tuple[tuple[int, ...], bool] | None:
    """(tokens, complete): what greedy decoding emits first, and whether that is all of it; None: not read."""
    if score.greedy_known is None:
        return None
    tokens, complete = score.greedy_known, score.greedy_stops
    if len(tokens) >= max_new_tokens:  # decoding stops at the budget
        tokens, complete = tokens[:max_new_tokens], True
    return tokens, complete
