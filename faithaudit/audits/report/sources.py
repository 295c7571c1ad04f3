"""One ``SourceReport`` per source: attention beside reliance, ranks, flips, citations, label, tool findings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faithaudit.api_schemas import SourceReport
from faithaudit.api_schemas.request import LabelThresholds
from faithaudit.audits.context import Findings
from faithaudit.audits.noise import NoiseFloor, floor_intervals, order_intervals
from faithaudit.audits.prompt.layout import Source, SourceLayout
from faithaudit.audits.report.labels import label_source, ranks_descending
from faithaudit.audits.report.reading import copies, source_reading
from faithaudit.audits.scoring import BaseRun

DIGITS = 6  # reports round floats so that two runs serialise byte-identically


def rounded(x: float | None) -> float | None:
    return None if x is None else round(float(x), DIGITS)


def pair(rows, i: int) -> tuple[float, float] | None:
    """Row ``i`` of an [n, 2] array as a rounded (low, high), or None."""
    return None if rows is None else (rounded(rows[i][0]), rounded(rows[i][1]))


def preview(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Calibration:
    """The noise floor (0 without placebos) and each source's reliance interval."""

    floor: float
    noise: NoiseFloor | None
    intervals: list[tuple[float, float]] | None

    @classmethod
    def of(cls, found: Findings) -> Calibration:
        noise = found.placebos.noise if found.placebos is not None else None
        floor = noise.floor if noise is not None else 0.0
        if found.reliance is None:
            return cls(floor, noise, None)
        if found.orders is not None:
            return cls(floor, noise, order_intervals(found.orders.reliance(found.reliance), floor))
        return cls(floor, noise, floor_intervals(found.reliance, floor))


def source_reports(
    layout: SourceLayout,
    base: BaseRun,
    found: Findings,
    *,
    rules: LabelThresholds,
    response: str,
    cited_docs: set[str],
) -> list[SourceReport]:
    n = layout.num_sources
    cal = Calibration.of(found)
    rel = [None if found.reliance is None else float(found.reliance[i]) for i in range(n)]
    att = [None if found.attention is None else float(found.attention.share[i]) for i in range(n)]
    ratios = attention_ratios(found, n)
    rel_ranks, att_ranks = ranks_descending(rel), ranks_descending(att)
    sur_ranks = ranks_descending([None] * n if found.surrogate is None else [float(w) for w in found.surrogate.weights])
    counted = found.flip_check is not None and found.flip_check.counted
    steps = {s.id: s for s in layout.steps}
    out = []
    for i, src in enumerate(layout.sources):
        flip = found.flips.get(i)
        interval = None if cal.intervals is None else cal.intervals[i]
        verdict = label_source(
            reliance=rel[i],
            interval=interval,
            floor=cal.floor,
            attention_ratio=ratios[i],
            positional=found.attention_baseline is not None,
            flip_counted=counted and flip is not None and flip.changed,
            rules=rules,
        )
        report = _measured(src, base, found, i, reliance=rel[i], attention=att[i]).model_copy(
            update={
                "attention_rank": att_ranks[i],
                "reliance_rank": rel_ranks[i],
                "surrogate_rank": sur_ranks[i],
                "reliance_interval": None if interval is None else (rounded(interval[0]), rounded(interval[1])),
                "reliance_z": None if cal.noise is None or rel[i] is None else rounded(cal.noise.z(rel[i])),
                "reliance_p": None if cal.noise is None or rel[i] is None else rounded(cal.noise.p(rel[i])),
                "cited": src.document_id in cited_docs,
                "label": verdict.label,
                "label_reason": verdict.reason,
            }
        )
        if src.id in steps:
            report = _with_tool_fields(report, steps[src.id], found, i, response)
        out.append(report)
    return out


def _measured(
    src: Source, base: BaseRun, found: Findings, i: int, *, reliance: float | None, attention: float | None
) -> SourceReport:
    reading, flip, fit = found.attention, found.flips.get(i), found.surrogate
    return SourceReport(
        id=src.id,
        kind=src.kind,
        document_id=src.document_id,
        text=src.text,
        text_preview=preview(src.text),
        token_span=base.prompt.spans[i],
        attention=rounded(attention),
        attention_raw=None if reading is None else rounded(reading.raw[i]),
        attention_by_layer=None if reading is None else [round(float(v), DIGITS) for v in reading.by_layer[:, i]],
        **_attention_detail(found, base, i),
        reliance=rounded(reliance),
        surrogate_weight=None if fit is None else rounded(fit.weights[i]),
        surrogate_interval=None if fit is None else pair(fit.interval, i),
        banzhaf=None if fit is None or fit.banzhaf is None else rounded(fit.banzhaf[i]),
        banzhaf_range=None if fit is None else pair(fit.banzhaf_range, i),
        answer_changed=None if flip is None else flip.changed,
        answer_without=None if flip is None else flip.without,
    )


def attention_ratios(found: Findings, n: int) -> list[float | None]:
    """Each source's attention share over what neutral text gets at its position, else over 1/n."""
    if found.attention is None:
        return [None] * n
    baseline = None if found.attention_baseline is None else found.attention_baseline.share
    return position_ratios(found.attention.share, baseline)


def position_ratios(share: np.ndarray, baseline: np.ndarray | None) -> list[float | None]:
    """share / baseline per source (None where the baseline is 0); without a baseline, share x n."""
    if baseline is None:
        return [float(x) * len(share) for x in share]
    return [float(x / b) if b > 0 else None for x, b in zip(share, baseline, strict=True)]


def _attention_detail(found: Findings, base: BaseRun, i: int) -> dict:
    reading = found.attention
    if reading is None:
        return {}
    start, end = base.prompt.spans[i]
    totals = reading.by_layer.sum(axis=1, keepdims=True)
    per_layer = np.divide(reading.by_layer, totals, out=np.zeros_like(reading.by_layer), where=totals > 0)[:, i]
    baseline = None if found.attention_baseline is None else float(found.attention_baseline.share[i])
    return {
        "attention_per_token": rounded(reading.share[i] / max(end - start, 1)),
        "attention_layer_max": rounded(per_layer.max()),
        "attention_layer_argmax": int(per_layer.argmax()),
        "attention_position_baseline": rounded(baseline),
        "attention_position_ratio": rounded(reading.share[i] / baseline) if baseline else None,
    }


def _with_tool_fields(source: SourceReport, step, found: Findings, i: int, response: str) -> SourceReport:
    policy = found.policy.get(i)
    cf = found.counterfactual_outputs.get(i)
    return source.model_copy(
        update={
            "tool": step.tool,
            "arguments": dict(step.arguments),
            "reliance_unavailable": rounded(found.unavailable.get(i)),
            "reliance_counterfactual": rounded(found.counterfactual.get(i)),
            "counterfactual_output": None if cf is None else cf.text,
            "counterfactual_origin": None if cf is None else cf.origin,
            "next_action_recorded": None if policy is None else policy.recorded,
            "next_action_full": None if policy is None else policy.full,
            "next_action_without": None if policy is None else policy.without,
            "next_action_logprob_drop": None if policy is None else rounded(policy.logprob_drop),
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
