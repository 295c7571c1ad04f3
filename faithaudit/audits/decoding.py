"""Greedy decoding for the checks that ask what the model would answer: one prompt (``generate_text``), or many
decoded together, ``DECODE_ROWS`` per batch (``generate_texts``): a decode step is memory-bound, so a batch of
rows costs about one row; the adapter's ``generate_batch`` is token for token ``generate`` row by row."""

from __future__ import annotations

from collections.abc import Sequence

from faithaudit.audits.model.adapter import CachedContext, ModelAdapter, row_budgets

DECODE_ROWS = 8


def generate_texts(
    model: ModelAdapter, prompts: Sequence[Sequence[int]], max_new_tokens: int, reuses: Sequence[CachedContext | None]
) -> list[str]:
    """``generate_text`` of each prompt with its own ``reuses`` entry, decoded ``DECODE_ROWS`` at a time."""
    return [model.decode(ids).strip() for ids in generate_many(model, prompts, max_new_tokens, reuses)]


def generate_many(
    model: ModelAdapter,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int | Sequence[int],  # one budget, or one per prompt
    reuses: Sequence[CachedContext | None],
) -> list[list[int]]:
    """The greedy token ids after each prompt (``generate`` with its own ``reuses`` entry and budget),
    ``DECODE_ROWS`` rows per ``generate_batch``."""
    budgets = row_budgets(max_new_tokens, len(prompts))
    out: list[list[int]] = []
    for start in range(0, len(prompts), DECODE_ROWS):
        rows = slice(start, start + DECODE_ROWS)
        out.extend(model.generate_batch(prompts[rows], max_new_tokens=budgets[rows], reuses=reuses[rows]))
    return out


def generate_text(
    model: ModelAdapter, prompt_ids: Sequence[int], max_new_tokens: int, reuse: CachedContext | None = None
) -> str:
    """The greedy continuation of ``prompt_ids``, decoded and stripped."""
    return model.decode(model.generate(prompt_ids, max_new_tokens=max_new_tokens, reuse=reuse)).strip()
