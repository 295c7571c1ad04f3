"""``FakeModelAdapter``: a ``ModelAdapter`` with scripted log-probs, for fast unit tests of the engine's
bookkeeping (branches, plans, labels, flags). It is never evidence that a method works on a real model.

Words are tokens (split on whitespace; markers and chat text survive a round trip). The script:
- ``effects``: word -> nats. log p(response) = ``base_logprob`` + the effects of the words present in the prompt,
  spread evenly over the response tokens (each token's log-prob is capped at -1e-3);
- ``answers``: (word, answer) pairs. ``generate`` returns the first answer whose word is in the prompt, else
  ``default_answer``;
- ``attention``: word -> weight (default 1). A source's attention is the weight of its tokens over the prompt's;
- ``margin``: the top-1 minus top-2 log-prob at every response position;
- ``jitter``: every distinct prompt text moves log p(response) by a fixed pseudo-random amount in [-jitter, jitter]
  (the decoding noise a small model shows when the context changes in ways that do not matter).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from faithaudit.audits.model.adapter import CachedContext, ChatPromptMixin, ForwardCounter, ResponseScore, row_budgets
from faithaudit.audits.model.chat import plain_chat


@dataclass
class FakeModelAdapter(ChatPromptMixin):
    effects: Mapping[str, float] = field(default_factory=dict)
    answers: Sequence[tuple[str, str]] = ()
    default_answer: str = "I do not know."
    samples: Sequence[str] = ()  # what sampling returns, by seed (greedy answers otherwise)
    attention: Mapping[str, float] = field(default_factory=dict)
    base_logprob: float = -20.0
    margin: float = 5.0  # top-1 minus top-2 log-prob at every response position
    jitter: float = 0.0  # each distinct prompt moves log p(response) by a fixed pseudo-random amount in +-jitter
    name: str = "fake"
    revision: str = "scripted"
    context_window: int = 4096
    num_layers: int = 2
    batch_size: int = 1  # pairs per score_batch call (scored one by one: the grouping is what a test checks)
    counter: ForwardCounter = field(default_factory=ForwardCounter)
    _vocab: dict[str, int] = field(default_factory=dict)
    _words: list[str] = field(default_factory=list)

    # -- text -------------------------------------------------------------------------------------------
    def render_chat(self, messages, *, add_generation_prompt: bool) -> str:
        return plain_chat(messages) + ("assistant: " if add_generation_prompt else "")

    def encode(self, text: str) -> list[int]:
        # each word keeps the whitespace before it, so decode(encode(t)) == t and pieces concatenate exactly
        ids, word = [], ""
        for ch in text:
            if ch.isspace() and word and not word.isspace():
                ids.append(self._id(word))
                word = ""
            word += ch
        if word:
            ids.append(self._id(word))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self._words[i] for i in ids)

    def _id(self, word: str) -> int:
        if word not in self._vocab:
            self._vocab[word] = len(self._words)
            self._words.append(word)
        return self._vocab[word]

    def _present(self, ids: Sequence[int]) -> set[str]:
        return {self._words[i].strip() for i in ids}

    # -- scoring ------------------------------------------------------------------------------------------
    def score(self, prompt_ids, response_ids, *, reuse=None, keep_cache=False, probe=None):
        if not response_ids:
            raise ValueError("response_ids is empty")
        ids = tuple(prompt_ids) + tuple(response_ids)
        prefix = min(reuse.common_prefix(ids), len(prompt_ids) - 1) if reuse is not None else 0
        self._count(len(ids) - prefix)
        present = self._present(prompt_ids)
        total = self.base_logprob + sum(v for w, v in self.effects.items() if w in present) + self._noise(prompt_ids)
        token_lp = np.minimum(np.full(len(response_ids), total / len(response_ids)), -1e-3)
        if probe is not None:
            self._fill_probe(probe, prompt_ids)
        cached = CachedContext(ids=ids, kv=None) if keep_cache else None
        margins = np.full(len(response_ids), self.margin, dtype=np.float64)
        return ResponseScore(token_logprobs=token_lp.astype(np.float64), margins=margins), cached

    def score_batch(self, items, *, reuse=None, keep_cache=False):
        out = [self.score(p, r, reuse=reuse, keep_cache=keep_cache) for p, r in items]
        return [score for score, _ in out], out[-1][1]

    def batch_size_for(self, tokens: int, scored: int) -> int:
        return self.batch_size

    def _noise(self, prompt_ids: Sequence[int]) -> float:
        if not self.jitter:
            return 0.0
        digest = hashlib.sha256(self.decode(prompt_ids).encode()).digest()
        return self.jitter * (int.from_bytes(digest[:4], "big") / 2**32 * 2 - 1)

    def _fill_probe(self, probe, prompt_ids: Sequence[int]) -> None:
        weights = np.array([self.attention.get(self._words[i].strip(), 1.0) for i in prompt_ids])
        raw = np.array([weights[a:b].sum() for a, b in probe.spans]) / weights.sum()
        for layer in range(self.num_layers):
            probe.per_layer[layer] = raw.copy()

    def generate(self, prompt_ids, *, max_new_tokens: int, reuse=None, temperature=None, seed: int = 0) -> list[int]:
        prefix = min(reuse.common_prefix(prompt_ids), len(prompt_ids) - 1) if reuse is not None else 0
        self._count(len(prompt_ids) - prefix)
        present = self._present(prompt_ids)
        answer = next((a for w, a in self.answers if w in present), self.default_answer)
        if temperature is not None and self.samples:
            answer = self.samples[seed % len(self.samples)]
        return self.encode(answer)[:max_new_tokens]

    def generate_batch(self, prompts, *, max_new_tokens, reuses) -> list[list[int]]:
        budgets = row_budgets(max_new_tokens, len(prompts))
        return [self.generate(p, max_new_tokens=n, reuse=r) for p, n, r in zip(prompts, budgets, reuses, strict=True)]

    def _count(self, fed: int) -> None:
        self.counter.forward_passes += 1
        self.counter.tokens_processed += fed
