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
    reuse: CachedContext | None = None,
) -> tuple[ResponseScore, CachedContext | None, AttentionReading | None]:
    """Score the response after ``prompt``; with attention, read the response rows' attention per source.
    ``reuse``: a cache whose common prefix with the prompt is not fed again."""
    probe = None
    if with_attention:
        first = len(prompt.ids) - 1  # the logit at the last prompt position scores the first response token
        probe = AttentionProbe(
            query_positions=(first, first + len(response_ids) - 1),
            spans=[prompt.spans[i] for i in range(num_sources)],
            num_layers=model.num_layers,
        )
    score, cache = model.score(prompt.ids, response_ids, keep_cache=keep_cache, probe=probe, reuse=reuse)
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

    Masks are visited in lexicographic order (keep before remove), so neighbours share long prefixes; then they
    are scored like pairs (``score_pairs``).
    """
    order = sorted(range(len(masks)), key=lambda r: tuple(not bool(k) for k in masks[r]))
    pairs = [(layout.build([bool(k) for k in masks[r]]).ids, response_ids) for r in order]
    scores: list[ResponseScore | None] = [None] * len(masks)
    for r, score in zip(order, score_pairs(model, pairs, base=base, on_each=on_each), strict=True):
        scores[r] = score
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
    """Score each target after its prompt, in the given order, in batches of the model's batch size; each batch
    reuses the longest prefix all its pairs share with a cached context: the full context's, or the last pair's of
    the previous batch. At batch size 1 this is the sequential path."""
    if not pairs:
        return []
    longest = max(len(p) + len(t) for p, t in pairs)
    size = max(1, model.batch_size_for(longest, max(len(t) for _, t in pairs)))
    out: list[ResponseScore] = []
    previous: CachedContext | None = None
    for start in range(0, len(pairs), size):
        batch = pairs[start : start + size]
        reuse = best_reuse([base.cache if base else None, previous], batch)
        scores, previous = model.score_batch(batch, reuse=reuse, keep_cache=len(pairs) > 1)
        out.extend(scores)
        for _ in batch:
            if on_each is not None:
                on_each()
    return out


def best_reuse(
    candidates: Sequence[CachedContext | None], batch: Sequence[tuple[Sequence[int], Sequence[int]]]
) -> CachedContext | None:
    """The cached context sharing the longest prefix with every pair of ``batch`` (the shortest of its prefixes)."""
    full = [tuple(p) + tuple(t) for p, t in batch]
    return max(
        (c for c in candidates if c is not None),
        key=lambda c: min(c.common_prefix(ids) for ids in full),
        default=None,
    )
