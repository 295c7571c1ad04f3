"""Run one audit: render, score the interventions, read attention, estimate reliance, label, gate.

``run_audit(request, model)`` is the single entry point used by the CLI and the workers. It is a plain function
over data plus the model adapter; progress goes to an optional callback ``progress(fraction, stage)``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from faithaudit.api_schemas import (
    AuditReport,
    AuditRequest,
    Cost,
    MethodCost,
    ModelInfo,
    SourceReport,
    Summary,
)
from faithaudit.api_schemas.agent import AgentPipeline
from faithaudit.api_schemas.report import AgentReport, TrimReport
from faithaudit.audits import ablation, interventions
from faithaudit.audits.agent_prompt import AgentLayout, build_agent_layout
from faithaudit.audits.citations import cited_documents
from faithaudit.audits.gate import evaluate_gate
from faithaudit.audits.labels import label_source, ranks_descending
from faithaudit.audits.model import CachedContext, ModelAdapter, ResponseScore
from faithaudit.audits.prompt import PromptLayout, build_layout, check_fits
from faithaudit.audits.reliance import (
    LassoSolver,
    SurrogateSolver,
    leave_one_out_reliance,
    spearman,
)
from faithaudit.audits.replay import ToolCaller
from faithaudit.audits.scoring import BaseRun, logit_probs, logprobs, score_full_context, score_masks
from faithaudit.audits.source_limits import check_source_limits
from faithaudit.audits.tool_interventions import (
    Counterfactual,
    PolicyFinding,
    agent_reading,
    copies,
    counterfactual_outputs,
    policy_replay,
    replaced_reliance,
    source_reading,
    unavailable_outputs,
)
from faithaudit.errors import FaithauditError

Progress = Callable[[float, str], None]
_DIGITS = 6  # reports round floats so that two runs serialise byte-identically


@dataclass
class _Meter:
    """Forward passes, tokens and seconds per stage, read off the adapter's counter."""

    model: ModelAdapter
    stages: dict[str, MethodCost] = field(default_factory=dict)

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        passes0, tokens0 = self.model.counter.snapshot()
        try:
            yield
        finally:
            passes, tokens = self.model.counter.snapshot()
            prev = self.stages.get(stage, MethodCost())
            self.stages[stage] = MethodCost(
                forward_passes=prev.forward_passes + passes - passes0,
                tokens_processed=prev.tokens_processed + tokens - tokens0,
                seconds=prev.seconds + time.perf_counter() - t0,
            )

    def cost(self) -> Cost:
        return Cost(
            forward_passes=sum(s.forward_passes for s in self.stages.values()),
            tokens_processed=sum(s.tokens_processed for s in self.stages.values()),
            seconds=round(sum(s.seconds for s in self.stages.values()), 3),
            by_stage={k: v.model_copy(update={"seconds": round(v.seconds, 3)}) for k, v in self.stages.items()},
        )


@dataclass
class _Progress:
    total: int
    callback: Progress | None
    done: int = 0

    def step(self, stage: str, units: int = 1) -> None:
        self.done += units
        if self.callback is not None:
            self.callback(min(self.done / max(self.total, 1), 1.0), stage)


