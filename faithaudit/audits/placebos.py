"""Placebo sources: neutral filler, length-matched to the real sources, generated deterministically from the seed.

A placebo makes no claim about anything a query can ask: its sentences are about no named thing (no names, no
numbers, no places), drawn from a fixed English bank, and any sentence sharing a content word with the query is
left out. Placebo ``k`` copies the length (in characters) of a seeded real source and sits at a seeded position.
Inserting placebos one at a time and measuring how much the response's log-probability moves gives the audit's
noise floor: a real source whose reliance a placebo can match is within the noise.

Pure text, no tokenizer: the API counts the longest placebo against the context window with the same texts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

PLACEBO_SEED_OFFSET = 2_000_003  # placebos use seed + this, never the masks' seeds

BANK = (
    "The meeting was moved to a larger room because more people came than expected.",
    "Some visitors prefer to arrive early so that they can find a quiet seat.",
    "The schedule was printed on both sides of a single sheet of paper.",
    "A few of the shelves were rearranged to make the corridor easier to walk through.",
    "Most of the group agreed that the afternoon session should start a little later.",
    "The instructions were written in short steps and read aloud before the work began.",
    "Several chairs were stacked near the door after the event had ended.",
    "The light in the hallway was left on so that late arrivals could see the way.",
    "Everyone was asked to write their comments on the cards provided at the entrance.",
    "The kettle in the kitchen is usually refilled before the first break of the day.",
    "A short summary of the discussion was shared with everyone who had attended.",
    "The windows were opened for a while to let some fresh air into the room.",
    "Boxes of spare paper are kept on the lowest shelf of the cupboard.",
    "The notice asked people to keep their voices down near the reading area.",
    "It is common to take a short walk after sitting for a long time.",
    "The table was cleared and wiped down before the next group sat down.",
    "A reminder was sent out the day before to anyone who had signed up.",
    "The plants by the window are watered whenever the soil feels dry.",
    "Coats and bags can be left on the hooks that line the back wall.",
    "The discussion moved on once everyone had had a chance to speak.",
    "Nobody minded waiting a few minutes while the equipment was set up.",
    "The door at the side of the building is often used as a shortcut.",
    "People tend to remember a plan better when it has been written down.",
    "The volunteers took turns answering questions at the front desk.",
    "A second copy of the list was kept in the drawer just in case.",
    "The path around the garden is swept clean every few days.",
    "The group paused briefly so that the notes could be collected.",
    "It was decided that the leftover supplies would be stored for next time.",
    "Some of the older folders were labelled again with clearer handwriting.",
    "The clock on the wall runs a little fast, so most people check their own.",
    "The last part of the afternoon was set aside for general questions.",
    "After the break, the chairs were turned to face the other wall.",
)

_WORD = re.compile(r"[A-Za-z]+")
_STOP = set(
    "what which when where whom whose that this there their with from have does were been into about they them "
    "than then also some many".split()
)


@dataclass(frozen=True)
class Placebo:
    index: int
    text: str
    position: int  # 0..n: the placebo goes before the source (document, or tool step) at this position
    matched_source: int  # the real source whose length it copies


def query_words(query: str) -> set[str]:
    """Content words of the query (4+ letters, lower case, minus question words)."""
    return {w.lower() for w in _WORD.findall(query) if len(w) >= 4} - _STOP


@cache
def _bank_words() -> list[frozenset[str]]:
    """Each bank sentence's words, lower case (split once per process: every submit checks its placebos)."""
    return [frozenset(w.lower() for w in _WORD.findall(s)) for s in BANK]


def neutral_sentences(query: str) -> list[str]:
    """The bank minus any sentence that shares a content word with the query."""
    avoid = query_words(query)
    return [s for s, words in zip(BANK, _bank_words(), strict=True) if avoid.isdisjoint(words)]


def make_placebos(query: str, source_texts: Sequence[str], count: int, *, seed: int, slots: int) -> list[Placebo]:
    """``count`` placebos for a context of ``source_texts``; positions are drawn from ``0..slots``."""
    if count <= 0 or not source_texts:
        return []
    rng = np.random.default_rng(seed + PLACEBO_SEED_OFFSET)
    pool = neutral_sentences(query) or list(BANK)
    out = []
    for k in range(count):
        matched = int(rng.integers(len(source_texts)))
        target = max(len(source_texts[matched]), 1)
        order = rng.permutation(len(pool))
        text, j = pool[order[0]], 1
        while True:  # add sentences while that brings the length closer to the matched source's
            longer = f"{text} {pool[order[j % len(pool)]]}"
            if abs(len(longer) - target) >= abs(len(text) - target):
                break
            text, j = longer, j + 1
        out.append(Placebo(index=k, text=text, position=int(rng.integers(slots + 1)), matched_source=matched))
    return out


