"""The model adapter protocol and its result types. Imports no torch: the API process uses the text half.

``TextAdapter`` is what a prompt layout needs (render a chat, tokenize, know the context window); the API's
``TokenizerOnly`` implements it with the ``tokenizers`` library. ``ModelAdapter`` adds scoring, generation and the
forward counter; ``HFModelAdapter`` (``audits.model.hf``) implements it for any Hugging Face causal LM, and
``FakeModelAdapter`` (``audits.model.fake``) with scripted log-probs for fast unit tests.

Scoring is teacher forcing: log p(response) is the sum of natural-log probabilities of the response tokens placed
right after the prompt (which ends with the chat template's generation prompt). A scored sequence can keep its
KV cache (``CachedContext``); a later sequence sharing a prefix with it only feeds the tokens after the prefix.
``score`` scores one context, ``score_batch`` several sharing a cached prefix in one call where the adapter can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from faithaudit.audits.model.chat import chat_messages

if TYPE_CHECKING:
    from faithaudit.audits.provenance import AttentionProbe


@dataclass(frozen=True)
class ResponseScore:
    """Teacher-forced scores of one fixed response under one context."""

    token_logprobs: np.ndarray  # [response_len] natural-log probabilities, float64
    margins: np.ndarray | None = None  # [response_len] top-1 minus top-2 log-prob at each position, float64
    # What greedy decoding after the prompt is known to emit, read off this pass's argmaxes: the response's tokens
    # while each one is the argmax, then the first argmax that differs (or the one after the response); it stops
    # short of a stop token, and ``greedy_stops`` then says greedy decoding ends there. None: not read.
    greedy_known: tuple[int, ...] | None = None
    greedy_stops: bool = False

    @property
    def logprob(self) -> float:
        return float(self.token_logprobs.sum())

    @property
    def logit_prob(self) -> float:
        """log p - log(1 - p) of the whole response: ContextCite's regression target (``reliance.sequence_logit``)."""
        from faithaudit.audits.reliance import sequence_logit

        return float(sequence_logit(self.logprob))


@dataclass(frozen=True)
class CachedContext:
    """The KV cache of a scored sequence: a later sequence reuses its longest common prefix."""

    ids: tuple[int, ...]
    kv: Any  # the adapter's own cache: per layer (keys, values) [1, kv_heads, T, head_dim] for HFModelAdapter

    def common_prefix(self, ids: Sequence[int]) -> int:
        n = min(len(ids), len(self.ids))
        i = 0
        while i < n and ids[i] == self.ids[i]:
            i += 1
        return i


@dataclass
class ForwardCounter:
    """Counts forward passes and the tokens actually fed to the model (a reused prefix is not fed)."""

    forward_passes: int = 0
    tokens_processed: int = 0

    def snapshot(self) -> tuple[int, int]:
        return self.forward_passes, self.tokens_processed


@runtime_checkable
class TextAdapter(Protocol):
    """The text half: enough to build a prompt layout and count tokens (no torch needed)."""

    name: str
    context_window: int

    def chat_prompt(self, *, system: str | None, user: str) -> str: ...

    def render_chat(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool) -> str: ...

    def encode(self, text: str) -> list[int]: ...


def row_budgets(max_new_tokens: int | Sequence[int], rows: int) -> list[int]:
    """``generate_batch``'s budgets: one for all rows, or one per row, as a list of ``rows``."""
    return [max_new_tokens] * rows if isinstance(max_new_tokens, int) else list(max_new_tokens)


@runtime_checkable
class ModelAdapter(TextAdapter, Protocol):
    revision: str
    num_layers: int
    counter: ForwardCounter

    def decode(self, ids: Sequence[int]) -> str: ...

    def score(
        self,
        prompt_ids: Sequence[int],
        response_ids: Sequence[int],
        *,
        reuse: CachedContext | None = None,
        keep_cache: bool = False,
        probe: AttentionProbe | None = None,
    ) -> tuple[ResponseScore, CachedContext | None]: ...

    def score_batch(
        self,
        items: Sequence[tuple[Sequence[int], Sequence[int]]],  # (prompt ids, response ids)
        *,
        reuse: CachedContext | None = None,
        keep_cache: bool = False,
    ) -> tuple[list[ResponseScore], CachedContext | None]:
        """``score`` for each pair, in one forward call where the adapter batches; the cache of the last pair."""
        ...

    def batch_size_for(self, tokens: int, scored: int) -> int:
        """Pairs per ``score_batch`` call for pairs of about ``tokens`` tokens, ``scored`` of them scored."""
        ...

    def generate(
        self,
        prompt_ids: Sequence[int],
        *,
        max_new_tokens: int,
        reuse: CachedContext | None = None,
        temperature: float | None = None,  # None: greedy; else a sample seeded with ``seed``
        seed: int = 0,
    ) -> list[int]: ...

    def generate_batch(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int | Sequence[int],  # one budget for all rows, or one per row
        reuses: Sequence[CachedContext | None],
    ) -> list[list[int]]:
        """Greedy ``generate`` of each prompt (reusing its own ``reuses`` entry), decoded together where the
        adapter batches; equal to ``generate`` row by row."""
        ...


class ChatPromptMixin:
    """``chat_prompt`` in terms of ``render_chat``, shared by every adapter."""

    def chat_prompt(self, *, system: str | None, user: str) -> str:
        return self.render_chat(chat_messages(system=system, user=user), add_generation_prompt=True)  # type: ignore[attr-defined]
