"""Teacher-forced scoring of the fixed response under the full context and under keep-masks.

The full-context pass gives the base score, the attention reading and the KV cache at once; every ablated
context then reuses a cached prefix (of the full context, or of the previous ablated context) and feeds only the
tokens after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from faithaudit.audits.model.adapter import CachedContext, ModelAdapter, ResponseScore
from faithaudit.audits.prompt.layout import BuiltPrompt, SourceLayout
from faithaudit.audits.provenance import AttentionProbe, AttentionReading


@dataclass(frozen=True)
class BaseRun:
    prompt: BuiltPrompt
    score: ResponseScore
    cache: CachedContext
    attention: AttentionReading | None


def score_full_context(
    model: ModelAdapter, layout: SourceLayout, response_ids: Sequence[int], *, with_attention: bool
) -> BaseRun:
    prompt = layout.build()
    score, cache, reading = score_prompt(
        model, prompt, response_ids, layout.num_sources, with_attention=with_attention, keep_cache=True
    )
    assert cache is not None  # keep_cache=True
    return BaseRun(prompt=prompt, score=score, cache=cache, attention=reading)


def score_prompt(
    model: ModelAdapter,
    prompt: BuiltPrompt,
    response_ids: Sequence[int],
    num_sources: int,
    *,
    with_attention: bool,
    keep_cache: bool = False,
) -> tuple[ResponseScore, CachedContext | None, AttentionReading | None]:
    """Score the response after ``prompt``; with attention, read the response rows' attention per source."""
    probe = None
    if with_attention:
        first = len(prompt.ids) - 1  # the logit at the last prompt position scores the first response token
        probe = AttentionProbe(
            query_positions=(first, first + len(response_ids) - 1),
            spans=[prompt.spans[i] for i in range(num_sources)],
            num_layers=model.num_layers,
        )
    score, cache = model.score(prompt.ids, response_ids, keep_cache=keep_cache, probe=probe)
    return score, cache, probe.reading() if probe else None


def score_masks(
    model: ModelAdapter,
    layout: SourceLayout,
    response_ids: Sequence[int],
    masks: np.ndarray,  # [m, n] bool
    *,
    base: BaseRun | None,
    on_each: Callable[[], None] | None = None,
) -> list[ResponseScore]:
    """Score the response under each keep-mask; results come back in the order of ``masks``.

    Masks are visited in lexicographic order (keep before remove), so neighbours share long prefixes. Each
    context reuses the longest cached prefix among the full context (``base``) and the previous context, and
    only the tokens after it are fed to the model.
    """
    order = sorted(range(len(masks)), key=lambda r: tuple(not bool(k) for k in masks[r]))
    scores: list[ResponseScore | None] = [None] * len(masks)
    previous: CachedContext | None = None
    for r in order:
        prompt = layout.build([bool(k) for k in masks[r]])
        full_ids = prompt.ids + tuple(response_ids)
        candidates = [c for c in (base.cache if base else None, previous) if c is not None]
        reuse = max(candidates, key=lambda c: c.common_prefix(full_ids), default=None)
        scores[r], previous = model.score(prompt.ids, response_ids, reuse=reuse, keep_cache=len(masks) > 1)
        if on_each is not None:
            on_each()
    return [s for s in scores if s is not None]


def logprobs(scores: Sequence[ResponseScore]) -> np.ndarray:
    return np.array([s.logprob for s in scores], dtype=np.float64)


def logit_probs(scores: Sequence[ResponseScore]) -> np.ndarray:
    return np.array([s.logit_prob for s in scores], dtype=np.float64)


def score_pairs(
    model: ModelAdapter,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],  # (prompt ids, target ids)
    *,
    base: BaseRun | None,
    on_each: Callable[[], None] | None = None,
) -> list[ResponseScore]:
    """Score each target after its prompt, in the given order, reusing the longest cached prefix among the
    full context and the previous pair (for replaced tool outputs and next-action prefixes)."""
    out: list[ResponseScore] = []
    previous: CachedContext | None = None
    for prompt_ids, target_ids in pairs:
        full_ids = tuple(prompt_ids) + tuple(target_ids)
        candidates = [c for c in (base.cache if base else None, previous) if c is not None]
        reuse = max(candidates, key=lambda c: c.common_prefix(full_ids), default=None)
        score, previous = model.score(prompt_ids, target_ids, reuse=reuse, keep_cache=len(pairs) > 1)
        out.append(score)
        if on_each is not None:
            on_each()
    return out
