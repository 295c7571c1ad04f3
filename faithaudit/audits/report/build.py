"""Assemble the ``AuditReport`` from the layout, the base pass and the stages' findings."""

from __future__ import annotations

from faithaudit.api_schemas import AuditReport, AuditRequest, Cost, ModelInfo
from faithaudit.api_schemas.report import AgentReport, TrimReport
from faithaudit.audits.context import Findings
from faithaudit.audits.model.adapter import ModelAdapter
from faithaudit.audits.prompt.layout import SourceLayout
from faithaudit.audits.report.citations import cited_documents
from faithaudit.audits.report.controls import build_controls, limitations
from faithaudit.audits.report.gate import evaluate_gate
from faithaudit.audits.report.mechanism import mechanism_limitations, mechanism_report
from faithaudit.audits.report.reading import agent_reading
from faithaudit.audits.report.sources import source_reports
from faithaudit.audits.report.stability import stability_report, unstable_labels
from faithaudit.audits.report.summary import summarise
from faithaudit.audits.report.tokens import token_scores
from faithaudit.audits.scoring import BaseRun


def build_report(
    request: AuditRequest,
    model: ModelAdapter,
    layout: SourceLayout,
    base: BaseRun,
    found: Findings,
    *,
    response: str,
    origin: str,
    response_ids: list[int],
    cost: Cost,
) -> AuditReport:
    cited = cited_documents(response, list(dict.fromkeys(src.document_id for src in layout.sources)))
    sources = source_reports(layout, base, found, rules=request.audit.labels, response=response, cited_docs=cited)
    summary = summarise(request, sources, base, found, response_tokens=len(response_ids), cited_docs=cited)
    stability = stability_report(request, sources, found)
    summary.flags.extend(f"unstable_label: {sid}" for sid in unstable_labels(stability))
    mechanism = mechanism_report(layout, found)
    return AuditReport(
        query=request.query,
        response=response,
        response_origin=origin,
        prompt_template=layout.user_template,
        granularity=layout.granularity,
        methods=list(request.audit.methods),
        model=model_info(request, model),
        sources=sources,
        summary=summary,
        gate=evaluate_gate(request.thresholds, summary, methods=request.audit.methods),
        cost=cost,
        agent=agent_report(layout, [s.reading or "" for s in sources]) if layout.steps else None,
        controls=build_controls(request, model, layout, found),
        stability=stability,
        token_scores=token_scores(model, response_ids, [s.id for s in sources], base, found),
        mechanism=mechanism,
        metadata=request.metadata,
        tags=list(request.tags),
        limitations=limitations(request, model, layout, found) + mechanism_limitations(mechanism),
    )


def agent_report(layout: SourceLayout, readings: list[str]) -> AgentReport:
    trim = layout.trim
    return AgentReport(
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
        reading=agent_reading(readings),
    )


def model_info(request: AuditRequest, model: ModelAdapter) -> ModelInfo:
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
