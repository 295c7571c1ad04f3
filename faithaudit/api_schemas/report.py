"""The reliance report. Field names are the contract; fields may be added, never renamed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Label = Literal["decisive", "supporting", "distracting", "attended_not_relied", "relied_not_attended", "unused"]


class _Out(BaseModel):
    # "ignore": a report stored by a newer worker (fields are only ever added) still reads here.
    model_config = ConfigDict(extra="ignore")


class ModelInfo(_Out):
    name: str = Field(description="The local model that was actually run.")
    revision: str
    context_window: int
    is_proxy: bool = Field(description="True when the audited pipeline runs another model in production.")
    proxy_for: str | None = None
    note: str | None = None


class NextActionReport(_Out):
    """An agent's next action: a tool call, a final answer in words, or text that parses as neither."""

    kind: Literal["tool_call", "final_answer", "unparseable"]
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    text: str = ""


class ReplayCall(_Out):
    tool: str
    arguments: dict[str, Any]
    output: str | None = None
    error: str | None = None


class ReplayReport(_Out):
    """The agent replayed to an answer without one tool output, its new tool calls answered by a registry."""

    status: Literal["answered", "unreplayable", "unparseable", "max_turns"]
    answer: str | None = None
    calls: list[ReplayCall] = Field(default_factory=list)
    last_text: str = ""


class SourceReport(_Out):
    id: str
    kind: Literal["document", "sentence", "tool_output"]
    document_id: str
    text: str
    text_preview: str
    token_span: tuple[int, int] = Field(description="[start, end) of the source's text in the prompt tokens.")
    attention: float | None = Field(None, description="Share of the attention that lands on sources.")
    attention_raw: float | None = Field(None, description="Share of all attention from the response rows.")
    attention_by_layer: list[float] | None = Field(None, description="attention_raw per layer.")
    attention_rank: int | None = None
    reliance: float | None = Field(None, description="log p(resp | full) - log p(resp | without it), nats.")
    reliance_rank: int | None = None
    surrogate_weight: float | None = None
    answer_changed: bool | None = None
    answer_without: str | None = None
    cited: bool = False
    label: Label | None = None
    # -- tool outputs (agent audits) -------------------------------------------------------------------------
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    reliance_unavailable: float | None = Field(
        None, description="log p(resp | full) - log p(resp | output replaced by an error), nats."
    )
    reliance_counterfactual: float | None = Field(
        None, description="log p(resp | full) - log p(resp | counterfactual output), nats."
    )
    counterfactual_output: str | None = None
    counterfactual_origin: Literal["request", "numbers_changed", "entity_swapped"] | None = None
    next_action_recorded: NextActionReport | None = Field(None, description="The trace's action after this output.")
    next_action_full: NextActionReport | None = Field(None, description="The model's greedy action, full trace.")
    next_action_without: NextActionReport | None = Field(None, description="The model's greedy action without it.")
    next_action_logprob_drop: float | None = Field(
        None, description="log p(recorded next action | full) - log p(... | without this call and output), nats."
    )
    policy_changed: bool | None = Field(None, description="next_action_without differs from the recorded action.")
    policy_changed_vs_model: bool | None = Field(None, description="next_action_without differs from _full.")
    replay_without: ReplayReport | None = None
    reading: str | None = Field(None, description="One line for people.")


class Summary(_Out):
    num_sources: int
    response_tokens: int
    logprob_full: float
    logprob_no_context: float | None = None
    context_reliance: float | None = None
    parametric: bool | None = None
    attention_reliance_spearman: float | None = None
    top1_agreement: bool | None = None
    faithfulness_score: float | None = None
    surrogate_lds: float | None = None
    surrogate_bias: float | None = None
    citation_precision: float | None = None
    citation_recall: float | None = None
    answer_full: str | None = Field(None, description="The greedy answer with the full context (answer flips).")
    label_counts: dict[str, int] = Field(default_factory=dict)
    flags: list[str] = Field(default_factory=list)


class TrimReport(_Out):
    max_prompt_tokens: int
    tokens_before: int
    tokens_after: int
    dropped_turns: list[str] = Field(default_factory=list, description="Request locations, e.g. messages[3].")
    dropped_steps: list[str] = Field(default_factory=list)


class AgentReport(_Out):
    tool_calls: int = Field(description="Tool calls left in the trace after trimming.")
    audited_steps: list[str]
    trim: TrimReport | None = None
    reading: str = Field(description="One line for people: what the answer relied on, what was only read.")


class GateFailure(_Out):
    threshold: str
    limit: float
    measured: float | None
    message: str


class GateResult(_Out):
    passed: bool
    failures: list[GateFailure] = Field(default_factory=list)


class MethodCost(_Out):
    forward_passes: int = 0
    tokens_processed: int = 0
    seconds: float = 0.0


class Cost(_Out):
    forward_passes: int
    tokens_processed: int = Field(description="Tokens fed to the model; a reused cached prefix is not counted.")
    seconds: float
    by_stage: dict[str, MethodCost] = Field(default_factory=dict)


class RetrievedDocument(_Out):
    id: str
    rank: int = Field(description="1-based rank in the retriever's answer.")
    score: float = Field(description="Cosine similarity between the query and the document embeddings.")
    metadata: dict = Field(default_factory=dict)


class RetrievalInfo(_Out):
    corpus: str
    k: int
    embedding_model: str
    documents: list[RetrievedDocument] = Field(description="The k retrieved documents, audited as the context.")
    next_document: RetrievedDocument | None = Field(None, description="Rank k+1 (None when the corpus has k).")


class RetrievalVariant(_Out):
    name: str = Field(description="depth_k_minus_1, depth_k_plus_1 or replace:<id>.")
    document_ids: list[str] = Field(description="The context of this variant, in prompt order.")
    logprob: float
    delta: float = Field(description="log p(resp | variant) - log p(resp | top k), nats.")


class RetrievalSensitivity(_Out):
    """How much the response's log-probability depends on the retriever's cut-off and on each retrieved slot."""

    logprob_at_k: float
    depth_k_minus_1: RetrievalVariant | None = Field(None, description="The last retrieved document dropped.")
    depth_k_plus_1: RetrievalVariant | None = Field(None, description="The next-ranked document added.")
    replacements: list[RetrievalVariant] = Field(
        default_factory=list, description="Each retrieved document replaced by the next-ranked one."
    )
    max_abs_delta: float | None = None


class AuditReport(_Out):
    schema_version: Literal["1"] = "1"
    query: str
    response: str
    response_origin: Literal["request", "trace", "generated"]
    prompt_template: str
    granularity: Literal["document", "sentence", "tool_output"]
    methods: list[str]
    model: ModelInfo
    sources: list[SourceReport]
    summary: Summary
    gate: GateResult
    cost: Cost
    agent: AgentReport | None = None
    retrieval: RetrievalInfo | None = Field(None, description="Retriever pipelines: what was retrieved.")
    retrieval_sensitivity: RetrievalSensitivity | None = None

    def without_timings(self) -> dict:
        """The report as JSON data with every wall-clock figure removed (for comparisons)."""
        data = self.model_dump(mode="json")
        data["cost"].pop("seconds", None)
        for stage in data["cost"].get("by_stage", {}).values():
            stage.pop("seconds", None)
        return data
