"""Automatic counterfactual tool outputs: the same text with its numbers changed, or a named entity swapped."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

CounterfactualOrigin = Literal["request", "numbers_changed", "entity_swapped"]


@dataclass(frozen=True)
class Counterfactual:
    """A replacement tool output and where it came from."""

    text: str
    origin: CounterfactualOrigin


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.]*\d)")
_ENTITY = re.compile(r"\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)*\b")
_STAND_IN = "Zorvath"  # a name no model knows anything about


def perturb(text: str) -> tuple[str, CounterfactualOrigin] | None:
    """A changed copy of ``text``, or None when it has neither numbers nor capitalised names."""
    if _NUMBER.search(text):
        return _NUMBER.sub(_change_number, text), "numbers_changed"
    entities = list(dict.fromkeys(m.group(0) for m in _ENTITY.finditer(text) if not _sentence_start(text, m.start())))
    if len(entities) >= 2:
        a, b = entities[0], entities[1]
        swapped = re.sub(rf"\b({re.escape(a)}|{re.escape(b)})\b", lambda m: b if m.group(0) == a else a, text)
        return swapped, "entity_swapped"
    if entities:
        return re.sub(rf"\b{re.escape(entities[0])}\b", _STAND_IN, text), "entity_swapped"
    return None


def _sentence_start(text: str, at: int) -> bool:
    """A capitalised word that opens a sentence is not taken for a name."""
    before = text[:at].rstrip(" \t\"'(")
    return not before or before[-1] in ".!?:\n"


def _change_number(match: re.Match[str]) -> str:
    """x -> 3x + 7, same number of decimals: always different, same shape."""
    token = match.group(0)
    decimals = len(token.split(".")[1]) if "." in token else 0
    value = float(token) * 3 + 7
    return f"{value:.{decimals}f}" if decimals else str(int(value))