def run_audit(
    request: AuditRequest,
    model: ModelAdapter,
    *,
    progress: Progress | None = None,
    solver: SurrogateSolver | None = None,
    max_sources: int | None = None,
    max_source_chars: int | None = None,
    tools: Callable[[AgentLayout], ToolCaller] | None = None,
) -> AuditReport:
    """Audit ``request`` with ``model``. Limits (from settings) turn oversized input into field errors.
    ``tools`` builds the tool registry an agent replay calls (``faithaudit.tools.registry_for``)."""
    opts = request.audit
    methods = set(opts.methods)
    check_source_limits(request, max_sources=max_sources, max_source_chars=max_source_chars)
    given_response = request.response
    if isinstance(request.pipeline, AgentPipeline):
        if given_response is None:
            given_response = request.pipeline.trace(query=request.query).final_answer
        generates = given_response is None or opts.answer_flip_top_k > 0 or "policy_replay" in methods
        response_len = max(
            len(model.encode(given_response)) if given_response else 0,
            request.model.max_new_tokens if generates else 0,
        )
        layout: PromptLayout | AgentLayout = build_agent_layout(request, model, response_len=response_len)
    else:
        layout = build_layout(request, model)
    n = layout.num_sources
    meter = _Meter(model)
    full_prompt = layout.build()

    # -- the response: given, or generated greedily from the full context ------------------------------------
    answer_full: str | None = None
    if given_response is not None:
        response_text, origin = given_response, ("request" if request.response is not None else "trace")
    else:
        check_fits(len(full_prompt.ids), request.model.max_new_tokens, model)
        with meter.measure("generate"):
            answer_full = _generate(model, full_prompt.ids, request.model.max_new_tokens)
        if not answer_full:
            raise FaithauditError("the model generated an empty response; pass `response` explicitly")
        response_text, origin = answer_full, "generated"
    response_ids = model.encode(response_text)
    flips = min(opts.answer_flip_top_k, n)
    generated = request.model.max_new_tokens if flips or request.response is None else 0
    check_fits(len(full_prompt.ids), max(len(response_ids), generated), model)

    ablating = "context_ablation" in methods
    if opts.num_ablations is None:  # adaptive: at most the policy's cap, no extra held-out masks
        ablation_passes = ablation.AdaptivePolicy().max_masks
    else:
        ablation_passes = opts.num_ablations + interventions.held_out_count(opts.num_ablations)
    tracker = _Progress(
        total=1
        + (n if "leave_one_out" in methods else 0)
        + (1 if "no_context" in methods else 0)
        + (ablation_passes if ablating else 0)
        + flips
        + n * sum(m in methods for m in ("tool_unavailable", "tool_counterfactual", "policy_replay")),
        callback=progress,
    )

    # -- one full-context pass: base score, attention shares and the KV cache --------------------------------
    with meter.measure("full_context"):
        base = score_full_context(model, layout, response_ids, with_attention="attention" in methods)
    tracker.step("full_context")
    full_lp = base.score.logprob

    reliance: np.ndarray | None = None
    reused: list[tuple[np.ndarray, ResponseScore]] = []  # passes the adaptive surrogate fit may reuse
    loo_lp: np.ndarray | None = None
    if "leave_one_out" in methods:
        with meter.measure("leave_one_out"):
            loo = score_masks(
                model,
                layout,
                response_ids,
                interventions.leave_one_out_masks(n),
                base=base,
                on_each=lambda: tracker.step("leave_one_out"),
            )
        loo_lp = logprobs(loo)
        reliance = leave_one_out_reliance(full_lp, loo_lp)
        reused += list(zip(interventions.leave_one_out_masks(n), loo, strict=True))

    none_score: ResponseScore | None = None
    if "no_context" in methods:
        with meter.measure("no_context"):
            (none_score,) = score_masks(
                model,
                layout,
                response_ids,
                interventions.no_context_mask(n),
                base=base,
                on_each=lambda: tracker.step("no_context"),
            )
        reused.append((interventions.no_context_mask(n)[0], none_score))

    surrogate_weights: np.ndarray | None = None
    surrogate_lds: float | None = None
    surrogate_bias: float | None = None
    if ablating:
        with meter.measure("context_ablation"):
            surrogate_weights, surrogate_bias, surrogate_lds = _context_ablation(
                model,
                layout,
                response_ids,
                base,
                request,
                solver or LassoSolver(opts.lasso_alpha),
                reused=reused,
                on_each=lambda: tracker.step("context_ablation"),
            )

    # -- answer flips: regenerate without each of the top sources ---------------------------------------------
    answer_changed: list[bool | None] = [None] * n
    answer_without: list[str | None] = [None] * n
    ranking = reliance if reliance is not None else surrogate_weights
    if flips and ranking is not None:
        with meter.measure("answer_flip"):
            if answer_full is None:
                answer_full = _generate(model, full_prompt.ids, request.model.max_new_tokens, base.cache)
            for i in sorted(range(n), key=lambda i: (-ranking[i], i))[:flips]:
                text = _generate(model, layout.without(i).ids, request.model.max_new_tokens, base.cache)
                answer_without[i] = text
                if isinstance(layout, AgentLayout) and answer_numbers(response_text, request.query):
                    answer_changed[i] = not answer_numbers(response_text, request.query) <= set(_NUMBER.findall(text))
                else:
                    answer_changed[i] = normalize_answer(text) != normalize_answer(answer_full)
                tracker.step("answer_flip")

    found = _ToolFindings()
    if isinstance(layout, AgentLayout):
        if request.audit.replay_turns and tools is None:
            raise FaithauditError("audit.replay_turns needs a tool registry: pass `tools` to run_audit")
        found = _tool_findings(
            model,
            layout,
            response_ids,
            base,
            request,
            response_text=response_text,
            loo_lp=loo_lp,
            meter=meter,
            tracker=tracker,
            tools=tools(layout) if tools is not None and request.audit.replay_turns else None,
        )

    return _assemble(
        request=request,
        model=model,
        layout=layout,
        tools=found,
        response_text=response_text,
        origin=origin,
        response_tokens=len(response_ids),
        base=base,
        reliance=reliance,
        none_score=none_score,
        surrogate_weights=surrogate_weights,
        surrogate_bias=surrogate_bias,
        surrogate_lds=surrogate_lds,
        answer_full=answer_full,
        answer_changed=answer_changed,
        answer_without=answer_without,
        meter=meter,
    )


