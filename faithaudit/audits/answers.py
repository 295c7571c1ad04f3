"""When is a regenerated answer 'the same' as the audited one? Pure text rules used by the answer-flip stage."""

from __future__ import annotations

import re

_PUNCT = re.compile(r"[^\w\s]")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def normalize_answer(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: two answers are 'the same' when these match."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def answer_numbers(response: str, query: str) -> set[str]:
    """The numbers an answer adds to its question. An agent's answer flips when a regenerated answer loses one
    of them (a small model rarely repeats a whole answer word for word)."""
    return set(NUMBER.findall(response)) - set(NUMBER.findall(query))


def texts_differ(*, response: str, query: str, regenerated: str, reference: str) -> bool:
    """Documents: the regenerated answer differs from the reference (the model's own full-context answer)."""
    return normalize_answer(regenerated) != normalize_answer(reference)


def numbers_lost(*, response: str, query: str, regenerated: str, reference: str) -> bool:
    """Agents: the regenerated answer loses a number the response adds to the query; without such numbers, the
    texts are compared as for documents."""
    added = answer_numbers(response, query)
    if added:
        return not added <= set(NUMBER.findall(regenerated))
    return texts_differ(response=response, query=query, regenerated=regenerated, reference=reference)