def neutral_token_fill(
    query: str, lengths: Sequence[int], *, seed: int, encode: Callable[[str], list[int]]
) -> list[tuple[int, ...]]:
    """Per length L, exactly L tokens of neutral text (seeded sentences from the bank, cut to length): what a
    source's position holds when the attention baseline asks how much a text that says nothing gets there."""
    rng = np.random.default_rng(seed + PLACEBO_SEED_OFFSET + 1)
    pool = neutral_sentences(query) or list(BANK)
    out = []
    for length in lengths:
        order = rng.permutation(len(pool))
        ids: list[int] = []
        j = 0
        while len(ids) < length:
            ids.extend(encode((" " if ids else "") + pool[order[j % len(pool)]]))
            j += 1
        out.append(tuple(ids[:length]))
    return out


PLACEBO_ID = "placebo-{k}"


def placebo_prompts(layout, model, query: str, count: int, *, seed: int) -> tuple[list[Placebo], list[tuple]]:
    """The placebos of a layout and the full prompt with each one inserted (token ids)."""
    items = make_placebos(query, [s.text for s in layout.sources], count, seed=seed, slots=layout.insertion_slots)
    prompts = [layout.inserted(p.position, PLACEBO_ID.format(k=p.index), p.text, model).ids for p in items]
    return items, prompts


def check_placebos_fit(layout, request, model, response_len: int) -> None:
    """The longest placebo insertion plus the response must fit the model's context window: a field error on
    ``audit.placebos`` otherwise (the same check at submit and in the worker). Where an upper bound on the longest
    insertion fits (``_longest_bound``), no placebo is made and no placebo prompt is encoded."""
    from faithaudit.errors import InvalidRequestError

    if request.audit.placebos <= 0 or layout.num_sources == 0:
        return
    opts = request.audit
    texts = [s.text for s in layout.sources]
    bound = _longest_bound(layout, PLACEBO_ID.format(k=opts.placebos - 1), longest_placebo_chars(texts), model)
    if bound + response_len <= model.context_window:
        return
    items = make_placebos(request.query, texts, opts.placebos, seed=opts.seed, slots=layout.insertion_slots)
    longest = max(len(layout.inserted(p.position, PLACEBO_ID.format(k=p.index), p.text, model).ids) for p in items)
    if longest + response_len > model.context_window:
        raise InvalidRequestError.for_field(
            "audit.placebos",
            f"with its longest placebo the prompt is {longest} tokens and the response {response_len}: over the "
            f"context window of {model.name} ({model.context_window} tokens); lower audit.placebos to 0 or send "
            "shorter sources",
        )


def longest_placebo_chars(source_texts: Sequence[str]) -> int:
    """An upper bound on the characters of any placebo ``make_placebos`` writes for these sources, whatever the
    query and seed: it adds a sentence only while its text is shorter than the matched source's length L (the
    target) and the sentence brings it closer, so a text ends at most one sentence past L, or is one sentence."""
    longest_sentence = max(len(s) for s in BANK)
    return max(max(len(t) for t in source_texts), 1) + 1 + longest_sentence


def _longest_bound(layout, widest_id: str, text_chars: int, model) -> int:
    """An upper bound on the tokens of the longest placebo prompt: the prompt with an empty placebo inserted (the
    wrapper, with the longest id) plus the longest text's characters (placebo text is ASCII, and ASCII text never
    takes more tokens than characters under a byte-level BPE or SentencePiece tokenizer); + 2 for a boundary token.
    Where an insertion's length does not depend on where it goes (``insertion_length_fixed``: a document) one
    position is measured; else (a tool step, rendered by the chat template with the trace around it) every one."""
    positions = [0] if layout.insertion_length_fixed else range(layout.insertion_slots + 1)
    wrapper = max(len(layout.inserted(k, widest_id, "", model).ids) for k in positions)
    return wrapper + text_chars + 2
