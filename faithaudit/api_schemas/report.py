"""The reliance report. Field names are the contract; fields may be added, never renamed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Label = Literal[
    "decisive",
    "supporting",
    "distracting",
    "within_noise",
    "attended_not_relied",
    "relied_not_attended",
    "unused",  # schema version 1 only: version 2 says within_noise
]


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
    attention_per_token: float | None = Field(None, description="attention / the source's token count.")
    attention_layer_max: float | None = Field(
        None, description="The largest per-layer share over sources (each layer's attention renormalised over sources)."
    )
    attention_layer_argmax: int | None = Field(None, description="The layer (0-based) of attention_layer_max.")
    attention_position_baseline: float | None = Field(
        None,
        description="The share a neutral text of the same token length gets at this source's position (one pass with "
        "every source replaced by neutral text).",
    )
    attention_position_ratio: float | None = Field(
        None,
        description="attention / attention_position_baseline: 1 = as much as neutral text there. Attention labels "
        "use it when present (else attention x number of sources).",
    )
    reliance: float | None = Field(None, description="log p(resp | full) - log p(resp | without it), nats.")
    reliance_rank: int | None = None
    surrogate_rank: int | None = Field(
        None,
        description="Rank by surrogate_weight, 1 = largest (None without context_ablation); ties (the Lasso's "
        "zeros) keep document order. An ordering, not a verdict: it is measured against surrogate_interval, and a "
        "source whose interval holds 0 (a neutral source's weight) is not told apart from no effect, whatever its "
        "rank. On the benchmark's dev cases it found the gold paragraphs at least as often as reliance_rank and "
        "every rule mixing the two (benchmarks/choose_ranking.py): leave-one-out cannot see a source whose removal "
        "another source covers.",
    )
    reliance_interval: tuple[float, float] | None = Field(
        None,
        description="[min, max] of reliance over the document orders (nats); agent traces, single-order audits and "
        "a source no order could move out of within_noise (reliance strictly between min(distracting, -floor) and "
        "the floor, not re-scored: controls.orders.rescored_sources): reliance +- the noise floor.",
    )
    reliance_z: float | None = Field(None, description="(reliance - mean of the placebos) / their SD.")
    reliance_p: float | None = Field(
        None, description="(1 + placebos with |reliance| >= |this|) / (placebos + 1): how often noise is this large."
    )
    surrogate_weight: float | None = Field(
        None,
        description="ContextCite's surrogate weight, in its target's units: the change in log p/(1-p) of the whole "
        "response (nats of log-odds) from keeping the source.",
    )
    surrogate_interval: tuple[float, float] | None = Field(
        None, description="95% bootstrap interval of surrogate_weight over the fit's masks (nats of log-odds)."
    )
    banzhaf: float | None = Field(
        None,
        description="Exact Banzhaf value (exhaustive mask design only): mean change of log p(resp) from adding the "
        "source, over every context without it, nats.",
    )
    banzhaf_range: tuple[float, float] | None = Field(
        None, description="[min, max] of that change over the contexts, nats."
    )
    answer_changed: bool | None = Field(
        None, description="The answer regenerated without this source no longer contains the answer span."
    )
    answer_without: str | None = None
    cited: bool = False
    label: Label | None = None
    label_reason: str | None = Field(None, description="One line: why this source got its label, with the figures.")
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
    parametric: bool | None = Field(None, description="context_reliance < max(1 nat, noise floor).")
    attention_reliance_spearman: float | None = None
    top1_agreement: bool | None = None
    context_token_share: float | None = Field(
        None,
        description="Share of response tokens whose log-prob rises by >= labels.faithfulness_token_delta with "
        "the context (full vs none).",
    )
    noise_floor_nats: float | None = Field(
        None, description="90th percentile (numpy 'higher') of |placebo reliance|, nats; None without placebos."
    )
    placebo_reliance: list[float] | None = Field(None, description="Each placebo's reliance, nats.")
    order_top1_stability: float | None = Field(
        None,
        description="Share of document orders whose reliance top-1 is the given order's top-1, among the sources "
        "re-scored in every order; null when the given top-1 was not (nothing outside the noise band).",
    )
    answer_span: str | None = Field(None, description="The response's words that are not in the query.")
    greedy_margin_nats: float | None = Field(
        None, description="Smallest top-1 minus top-2 log-prob over the answer span (full context, teacher-forced)."
    )
    placebo_flip_rate: float | None = Field(
        None, description="Share of placebo insertions whose regenerated answer loses the answer span."
    )
    flips_counted: bool | None = Field(
        None, description="Answer flips set labels: margin and placebo flip rate within labels' limits."
    )
    surrogate_lds: float | None = Field(
        None, description="Spearman of the surrogate's predictions against measured targets on masks outside its fit."
    )
    surrogate_lds_method: Literal["cross_validation", "held_out"] | None = Field(
        None,
        description="cross_validation: 4-fold over the masks (exhaustive design); held_out: masks never in the fit.",
    )
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
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="The thresholds in force (those the request set); empty: no gate."
    )


class MethodCost(_Out):
    forward_passes: int = 0
    tokens_processed: int = 0
    seconds: float = 0.0


class Cost(_Out):
    forward_passes: int
    tokens_processed: int = Field(description="Tokens fed to the model; a reused cached prefix is not counted.")
    seconds: float
    by_stage: dict[str, MethodCost] = Field(default_factory=dict)
    workers: int = Field(
        1,
        description="Workers whose passes the report holds: 1, or, for an audit split into shards "
        "(FAITHAUDIT_SHARD_PASSES), the workers of its shards and of its assembly. Passes, tokens and seconds are "
        "summed over them (each shard recomputes the full-context pass: by_stage.full_context counts each).",
    )


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


class MaskControls(_Out):
    count: int | None = Field(description="Keep-masks scored for the fit (the requested budget when adaptive).")
    held_out: int = Field(description="Extra masks that only measure the surrogate (LDS).")
    design: str
    design_kind: Literal["exhaustive", "random", "adaptive"] | None = None
    keep_probability: float
    lasso_alpha: float
    bootstrap_resamples: int | None = Field(None, description="Resamples of the masks behind surrogate_interval.")


class ComputeControls(_Out):
    """Where and in what precision the worker ran the model (FAITHAUDIT_DEVICE, _DTYPE, _BATCH_SIZE)."""

    device: str = Field(description="cpu, cuda, cuda:N, or auto (accelerate's device_map over the visible GPUs).")
    dtype: str = Field(description="The weights' dtype.")
    lm_head_dtype: str = Field(description="The dtype the output projection ran in (float32 under a 16-bit dtype).")
    logprob_dtype: str = Field("float64", description="The log-softmax and every log-prob's dtype.")
    attention_implementation: str
    batch_size: int | str = Field(description="Contexts per forward call over a shared prefix: the setting, auto or N.")


class Controls(_Out):
    """What every figure was measured against: the settings a reviewer needs to repeat or judge the audit."""

    seed: int
    decoding: dict[str, Any] = Field(description="Greedy decoding settings of generated responses and flips.")
    masks: MaskControls | None = None
    placebos: dict[str, Any] = Field(description="Count, how generated, where inserted.")
    orders: dict[str, Any] = Field(
        description="Count, the permutations (source ids in prompt order) and the sources re-scored in them."
    )
    attention: dict[str, Any] = Field(description="Layers and heads the attention figures average over.")
    model_weights: str = Field(description="How the local model's weights were stored and computed (quantisation).")
    compute: ComputeControls | None = Field(None, description="Device, dtype and batching of the worker's model.")
    faithaudit_version: str
    request_sha256: str = Field(description="SHA-256 of the canonical request JSON (sorted keys, defaults omitted).")
    label_rules: dict[str, float] | None = Field(
        None, description="The label thresholds in force (audit.labels): nats, attention factors and rates."
    )


class VariantReport(_Out):
    kind: Literal["sampled", "paraphrase"]
    text: str = Field(description="The sampled response, or the paraphrased query.")
    attention_top1: str
    reliance_top1: str
    labels: dict[str, str | None] = Field(description="Each source's label under this variant.")


class SourceStability(_Out):
    id: str
    attention_top1_rate: float = Field(description="Share of variants in which this source has the top attention.")
    reliance_top1_rate: float = Field(description="Share of variants in which this source has the top reliance.")
    label_agreement: float = Field(description="Share of variants whose label for it equals the audited label.")
    stable: bool = Field(description="label_agreement >= min_label_agreement.")


class Stability(_Out):
    """How the verdicts hold when the response is sampled again or the query is paraphrased."""

    variants: list[VariantReport]
    sources: list[SourceStability]
    sampled_responses: int = Field(description="Samples requested (an empty sample is left out of variants).")
    paraphrases: int
    sampling_temperature: float | None
    seed: int = Field(description="Sample k uses seed + k.")
    min_label_agreement: float = 0.8
    label_rule: str = Field(
        description="How variant labels are set: each variant's reliance +- the audit's noise floor, attention against "
        "the audit's position baseline; no document orders or flips."
    )


class TokenScore(_Out):
    """One response token, teacher-forced: what the context, and each source, adds to its log-probability."""

    text: str = Field(description="The token's text (decoded in context, so multi-byte characters stay whole).")
    logprob_full: float = Field(description="log p(token | full context, earlier tokens), nats.")
    logprob_no_context: float | None = Field(None, description="The same with every source removed.")
    context_gain: float | None = Field(None, description="logprob_full - logprob_no_context, nats.")
    reliance_by_source: dict[str, float] = Field(
        default_factory=dict, description="Source id -> logprob_full - log p(token | without that source), nats."
    )


class MechanismLayer(_Out):
    """Recovered fractions of (clean - corrupted) log p(response) when one layer's activation is restored."""

    layer: int
    restore_source_residual: float = Field(description="The residual stream entering this layer, at the source.")
    restore_attention_at_source: float
    restore_mlp_at_source: float
    restore_attention_after: float = Field(description="The attention output at every position after the source.")
    restore_mlp_after: float


