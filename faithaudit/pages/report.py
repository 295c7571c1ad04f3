"""The report page: one self-contained HTML file (inline CSS and SVG, no scripts, nothing fetched), printable.
``render_report_html`` serves the API's report.html, ``faithaudit render`` and ``faithaudit audit --html``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from faithaudit.api_schemas import AuditReport, LabelThresholds, SourceReport, TokenScore
from faithaudit.pages.charts import LABEL_COLOURS, NO_LABEL, scatter
from faithaudit.pages.env import render
from faithaudit.pages.mechanism_charts import mechanism_charts
from faithaudit.pages.verdict import RELIED, verdict

GAIN_CAP_NATS = 5.0  # a token's colour saturates at +-5 nats of context gain: one legend for every token


@dataclass(frozen=True)
class HeatToken:
    text: str
    style: str
    title: str
    gain: float | None


def heat_tokens(tokens: list[TokenScore]) -> list[HeatToken]:
    out = []
    for t in tokens:
        gain = t.context_gain
        strength = 0.0 if gain is None else min(abs(gain) / GAIN_CAP_NATS, 1.0)
        rgb = "27,127,59" if (gain or 0) >= 0 else "192,38,45"
        by_source = ", ".join(f"{sid} {v:+.2f}" for sid, v in t.reliance_by_source.items())
        gain_text = "context gain not measured" if gain is None else f"context gain {gain:+.2f} nats"
        title = f"{gain_text}; log p {t.logprob_full:.2f}"
        title += f"; without each source: {by_source}" if by_source else ""
        out.append(
            HeatToken(text=t.text, style=f"background:rgba({rgb},{0.08 + 0.62 * strength:.2f})", title=title, gain=gain)
        )
    return out


@dataclass(frozen=True)
class DocumentView:
    id: str
    parts: list[SourceReport]  # the document's sources in prompt order (one at document granularity)


def documents(sources: list[SourceReport]) -> list[DocumentView]:
    grouped: dict[str, list[SourceReport]] = {}
    for src in sources:
        grouped.setdefault(src.document_id, []).append(src)
    return [DocumentView(doc, parts) for doc, parts in grouped.items()]


def label_rules(report: AuditReport) -> LabelThresholds:
    c = report.controls
    known = LabelThresholds.model_fields
    if c is None or not c.label_rules:
        return LabelThresholds()
    return LabelThresholds(**{k: v for k, v in c.label_rules.items() if k in known})


def _metadata_items(report: AuditReport) -> list[tuple[str, str]]:
    return [(str(k), json.dumps(v, ensure_ascii=False)[:200]) for k, v in report.metadata.items()]


def render_report_html(
    report: AuditReport, *, title: str | None = None, nav: list[tuple[str, str]] | None = None
) -> str:
    """``nav``: (text, same-site path) links above the page, for the UI; a saved page has none."""
    rules = label_rules(report)
    floor = report.summary.noise_floor_nats
    stages = sorted(report.cost.by_stage.items(), key=lambda kv: -kv[1].seconds)
    return render(
        "report.html",
        title=title or "faithaudit reliance report",
        nav=nav or [],
        r=report,
        s=report.summary,
        verdict=verdict(report),
        chart=scatter(report.sources, floor, rules),
        rules=rules,
        heat=heat_tokens(report.token_scores or []),
        gain_cap=GAIN_CAP_NATS,
        documents=documents(report.sources),
        relied_labels=RELIED,
        colours=LABEL_COLOURS,
        no_label=NO_LABEL,
        stages=stages,
        metadata_items=_metadata_items(report),
        regenerated=[src for src in report.sources if src.answer_without is not None],
        mech_charts={c.source: c for c in mechanism_charts(report.mechanism)},
    )
