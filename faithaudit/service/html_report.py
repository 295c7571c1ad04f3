"""One self-contained HTML page for an audit report: inline CSS and SVG, no scripts, nothing fetched."""

from __future__ import annotations

import json
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
    "within_noise": "#6b7280",
    "unused": "#6b7280",
}
FLOOR_COLOUR = "#e5e7eb"
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
.sources li{margin-bottom:1rem}code{word-break:break-all}.reason{font-size:.78rem;max-width:22rem}
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
        f"{proxy}{_labels_line(report)}"
        f'<h2>Query</h2><div class="block">{escape(report.query)}</div>'
        f'<h2>Response <span class="muted">({escape(report.response_origin)})</span></h2>'
        f'<div class="block">{escape(report.response)}</div></header>'
    )


def _labels_line(report: AuditReport) -> str:
    """The request's tags and metadata (escaped: they come from the client)."""
    if not report.tags and not report.metadata:
        return ""
    tags = "".join(f'<span class="badge tag">{escape(t)}</span> ' for t in report.tags)
    meta = " · ".join(
        f"<code>{escape(str(k))}</code>={escape(json.dumps(v, ensure_ascii=False)[:200])}"
        for k, v in report.metadata.items()
    )
    return f'<p class="muted" id="request-labels">{tags}{meta}</p>'


def _summary(report: AuditReport) -> str:
    s = report.summary
    items = [
        ("noise floor (nats)", _floor(s)),
        ("order top-1 stability", _num(s.order_top1_stability, 2)),
        ("context reliance (nats)", _num(s.context_reliance)),
        ("parametric", _yes_no(s.parametric)),
        ("context token share", _num(s.context_token_share)),
        (
            "surrogate LDS" + ("" if s.surrogate_lds_method is None else f" ({s.surrogate_lds_method})"),
            _num(s.surrogate_lds),
        ),
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


def _floor(s) -> str:
    if s.noise_floor_nats is None:
        return DASH + " (no placebos)"
    return f"{s.noise_floor_nats:.3f} ({len(s.placebo_reliance or [])} placebos)"


def _ratio(value: float | None) -> str:
    return "" if value is None else f'<div class="muted">{value:.2f}x neutral text there</div>'


def _bracket(pair: tuple[float, float] | None) -> str:
    return "" if pair is None else f'<div class="muted">[{pair[0]:.2f}, {pair[1]:.2f}]</div>'


def _interval(src: SourceReport) -> str:
    if src.reliance_interval is None:
        return DASH
    lo, hi = src.reliance_interval
    return f"[{lo:.2f}, {hi:.2f}]"


def _table(sources: list[SourceReport], floor: float | None) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(src.id)}</code></td><td>{_badge(src.label)}"
        f'<div class="reason muted">{escape(src.label_reason or "")}</div></td>'
        f'<td class="num">{_pct(src.attention)}{_ratio(src.attention_position_ratio)}</td>'
        f'<td class="num">{_num(src.reliance, 2)}</td>'
        f'<td class="num">{_interval(src)}</td><td class="num">{_num(src.reliance_z, 1)}</td>'
        f'<td class="num">{_num(src.reliance_p, 3)}</td>'
        f'<td class="num">{_num(src.surrogate_weight)}{_bracket(src.surrogate_interval)}</td>'
        f"<td>{_yes_no(src.answer_changed)}</td>"
        f"<td>{_yes_no(src.cited)}</td></tr>"
        for src in sources
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "id", "label (why)", "attention share", "reliance (nats)", "interval over orders", "z vs placebos",
            "p vs placebos", "surrogate weight (nats of log-odds) [95% bootstrap]", "answer changed", "cited",
        )
    )  # fmt: skip
    note = (
        f'<p class="muted">Noise floor {floor:.3f} nats: a reliance whose interval reaches inside ±floor is '
        "within the noise.</p>"
        if floor is not None
        else '<p class="muted">No placebo controls: no noise floor.</p>'
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f"<section><h2>Sources</h2>{note}{table}</section>"


def _answers(report: AuditReport) -> str:
    s = report.summary
    regenerated = [src for src in report.sources if src.answer_without is not None]
    if s.answer_full is None and not regenerated:
        return ""
    counted = "counted" if s.flips_counted else "ignored: the greedy answer is unstable"
    rows = [("audited response", report.response), ("full context, greedy", s.answer_full)]
    rows += [(f"without {src.id}", src.answer_without) for src in regenerated]
    body = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(text or DASH)}</td></tr>" for name, text in rows if text is not None
    )
    return (
        f"<section><h2>Regenerated answers</h2><p>Answer span <code>{escape(s.answer_span or '')}</code> · "
        f"greedy margin {_num(s.greedy_margin_nats, 2)} nats · placebo flip rate {_pct(s.placebo_flip_rate)} · "
        f"flips {escape(counted)}</p><table><tbody>{body}</tbody></table></section>"
    )