class MechanismHead(_Out):
    layer: int
    head: int
    restore: float = Field(description="Recovered fraction when only this head's output after the source is restored.")
    ablation_drop_nats: float = Field(
        description="Clean log p(response) minus log p with this head's output zeroed after the source, nats."
    )
    attention_to_source: float = Field(description="Share of this head's attention (response rows) on the source.")


class RouterLayer(_Out):
    layer: int
    expert_share: list[float] = Field(
        default_factory=list, description="Each expert's share of the top-k choices at the response positions."
    )
    expert_share_without: list[float] = Field(default_factory=list, description="The same without the source.")
    changed_share: float = Field(description="Response tokens whose chosen experts change without the source.")
    total_variation: float = Field(description="Mean total-variation distance of the router distributions.")


class ExpertAblation(_Out):
    layer: int
    expert: int
    drop_nats: float = Field(description="log p(response) lost when this expert's output is zeroed there.")


class RouterReport(_Out):
    """Mixture-of-experts models: how removing the source changes routing at the response positions."""

    layers: list[RouterLayer]
    expert_ablations: list[ExpertAblation]


class MechanismSource(_Out):
    """Where one relied-on source's effect flows through the network (activation patching on the fixed response)."""

    source: str
    corruption: Literal["token_swap", "noise"]
    seed: int
    clean_logprob: float
    corrupted_logprob: float
    loo_logprob: float | None = Field(description="log p(response) with the source removed, for comparison, nats.")
    skipped_reason: str | None = None
    layers: list[MechanismLayer] = Field(default_factory=list)
    readout_layers: list[int | None] = Field(
        default_factory=list,
        description="[first layer where the span trace falls below 0.5, first where it falls below 0.1].",
    )
    attention_share_of_effect: float | None = Field(
        None, description="Attention's part of the summed single-layer recoveries after the source."
    )
    all_attention_after_restore: float | None = Field(
        None, description="Self-check: every layer's attention output restored after the source (should be ~1)."
    )
    unchanged_run_delta_nats: float | None = Field(
        None, description="Self-check: a clean run patched with its own activations minus the clean run (~0)."
    )
    self_check_failures: list[str] = Field(
        default_factory=list,
        description="Self-checks that did not hold (span >= 0.95 at layer 0 and <= 0.05 at the last, all attention "
        "after ~1, unchanged run ~0): the hooks or the model need a look before the figures are read.",
    )
    heads: list[MechanismHead] = Field(default_factory=list)
    causal_not_attending_heads: list[list[int]] = Field(default_factory=list)
    attending_not_causal_heads: list[list[int]] = Field(default_factory=list)
    head_thresholds: dict[str, float] = Field(default_factory=dict)
    router: RouterReport | None = Field(None, description="Mixture-of-experts models only; null for dense ones.")
    reading: str = ""
    forward_passes: int = 0