@dataclass
class _ToolFindings:
    unavailable: dict[int, float] = field(default_factory=dict)
    counterfactual: dict[int, float] = field(default_factory=dict)
    counterfactual_outputs: dict[int, Counterfactual] = field(default_factory=dict)
    policy: dict[int, PolicyFinding] = field(default_factory=dict)


def _tool_findings(
    model: ModelAdapter,
    layout: AgentLayout,
    response_ids: list[int],
    base: BaseRun,
    request: AuditRequest,
    *,
    response_text: str,
    loo_lp: np.ndarray | None,
    meter: _Meter,
    tracker: _Progress,
    tools: ToolCaller | None,
) -> _ToolFindings:
    methods = request.audit.methods
    found = _ToolFindings()
    if "tool_unavailable" in methods:
        with meter.measure("tool_unavailable"):
            found.unavailable = replaced_reliance(
                model,
                layout,
                response_ids,
                base,
                unavailable_outputs(layout),
                on_each=lambda: tracker.step("tool_unavailable"),
            )
    if "tool_counterfactual" in methods:
        found.counterfactual_outputs = counterfactual_outputs(layout)
        with meter.measure("tool_counterfactual"):
            found.counterfactual = replaced_reliance(
                model,
                layout,
                response_ids,
                base,
                {i: c.text for i, c in found.counterfactual_outputs.items()},
                on_each=lambda: tracker.step("tool_counterfactual"),
            )
        tracker.step("tool_counterfactual", layout.num_sources - len(found.counterfactual_outputs))
    if "policy_replay" in methods:
        with meter.measure("policy_replay"):
            found.policy = policy_replay(
                model,
                layout,
                response_ids,
                base,
                response_text=response_text,
                max_new_tokens=request.model.max_new_tokens,
                loo_logprobs=loo_lp,
                tools=tools,
                replay_turns=request.audit.replay_turns,
                on_each=lambda: tracker.step("policy_replay"),
            )
    return found


def _context_ablation(
    model: ModelAdapter,
    layout: PromptLayout,
    response_ids: list[int],
    base: BaseRun,
    request: AuditRequest,
    solver: SurrogateSolver,
    *,
    reused: list[tuple[np.ndarray, ResponseScore]],
    on_each: Callable[[], None],
) -> tuple[np.ndarray, float, float | None]:
    """An explicit ``num_ablations`` is honoured exactly; ``None`` is adaptive (up to 64 masks, reusing passes)."""
    opts = request.audit
    n = layout.num_sources

    def score(masks: np.ndarray) -> np.ndarray:
        return logit_probs(score_masks(model, layout, response_ids, masks, base=base, on_each=on_each))

    common = dict(keep_probability=opts.keep_probability, seed=opts.seed, solver=solver)
    if opts.num_ablations is not None:
        result = ablation.fixed_ablation(score, n, opts.num_ablations, **common)
    else:
        samples = [(np.ones(n, dtype=bool), base.score), *reused]
        result = ablation.adaptive_ablation(
            score,
            n,
            reused_masks=np.stack([m for m, _ in samples]),
            reused_targets=logit_probs([s for _, s in samples]),
            **common,
        )
    return result.surrogate.weights, result.surrogate.bias, result.lds


def _generate(model: ModelAdapter, prompt_ids, max_new_tokens: int, reuse: CachedContext | None = None) -> str:
    return model.decode(model.generate(prompt_ids, max_new_tokens=max_new_tokens, reuse=reuse)).strip()


_PUNCT = re.compile(r"[^\w\s]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def answer_numbers(response: str, query: str) -> set[str]:
    """The numbers an answer adds to its question. An agent's answer flips when a regenerated answer loses one
    of them (a small model rarely repeats a whole answer word for word)."""
    return set(_NUMBER.findall(response)) - set(_NUMBER.findall(query))


def normalize_answer(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: two answers are 'the same' when these match."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), _DIGITS)


def _preview(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _assemble(
    *,
    request: AuditRequest,
    model: ModelAdapter,
    layout: PromptLayout | AgentLayout,
    tools: _ToolFindings,
    response_text: str,
    origin: str,
    response_tokens: int,
    base: BaseRun,
    reliance: np.ndarray | None,
    none_score: ResponseScore | None,
    surrogate_weights: np.ndarray | None,
    surrogate_bias: float | None,
    surrogate_lds: float | None,
    answer_full: str | None,
    answer_changed: list[bool | None],
    answer_without: list[str | None],
    meter: _Meter,
) -> AuditReport:
    rules = request.audit.labels
    n = layout.num_sources
    attention = base.attention
    rel = [None if reliance is None else float(reliance[i]) for i in range(n)]
    att = [None if attention is None else float(attention.share[i]) for i in range(n)]
    rel_ranks = ranks_descending(rel)
    att_ranks = ranks_descending(att)
    doc_ids = list(dict.fromkeys(src.document_id for src in layout.sources))
    cited_docs = cited_documents(response_text, doc_ids)
    steps = {s.id: s for s in layout.steps} if isinstance(layout, AgentLayout) else {}

    sources: list[SourceReport] = []
    for i, src in enumerate(layout.sources):
        sources.append(
            SourceReport(
                id=src.id,
                kind=src.kind,
                document_id=src.document_id,
                text=src.text,
                text_preview=_preview(src.text),
                token_span=base.prompt.spans[i],
                attention=_r(att[i]),
                attention_raw=None if attention is None else _r(attention.raw[i]),
                attention_by_layer=None
                if attention is None
                else [round(float(v), _DIGITS) for v in attention.by_layer[:, i]],
                attention_rank=att_ranks[i],
                reliance=_r(rel[i]),
                reliance_rank=rel_ranks[i],
                surrogate_weight=None if surrogate_weights is None else _r(surrogate_weights[i]),
                answer_changed=answer_changed[i],
                answer_without=answer_without[i],
                cited=src.document_id in cited_docs,
                label=label_source(
                    reliance=rel[i],
                    attention=att[i],
                    answer_changed=answer_changed[i],
                    num_sources=n,
                    rules=rules,
                ),
            )
        )
        if isinstance(layout, AgentLayout):
            sources[-1] = _with_tool_fields(sources[-1], steps[src.id], i, tools, response_text)

    summary = _summary(
        request=request,
        sources=sources,
        response_tokens=response_tokens,
        base=base,
        none_score=none_score,
        surrogate_lds=surrogate_lds,
        surrogate_bias=surrogate_bias,
        cited_docs=cited_docs,
        answer_full=answer_full,
    )
    agent = None
    if isinstance(layout, AgentLayout):
        trim = layout.trim
        agent = AgentReport(
            tool_calls=len(layout.steps),
            audited_steps=[s.id for s in layout.sources],
            trim=None
            if trim is None
            else TrimReport(
                max_prompt_tokens=trim.max_prompt_tokens,
                tokens_before=trim.tokens_before,
                tokens_after=trim.tokens_after,
                dropped_turns=list(trim.dropped_turns),
                dropped_steps=list(trim.dropped_steps),
            ),
            reading=agent_reading([s.reading or "" for s in sources]),
        )
    return AuditReport(
        query=request.query,
        response=response_text,
        response_origin=origin,
        prompt_template=layout.user_template,
        granularity="tool_output" if isinstance(layout, AgentLayout) else request.audit.granularity,
        methods=list(request.audit.methods),
        model=_model_info(request, model),
        sources=sources,
        summary=summary,
        gate=evaluate_gate(request.thresholds, summary, methods=request.audit.methods),
        cost=meter.cost(),
        agent=agent,
    )


def _with_tool_fields(source: SourceReport, step, i: int, tools: _ToolFindings, response: str) -> SourceReport:
    policy = tools.policy.get(i)
    cf = tools.counterfactual_outputs.get(i)
    return source.model_copy(
        update={
            "tool": step.tool,
            "arguments": dict(step.arguments),
            "reliance_unavailable": _r(tools.unavailable.get(i)),
            "reliance_counterfactual": _r(tools.counterfactual.get(i)),
            "counterfactual_output": None if cf is None else cf.text,
            "counterfactual_origin": None if cf is None else cf.origin,
            "next_action_recorded": None if policy is None else policy.recorded,
            "next_action_full": None if policy is None else policy.full,
            "next_action_without": None if policy is None else policy.without,
            "next_action_logprob_drop": None if policy is None else _r(policy.logprob_drop),
            "policy_changed": None if policy is None else policy.changed,
            "policy_changed_vs_model": None if policy is None else policy.changed_vs_model,
            "replay_without": None if policy is None else policy.replay,
            "reading": source_reading(
                source_id=source.id,
                label=source.label,
                reliance=source.reliance,
                attention=source.attention,
                copied=copies(response, source.text),
                policy_changed=None if policy is None else policy.changed_vs_model,
            ),
        }
    )


def _summary(
    *,
    request: AuditRequest,
    sources: list[SourceReport],
    response_tokens: int,
    base: BaseRun,
    none_score: ResponseScore | None,
    surrogate_lds: float | None,
    surrogate_bias: float | None,
    cited_docs: set[str],
    answer_full: str | None,
) -> Summary:
    rules = request.audit.labels
    n = len(sources)
    context_reliance = faithfulness = None
    parametric = None
    if none_score is not None:
        context_reliance = base.score.logprob - none_score.logprob
        parametric = context_reliance < rules.parametric_context_reliance
        gains = base.score.token_logprobs - none_score.token_logprobs
        faithfulness = float(np.mean(gains >= rules.faithfulness_token_delta))

    rel = [s.reliance for s in sources]
    att = [s.attention for s in sources]
    agreement = top1 = None
    if all(v is not None for v in rel) and all(v is not None for v in att) and n:
        agreement = spearman(np.array(att), np.array(rel)) if n >= 2 else None
        top1 = int(np.argmax(att)) == int(np.argmax(rel))

    labels = [s.label for s in sources if s.label is not None]
    label_counts = {name: labels.count(name) for name in sorted(set(labels))}

    # Citations are judged per document: a cited document is relied on when one of its sources is.
    precision = recall = None
    if cited_docs and all(v is not None for v in rel):
        relied_docs = {s.document_id for s in sources if s.reliance >= rules.supporting}
        precision = len(cited_docs & relied_docs) / len(cited_docs)
        # Decisive by measurement, whatever label the attention rules gave the source.
        decisive_docs = {s.document_id for s in sources if s.reliance >= rules.decisive or s.answer_changed}
        recall = len(decisive_docs & cited_docs) / len(decisive_docs) if decisive_docs else None

    flags: list[str] = []
    if parametric:
        flags.append("parametric_answer: the response barely depends on the context")
    if top1 is False:
        flags.append("top1_disagreement: the most attended source is not the most relied on")
    for s in sources:
        if s.label == "attended_not_relied":
            flags.append(f"attended_not_relied: {s.id}")
        if s.label == "distracting":
            flags.append(f"distracting: {s.id}")
    if precision is not None:
        for doc in sorted(cited_docs):
            if not any(s.document_id == doc and s.reliance >= rules.supporting for s in sources):
                flags.append(f"cited_not_relied: {doc}")
    if "context_ablation" in request.audit.methods and (surrogate_lds is None or surrogate_lds < 0.3):
        flags.append("low_surrogate_fit: the linear surrogate predicts held-out ablations poorly")

    return Summary(
        num_sources=n,
        response_tokens=response_tokens,
        logprob_full=_r(base.score.logprob),
        logprob_no_context=None if none_score is None else _r(none_score.logprob),
        context_reliance=_r(context_reliance),
        parametric=parametric,
        attention_reliance_spearman=_r(agreement),
        top1_agreement=top1,
        faithfulness_score=_r(faithfulness),
        surrogate_lds=_r(surrogate_lds),
        surrogate_bias=_r(surrogate_bias),
        citation_precision=_r(precision),
        citation_recall=_r(recall),
        answer_full=answer_full,
        label_counts=label_counts,
        flags=flags,
    )


def _model_info(request: AuditRequest, model: ModelAdapter) -> ModelInfo:
    production = request.model.production_model
    is_proxy = production is not None and production != model.name
    return ModelInfo(
        name=model.name,
        revision=model.revision,
        context_window=model.context_window,
        is_proxy=is_proxy,
        proxy_for=production if is_proxy else None,
        note=(
            f"Audited with the local model {model.name} as a proxy for {production}: reliance and attention are "
            "those of the proxy, not of the production model."
            if is_proxy
            else None
        ),
    )
