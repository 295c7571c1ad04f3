"""The audit request: the same JSON the CLI reads and ``POST /v1/audits`` takes. Unknown fields are rejected."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from faithaudit.api_schemas.agent import AgentPipeline, check_source_id
from faithaudit.api_schemas.errors import PathValueError

Method = Literal[
    "attention",
    "leave_one_out",
    "context_ablation",
    "no_context",
    "tool_unavailable",
    "tool_counterfactual",
    "policy_replay",
    "mechanism",
]
DEFAULT_METHODS: tuple[Method, ...] = ("attention", "leave_one_out", "context_ablation", "no_context")
AGENT_METHODS: tuple[Method, ...] = ("tool_unavailable", "tool_counterfactual", "policy_replay")
DEFAULT_AGENT_METHODS: tuple[Method, ...] = DEFAULT_METHODS + AGENT_METHODS

DEFAULT_TEMPLATE = "Context: {context}\n\nQuery: {query}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Document(_Strict):
    id: str = Field(min_length=1, max_length=200, description="Unique within the request; cited as [id].")
    text: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("document text is empty")
        return v

    @field_validator("id")
    @classmethod
    def _id_chars(cls, v: str) -> str:
        return check_source_id(v)


class RagPipeline(_Strict):
    """A frozen list of retrieved documents, in the order the production prompt shows them."""

    kind: Literal["rag"] = "rag"
    documents: list[Document] = Field(min_length=1)

    @field_validator("documents")
    @classmethod
    def _unique_ids(cls, documents: list[Document]) -> list[Document]:
        seen: dict[str, int] = {}
        for i, doc in enumerate(documents):
            if doc.id in seen:
                raise ValueError(f"[{i}].id {doc.id!r} duplicates [{seen[doc.id]}].id; ids must be unique")
            seen[doc.id] = i
        return documents


CORPUS_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_RETRIEVER_K = 50


class RetrieverPipeline(_Strict):
    """Replay a retriever: the top ``k`` documents of a named corpus (of the caller's tenant) for the query."""

    kind: Literal["retriever"] = "retriever"
    corpus: str = Field(pattern=CORPUS_NAME_PATTERN, description="A corpus of this tenant (`faithaudit corpus add`).")
    k: int = Field(default=5, ge=1, le=MAX_RETRIEVER_K, description="How many documents the retriever returns.")


# A union on ``kind``.
Pipeline = Annotated[RagPipeline | RetrieverPipeline | AgentPipeline, Field(discriminator="kind")]


class PromptSpec(_Strict):
    """Mirror the production prompt. ``template`` is the user turn; ``system`` the system turn (if any)."""

    system: str | None = None
    template: str = DEFAULT_TEMPLATE
    document_template: str = "{text}"
    document_separator: str = "\n\n"

    @field_validator("template")
    @classmethod
    def _template_fields(cls, v: str) -> str:
        for name in ("{context}", "{query}"):
            if v.count(name) != 1:
                raise ValueError(f"template must contain {name} exactly once")
        return v

    @field_validator("document_template")
    @classmethod
    def _doc_template_fields(cls, v: str) -> str:
        if v.count("{text}") != 1:
            raise ValueError("document_template must contain {text} exactly once")
        rest = v.replace("{text}", "").replace("{id}", "")
        if "{" in rest or "}" in rest:
            raise ValueError("document_template may only use {id} and {text}")
        return v


class ModelSpec(_Strict):
    name: str | None = Field(default=None, description="A configured model name, or a local path.")
    max_new_tokens: int = Field(default=64, ge=1, le=1024)
    production_model: str | None = Field(
        default=None, description="The model the audited pipeline runs in production, if not this one."
    )


class LabelThresholds(_Strict):
    """Label rules, in nats of log-probability and in attention share relative to 1/n."""

    decisive: float = Field(
        default=1.25,
        description="A source is decisive when its whole reliance interval is at or above max(this, the noise "
        "floor), in nats. 1.25 was chosen on dev cases (benchmarks/choose_decisive.py: the most gold paragraphs "
        "found while decisive labels keep a precision >= 0.9), not on the benchmark's test cases.",
    )
    supporting: float = 0.5
    distracting: float = -0.5
    attended_factor: float = Field(default=1.5, gt=0)
    not_attended_factor: float = Field(default=0.5, gt=0)
    parametric_context_reliance: float = 1.0
    faithfulness_token_delta: float = Field(
        default=0.5, description="context_token_share counts the response tokens whose log-prob rises this much."
    )
    min_greedy_margin: float = Field(
        default=1.0, description="Answer flips count only when the greedy margin over the answer span is this wide."
    )
    max_placebo_flip_rate: float = Field(
        default=0.1, ge=0.0, le=1.0, description="...and when at most this share of placebo insertions flips it."
    )
    surrogate_lds_floor: float = Field(
        default=0.3, ge=-1.0, le=1.0, description="Flag low_surrogate_fit when the surrogate's LDS is below this."
    )


class AuditOptions(_Strict):
    methods: list[Method] = Field(default_factory=lambda: list(DEFAULT_METHODS), min_length=1)
    num_ablations: int | None = Field(
        default=None,
        ge=0,
        le=4096,
        description="Keep-masks for context_ablation. null (the default) is adaptive: 32 to 64 distinct random "
        "masks in batches of 8, stopping once the fit is stable, with the leave-one-out and no-context passes "
        "joining the fit and each batch predicted before it joins (the LDS, no extra pass); every mask when 2^n <= "
        "64. On the benchmark its LDS equals the fixed-64 fit's within 0.005 at ~0.45x its passes "
        "(benchmarks/README.md). A number N is honoured exactly: N distinct random masks, ContextCite's design, and a "
        "4-fold cross-validated LDS over them (every mask when 2^n <= N).",
    )
    keep_probability: float = Field(default=0.5, gt=0.0, lt=1.0)
    lasso_alpha: float = Field(default=0.01, gt=0.0)
    granularity: Literal["document", "sentence"] = "document"
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    answer_flip_top_k: int = Field(
        default=10,
        ge=0,
        le=50,
        description="A cap on how many sources are regenerated without (those whose reliance is above the noise "
        "floor, most relied on first); 0 regenerates none.",
    )
    placebos: int = Field(
        default=16,
        ge=0,
        le=64,
        description="Placebo controls: neutral filler sources, length-matched and inserted one at a time at seeded "
        "positions; the 90th percentile of their |reliance| is the audit's noise floor. 0 disables them.",
    )
    orders: int = Field(
        default=3,
        ge=1,
        le=8,
        description="Document orders, counting the given one: each extra seeded permutation re-scores the full "
        "context and leaves out each source whose label an order could change, which gets its [min, max] over the "
        "orders; a source strictly between min(distracting, -floor) and the floor is within_noise under any order "
        "and keeps reliance +- noise floor. Agent traces keep their causal order (interval: reliance +- noise floor).",
    )
    replay_turns: int = Field(
        default=0, ge=0, le=8, description="Agent audits: replay to an answer, with up to this many new tool calls."
    )
    sampled_responses: int = Field(
        default=0,
        ge=0,
        le=16,
        description="Stability (opt-in): this many responses sampled at sampling_temperature (seeded) are each "
        "audited with leave-one-out and attention; report.stability says how often each source keeps its rank-1 "
        "position and its label across them.",
    )
    sampling_temperature: float = Field(
        default=0.7, gt=0.0, le=2.0, description="Temperature of the sampled responses (no top-k or top-p cut)."
    )
    paraphrases: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]] = Field(
        default_factory=list,
        max_length=8,
        description="Stability (opt-in): paraphrases of the query, each audited like a sampled response with the "
        "audited response kept.",
    )
    mechanism_top_k: int = Field(
        default=1,
        ge=1,
        le=4,
        description="mechanism (opt-in): trace this many sources, most relied on first (leave-one-out).",
    )
    mechanism_sources: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=4,
        description="mechanism: trace these source ids instead of the top mechanism_top_k by reliance.",
    )
    mechanism_corruption: Literal["token_swap", "noise"] = Field(
        default="token_swap",
        description="How mechanism corrupts a source: token_swap puts a length-matched neutral placebo's tokens in "
        "its place (on-distribution); noise adds Gaussian noise of 3 embedding SDs to its embeddings (seeded), as "
        "causal tracing does.",
    )
    mechanism_head_layers: int = Field(
        default=4,
        ge=0,
        le=64,
        description="mechanism: patch and zero-ablate every head at this many layers (those whose attention "
        "output after the source recovers most).",
    )
    mechanism_max_passes: int = Field(
        default=500,
        ge=10,
        le=10_000,
        description="mechanism: the most forward passes one traced source may take; a model that needs more is "
        "refused before any pass (about 5 x layers + 2 x heads x head layers).",
    )
    labels: LabelThresholds = Field(default_factory=LabelThresholds)

    @field_validator("methods")
    @classmethod
    def _dedupe(cls, v: list[Method]) -> list[Method]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _enough_ablations(self) -> AuditOptions:
        if "context_ablation" in self.methods and self.num_ablations is not None and self.num_ablations < 4:
            raise ValueError("num_ablations must be >= 4 when context_ablation is requested")
        for k, source in enumerate(self.mechanism_sources):
            if source in self.mechanism_sources[:k]:
                raise PathValueError(("mechanism_sources", k), f"{source!r} is listed twice")
        if "mechanism" in self.methods and not self.mechanism_sources and "leave_one_out" not in self.methods:
            raise PathValueError(
                ("methods",),
                "mechanism picks its sources by leave-one-out reliance: add leave_one_out, or name "
                "the sources in mechanism_sources",
            )
        return self


