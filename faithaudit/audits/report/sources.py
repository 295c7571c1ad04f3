"""One ``SourceReport`` per source: attention beside reliance, ranks, flips, citations, label, tool findings."""

from __future__ import annotations

from dataclasses import dataclass

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
            return cls(floor, noise, order_intervals(found.orders.reliance))
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
    rel_ranks, att_ranks = ranks_descending(rel), ranks_descending(att)
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
            attention=att[i],
            flip_counted=counted and flip is not None and flip.changed,
            num_sources=n,
            rules=rules,
        )
        report = _measured(src, base, found, i, reliance=rel[i], attention=att[i]).model_copy(
            update={
                "attention_rank": att_ranks[i],
                "reliance_rank": rel_ranks[i],
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
        reliance=rounded(reliance),
        surrogate_weight=None if fit is None else rounded(fit.weights[i]),
        answer_changed=None if flip is None else flip.changed,
        answer_without=None if flip is None else flip.without,
    )


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
