"""Teacher-forced scoring of the fixed response under the full context and under keep-masks.

The full-context pass gives the base score, the attention reading and the KV cache at once; every ablated
context then reuses the cached prefix up to its first removed source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from faithaudit.audits.model import CachedContext, ModelAdapter, ResponseScore
from faithaudit.audits.prompt import BuiltPrompt, PromptLayout
from faithaudit.audits.provenance import AttentionProbe, AttentionReading


@dataclass(frozen=True)
class BaseRun:
    prompt: BuiltPrompt
    score: ResponseScore
    cache: CachedContext
    attention: AttentionReading | None


def score_full_context(
    model: ModelAdapter, layout: PromptLayout, response_ids: Sequence[int], *, with_attention: bool
) -> BaseRun:
    prompt = layout.build()
    probe = None
    if with_attention:
        first = len(prompt.ids) - 1  # the logit at the last prompt position scores the first response token
        probe = AttentionProbe(
            query_positions=(first, first + len(response_ids) - 1),
            spans=[prompt.spans[i] for i in range(layout.num_sources)],
            num_layers=model.num_layers,
        )
    score, cache = model.score(prompt.ids, response_ids, keep_cache=True, probe=probe)
    assert cache is not None  # keep_cache=True
    return BaseRun(prompt=prompt, score=score, cache=cache, attention=probe.reading() if probe else None)


def score_masks(
    model: ModelAdapter,
    layout: PromptLayout,
    response_ids: Sequence[int],
    masks: np.ndarray,  # [m, n] bool
    *,
    base: BaseRun | None,
    on_each: Callable[[], None] | None = None,
) -> list[ResponseScore]:
    """Score the response under each keep-mask, reusing ``base``'s cached prefix when given."""
    out: list[ResponseScore] = []
    for mask in masks:
        prompt = layout.build([bool(k) for k in mask])
        score, _ = model.score(prompt.ids, response_ids, reuse=base.cache if base else None)
        out.append(score)
        if on_each is not None:
            on_each()
    return out


def logprobs(scores: Sequence[ResponseScore]) -> np.ndarray:
    return np.array([s.logprob for s in scores], dtype=np.float64)


def logit_probs(scores: Sequence[ResponseScore]) -> np.ndarray:
    return np.array([s.logit_prob for s in scores], dtype=np.float64)
