"""One self-contained HTML page for an audit report: inline CSS and SVG, no scripts, nothing fetched."""

from __future__ import annotations

import math
from html import escape

from faithaudit.api_schemas import AuditReport, SourceReport

DASH = "—"
LABEL_COLOURS = {
    "decisive": "#1b7f3b",
    "supporting": "#2563eb",
    "distracting": "#c0262d",
    "attended_not_relied": "#c2610c",
    "relied_not_attended": "#7c3aed",
    "unused": "#6b7280",
}
ATTENTION_COLOUR = "#3b82f6"
RELIANCE_COLOUR = "#f59e0b"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1000px;
 padding:0 1rem;color:#1f2937;line-height:1.45}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #e5e7eb;padding-bottom:.2rem}
.muted{color:#6b7280}.block{white-space:pre-wrap;background:#f9fafb;border:1px solid #e5e7eb;
 border-radius:6px;padding:.6rem .8rem}
.proxy{background:#fff7ed;border:2px solid #c2610c;border-radius:6px;padding:.6rem .8rem;font-weight:600}
.summary{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:.4rem 1rem;
 background:#f9fafb;border:1px solid #e5e7eb;border-radius:6px;padding:.8rem}
.summary div span{display:block;font-size:.8rem;color:#6b7280}
.pass{color:#1b7f3b;font-weight:700}.fail{color:#c0262d;font-weight:700}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{border-bottom:1px solid #e5e7eb;padding:.3rem .5rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:999px;padding:0 .55rem;font-size:.8rem;color:#fff;
 white-space:nowrap}
.sources li{margin-bottom:1rem}code{word-break:break-all}
"""


def _num(value: float | None, digits: int = 3) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.1f}%"


def _yes_no(value: bool | None) -> str:
    return DASH if value is None else ("yes" if value else "no")


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _badge(label: str | None) -> str:
    colour = LABEL_COLOURS.get(label or "", "#9ca3af")
    text = escape(label) if label else "no label"
    return f'<span class="badge" style="background:{colour}">{text}</span>'


def _header(report: AuditReport, title: str) -> str:
    model = report.model
    proxy = ""
    if model.is_proxy:
        target = f" for {escape(model.proxy_for)}" if model.proxy_for else ""
        note = escape(model.note) if model.note else "The audited model is a local stand-in."
        proxy = f'<p class="proxy">Proxy model{target}: {note}</p>'
    return (
        f"<header><h1>{escape(title)}</h1>"
        f'<p class="muted">model <code>{escape(model.name)}</code> @ <code>{escape(model.revision)}</code>'
        f" · granularity {escape(report.granularity)} · methods {escape(', '.join(report.methods))}</p>"
        f"{proxy}"
        f'<h2>Query</h2><div class="block">{escape(report.query)}</div>'
        f'<h2>Response <span class="muted">({escape(report.response_origin)})</span></h2>'
        f'<div class="block">{escape(report.response)}</div></header>'
    )


def _summary(report: AuditReport) -> str:
    s = report.summary
    items = [
        ("context reliance (nats)", _num(s.context_reliance)),
        ("parametric", _yes_no(s.parametric)),
        ("faithfulness score", _num(s.faithfulness_score)),
        ("surrogate LDS", _num(s.surrogate_lds)),
        ("attention–reliance Spearman", _num(s.attention_reliance_spearman)),
        ("top-1 agreement", _yes_no(s.top1_agreement)),
        ("citation precision", _num(s.citation_precision)),
        ("citation recall", _num(s.citation_recall)),
    ]
    cells = "".join(f"<div><span>{name}</span>{value}</div>" for name, value in items)
    gate = '<p class="pass">Gate: passed</p>' if report.gate.passed else '<p class="fail">Gate: failed</p>'
    failures = "".join(
        f"<li><code>{escape(f.threshold)}</code>: {escape(f.message)}</li>" for f in report.gate.failures
    )
    flags = "".join(f"<li>{escape(flag)}</li>" for flag in s.flags)
    return (
        f'<section><h2>Summary</h2><div class="summary">{cells}</div>{gate}'
        + (f'<ul class="failures">{failures}</ul>' if failures else "")
        + (f'<h3>Flags</h3><ul class="flags">{flags}</ul>' if flags else '<p class="muted">No flags.</p>')
        + "</section>"
    )


def _table(sources: list[SourceReport]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(src.id)}</code></td><td>{_badge(src.label)}</td>"
        f'<td class="num">{_pct(src.attention)}</td><td class="num">{_num(src.reliance, 2)}</td>'
        f'<td class="num">{_num(src.surrogate_weight)}</td><td>{_yes_no(src.answer_changed)}</td>'
        f"<td>{_yes_no(src.cited)}</td></tr>"
        for src in sources
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("id", "label", "attention share", "reliance (nats)", "surrogate weight", "answer changed", "cited")
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f"<section><h2>Sources</h2>{table}</section>"


def _tool_calls(report: AuditReport) -> str:
    if report.agent is None:
        return ""

    def action(a) -> str:
        if a is None:
            return "—"
        if a.kind == "tool_call":
            return f"<code>{escape(a.tool or '')}</code>"
        return escape(a.kind.replace("_", " "))

    rows = "".join(
        f"<tr><td><code>{escape(src.id)}</code></td><td>{escape(src.tool or '')}</td>"
        f'<td class="num">{_num(src.reliance_unavailable, 2)}</td>'
        f'<td class="num">{_num(src.reliance_counterfactual, 2)}</td>'
        f'<td class="num">{_num(src.next_action_logprob_drop, 2)}</td>'
        f"<td>{action(src.next_action_recorded)}</td><td>{action(src.next_action_without)}</td>"
        f"<td>{_yes_no(src.policy_changed)}</td><td>{escape(src.reading or '')}</td></tr>"
        for src in report.sources
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "step",
            "tool",
            "reliance if unavailable",
            "reliance if counterfactual",
            "next-action drop (nats)",
            "recorded next action",
            "next action without it",
            "policy changed",
            "reading",
        )
    )
    trim = report.agent.trim
    trimmed = (
        f'<p class="muted">Trimmed from {trim.tokens_before} to {trim.tokens_after} prompt tokens; dropped '
        f"{len(trim.dropped_turns)} turns and steps {escape(', '.join(trim.dropped_steps) or 'none')}.</p>"
        if trim is not None
        else ""
    )
    return (
        f"<section><h2>Tool calls</h2><p>{escape(report.agent.reading)}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{trimmed}</section>"
    )


def _chart(sources: list[SourceReport]) -> str:
    """Grouped horizontal bars around a shared zero line; each series scaled to its own max |value|."""
    width, left, right, top, row, bar = 760, 170, 20, 48, 36, 13
    height = top + row * len(sources) + 40
    att_max = max((abs(s.attention) for s in sources if _finite(s.attention)), default=0.0) or 1.0
    rel_max = max((abs(s.reliance) for s in sources if _finite(s.reliance)), default=0.0) or 1.0
    negative = any((s.reliance or 0) < 0 or (s.attention or 0) < 0 for s in sources)
    plot = width - left - right
    zero = left + plot / 2 if negative else left
    span = plot / 2 if negative else plot

    def rect(kind: str, value: float | None, scale: float, y: float, src: SourceReport, text: str) -> str:
        length = value / scale * span if _finite(value) else 0.0
        x = zero + min(length, 0.0)
        colour = ATTENTION_COLOUR if kind == "attention" else RELIANCE_COLOUR
        return (
            f'<rect class="bar {kind}" data-source="{escape(src.id)}" x="{x:.1f}" y="{y:.1f}" '
            f'width="{abs(length):.1f}" height="{bar}" fill="{colour}"><title>{escape(src.id)}: {text}'
            f"</title></rect>"
        )

    parts = [
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<rect x="{left}" y="10" width="12" height="12" fill="{ATTENTION_COLOUR}"/>'
        f'<text x="{left + 18}" y="21">attention share (max {att_max * 100:.1f}%)</text>',
        f'<rect x="{left + 260}" y="10" width="12" height="12" fill="{RELIANCE_COLOUR}"/>'
        f'<text x="{left + 278}" y="21">reliance (nats, max |{rel_max:.2f}|)</text>',
    ]
    for i, src in enumerate(sources):
        y = top + i * row
        short = src.id if len(src.id) <= 24 else src.id[:23] + "…"
        parts.append(
            f'<text x="{left - 8}" y="{y + bar + 4}" text-anchor="end">{escape(short)}<title>{escape(src.id)}'
            f"</title></text>"
        )
        att = "attention share " + (DASH if src.attention is None else f"{src.attention!r}")
        rel = "reliance " + (DASH if src.reliance is None else f"{src.reliance!r} nats")
        parts.append(rect("attention", src.attention, att_max, y, src, att))
        parts.append(rect("reliance", src.reliance, rel_max, y + bar + 1, src, rel))
    bottom = top + row * len(sources)
    parts.append(f'<line x1="{zero:.1f}" y1="{top - 6}" x2="{zero:.1f}" y2="{bottom}" stroke="#374151"/>')
    parts.append(
        f'<text x="{left + plot / 2:.1f}" y="{bottom + 24}" text-anchor="middle" fill="#6b7280">'
        "bar length relative to each series' largest |value| (0 at the vertical line)</text>"
    )
    return (
        f'<section><h2>Attention vs. reliance</h2><svg id="reliance-chart" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-size="12" role="img" '
        f'aria-label="attention share and reliance per source">{"".join(parts)}</svg></section>'
    )


def _texts(sources: list[SourceReport]) -> str:
    items = "".join(
        f"<li><code>{escape(src.id)}</code> {_badge(src.label)} "
        f'<span class="muted">{escape(src.kind)} of {escape(src.document_id)}</span>'
        f'<div class="block">{escape(src.text)}</div></li>'
        for src in sources
    )
    return f'<section><h2>Source texts</h2><ol class="sources">{items}</ol></section>'


def render_report_html(report: AuditReport, *, title: str | None = None) -> str:
    """The report as one offline HTML page: header, summary, source table, SVG chart, texts, cost."""
    title = title or "faithaudit reliance report"
    cost = report.cost
    cost_line = (
        f'<footer><h2>Cost</h2><p class="cost">{cost.forward_passes} forward passes · '
        f"{cost.tokens_processed} tokens processed · {cost.seconds:.2f} s</p></footer>"
    )
    body = "".join(
        [
            _header(report, title),
            _summary(report),
            _table(report.sources),
            _tool_calls(report),
            _chart(report.sources),
            _texts(report.sources),
            cost_line,
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )
