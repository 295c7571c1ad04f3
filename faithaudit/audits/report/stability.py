"""``report.stability``: each variant's ranks and labels beside the audited ones.

A variant has one order and no flips, so its labels use its reliance +- the audit's noise floor as the interval
and its attention against the audit's position baseline (or an even split): the same rules (``labels``) on what a
variant can measure. A label held in fewer than ``MIN_LABEL_AGREEMENT`` of the variants is unstable.
"""

from __future__ import annotations

import numpy as np

from faithaudit.api_schemas import AuditRequest, SourceReport
from faithaudit.api_schemas.report import SourceStability, Stability, VariantReport
from faithaudit.audits.context import Findings, Variant
from faithaudit.audits.noise import floor_intervals
from faithaudit.audits.report.labels import label_source
from faithaudit.audits.report.sources import Calibration, position_ratios, rounded

MIN_LABEL_AGREEMENT = 0.8


def stability_report(request: AuditRequest, sources: list[SourceReport], found: Findings) -> Stability | None:
    if not found.variants and not request.audit.sampled_responses and not request.audit.paraphrases:
        return None
    ids = [s.id for s in sources]
    variants = [_variant(v, ids, request, found) for v in found.variants]
    rows = [_source(s, variants) for s in sources]
    opts = request.audit
    return Stability(
        variants=variants,
        sources=rows,
        sampled_responses=opts.sampled_responses,
        paraphrases=len(opts.paraphrases),
        sampling_temperature=opts.sampling_temperature if opts.sampled_responses else None,
        seed=opts.seed,
        min_label_agreement=MIN_LABEL_AGREEMENT,
        label_rule="reliance +- the audit's noise floor as the interval; attention against the audit's position "
        "baseline"
        + ("" if found.attention_baseline is not None else " (none: an even split)")
        + "; no document orders, no flips",
    )


def unstable_labels(stability: Stability | None) -> list[str]:
    return [] if stability is None or not stability.variants else [s.id for s in stability.sources if not s.stable]


def _variant(v: Variant, ids: list[str], request: AuditRequest, found: Findings) -> VariantReport:
    floor = Calibration.of(found).floor
    baseline = None if found.attention_baseline is None else found.attention_baseline.share
    ratios = position_ratios(v.attention, baseline)
    intervals = floor_intervals(v.reliance, floor)
    labels = {
        ids[i]: label_source(
            reliance=float(v.reliance[i]),
            interval=intervals[i],
            floor=floor,
            attention_ratio=ratios[i],
            positional=baseline is not None,
            flip_counted=False,
            rules=request.audit.labels,
        ).label
        for i in range(len(ids))
    }
    return VariantReport(
        kind=v.kind,
        text=v.text,
        attention_top1=ids[_top1(v.attention)],
        reliance_top1=ids[_top1(v.reliance)],
        labels=labels,
    )


def _source(src: SourceReport, variants: list[VariantReport]) -> SourceStability:
    count = max(len(variants), 1)
    agreement = sum(v.labels[src.id] == src.label for v in variants) / count if variants else 1.0
    return SourceStability(
        id=src.id,
        attention_top1_rate=rounded(sum(v.attention_top1 == src.id for v in variants) / count),
        reliance_top1_rate=rounded(sum(v.reliance_top1 == src.id for v in variants) / count),
        label_agreement=rounded(agreement),
        stable=agreement >= MIN_LABEL_AGREEMENT,
    )


def _top1(values: np.ndarray) -> int:
    """The largest value's index; ties go to the first."""
    return int(np.argmax(values))
