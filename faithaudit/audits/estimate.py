"""What an audit will cost, from its plan, before any model work (the API answers it at submit; quotas count it).

``estimate_cost(request, counter)``: the plan's forward passes (``AuditPlan.total_passes``: the full-context pass
plus every stage's passes and regenerations) and the tokens they process, each pass counted at the full prompt
plus the response budget (an upper bound: ablations drop sources). ``counter`` is the model's tokenizer when its
files are cached (``service.token_budget``); without it a token is counted per 4 characters. A retriever's
documents are unknown until the worker retrieves them: each of the k counts as the corpus's longest document
(``retrieved_doc_chars`` / 4, an upper bound), or ``RETRIEVED_DOC_TOKENS`` when the corpus never said.
Torch-free: the API process imports it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from faithaudit.api_schemas import AuditRequest
from faithaudit.audits.model.adapter import ChatPromptMixin
from faithaudit.audits.model.chat import plain_chat
from faithaudit.audits.plan import AuditPlan
from faithaudit.audits.prompt.layout import request_layout

RETRIEVED_DOC_TOKENS = 256
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Estimate:
    forward_passes: int
    tokens: int
    tokens_method: str  # tokenizer, characters/4 or retriever


@dataclass(frozen=True)
class ApproxCounter(ChatPromptMixin):
    """A stand-in tokenizer: one token per ``CHARS_PER_TOKEN`` characters, a plain chat layout."""

    name: str = "approximate"
    context_window: int = 10**9

    def render_chat(self, messages: Sequence, *, add_generation_prompt: bool) -> str:
        return plain_chat(messages)

    def encode(self, text: str) -> list[int]:
        return [0] * math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_cost(request: AuditRequest, counter=None, *, retrieved_doc_chars: int | None = None) -> Estimate:
    if request.pipeline.kind == "retriever":
        return _retriever_estimate(request, counter or ApproxCounter(), retrieved_doc_chars)
    layout, _, response_len = request_layout(request, counter or ApproxCounter())
    return estimate_from_layout(
        request, layout, response_len, method="characters/4" if counter is None else "tokenizer"
    )


def estimate_from_layout(request: AuditRequest, layout, response_len: int, *, method: str) -> Estimate:
    """The plan's passes, each at the full prompt's tokens plus the response's, from a layout already built."""
    plan = AuditPlan.build(request.audit, layout.num_sources, reorderable=layout.reorderable)
    return Estimate(plan.total_passes, plan.total_passes * (len(layout.build().ids) + response_len), method)


def _retriever_estimate(request: AuditRequest, counter, doc_chars: int | None) -> Estimate:
    k = request.pipeline.k
    response = len(counter.encode(request.response)) if request.response else 0
    response = max(response, request.model.max_new_tokens)
    per_doc = math.ceil(doc_chars / CHARS_PER_TOKEN) if doc_chars else RETRIEVED_DOC_TOKENS
    prompt = len(counter.encode(request.query)) + k * per_doc
    plan = AuditPlan.build(request.audit, k, reorderable=k > 1)
    return Estimate(plan.total_passes, plan.total_passes * (prompt + response), "retriever")