class Thresholds(_Strict):
    min_context_reliance: float | None = None
    min_context_token_share: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Minimum summary.context_token_share."
    )
    min_faithfulness_score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        deprecated=True,
        description="Deprecated alias of min_context_token_share (schema version 1); removed in the next version.",
    )
    max_attended_not_relied: int | None = Field(default=None, ge=0)
    min_citation_precision: float | None = Field(default=None, ge=0.0, le=1.0)
    max_noise_floor_nats: float | None = Field(
        default=None, ge=0.0, description="Maximum summary.noise_floor_nats: an audit too noisy to trust fails."
    )

    @model_validator(mode="before")
    @classmethod
    def _deprecated_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("min_faithfulness_score") is not None:
            if data.get("min_context_token_share") is not None:
                raise ValueError("give min_context_token_share only (min_faithfulness_score is its deprecated alias)")
            data = {**data, "min_context_token_share": data["min_faithfulness_score"], "min_faithfulness_score": None}
        return data


MAX_METADATA_BYTES = 16_384
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/=@+-]{0,63}$"
Tag = Annotated[str, StringConstraints(pattern=TAG_PATTERN)]


class AuditRequest(_Strict):
    query: str = Field(min_length=1)
    pipeline: Pipeline
    response: str | None = Field(default=None, description="The answer to audit; generated greedily if absent.")
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    audit: AuditOptions = Field(default_factory=AuditOptions)
    thresholds: Thresholds | None = None
    callback_url: str | None = Field(
        default=None,
        max_length=2000,
        pattern=r"^https?://[^\s/?#@]+(/[^\s#]*)?$",
        description="POSTed (HMAC-signed) when the audit ends: its id, status, gate and summary. The host must be "
        "in the service's FAITHAUDIT_CALLBACK_HOSTS.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form JSON carried into the report (a trace id, a span id, the source system): at most "
        f"{MAX_METADATA_BYTES} bytes serialised; strings pass the same edge as every body.",
    )
    tags: list[Tag] = Field(
        default_factory=list,
        max_length=16,
        description="Short labels (letters, digits, _.:/=@+-; up to 64 characters) to group and filter audits: "
        "GET /v1/audits?tag=...",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, v: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"is {size} bytes serialised; at most {MAX_METADATA_BYTES}")
        return v

    @field_validator("tags")
    @classmethod
    def _dedupe_tags(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @model_validator(mode="before")
    @classmethod
    def _agent_default_methods(cls, data: Any) -> Any:
        """An agent audit without explicit ``audit.methods`` also runs the tool interventions."""
        if (
            isinstance(data, dict)
            and isinstance(data.get("pipeline"), dict)
            and data["pipeline"].get("kind") == "agent"
        ):
            audit = data.get("audit")
            if audit is None or (isinstance(audit, dict) and "methods" not in audit):
                data = {**data, "audit": {**(audit or {}), "methods": list(DEFAULT_AGENT_METHODS)}}
        return data

    @model_validator(mode="after")
    def _methods_fit_pipeline(self) -> AuditRequest:
        if self.pipeline.kind != "agent":
            for k, method in enumerate(self.audit.methods):
                if method in AGENT_METHODS:
                    raise PathValueError(("audit", "methods", k), f"{method} applies to agent pipelines only")
        return self

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query is empty")
        return v

    @field_validator("response")
    @classmethod
    def _response_not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("response is empty; omit it to generate one")
        return v
