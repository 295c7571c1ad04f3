"""An offline sentence splitter (no nltk download). Spans tile the text exactly.

A sentence ends at ``.``, ``!`` or ``?`` (plus closing quotes or brackets) followed by whitespace and a capital
letter, digit, quote or bracket, unless the word before the dot is a known abbreviation or a single initial.
The whitespace between two sentences belongs to the second one, so ``"".join(texts) == text``.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e u.s u.k no fig al approx inc ltd co corp dept est gen gov jan feb "
    "mar apr jun jul aug sep sept oct nov dec mt ft lt col capt sgt rev".split()
)
# Possessive quantifiers and the look-behind keep this linear on runs of punctuation ("....").
_BOUNDARY = re.compile(r"(?<![.!?])[.!?]++[\"'”’)\]]*+(?=\s+[\"'“‘(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """[start, end) character spans of the sentences of ``text``; they tile it from 0 to len(text)."""
    cuts: list[int] = []
    for m in _BOUNDARY.finditer(text):
        end = m.end()
        if text[m.start()] == "." and _is_abbreviation(text, m.start()):
            continue
        cuts.append(end)
    spans: list[tuple[int, int]] = []
    start = 0
    for cut in cuts:
        if text[start:cut].strip():
            spans.append((start, cut))
            start = cut
    if start < len(text):
        if spans and not text[start:].strip():
            spans[-1] = (spans[-1][0], len(text))
        else:
            spans.append((start, len(text)))
    return spans or [(0, len(text))]


def _is_abbreviation(text: str, dot: int) -> bool:
    word_start = dot
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:dot].lower().lstrip("(\"'“")
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. R. R. Tolkien"
    return word in _ABBREVIATIONS
