"""What every rendered prompt offers the audit: sources with exact token spans, and contexts built from keep-masks.

``SourceLayout`` is the one interface the scorer and the stages type against. ``RagLayout`` (``prompt.rag``:
documents or their sentences) and ``AgentLayout`` (``prompt.agent``: tool outputs of a trace) implement it.
``build(keep, replace=...)`` removes the unkept sources and swaps the replaced ones' tokens ("replace with a
baseline" and "remove" are the same operation, as in Captum); unchanged prefixes keep their tokens, which is what
lets scoring reuse the KV cache.

``request_layout`` renders any request (RAG or agent) and says how many response tokens the audit may need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from faithaudit.api_schemas import AuditRequest
from faithaudit.api_schemas.agent import AgentPipeline
from faithaudit.errors import InvalidRequestError

if TYPE_CHECKING:
    from faithaudit.api_schemas.agent import TraceStep
    from faithaudit.audits.model.adapter import TextAdapter
    from faithaudit.audits.prompt.agent import TrimRecord

SourceKind = Literal["document", "sentence", "tool_output"]


@dataclass(frozen=True)
class Source:
    index: int
    id: str
    kind: SourceKind
    document_id: str
    text: str


@dataclass(frozen=True)
class BuiltPrompt:
    ids: tuple[int, ...]
    spans: dict[int, tuple[int, int]]  # source index -> [start, end) in ids, for kept sources


class SourceLayout(Protocol):
    sources: tuple[Source, ...]
    user_template: str  # the user turn as the report shows it
    granularity: Literal["document", "sentence", "tool_output"]
    steps: tuple[TraceStep, ...]  # agent traces: every step left in the trace; () for documents
    trim: TrimRecord | None  # agent traces: what trimming dropped

    @property
    def num_sources(self) -> int: ...

    @property
    def insertion_slots(self) -> int:
        """A placebo may be inserted at positions 0..insertion_slots."""
        ...

    @property
    def reorderable(self) -> bool:
        """The sources can be shown in another order (``permuted``)."""
        ...

    # an inserted source's tokens are as many wherever it goes (its pieces are tokenized on their own and join
    # the same neighbours); False where a chat template renders the whole prompt again around it
    insertion_length_fixed: bool

    def inserted(self, position: int, source_id: str, text: str, model: TextAdapter) -> BuiltPrompt:
        """The full prompt with one more source (a placebo) at ``position``."""
        ...

    def permuted(self, order: Sequence[int]) -> SourceLayout | None:
        """The same sources in another order (None where the order is causal and cannot change)."""
        ...

    def build(
        self, keep: Sequence[bool] | None = None, *, replace: Mapping[int, Sequence[int]] | None = None
    ) -> BuiltPrompt: ...

    def without(self, *removed: int) -> BuiltPrompt: ...


def request_layout(request: AuditRequest, model: TextAdapter) -> tuple[SourceLayout, str | None, int]:
    """Render ``request`` for ``model``: (layout, the response to audit if known, the response tokens to budget).

    The budget is the longest of the given response and ``model.max_new_tokens`` when the audit generates (no
    response given, answer flips, or a policy replay)."""
    from faithaudit.audits.prompt.agent import build_agent_layout
    from faithaudit.audits.prompt.rag import build_layout

    response = request.response
    if isinstance(request.pipeline, AgentPipeline) and response is None:
        response = request.pipeline.trace(query=request.query).final_answer
    generates = response is None or request.audit.answer_flip_top_k > 0 or "policy_replay" in request.audit.methods
    budget = max(len(model.encode(response)) if response else 0, request.model.max_new_tokens if generates else 0)
    if isinstance(request.pipeline, AgentPipeline):
        return build_agent_layout(request, model, response_len=budget), response, budget
    return build_layout(request, model), response, budget


def check_fits(prompt_len: int, response_len: int, model: TextAdapter) -> None:
    """A prompt over the model's context window is a validation error, not a crash."""
    total = prompt_len + response_len
    if total > model.context_window:
        raise InvalidRequestError.for_field(
            "pipeline.documents",
            f"the prompt is {prompt_len} tokens and the response {response_len}: {total} tokens, over the "
            f"context window of {model.name} ({model.context_window} tokens); send fewer or shorter documents",
        )


def check_paraphrases_fit(request: AuditRequest, model: TextAdapter, response_len: int) -> None:
    """Each ``audit.paraphrases`` query must fit the context window with the sources and the response (a 422
    naming it), at submit and in the worker alike."""
    for k, paraphrase in enumerate(request.audit.paraphrases):
        layout, _, _ = request_layout(request.model_copy(update={"query": paraphrase}), model)
        total = len(layout.build().ids) + response_len
        if total > model.context_window:
            raise InvalidRequestError.for_field(
                f"audit.paraphrases[{k}]",
                f"with this paraphrase the prompt and response are {total} tokens, over the context window of "
                f"{model.name} ({model.context_window} tokens)",
            )