def _controls(report: AuditReport) -> str:
    c = report.controls
    lines = "".join(f"<li>{escape(x)}</li>" for x in report.limitations)
    limits = f'<h3>Limitations</h3><ul class="limitations">{lines}</ul>' if lines else ""
    if c is None:
        return f'<section><h2>Controls</h2><p class="muted">Not recorded (schema version 1).</p>{limits}</section>'
    masks = DASH if c.masks is None else f"{c.masks.count} + {c.masks.held_out} held out; {c.masks.design}"
    items = [
        ("seed", str(c.seed)),
        ("decoding", ", ".join(f"{k} {v}" for k, v in c.decoding.items())),
        ("masks", masks),
        ("placebos", f"{c.placebos.get('count')} ({c.placebos.get('generator')}), as {c.placebos.get('inserted_as')}"),
        ("orders", f"{c.orders.get('count')}: " + "; ".join(" ".join(p) for p in c.orders.get("permutations", []))),
        ("attention", ", ".join(f"{k} {v}" for k, v in c.attention.items())),
        ("model weights", c.model_weights),
        ("faithaudit", c.faithaudit_version),
        ("request sha256", c.request_sha256),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items)
    return f'<section><h2>Controls</h2><table class="controls"><tbody>{rows}</tbody></table>{limits}</section>'


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


def _reliance_extent(sources: list[SourceReport], floor: float | None) -> float:
    values = [abs(s.reliance) for s in sources if _finite(s.reliance)]
    values += [abs(v) for s in sources if s.reliance_interval for v in s.reliance_interval if _finite(v)]
    return max([*values, floor or 0.0], default=0.0) or 1.0


def _chart(sources: list[SourceReport], floor: float | None = None) -> str:
    """Grouped horizontal bars around a shared zero line; each series scaled to its own max |value|. Reliance
    bars carry their interval over document orders as an error bar; the shaded band is ±noise floor."""
    width, left, right, top, row, bar = 760, 170, 20, 48, 36, 13
    height = top + row * len(sources) + 40
    att_max = max((abs(s.attention) for s in sources if _finite(s.attention)), default=0.0) or 1.0
    rel_max = _reliance_extent(sources, floor)
    negative = any(
        (s.reliance or 0) < 0 or (s.attention or 0) < 0 or (s.reliance_interval or (0, 0))[0] < 0 or floor
        for s in sources
    )
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
        f'<text x="{left + 278}" y="21">reliance (nats, max |{rel_max:.2f}|) with interval</text>',
    ]
    bottom = top + row * len(sources)
    if _finite(floor) and floor > 0:
        band = floor / rel_max * span
        parts.append(
            f'<rect class="floor" x="{zero - band:.1f}" y="{top - 6}" width="{2 * band:.1f}" '
            f'height="{bottom - top + 6}" fill="{FLOOR_COLOUR}" opacity="0.7"><title>noise floor ±{floor:.3f} nats'
            "</title></rect>"
        )
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
        if src.reliance_interval is not None and all(_finite(v) for v in src.reliance_interval):
            x1, x2 = (zero + v / rel_max * span for v in src.reliance_interval)
            mid = y + bar + 1 + bar / 2
            parts.append(
                f'<path class="interval" data-source="{escape(src.id)}" d="M{x1:.1f},{mid - 4:.1f}v8M{x1:.1f},'
                f'{mid:.1f}H{x2:.1f}M{x2:.1f},{mid - 4:.1f}v8" stroke="#111827" fill="none"><title>'
                f"{escape(src.id)}: interval {_interval(src)} nats</title></path>"
            )
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


def _stability(report: AuditReport) -> str:
    """Each source's rank-1 rates and label agreement across sampled responses and paraphrases."""
    st = report.stability
    if st is None:
        return ""
    labels = {s.id: s.label for s in report.sources}
    rows = "".join(
        f"<tr><td><code>{escape(r.id)}</code></td><td>{_badge(labels.get(r.id))}</td>"
        f'<td class="num">{_pct(r.attention_top1_rate)}</td><td class="num">{_pct(r.reliance_top1_rate)}</td>'
        f'<td class="num">{_pct(r.label_agreement)}</td>'
        f"<td>{'stable' if r.stable else '<strong>unstable</strong>'}</td></tr>"
        for r in st.sources
    )
    variants = "".join(
        f'<li>{escape(v.kind)}: {escape(v.text)} <span class="muted">(top attention {escape(v.attention_top1)}, '
        f"top reliance {escape(v.reliance_top1)})</span></li>"
        for v in st.variants
    )
    temperature = "" if st.sampling_temperature is None else f" at temperature {st.sampling_temperature:g}"
    return (
        f'<section id="stability"><h2>Stability</h2><p class="muted">{len(st.variants)} variants: '
        f"{st.sampled_responses} sampled responses{temperature} (seed {st.seed} + k), {st.paraphrases} query "
        f"paraphrases. A label held in fewer than {st.min_label_agreement:.0%} of them is unstable. "
        f"{escape(st.label_rule)}.</p>"
        "<table><thead><tr><th>id</th><th>audited label</th><th>top attention</th><th>top reliance</th>"
        f"<th>label agreement</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        f"<ul>{variants}</ul></section>"
    )


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
            _table(report.sources, report.summary.noise_floor_nats),
            _answers(report),
            _stability(report),
            _tool_calls(report),
            _chart(report.sources, report.summary.noise_floor_nats),
            _texts(report.sources),
            _controls(report),
            cost_line,
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )
