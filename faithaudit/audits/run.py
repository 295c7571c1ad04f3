"""Run one audit. ``audit_request`` is the one entry point the CLI, the workers and the gate call; ``run_audit``
audits a request whose sources are known (documents or a trace).

The flow, one call per step:
    layout    prompt/    render the pipeline, keep each source's token span            (SourceLayout)
    plan      plan.py    the stages the request selects, their passes, the progress total (AuditPlan)
    response             given, taken from the trace, or generated greedily
    base      scoring    one full pass: score, attention, KV cache
    stages    stages/    each (context, findings) -> findings, in plan order, metered   (Findings)
    report    report/    sources, labels, summary, flags, citations, gate                (AuditReport)
``prepare_audit`` does the first four steps, ``run_stages`` the stages, ``report_of`` the report; one worker calls
them in turn (``run_audit``), or several share the stages (``audits.shards``: units of stages, each on its own
worker, merged before the stages that read them all). A retriever pipeline is resolved first (``Corpora``: the
caller's corpus library), audited as documents, then scored for retrieval sensitivity.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from faithaudit.api_schemas import AuditReport, AuditRequest, Cost, MethodCost, RagPipeline
from faithaudit.audits.context import Findings, StageContext, ToolFactory
from faithaudit.audits.decoding import generate_text
from faithaudit.audits.mechanism.budget import check_mechanism
from faithaudit.audits.meter import Meter, Progress, ProgressTracker
from faithaudit.audits.model.adapter import ModelAdapter
from faithaudit.audits.placebos import check_placebos_fit
from faithaudit.audits.plan import AuditPlan, Stage
from faithaudit.audits.prompt.layout import SourceLayout, check_fits, check_paraphrases_fit, request_layout
from faithaudit.audits.reliance import SurrogateSolver
from faithaudit.audits.report.build import build_report
from faithaudit.audits.retrieval_sensitivity import Retrieved, retrieval_sensitivity
from faithaudit.audits.scoring import score_full_context
from faithaudit.audits.source_limits import check_source_limits
from faithaudit.errors import FaithauditError, InvalidRequestError


@dataclass
class Prepared:
    """An audit up to its stages: the request's layout and plan, the response, the full-context pass and the
    context the stages read. ``start()`` is the findings before any stage."""

    request: AuditRequest
    model: ModelAdapter
    layout: SourceLayout
    plan: AuditPlan
    response: str
    origin: str  # request | trace | generated
    ctx: StageContext
    meter: Meter
    tracker: ProgressTracker

    def start(self) -> Findings:
        return Findings(answer_full=self.response if self.origin == "generated" else None)


def run_audit(
    request: AuditRequest,
    model: ModelAdapter,
    *,
    progress: Progress | None = None,
    solver: SurrogateSolver | None = None,
    max_sources: int | None = None,
    max_source_chars: int | None = None,
    tools: ToolFactory | None = None,
) -> AuditReport:
    """Audit ``request`` with ``model``. Limits (from settings) turn oversized input into field errors.
    ``tools`` builds the tool registry an agent replay calls (``faithaudit.tools.registry_for``)."""
    prepared = prepare_audit(
        request, model, progress=progress, solver=solver, max_sources=max_sources,
        max_source_chars=max_source_chars, tools=tools,
    )  # fmt: skip
    found = run_stages(prepared, prepared.plan.stages, prepared.start())
    return report_of(prepared, found)


def prepare_audit(
    request: AuditRequest,
    model: ModelAdapter,
    *,
    progress: Progress | None = None,
    solver: SurrogateSolver | None = None,
    max_sources: int | None = None,
    max_source_chars: int | None = None,
    tools: ToolFactory | None = None,
    response: tuple[str, str] | None = None,
) -> Prepared:
    """Check the request, settle the response (``response``: (text, origin) settled earlier, as a shard is
    given it) and make the full-context pass."""
    check_source_limits(request, max_sources=max_sources, max_source_chars=max_source_chars)
    layout, given, budget = request_layout(request, model)
    plan = AuditPlan.build(request.audit, layout.num_sources, reorderable=layout.reorderable)
    check_fits(len(layout.build().ids), budget, model)  # the prompt alone first: its own field error
    check_placebos_fit(layout, request, model, budget)
    check_paraphrases_fit(request, model, budget)
    _check_mechanism(request, layout, model, budget)
    meter = Meter(model)
    tracker = ProgressTracker(plan.total_passes, progress)

    text, origin = response or _response(request, model, layout, given, meter)
    response_ids = model.encode(text)
    check_fits(len(layout.build().ids), max(len(response_ids), budget), model)
    with meter.measure("full_context"):
        base = score_full_context(model, layout, response_ids, with_attention=plan.with_attention)
    tracker.step("full_context")

    ctx = StageContext(
        request, model, layout, text, response_ids, base, tracker,
        solver=solver, tools=tools, stages=frozenset(s.name for s in plan.stages),
    )  # fmt: skip
    return Prepared(request, model, layout, plan, text, origin, ctx, meter, tracker)


def run_stages(prepared: Prepared, stages: Sequence[Stage], found: Findings, *, meter: Meter | None = None) -> Findings:
    """Run ``stages`` in order from ``found``, each metered (into ``meter``, else the audit's own)."""
    meter = meter or prepared.meter
    for stage in stages:
        if stage.metered:
            with meter.measure(stage.name):
                found = stage.run(prepared.ctx, found)
        else:
            found = stage.run(prepared.ctx, found)
    return found


def report_of(prepared: Prepared, found: Findings, *, cost: Cost | None = None) -> AuditReport:
    """The report of ``found``; ``cost``: the audit's whole cost when other workers scored part of it."""
    report = build_report(
        prepared.request, prepared.model, prepared.layout, prepared.ctx.base, found,
        response=prepared.response, origin=prepared.origin, response_ids=list(prepared.ctx.response_ids),
        cost=cost or prepared.meter.cost(),
    )  # fmt: skip
    prepared.tracker.finish()
    return report


def _check_mechanism(request: AuditRequest, layout: SourceLayout, model: ModelAdapter, budget: int) -> None:
    """The mechanism method's field errors, before any pass; a model it cannot hook is one of them."""
    if "mechanism" not in request.audit.methods:
        return
    shape = getattr(model, "shape", None)  # HFModelAdapter has it; a scripted or remote adapter does not
    if shape is None:
        raise InvalidRequestError.for_field(
            "audit.methods", f"mechanism needs a Hugging Face model; {model.name} is not"
        )
    tokens = len(layout.build().ids) + budget
    check_mechanism(request, [s.id for s in layout.sources], shape, sequence_tokens=tokens)


def _response(
    request: AuditRequest, model: ModelAdapter, layout: SourceLayout, given: str | None, meter: Meter
) -> tuple[str, str]:
    """The response to audit and where it came from: the request, the trace's final answer, or generated."""
    if given is not None:
        return given, ("request" if request.response is not None else "trace")
    prompt = layout.build()
    check_fits(len(prompt.ids), request.model.max_new_tokens, model)
    with meter.measure("generate"):
        text = generate_text(model, prompt.ids, request.model.max_new_tokens)
    if not text:
        raise FaithauditError("the model generated an empty response; pass `response` explicitly")
    return text, "generated"


class Corpora(Protocol):
    """A tenant's corpora, as a retriever pipeline replays them (``faithaudit.retrieval.replay.CorpusLibrary``)."""

    def retrieve(self, request: AuditRequest, *, tenant: str) -> Retrieved:
        """The top k for the query and the next-ranked document; field errors for an unknown corpus or a k
        over its size."""
        ...


def audit_request(
    request: AuditRequest,
    model: ModelAdapter,
    *,
    tenant: str = "local",
    corpora: Corpora | None = None,
    tools: ToolFactory | None = None,
    progress: Progress | None = None,
    max_sources: int | None = None,
    max_source_chars: int | None = None,
) -> AuditReport:
    """Audit any request. A retriever pipeline is resolved against ``tenant``'s corpora first."""
    limits = {"max_sources": max_sources, "max_source_chars": max_source_chars}
    if request.pipeline.kind != "retriever":
        return run_audit(request, model, progress=progress, tools=tools, **limits)
    if corpora is None:
        raise FaithauditError("a retriever pipeline needs `corpora` (faithaudit.retrieval.replay.CorpusLibrary)")
    found = corpora.retrieve(request, tenant=tenant)
    rag = request.model_copy(update={"pipeline": RagPipeline(documents=list(found.documents))})

    def scaled(fraction: float, stage: str) -> None:  # the audit is ~90% of the work, sensitivity the rest
        if progress is not None:
            progress(0.9 * fraction, stage)

    report = run_audit(rag, model, progress=scaled, **limits)
    t0, (passes0, tokens0) = time.perf_counter(), model.counter.snapshot()
    sensitivity = retrieval_sensitivity(rag, model, response=report.response, next_document=found.next_document)
    passes, tokens = model.counter.snapshot()
    stage = MethodCost(
        forward_passes=passes - passes0, tokens_processed=tokens - tokens0, seconds=round(time.perf_counter() - t0, 3)
    )
    cost = report.cost.model_copy(
        update={
            "forward_passes": report.cost.forward_passes + stage.forward_passes,
            "tokens_processed": report.cost.tokens_processed + stage.tokens_processed,
            "seconds": round(report.cost.seconds + stage.seconds, 3),
            "by_stage": {**report.cost.by_stage, "retrieval_sensitivity": stage},
        }
    )
    if progress is not None:
        progress(1.0, "retrieval_sensitivity")
    return report.model_copy(update={"retrieval": found.info, "retrieval_sensitivity": sensitivity, "cost": cost})
