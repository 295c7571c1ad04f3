"""The answer span of a response, and whether a regenerated answer still contains it. Pure text rules.

The answer span is the response's words that are not in the query, after normalisation (lower case, punctuation
dropped): for "The capital of Vellmora is Tarsquin." asked as "What is the capital of Vellmora?" it is
"tarsquin"; for "1234 * 5678 = 7006652." it is "7006652". A regenerated answer *flips* when it no longer contains
every word of the span: a rewording ("is called X" vs "is X") is not a flip, a different X is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_PUNCT = re.compile(r"[^\w\s]")


def normalize_answer(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def answer_span(response: str, query: str) -> list[str]:
    """The response's normalised words that the query does not contain, in order, each once."""
    asked = set(normalize_answer(query).split())
    return list(dict.fromkeys(w for w in normalize_answer(response).split() if w not in asked))


def keeps_answer(regenerated: str, span: Sequence[str]) -> bool:
    """Every word of the answer span is among the regenerated answer's words."""
    return set(span) <= set(normalize_answer(regenerated).split())


_TRAILING_WORD = re.compile(r"\w+$")


def known_keeps_answer(known: str, span: Sequence[str], *, complete: bool) -> bool | None:
    """Whether a greedy answer that begins with the text ``known`` keeps the answer span, where that is already
    decided: when ``complete`` (the answer is exactly ``known``) True or False; otherwise True once every span word
    is a finished word of ``known`` (whatever follows cannot take it away; the last word may still grow, and a
    character cut in half leaves it undecided), else None: only decoding further can tell."""
    if complete:
        return keeps_answer(known, span)
    if "\ufffd" in known:
        return None
    return True if keeps_answer(_TRAILING_WORD.sub("", known), span) else None


def span_positions(
    response_ids: Sequence[int], span: Sequence[str], decode: Callable[[Sequence[int]], str]
) -> list[int]:
    """Indices of the response tokens that spell a word of the answer span (a token counts when its normalised
    text is part of a span word)."""
    words = set(span)
    out = []
    for k, tok in enumerate(response_ids):
        piece = normalize_answer(decode([tok]))
        if piece and any(p in w for p in piece.split() for w in words):
            out.append(k)
    return out