class AuditReport(_Out):
    schema_version: Literal["1", "2"] = "2"
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
    controls: Controls | None = Field(None, description="Schema version 2: what the figures were measured against.")
    stability: Stability | None = Field(
        None, description="audit.sampled_responses / audit.paraphrases: do ranks and labels hold across variants?"
    )
    limitations: list[str] = Field(
        default_factory=list, description="Plain sentences: what this audit cannot say (proxy model, unstable answer)."
    )
    token_scores: list[TokenScore] | None = Field(
        None, description="Per response token (first 1024): full-context, no-context and leave-one-out log-probs."
    )
    mechanism: list[MechanismSource] | None = Field(
        None, description="audit.methods mechanism: per traced source, the layer curves, heads and routers."
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="The request's metadata, as sent.")
    tags: list[str] = Field(default_factory=list, description="The request's tags.")

    @model_validator(mode="before")
    @classmethod
    def _read_version_1(cls, data: Any) -> Any:
        """Reports of schema version 1 stay readable: faithfulness_score is context_token_share."""
        summary = data.get("summary") if isinstance(data, dict) else None
        if isinstance(summary, dict) and "faithfulness_score" in summary and "context_token_share" not in summary:
            data = {**data, "summary": {**summary, "context_token_share": summary["faithfulness_score"]}}
        return data

    def without_timings(self) -> dict:
        """The report as JSON data with every wall-clock figure removed (for comparisons)."""
        data = self.model_dump(mode="json")
        data["cost"].pop("seconds", None)
        for stage in data["cost"].get("by_stage", {}).values():
            stage.pop("seconds", None)
        return data
