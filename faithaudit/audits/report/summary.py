"""The audit's summary: context reliance, agreement of attention and reliance, citations, label counts, flags."""

from __future__ import annotations

import numpy as np

from faithaudit.api_schemas import SourceReport, Summary
from faithaudit.api_schemas.request import AuditRequest, LabelThresholds
from faithaudit.audits.context import Findings
from faithaudit.audits.noise import top1_stability
from faithaudit.audits.reliance import spearman
from faithaudit.audits.report.sources import rounded
from faithaudit.audits.scoring import BaseRun


def summarise(
    request: AuditRequest,
    sources: list[SourceReport],
    base: BaseRun,
    found: Findings,
    *,
    response_tokens: int,
    cited_docs: set[str],
) -> Summary:
    rules = request.audit.labels
    none = found.no_context
    floor = None if found.placebos is None else found.placebos.noise.floor
    context_reliance = token_share = parametric = None
    if none is not None:
        context_reliance = base.score.logprob - none.logprob
        parametric = context_reliance < max(rules.parametric_context_reliance, floor or 0.0)
        gains = base.score.token_logprobs - none.token_logprobs
        token_share = float(np.mean(gains >= rules.faithfulness_token_delta))
    agreement, top1 = _agreement(sources)
    precision, recall = _citations(sources, cited_docs, rules)
    labels = [s.label for s in sources if s.label is not None]
    fit, check = found.surrogate, found.flip_check
    return Summary(
        num_sources=len(sources),
        response_tokens=response_tokens,
        logprob_full=rounded(base.score.logprob),
        logprob_no_context=None if none is None else rounded(none.logprob),
        context_reliance=rounded(context_reliance),
        parametric=parametric,
        attention_reliance_spearman=rounded(agreement),
        top1_agreement=top1,
        context_token_share=rounded(token_share),
        noise_floor_nats=rounded(floor),
        placebo_reliance=None
        if found.placebos is None
        else [rounded(v) for v in found.placebos.noise.placebo_reliance],
        order_top1_stability=None
        if found.orders is None
        else rounded(top1_stability(found.orders.reliance(found.reliance))),
        answer_span=None if check is None else " ".join(check.answer_span),
        greedy_margin_nats=None if check is None else rounded(check.margin),
        placebo_flip_rate=None if check is None else rounded(check.placebo_flip_rate),
        flips_counted=None if check is None else check.counted,
        surrogate_lds=None if fit is None else rounded(fit.lds),
        surrogate_bias=None if fit is None else rounded(fit.bias),
        surrogate_lds_method=None if fit is None else fit.lds_method,
        citation_precision=rounded(precision),
        citation_recall=rounded(recall),
        answer_full=found.answer_full,
        label_counts={name: labels.count(name) for name in sorted(set(labels))},
        flags=flags(
            sources, found, rules, parametric=parametric, top1=top1, cited_docs=cited_docs, precision=precision
        ),
    )


def _agreement(sources: list[SourceReport]) -> tuple[float | None, bool | None]:
    """Spearman of attention vs reliance over the sources, and whether their top-1 sources agree."""
    rel = [s.reliance for s in sources]
    att = [s.attention for s in sources]
    if not sources or any(v is None for v in rel) or any(v is None for v in att):
        return None, None
    agreement = spearman(np.array(att), np.array(rel)) if len(sources) >= 2 else None
    return agreement, int(np.argmax(att)) == int(np.argmax(rel))


def _citations(
    sources: list[SourceReport], cited_docs: set[str], rules: LabelThresholds
) -> tuple[float | None, float | None]:
    """Judged per document: a cited document is relied on when one of its sources is."""
    if not cited_docs or any(s.reliance is None for s in sources):
        return None, None
    relied_docs = {s.document_id for s in sources if s.reliance >= rules.supporting}
    precision = len(cited_docs & relied_docs) / len(cited_docs)
    decisive_docs = {s.document_id for s in sources if s.label == "decisive"}
    recall = len(decisive_docs & cited_docs) / len(decisive_docs) if decisive_docs else None
    return precision, recall


def flags(
    sources: list[SourceReport],
    found: Findings,
    rules: LabelThresholds,
    *,
    parametric: bool | None,
    top1: bool | None,
    cited_docs: set[str],
    precision: float | None,
) -> list[str]:
    out: list[str] = []
    if parametric:
        out.append("parametric_answer: the response barely depends on the context")
    if top1 is False:
        out.append("top1_disagreement: the most attended source is not the most relied on")
    for s in sources:
        if s.label == "attended_not_relied":
            out.append(f"attended_not_relied: {s.id}")
        if s.label == "distracting":
            out.append(f"distracting: {s.id}")
    if precision is not None:
        for doc in sorted(cited_docs):
            if not any(s.document_id == doc and s.reliance >= rules.supporting for s in sources):
                out.append(f"cited_not_relied: {doc}")
    fit = found.surrogate
    if fit is not None and (fit.lds is None or fit.lds < rules.surrogate_lds_floor):
        out.append("low_surrogate_fit: the linear surrogate predicts held-out ablations poorly")
    check = found.flip_check
    if check is not None and not check.counted:
        out.append("unstable_greedy_answer: answer flips are decoding noise here and set no label")
    return out
